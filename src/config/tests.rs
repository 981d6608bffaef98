//! `parse` end to end: flag syntax, environment, config file and validation,
//! each checked against the messages and exit codes etcd gives.

use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn env(e: &[(&str, &str)]) -> Vec<(String, String)> {
    e.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(a: &[&str], e: &[(&str, &str)]) -> (Config, Vec<String>) {
    match parse(&args(a), &env(e)) {
        Ok(Parsed::Run { config, warnings }) => (config, warnings),
        other => panic!("expected Run, got {:?}", other),
    }
}

fn fail(a: &[&str], e: &[(&str, &str)]) -> ConfigError {
    match parse(&args(a), &env(e)) {
        Err(err) => err,
        Ok(other) => panic!("expected error, got {:?}", other),
    }
}

fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ballast-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn defaults() {
    let (c, w) = run(&[], &[]);
    assert_eq!(c, Config::default());
    assert!(w.is_empty());
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.ballast"));
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
    assert_eq!(c.advertise_client_urls, vec!["http://localhost:2379"]);
    assert_eq!(c.listen_peer_urls, vec!["http://localhost:2380"]);
    assert_eq!(c.initial_advertise_peer_urls, vec!["http://localhost:2380"]);
    assert_eq!(
        c.initial_cluster,
        vec![("default".to_string(), "http://localhost:2380".to_string())]
    );
    assert_eq!(c.initial_cluster_state, "new");
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(
        (
            c.snapshot_count,
            c.heartbeat_interval_ms,
            c.election_timeout_ms
        ),
        (100000, 100, 1000)
    );
    assert_eq!(
        (c.quota_backend_bytes, c.max_request_bytes, c.max_txn_ops),
        (0, 1572864, 128)
    );
    assert_eq!(
        (
            c.auto_compaction_mode.as_str(),
            c.auto_compaction_retention.as_str()
        ),
        ("periodic", "0")
    );
    assert_eq!((c.logger.as_str(), c.log_level.as_str()), ("zap", "info"));
    assert!(c.listen_metrics_urls.is_empty());
    assert_eq!(c.compat_version, DEFAULT_COMPAT_VERSION);
    assert_eq!(c.shards, 0);
}

#[test]
fn name_drives_data_dir_and_initial_cluster() {
    let (c, _) = run(&["--name", "infra1"], &[]);
    assert_eq!(c.data_dir, PathBuf::from("infra1.ballast"));
    assert_eq!(
        c.initial_cluster,
        vec![("infra1".to_string(), "http://localhost:2380".to_string())]
    );
    let (c, _) = run(
        &[
            "--name=n1",
            "--initial-advertise-peer-urls=http://127.0.0.1:12380",
        ],
        &[],
    );
    assert_eq!(
        c.initial_cluster,
        vec![("n1".to_string(), "http://127.0.0.1:12380".to_string())]
    );
    let (c, _) = run(
        &[
            "--initial-cluster",
            "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380",
        ],
        &[],
    );
    assert_eq!(c.initial_cluster.len(), 2);
    assert_eq!(
        c.initial_cluster[1],
        ("b".to_string(), "http://10.0.0.2:2380".to_string())
    );
}

#[test]
fn all_syntax_forms() {
    for form in [
        vec!["--name", "x"],
        vec!["--name=x"],
        vec!["-name", "x"],
        vec!["-name=x"],
    ] {
        let (c, _) = run(&form, &[]);
        assert_eq!(c.name, "x", "{:?}", form);
    }
    // a value may itself start with '-'
    let (c, _) = run(&["--name", "-x"], &[]);
    assert_eq!(c.name, "-x");
    // empty value via '='
    let (c, _) = run(&["--wal-dir=", "--data-dir", "/d"], &[]);
    assert_eq!((c.wal_dir, c.data_dir), (None, PathBuf::from("/d")));
    // last one wins
    let (c, _) = run(&["--name", "a", "--name", "b"], &[]);
    assert_eq!(c.name, "b");
}

#[test]
fn booleans_and_version_help() {
    assert_eq!(parse(&args(&["--version"]), &[]).unwrap(), Parsed::Version);
    assert_eq!(parse(&args(&["-version"]), &[]).unwrap(), Parsed::Version);
    assert_eq!(
        parse(&args(&["--version=true"]), &[]).unwrap(),
        Parsed::Version
    );
    assert!(matches!(
        parse(&args(&["--version=false"]), &[]).unwrap(),
        Parsed::Run { .. }
    ));
    for h in ["-h", "--help", "-help", "--h"] {
        assert_eq!(
            parse(&args(&["--name", "x", h]), &[]).unwrap(),
            Parsed::Help
        );
    }
    let e = fail(&["--version=x"], &[]);
    assert_eq!(
        e.message,
        "invalid boolean value \"x\" for -version: parse error"
    );
    assert_eq!(e.exit_code, 2);
    // bare boolean does not consume the next argument
    let (_, w) = run(&["--enable-v2", "--name", "n"], &[]);
    assert_eq!(
        w,
        vec!["flag --enable-v2 is not implemented by ballast yet; ignored"]
    );
    let e = fail(&["--enable-v2", "false"], &[]);
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        ("'false' is not a valid flag", 1)
    );
}

#[test]
fn double_dash_and_positional() {
    let (c, _) = run(&["--name", "a", "--"], &[]);
    assert_eq!(c.name, "a");
    let e = fail(&["--name", "a", "--", "--name", "b"], &[]);
    assert_eq!(e.message, "'--name' is not a valid flag");
    let e = fail(&["foo"], &[]);
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        ("'foo' is not a valid flag", 1)
    );
    let e = fail(&["-"], &[]);
    assert_eq!(e.message, "'-' is not a valid flag");
    // positional args are reported even with --version, like etcd
    assert_eq!(
        fail(&["--version", "x"], &[]).message,
        "'x' is not a valid flag"
    );
}

#[test]
fn unknown_and_malformed_flags() {
    for (a, msg) in [
        (vec!["--foo"], "flag provided but not defined: -foo"),
        (vec!["-foo=1"], "flag provided but not defined: -foo"),
        (vec!["---x"], "bad flag syntax: ---x"),
        (vec!["-=x"], "bad flag syntax: -=x"),
        (vec!["--name"], "flag needs an argument: -name"),
    ] {
        let e = fail(&a, &[]);
        assert_eq!((e.message.as_str(), e.exit_code), (msg, 2), "{:?}", a);
    }
}

#[test]
fn bad_values() {
    for (a, msg) in [
        (vec!["--snapshot-count", "abc"], "invalid value \"abc\" for flag -snapshot-count: parse error"),
        (vec!["--snapshot-count=-1"], "invalid value \"-1\" for flag -snapshot-count: parse error"),
        (vec!["--max-txn-ops", "99999999999999999999"], "invalid value \"99999999999999999999\" for flag -max-txn-ops: value out of range"),
        (vec!["--initial-cluster-state", "bad"], "invalid value \"bad\" for flag -initial-cluster-state: invalid value"),
        (vec!["--listen-client-urls", "foo"], "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"),
        (vec!["--listen-peer-urls", "http://foo"], "invalid value \"http://foo\" for flag -listen-peer-urls: URL address does not have the form \"host:port\": http://foo"),
        (vec!["--advertise-client-urls", "http://127.0.0.1:2379/"], "invalid value \"http://127.0.0.1:2379/\" for flag -advertise-client-urls: URL must not contain a path: http://127.0.0.1:2379/"),
        (vec!["--grpc-keepalive-timeout", "5"], "invalid value \"5\" for flag -grpc-keepalive-timeout: time: missing unit in duration \"5\""),
        (vec!["--proxy", "maybe"], "invalid value \"maybe\" for flag -proxy: invalid value"),
    ] {
        let e = fail(&a, &[]);
        assert_eq!((e.message.as_str(), e.exit_code), (msg, 2), "{:?}", a);
    }
}

#[test]
fn validation_errors_exit_1() {
    for (a, msg) in [
        (vec!["--listen-client-urls", "http://127.0.0.1:2379"], "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
        (vec!["--listen-client-urls", "http://foo:2379", "--advertise-client-urls", "http://foo:2379"], "expected IP in URL for binding (http://foo:2379)"),
        (vec!["--heartbeat-interval", "500"], "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[500ms]"),
        (vec!["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
        (vec!["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
        (vec!["--auto-compaction-mode", "foo"], "unknown auto-compaction-mode \"foo\""),
        (vec!["--logger", "capnslog"], "--logger=capnslog is removed in v3.5"),
        (vec!["--initial-cluster", "a=foo"], "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo"),
        (vec!["--advertise-client-urls", "http://:2379"], "--advertise-client-urls \"http://:2379\" must be \"host:port\" (unexpected empty host (http://:2379))"),
    ] {
        let e = fail(&a, &[]);
        assert_eq!((e.message.as_str(), e.exit_code), (msg, 1), "{:?}", a);
    }
    let e = fail(&["--log-level", "loud"], &[]);
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("--log-level"));
}

#[test]
fn implemented_values() {
    let (c, w) = run(
        &[
            "--listen-client-urls=http://127.0.0.1:2379,http://127.0.0.1:2379,unix://sock:0",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--quota-backend-bytes=8589934592",
            "--max-request-bytes",
            "0x100",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=1000",
            "--log-level=debug",
            "--wal-dir=/w",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--compat-version",
            "3.5.0",
            "--shards",
            "4",
            "--initial-cluster-state=existing",
        ],
        &[],
    );
    assert!(w.is_empty(), "{:?}", w);
    assert_eq!(
        c.listen_client_urls,
        vec!["http://127.0.0.1:2379", "unix://sock:0"]
    );
    assert_eq!(c.quota_backend_bytes, 8 << 30);
    assert_eq!(c.max_request_bytes, 256);
    assert_eq!(c.auto_compaction_mode, "revision");
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.wal_dir, Some(PathBuf::from("/w")));
    assert_eq!(c.listen_metrics_urls, vec!["http://127.0.0.1:2381"]);
    assert_eq!((c.compat_version.as_str(), c.shards), ("3.5.0", 4));
    assert_eq!(c.initial_cluster_state, "existing");
    let (c, _) = run(&["--quota-backend-bytes=-1"], &[]);
    assert_eq!(c.quota_backend_bytes, u64::MAX);
}

#[test]
fn unimplemented_flags_warn_once_each() {
    let (_, w) = run(
        &[
            "--max-wals",
            "3",
            "--enable-pprof",
            "--debug",
            "--cors=*",
            "--log-package-levels=x",
            "--max-wals=4",
            "--grpc-keepalive-min-time=5s",
            "--v",
        ],
        &[],
    );
    assert_eq!(
        w,
        vec![
            "flag --max-wals is not implemented by ballast yet; ignored",
            "flag --enable-pprof is not implemented by ballast yet; ignored",
            "flag --debug is not implemented by ballast yet; ignored",
            "flag --cors is not implemented by ballast yet; ignored",
            "flag --log-package-levels is not implemented by ballast yet; ignored",
            "flag --grpc-keepalive-min-time is not implemented by ballast yet; ignored",
            "flag --v is not implemented by ballast yet; ignored",
        ]
    );
    let (_, w) = run(&[], &[("ETCD_ENABLE_PPROF", "true")]);
    assert_eq!(
        w,
        vec!["environment variable ETCD_ENABLE_PPROF (flag --enable-pprof) is not implemented by ballast yet; ignored"]
    );
}

#[test]
fn tls_flags() {
    let (c, w) = run(
        &[
            "--cert-file=/c.pem",
            "--key-file",
            "/k.pem",
            "--trusted-ca-file=/ca.pem",
            "--client-cert-auth",
            "--client-crl-file=/crl.pem",
            "--client-cert-allowed-hostname=a.example,127.0.0.1",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "--tls-max-version=TLS1.2",
            "--self-signed-cert-validity=3",
            "--peer-cert-file=/p.pem",
        ],
        &[("ETCD_AUTO_TLS", "true"), ("ETCD_PEER_CERT_ALLOWED_CN", "a,b")],
    );
    assert_eq!(
        c.client_tls,
        TlsFlags {
            cert_file: "/c.pem".into(),
            key_file: "/k.pem".into(),
            trusted_ca_file: "/ca.pem".into(),
            client_cert_auth: true,
            crl_file: "/crl.pem".into(),
            auto_tls: true,
            allowed_cns: vec![],
            allowed_hostnames: vec!["a.example".into(), "127.0.0.1".into()],
        }
    );
    assert_eq!(c.peer_tls.cert_file, "/p.pem");
    assert_eq!(c.peer_tls.allowed_cns, vec!["a", "b"]);
    assert_eq!(c.cipher_suites, vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]);
    assert_eq!((c.tls_min_version.as_str(), c.tls_max_version.as_str()), ("TLS1.2", "TLS1.2"));
    assert_eq!(c.self_signed_cert_validity_years, 3);
    assert!(w.is_empty(), "{w:?}");
    let d = Config::default();
    assert_eq!((d.tls_min_version.as_str(), d.tls_max_version.as_str(), d.self_signed_cert_validity_years), ("TLS1.2", "", 1));
    assert!(d.client_tls.is_empty() && d.cipher_suites.is_empty());
}

/// etcd 3.5's Validate: the TLS versions and cipher suites with TLS 1.3 only.
#[test]
fn tls_version_errors() {
    let e = fail(&["--tls-min-version=TLS1.1"], &[]);
    assert_eq!((e.message.as_str(), e.exit_code), ("unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)", 1));
    let e = fail(&["--tls-max-version=tls1.3"], &[]);
    assert_eq!(e.message, "unexpected TLS version \"tls1.3\" (must be one of: TLS1.2, TLS1.3)");
    let e = fail(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"], &[]);
    assert_eq!(e.message, "min version (TLS1.3) is greater than max version (TLS1.2)");
    let e = fail(&["--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], &[]);
    assert_eq!(e.message, "cipher suites cannot be configured when only TLS1.3 is enabled");
    // TLS 1.3 only, or suites with TLS 1.2 allowed, are fine.
    run(&["--tls-min-version=TLS1.3"], &[]);
    run(&["--tls-max-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], &[]);
}

#[test]
fn env_fallback_and_precedence() {
    let e = [
        ("ETCD_DATA_DIR", "/var/lib/x"),
        ("ETCD_NAME", "envname"),
        ("ETCD_SNAPSHOT_COUNT", "5"),
    ];
    let (c, w) = run(&["--initial-cluster-token", "cli"], &e);
    assert_eq!(c.name, "envname");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
    assert_eq!(c.snapshot_count, 5);
    assert!(w.is_empty(), "{w:?}");
    // A variable beside its flag refuses to start, as etcd 3.5 (a fatal log line, exit 1),
    // even an empty one.
    for value in ["envname", ""] {
        let e = fail(&["--name", "cli"], &[("ETCD_NAME", value)]);
        assert_eq!(e.exit_code, 1);
        assert_eq!(e.message, "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))");
        assert_eq!(e.fatal_field, Some(("environment-variable", "ETCD_NAME".to_string())));
    }
    // empty env values are ignored
    let (c, _) = run(&[], &[("ETCD_NAME", "")]);
    assert_eq!(c.name, "default");
    // env values are checked like flag values, but exit 1 (etcd returns them from parse)
    let e = fail(&[], &[("ETCD_SNAPSHOT_COUNT", "abc")]);
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        (
            "invalid value \"abc\" for ETCD_SNAPSHOT_COUNT: parse error",
            1
        )
    );
    // env-set listen-client-urls also requires advertise-client-urls
    let e = fail(&[], &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")]);
    assert_eq!(e.exit_code, 1);
    // ETCD_VERSION is never honoured; unknown ETCD_ vars warn
    let (_, w) = run(
        &[],
        &[
            ("ETCD_VERSION", "true"),
            ("ETCD_BOGUS", "1"),
            ("ETCDCTL_API", "3"),
        ],
    );
    assert_eq!(w, vec!["unrecognized environment variable ETCD_BOGUS=1"]);
    let (c, _) = run(&[], &[("ETCD_SHARDS", "3")]);
    assert_eq!(c.shards, 3);
}

#[test]
fn config_file() {
    let path = temp_file(
        "ok.yml",
        "name: infra2\nlisten-client-urls: http://127.0.0.1:3379,http://127.0.0.1:3380\n\
         advertise-client-urls: http://127.0.0.1:3379\nsnapshot-count: 77\n\
         heartbeat-interval: 50\nelection-timeout: 500\nquota-backend-bytes: 1024\n\
         initial-cluster-state: existing\nunknown-key: whatever\nclient-transport-security:\n  cert-file: x\n  \
         key-file: y\n  client-cert-auth: true\ncipher-suites: [TLS_AES_128_GCM_SHA256]\ntls-max-version: TLS1.3\n",
    );
    let (c, w) = run(
        &[
            "--config-file",
            &path,
            "--name",
            "ignored",
            "--shards",
            "2",
            "--enable-pprof",
        ],
        &[("ETCD_SNAPSHOT_COUNT", "9"), ("ETCD_DATA_DIR", "/ignored")],
    );
    assert_eq!(c.name, "infra2");
    assert_eq!(c.data_dir, PathBuf::from("infra2.ballast"));
    assert_eq!(
        c.listen_client_urls,
        vec!["http://127.0.0.1:3379", "http://127.0.0.1:3380"]
    );
    assert_eq!(c.snapshot_count, 77);
    assert_eq!((c.heartbeat_interval_ms, c.election_timeout_ms), (50, 500));
    assert_eq!(c.quota_backend_bytes, 1024);
    assert_eq!(c.initial_cluster_state, "existing");
    assert_eq!(
        c.initial_cluster,
        vec![("infra2".to_string(), "http://localhost:2380".to_string())]
    );
    assert_eq!(c.shards, 2, "ballast-only flags still apply");
    assert_eq!(
        w,
        vec![
            "flag --name is ignored because a config file is given (as etcd does)",
            "flag --enable-pprof is not implemented by ballast yet; ignored",
            "config file key \"unknown-key\" is not implemented by ballast yet; ignored",
        ]
    );
    assert_eq!((c.client_tls.cert_file.as_str(), c.client_tls.key_file.as_str()), ("x", "y"));
    assert!(c.client_tls.client_cert_auth && !c.client_tls.auto_tls);
    assert_eq!(c.cipher_suites, vec!["TLS_AES_128_GCM_SHA256"]);
    assert_eq!((c.tls_min_version.as_str(), c.tls_max_version.as_str()), ("TLS1.2", "TLS1.3"));
    assert_eq!(c.self_signed_cert_validity_years, 1);
    // via environment
    let (c, _) = run(&[], &[("ETCD_CONFIG_FILE", &path)]);
    assert_eq!(c.name, "infra2");
    // The watch progress interval (nanoseconds, as etcd's YAML takes a time.Duration), lease
    // checkpoints and strict reconfiguration checks.
    let path = temp_file(
        "experimental.yml",
        "experimental-watch-progress-notify-interval: 2000000000\nexperimental-enable-lease-checkpoint: true\n\
         experimental-enable-lease-checkpoint-persist: true\nstrict-reconfig-check: false\n\
         experimental-warning-apply-duration: 250000000\n",
    );
    let (c, w) = run(&["--config-file", &path], &[]);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.watch_progress_notify_interval, std::time::Duration::from_secs(2));
    assert_eq!(c.warning_apply_duration, std::time::Duration::from_millis(250));
    assert!(c.lease_checkpoint && c.lease_checkpoint_persist && !c.strict_reconfig_check);
    // The keepalive, as nanoseconds too; flags and env as Go durations.
    let path = temp_file("keepalive.yml", "grpc-keepalive-interval: 3000000000\ngrpc-keepalive-timeout: 0\n");
    let (c, w) = run(&["--config-file", &path], &[]);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!((c.grpc_keepalive_interval, c.grpc_keepalive_timeout), (std::time::Duration::from_secs(3), std::time::Duration::ZERO));
    let (c, w) = run(&["--grpc-keepalive-interval=90s"], &[("ETCD_GRPC_KEEPALIVE_TIMEOUT", "1m")]);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!((c.grpc_keepalive_interval, c.grpc_keepalive_timeout), (std::time::Duration::from_secs(90), std::time::Duration::from_secs(60)));
    assert_eq!((Config::default().grpc_keepalive_interval, Config::default().grpc_keepalive_timeout), (std::time::Duration::from_secs(7200), std::time::Duration::from_secs(20)));
    // empty file = defaults
    let empty = temp_file("empty.yml", "");
    assert_eq!(run(&["--config-file", &empty], &[]).0, Config::default());
}

#[test]
fn config_file_errors() {
    let e = fail(&["--config-file", "/nonexistent/ballast.yml"], &[]);
    assert_eq!(e.exit_code, 1);
    assert!(
        e.message.starts_with("open /nonexistent/ballast.yml: "),
        "{}",
        e.message
    );
    let bad_type = temp_file("badtype.yml", "snapshot-count: abc\n");
    let e = fail(&["--config-file", &bad_type], &[]);
    assert_eq!(e.exit_code, 1);
    assert!(e.message.contains("snapshot-count"), "{}", e.message);
    let bad_url = temp_file("badurl.yml", "listen-client-urls: foo\n");
    let e = fail(&["--config-file", &bad_url], &[]);
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        ("unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo", 1)
    );
    let bad_state = temp_file("badstate.yml", "initial-cluster-state: bogus\n");
    assert_eq!(
        fail(&["--config-file", &bad_state], &[]).message,
        "unexpected clusterState \"bogus\""
    );
}

#[test]
fn bootstrap_flags_conflict_as_etcd_says() {
    let conflict = "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\"";
    let e = fail(&["--discovery-srv", "example.com", "--initial-cluster", "default=http://localhost:2380"], &[]);
    assert_eq!((e.message.as_str(), e.exit_code), (conflict, 1));
    let e = fail(&["--discovery", "http://127.0.0.1:1/v2/keys/discovery/x", "--discovery-srv", "example.com"], &[]);
    assert_eq!(e.message, conflict);
    // Without an explicit --initial-cluster, the default one gives way to discovery.
    let (c, w) = run(&["--discovery-srv", "example.com", "--discovery-srv-name", "prod", "--force-new-cluster"], &[]);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!((c.discovery.srv.as_str(), c.discovery.srv_name.as_str(), c.force_new_cluster), ("example.com", "prod", true));
    let (c, _) = run(&[], &[("ETCD_DISCOVERY", "http://127.0.0.1:1/v2/keys/discovery/x")]);
    assert_eq!(c.discovery.url, "http://127.0.0.1:1/v2/keys/discovery/x");
}

#[test]
fn warning_apply_duration_as_etcd_reads_it() {
    use std::time::Duration;
    assert_eq!(run(&[], &[]).0.warning_apply_duration, Duration::from_millis(100), "etcd's default");
    let (c, w) = run(&["--experimental-warning-apply-duration", "1ns"], &[]);
    assert!(w.is_empty(), "implemented, so not warned of: {w:?}");
    assert_eq!(c.warning_apply_duration, Duration::from_nanos(1));
    let (c, _) = run(&[], &[("ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", "1m30s")]);
    assert_eq!(c.warning_apply_duration, Duration::from_secs(90));
    // Negative: every request is slower, as with 0.
    assert_eq!(run(&["--experimental-warning-apply-duration=-5s"], &[]).0.warning_apply_duration, Duration::ZERO);
}
