//! Start-up and shutdown. Order: check io_uring, load the snapshot (if any) into per-shard
//! stores, recover the WAL, start the peer transport (`peer/`: it listens on
//! `--listen-peer-urls` when the cluster has several members), start the shard executors
//! (shard 0 hosts the raft core, which re-applies the log after the snapshot), wait until the
//! core serves (a leader, or a follower that knows one and has applied what it knows
//! committed), then start the
//! front-end threads (`front_end.rs`), which open the client listeners. SIGTERM/SIGINT stop the
//! listeners;
//! dropping the front end's handles then stops the raft core and the shards in turn.

pub mod allowed_names;
pub mod cert_reload;
pub mod client_service;
pub mod coalesce;
pub mod codec;
pub mod front_end;
pub mod grpc_metrics;
pub mod handshake;
pub mod http;
pub mod kv_route;
pub mod moving_socket;
pub mod require_leader;
pub mod self_cert;
pub mod shard_front;
pub mod shard_queues;
pub mod sniff;
pub mod tls;
pub mod tls_conn;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{auth::AuthService, cluster::ClusterService, kv::KvService, maintenance::MaintenanceService, watch::{WatchServer, WatchService}, lease::LeaseService, lock::LockService, election::ElectionService, Ctx};
use crate::config::Config;
use crate::log;
use crate::mvcc::store::Store;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::quota::Quota;
use crate::proto::etcdserverpb::{auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, maintenance_server::MaintenanceServer, lease_server::LeaseServer};
use crate::raft::driver::{self, DriverConfig};
use crate::raft::handle::RaftHandle;
use crate::shard::threads;
use crate::status::ServerStatus;
use crate::watch::hub::HubConfig;

/// gRPC messages may exceed --max-request-bytes by this much (etcd's grpcOverheadBytes).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Front-end (tokio) threads; the shards own the other cores.
const FRONT_END_THREADS: usize = 2;
/// How long open client connections may take to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// WAL batches queued per stripe (the raft core waits when a stripe falls this far behind).
const STRIPE_QUEUE_CAPACITY: usize = 1024;

pub fn wal_dir(cfg: &Config) -> PathBuf {
    cfg.wal_dir.clone().unwrap_or_else(|| cfg.data_dir.join("member").join("wal"))
}

/// Runs the server until a signal; returns the process exit code. Stopped by SIGTERM or
/// SIGINT, the process dies of that signal once its graceful stop is done (etcd's
/// `osutil.HandleInterrupts` re-raises it: a shell sees 143 or 130), except as PID 1 (exit 0,
/// since the kernel will not kill init) and when the member stopped because it was removed.
pub fn run(cfg: Config) -> i32 {
    abort_on_panic();
    match start(cfg) {
        Ok(Some(signal)) if !crate::raft::driver::STOPPED_AS_REMOVED.load(std::sync::atomic::Ordering::SeqCst) => die_of(signal),
        Ok(_) => 0,
        Err(e) => {
            log::error(&e, &[]);
            1
        }
    }
}

/// Dies of `signal` with its default action; returns 0 as PID 1, which that cannot kill.
fn die_of(signal: i32) -> i32 {
    // SAFETY: getpid, signal and kill have no memory-safety preconditions.
    unsafe {
        if libc::getpid() == 1 {
            return 0;
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::kill(libc::getpid(), signal);
    }
    // Delivery is asynchronous; the default action ends the process before long.
    std::thread::sleep(Duration::from_secs(1));
    128 + signal
}

/// Serves until stopped; the signal that stopped it, if one did.
fn start(cfg: Config) -> Result<Option<i32>, String> {
    threads::check_io_uring()?;
    disable_transparent_huge_pages();
    let compaction = crate::compactor::policy(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)?;
    // Before any thread records a metric.
    let metrics = crate::metrics::install(&cfg.compat_version, Quota::from_flag(cfg.quota_backend_bytes).limit_bytes)?;
    // Default: the cores the front end's threads leave, at least one (measured on 2 cores: a
    // second shard costs more in cross-thread hops than it gains; see bench/RESULTS.md).
    let shards = if cfg.shards == 0 { threads::usable_cpus().len().saturating_sub(FRONT_END_THREADS).max(1) } else { cfg.shards };
    // Held until the process exits: no second server on this data dir.
    let _locks = crate::data_dir::prepare(&cfg.data_dir, cfg.wal_dir.as_deref())?;
    let member_dir = cfg.data_dir.join("member");
    std::fs::create_dir_all(&member_dir).map_err(|e| format!("cannot create data dir {}: {e}", cfg.data_dir.display()))?;
    if !crate::cluster::Cluster::is_saved(&member_dir) {
        // A new member's WAL dir exists before its membership file: a member whose membership
        // file is there and whose WAL is not lost it (`recover_wal`).
        create_wal_dir(&wal_dir(&cfg))?;
    }
    crate::api::snapshot::remove_leftovers(&cfg.data_dir);
    let peer_tls = crate::peer::PeerTls { server: tls::peer_server_config(&cfg)?, client: tls::peer_client_config(&cfg)? };
    let crate::peer::initial::Initial { cluster, remotes, has_data } = crate::peer::initial::cluster(&cfg, &member_dir, peer_tls.client.clone())?;
    log::info(
        "starting ballast",
        &[
            ("name", cfg.name.clone()),
            ("data-dir", cfg.data_dir.display().to_string()),
            ("member-id", format!("{:x}", cluster.local_id)),
            ("shards", shards.to_string()),
            ("ballast-version", env!("CARGO_PKG_VERSION").into()),
        ],
    );
    // Before the stores: a TLS setting that cannot work refuses to start (as etcd, before serving).
    let tls = tls::client_config(&cfg)?;
    let tokens = crate::auth::token::Tokens::from_flag(&cfg.auth_token, crate::auth::token::simple_ttl(cfg.auth_token_ttl_secs))?;
    let auth = Arc::new(crate::auth::AuthGuard::new(tokens, cfg.bcrypt_cost, cfg.client_tls.client_cert_auth));
    let snap_dir = crate::snapshot::dir(&cfg.data_dir);
    std::fs::create_dir_all(&snap_dir).map_err(|e| format!("cannot create {}: {e}", snap_dir.display()))?;
    let snap = crate::snapshot::manifest::load(&snap_dir)?;
    let stores = match &snap {
        Some(m) => crate::snapshot::load::load_stores(&snap_dir, m, shards)?,
        None => (0..shards).map(|_| Store::default()).collect(),
    };
    let segment_bytes = snap.as_ref().map_or(0, |m| crate::snapshot::load::segment_bytes(&snap_dir, m));
    if let Some(m) = &snap {
        log::info("loaded snapshot", &[("index", m.index.to_string()), ("revision", m.rev.to_string())]);
    }
    let wal_dir = wal_dir(&cfg);
    let (recovered, wal_unmarked) = recover_wal(&wal_dir, shards, cfg.wal_segment_bytes, snap.as_ref(), has_data)?;
    log::info("recovered wal", &[("entries", recovered.entries.len().to_string()), ("dir", wal_dir.display().to_string())]);
    crate::memory::release_all(); // what reading the snapshot and the WAL left freed
    // One WAL stripe per shard, written by that shard's executor.
    let (stripe_txs, stripe_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| flume::bounded(STRIPE_QUEUE_CAPACITY)).unzip();
    // Stripes of shards no longer configured (`--shards` lowered): read above, never written
    // again, deleted once a snapshot covers their batches.
    let retired_stripes = recovered.stripes[shards..].iter().map(|st| (st.dir.clone(), st.max_seq())).collect();
    let stripes: Vec<threads::StripeInit> = recovered.stripes[..shards]
        .iter()
        .cloned()
        .zip(stripe_rxs)
        .map(|(state, rx)| threads::StripeInit { state, rx, segment_bytes: cfg.wal_segment_bytes })
        .collect();

    let status = Arc::new(ServerStatus::new(cluster.id, cluster.local_id, shards));
    let (core_tx, core_rx) = crate::raft::handle::core_channel();
    // Answers from the raft core to each front-end thread (reply.rs).
    // Home i < FRONT_END_THREADS is front-end thread i; FRONT_END_THREADS + k is shard k.
    let (reply_txs, reply_rxs): (Vec<_>, Vec<_>) = (0..FRONT_END_THREADS + shards).map(|_| crate::reply::home_channel()).unzip();
    let (handoff_txs, handoff_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| shard_front::handoff_channel()).unzip();
    let fronts: Vec<threads::ShardTask> = handoff_rxs
        .into_iter()
        .enumerate()
        .map(|(k, rx)| -> threads::ShardTask { Box::new(move || Box::pin(shard_front::run(FRONT_END_THREADS + k, rx))) })
        .collect();
    let (ready_tx, ready_rx) = crossbeam::channel::bounded(1);
    let membership = crate::cluster::Membership::new(cluster.clone());
    // Before the core: a member waits for its peers to elect a leader before it serves.
    let me = crate::peer::Identity { cluster_id: cluster.id, member_id: cluster.local_id };
    let forward = crate::peer::forward::Forwarder::new(membership.clone(), peer_tls.client.clone(), Duration::from_millis(cfg.election_timeout_ms));
    let raft = RaftHandle::new(core_tx, Duration::from_millis(cfg.election_timeout_ms));
    // Weak: the transport's thread must not keep the core running once the front end stops.
    let promoter = Arc::new(raft.downgrade());
    let promote: crate::peer::PromoteFn = Arc::new(move |id| {
        let raft = promoter.upgrade();
        Box::pin(async move {
            let result = raft.ok_or(crate::error::Error::Stopped)?.member_change(crate::raft::conf_change::MemberChange::Promote { id }).await;
            crate::metrics::count_promotion(&result);
            result
        })
    });
    let fetcher = snapshot_fetcher(me, membership.clone(), peer_tls.client.clone());
    let (outbox, inbound) = crate::peer::start(me, &cfg.listen_peer_urls, membership.clone(), remotes, promote, peer_tls, snap_dir.clone())?;
    let core_cfg = DriverConfig {
        id: cluster.local_id,
        strict_reconfig_check: cfg.strict_reconfig_check,
        // etcd: without data the flag is ignored (a new cluster bootstraps as usual).
        force_new_cluster: cfg.force_new_cluster && has_data,
        heartbeat: Duration::from_millis(cfg.heartbeat_interval_ms.max(1)),
        election_ticks: (cfg.election_timeout_ms / cfg.heartbeat_interval_ms.max(1)).max(2) as usize,
        quota: Quota::from_flag(cfg.quota_backend_bytes),
        snap_dir,
        snapshot_count: cfg.snapshot_count,
        homes: reply_txs.clone(),
        retired_stripes,
        leased_keys: stores.iter().flat_map(Store::leased_keys).collect(),
        lease_checkpoint: cfg.lease_checkpoint,
        lease_checkpoint_persist: cfg.lease_checkpoint_persist,
        auth: auth.clone(),
        membership: membership.clone(),
        fetcher: Some(fetcher),
        wal_marker: wal_unmarked.then(|| (wal_dir.clone(), recovered.last_seq + 1)),
        outbox,
        inbound,
    };
    let core_status = status.clone();
    // The watch hub runs beside the raft driver on shard 0; the driver tells it how far apply went.
    let (hub_tx, hub_rx) = flume::bounded(crate::watch::HUB_QUEUE_CAPACITY);
    let (applied_tx, applied_rx) = flume::unbounded();
    let hub_cfg = HubConfig {
        progress_interval: cfg.watch_progress_notify_interval,
        max_response_bytes: cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES,
    };
    let core: threads::CoreTask = Box::new(move |shards| {
        Box::pin(async move {
            glommio::spawn_local(crate::watch::hub::run(hub_cfg, shards.clone(), core_status.clone(), hub_rx, applied_rx)).detach();
            driver::run(core_cfg, recovered, snap, core_rx, stripe_txs, shards, core_status, applied_tx, ready_tx).await
        })
    });
    let (shard_handles, threads) = threads::start(stores, segment_bytes, stripes, status.clone(), core, reply_txs.clone(), fronts)?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("raft core stopped during start-up".into()),
    }
    log::info("enabled capabilities for version 3.5", &[("cluster-version", "3.5".into())]);

    let lease_ids = crate::lease::IdGenerator::new(cluster.local_id);
    let ctx = Arc::new(Ctx {
        raft,
        shards: shard_handles,
        status,
        cluster,
        membership,
        client_urls: cfg.advertise_client_urls.clone(),
        max_request_bytes: cfg.max_request_bytes as usize,
        max_txn_ops: cfg.max_txn_ops as usize,
        compat_version: cfg.compat_version.clone(),
        quota: Quota::from_flag(cfg.quota_backend_bytes),
        watch: crate::watch::WatchHub::new(hub_tx),
        lease_ids,
        auth,
        forward,
        data_dir: cfg.data_dir.clone(),
    });
    let result = serve_front_end(&cfg, ctx, compaction, metrics, reply_rxs, handoff_txs, tls);
    threads.join();
    log::info("stopped ballast", &[("name", cfg.name.clone())]);
    result
}

/// A panic on any thread ends the process. A thread that died alone would leave a zombie: its
/// listener open and /livez answering while the requests it owned hang or fail (a shard's keys,
/// the raft core's writes). A restart recovers from the WAL, as after a crash.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log::error("a thread panicked; stopping the process", &[("thread", thread), ("panic", info.to_string())]);
        std::process::abort();
    }));
}

/// Recovers the WAL after the snapshot (if any). A snapshot needs the WAL that continues it:
/// refuses a WAL dir that is missing (checked before recovery would create an empty one) or
/// that does not hold the batch the manifest says was kept (`Manifest::wal_seq_kept`) — a
/// changed `--wal-dir`, or a WAL that is not this data dir's. Starting would serve the
/// snapshot without the acknowledged writes after it. Without a snapshot, a WAL that was written
/// and holds no record refuses too (`wal::marker`); also returns whether it still needs its
/// marker.
fn recover_wal(
    wal_dir: &std::path::Path,
    shards: usize,
    segment_bytes: u64,
    snap: Option<&crate::snapshot::Manifest>,
    initialized: bool,
) -> Result<(crate::wal::recover::Recovered, bool), String> {
    let hint = "the WAL is missing or is not this data dir's (was --wal-dir changed?); refusing to start";
    let Some(m) = snap else {
        // Before the first snapshot the WAL holds everything: a member initialized before
        // (its membership file was there) without one would start empty.
        if initialized && crate::wal::recover::existing_stripes(wal_dir)? == 0 {
            return Err(format!("wal dir {} holds no WAL, but this member was initialized before (member/membership.json) and has no snapshot: {hint}", wal_dir.display()));
        }
        let recovered = crate::wal::recover::recover(wal_dir, shards, segment_bytes, 1, 0)?;
        let unmarked = crate::wal::marker::check(wal_dir, &recovered)?;
        return Ok((recovered, unmarked));
    };
    if crate::wal::recover::existing_stripes(wal_dir)? == 0 {
        return Err(format!(
            "wal dir {} holds no WAL, but the snapshot at index {} needs the WAL after it: {hint}",
            wal_dir.display(),
            m.index
        ));
    }
    let recovered = crate::wal::recover::recover(wal_dir, shards, segment_bytes, m.wal_seq_from, m.index)?;
    if recovered.max_seq_found < m.wal_seq_kept {
        return Err(format!(
            "wal dir {} holds batches up to {}, but the snapshot at index {} was cut after batch {}: {hint}",
            wal_dir.display(),
            recovered.max_seq_found,
            m.index,
            m.wal_seq_kept
        ));
    }
    Ok((recovered, false))
}

/// Creates stripe 0's directory of a new member's WAL, durably.
fn create_wal_dir(wal_dir: &std::path::Path) -> Result<(), String> {
    let stripe = wal_dir.join("0");
    std::fs::create_dir_all(&stripe).map_err(|e| format!("cannot create wal dir {}: {e}", stripe.display()))?;
    for dir in [wal_dir, wal_dir.parent().unwrap_or(wal_dir)] {
        crate::durable::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Transparent huge pages make every fault of the allocator's fresh memory resident 2 MiB at a
/// time: measured with bench/ (1M keys, 1 shard) RSS 298 → 275 MiB without them, same CPU per put.
fn disable_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        log::warn("cannot disable transparent huge pages", &[("error", std::io::Error::last_os_error().to_string())]);
    }
}

/// The host:port to bind for an `http://` or `https://` URL (etcd binds the literal host), and
/// whether it is `https://`.
fn bind_addr(url: &str) -> Result<(String, bool), String> {
    let (rest, secure) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(format!("listen url {url}: only http://, https:// and (client URLs) unix:// are supported yet")),
    };
    Ok((rest.trim_end_matches('/').to_string(), secure))
}

/// The client listeners: one per distinct host:port, serving what its URLs' schemes say (etcd
/// keys its serveCtx by `u.Host` the same way, so `http://h:p` and `https://h:p` share a port).
fn client_listeners(urls: &[String]) -> Result<Vec<(String, front_end::Transport)>, String> {
    use front_end::Transport;
    let mut out: Vec<(String, Transport)> = Vec::new();
    for url in urls.iter().filter(|u| !u.starts_with("unix")) {
        let (addr, secure) = bind_addr(url)?;
        let this = if secure { Transport::Tls } else { Transport::Plain };
        match out.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, t)) if *t != this => *t = Transport::Both,
            Some(_) => {}
            None => out.push((addr, this)),
        }
    }
    Ok(out)
}

/// The unix socket paths of `unix://` client URLs (etcd: `u.Host + u.Path`, so
/// `unix://localhost:2379` is the file `localhost:2379` in the working directory).
fn unix_sockets(urls: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for url in urls {
        if url.starts_with("unixs://") {
            return Err(format!("listen url {url}: unixs:// (TLS on a unix socket) is not supported yet"));
        }
        let Some(path) = url.strip_prefix("unix://") else { continue };
        let path = path.split(['?', '#']).next().unwrap_or("").to_string();
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// A unix socket listener at `path`, replacing a stale socket file (etcd's NewUnixListener).
fn bind_unix(path: &str) -> Result<tokio::net::UnixListener, String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove {path}: {e}")),
    }
    tokio::net::UnixListener::bind(path).map_err(|e| format!("listen unix {path}: {e}"))
}

fn serve_front_end(
    cfg: &Config,
    ctx: Arc<Ctx>,
    compaction: crate::compactor::Policy,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    mut replies: Vec<crate::reply::HomeRx>,
    handoffs: Vec<shard_front::HandoffTx>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Option<i32>, String> {
    let shard_replies = replies.split_off(FRONT_END_THREADS);
    let (dealer, conns, shard_conns) = front_end::Dealer::new(replies.len(), handoffs.len());
    let gateway_streams = crate::gateway::stream_bound(cfg.max_concurrent_streams);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (leader_monitor, leader_loss) = require_leader::channel();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut workers: Vec<front_end::Worker> = conns
        .into_iter()
        .zip(replies)
        .map(|(conns, replies)| front_end::Worker {
            conns,
            replies,
            routes: client_routes(cfg, ctx.clone(), metrics.clone(), gateway_streams.clone(), stop_rx.clone(), leader_loss.clone()),
            tls: acceptor.clone(),
            http2: front_end::Http2Settings::of(cfg),
        })
        .collect();
    let (shards_done_tx, shards_done) = tokio::sync::mpsc::channel(1);
    let shard_services: Vec<_> = shard_conns
        .into_iter()
        .zip(shard_replies)
        .map(|(conns, replies)| (conns, replies, client_routes(cfg, ctx.clone(), metrics.clone(), gateway_streams.clone(), stop_rx.clone(), leader_loss.clone())))
        .collect();
    let first = workers.remove(0);
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (i, worker) in workers.into_iter().enumerate().map(|(i, w)| (i + 1, w)) {
            let stop = stop_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("front-end-{i}"))
                .spawn_scoped(scope, move || front_end::runtime(i)?.block_on(front_end::serve(worker, stop, SHUTDOWN_GRACE)))
                .map_err(|e| format!("cannot start front-end thread: {e}"))?;
            threads.push(thread);
        }
        let main = std::thread::Builder::new()
            .name("front-end-0".into())
            .spawn_scoped(scope, move || {
                let rt = front_end::runtime(0)?;
                rt.spawn(leader_monitor.run(ctx.status.clone(), Duration::from_millis(cfg.election_timeout_ms.max(1))));
                let timers = shard_front::timers_runtime()?;
                for (handoff, (conns, replies, routes)) in handoffs.into_iter().zip(shard_services) {
                    let (http2, stop, done, runtime) = (front_end::Http2Settings::of(cfg), stop_rx.clone(), shards_done_tx.clone(), timers.clone());
                    let _ = handoff.send(shard_front::Handoff { conns, replies, routes, http2, stop, grace: SHUTDOWN_GRACE, done, runtime });
                }
                drop(shards_done_tx);
                rt.block_on(front_end_main(cfg, ctx, compaction, metrics, dealer, (first, shards_done), (stop_tx, stop_rx)))
            })
            .map_err(|e| format!("cannot start front-end thread: {e}"))?;
        // Thread 0's result first: a listener that cannot bind is the error to report.
        let result = main.join().unwrap_or_else(|_| Err("front-end thread panicked".into()));
        for t in threads {
            let _ = t.join();
        }
        result
    })
}

/// Front-end thread 0: binds the listeners and deals their connections to the front-end
/// threads (which pass gRPC's and the TLS ones on to the shards), serves its own share, the
/// unix sockets, the metrics listeners, the auto-compactor; stops on a signal, and waits for
/// the shards' connections to close.
async fn front_end_main(
    cfg: &Config,
    ctx: Arc<Ctx>,
    compaction: crate::compactor::Policy,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    dealer: front_end::Dealer,
    (own, mut shards_done): (front_end::Worker, tokio::sync::mpsc::Receiver<()>),
    (stop_tx, stop_rx): (tokio::sync::watch::Sender<bool>, tokio::sync::watch::Receiver<bool>),
) -> Result<Option<i32>, String> {
    for (addr, transport) in client_listeners(&cfg.listen_client_urls)? {
        let listener = bind(&addr).await?;
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if transport != front_end::Transport::Tls {
            log::info("serving insecure client requests", &[("address", address.clone())]);
        }
        if transport != front_end::Transport::Plain {
            log::info("serving client traffic securely", &[("address", address)]);
        }
        tokio::spawn(dealer.clone().accept(listener, transport, stop_rx.clone()));
    }
    let mut servers = Vec::new();
    // Unix socket clients are served by this thread alone (local tools, not the hot path).
    let unix_paths = unix_sockets(&cfg.listen_client_urls)?;
    for path in &unix_paths {
        let listener = bind_unix(path)?;
        log::info("serving insecure client requests", &[("address", format!("unix://{path}"))]);
        servers.push(tokio::spawn(front_end::serve_unix(listener, own.routes.clone(), stop_rx.clone(), front_end::Http2Settings::of(cfg))));
    }
    for url in &cfg.listen_metrics_urls {
        let listener = bind(&metrics_bind_addr(url)?).await?;
        let router = http::router(ctx.clone(), metrics.clone());
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(|e| e.to_string())
        }));
    }
    servers.push(tokio::spawn(front_end::serve(own, stop_rx.clone(), SHUTDOWN_GRACE)));
    // Done once every shard has closed its connections (each holds a sender until then).
    servers.push(tokio::spawn(async move {
        let _ = shards_done.recv().await;
        Ok(())
    }));
    publish(cfg, &ctx).await;
    crate::compactor::spawn(compaction, ctx.clone());
    tokio::spawn(metrics_upkeep(metrics.clone()));
    log::info("ready to serve client requests", &[]);
    let (signal, name) = wait_for_signal().await;
    // A removed member's stop is its own SIGTERM: etcd logs no signal then, and hands over no
    // leadership (its removal path leaves the raft loop without TryTransferLeadershipOnShutdown;
    // a removed leader tried, and waited the request timeout for a transfer raft cannot make).
    if !crate::raft::driver::STOPPED_AS_REMOVED.load(std::sync::atomic::Ordering::SeqCst) {
        log::info("received signal; shutting down", &[("signal", name.into())]);
        transfer_leadership_on_shutdown(&ctx).await;
    }
    let _ = stop_tx.send(true);
    // Open client connections get a bounded grace period, as etcd's GracefulStop.
    let drained = futures_util::future::join_all(servers);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_millis(100), drained).await;
    // As Go's unix listener, closed: its socket file goes with it.
    for path in &unix_paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(Some(signal))
}

/// How often the shutdown's leadership transfer looks whether another member leads.
const TRANSFER_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// etcd's TryTransferLeadershipOnShutdown: a leader with other voters hands leadership to the
/// most caught-up one (raft's transfer) before it stops, waiting at most the request timeout,
/// so the others need not wait an election timeout for a new leader.
async fn transfer_leadership_on_shutdown(ctx: &Ctx) {
    let me = ctx.cluster.local_id;
    if ctx.status.leader() != me {
        log::info("skipped leadership transfer; local server is not leader", &[("local-member-id", format!("{me:x}"))]);
        return;
    }
    if ctx.membership.current().voters().len() < 2 {
        log::info("skipped leadership transfer for single voting member cluster", &[("local-member-id", format!("{me:x}"))]);
        return;
    }
    log::info("leadership transfer starting", &[("local-member-id", format!("{me:x}"))]);
    if ctx.raft.transfer_leader(0).is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + ctx.raft.timeout();
    while tokio::time::Instant::now() < until {
        let leader = ctx.status.leader();
        if leader != me && leader != 0 {
            log::info("leadership transfer finished", &[("old-leader-member-id", format!("{me:x}")), ("new-leader-member-id", format!("{leader:x}"))]);
            return;
        }
        tokio::time::sleep(TRANSFER_POLL_INTERVAL).await;
    }
    log::warn("leadership transfer failed", &[("local-member-id", format!("{me:x}")), ("error", "etcdserver: request timed out, leader transfer took too long".into())]);
}

/// Attempts to publish this member's attributes before serving without them.
const PUBLISH_ATTEMPTS_MAX: u32 = 20;

/// etcd's publishV3: this member's name and client URLs go through raft (a
/// ClusterMemberAttrSet), so every member lists them (`etcdctl endpoint status --cluster`).
/// Retried while it fails (no leader yet, a timeout), a bounded number of times.
async fn publish(cfg: &Config, ctx: &Ctx) {
    use crate::proto::ballastpb::{internal_request::Request, MemberAttrSet};
    let attrs = MemberAttrSet { member_id: ctx.cluster.local_id, name: cfg.name.clone(), client_urls: cfg.advertise_client_urls.clone() };
    let shown = format!("{{Name:{} ClientURLs:[{}]}}", cfg.name, cfg.advertise_client_urls.join(" "));
    for attempt in 1..=PUBLISH_ATTEMPTS_MAX {
        match ctx.raft.propose(Request::MemberAttrSet(attrs.clone())).await {
            Ok(_) => {
                let id = ("local-member-id", format!("{:x}", ctx.cluster.local_id));
                log::info(&format!("published {shown} to cluster {:x}", ctx.cluster.id), &[id]);
                return;
            }
            Err(e) => {
                log::warn("failed to publish local member to cluster through raft", &[("attempt", attempt.to_string()), ("error", e.to_string())]);
                tokio::time::sleep(Duration::from_millis(cfg.election_timeout_ms.max(1))).await;
            }
        }
    }
}

/// Drains histogram samples even when nobody scrapes, so they cannot grow without bound.
async fn metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    loop {
        tokio::time::sleep(METRICS_UPKEEP).await;
        handle.run_upkeep();
    }
}

/// Listens as Go's net.Listen: the first address `addr` resolves to that binds
/// (`crate::listener`).
async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    let failed = |e: std::io::Error| format!("listen tcp {addr}: {}", go_bind_error(&e));
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await.map_err(failed)? {
        match listen_on(a) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(failed(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address"))))
}

fn listen_on(a: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(crate::listener::listen(a)?)
}

/// Go's text for a failed bind (etcd's error, e.g. `bind: address already in use`).
fn go_bind_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "bind: address already in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".into(),
        std::io::ErrorKind::PermissionDenied => "bind: permission denied".into(),
        _ => e.to_string(),
    }
}

/// The host:port of a --listen-metrics-urls URL: served plaintext only, so far.
fn metrics_bind_addr(url: &str) -> Result<String, String> {
    match bind_addr(url)? {
        (addr, false) => Ok(addr),
        (_, true) => Err(format!("listen url {url}: https:// metrics listeners are not supported yet")),
    }
}

fn client_routes(
    cfg: &Config,
    ctx: Arc<Ctx>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    gateway_streams: Arc<tokio::sync::Semaphore>,
    stopping: tokio::sync::watch::Receiver<bool>,
    leader_loss: require_leader::LeaderLoss,
) -> client_service::ClientService {
    let max_msg = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let kv_service = Arc::new(KvService::new(ctx.clone()));
    let route = kv_route::KvRoute::new(kv_service.clone(), max_msg);
    // Requests may come gzip-compressed, as etcd's grpc-go server takes them; answers go out
    // plain (grpc-go compresses only when the request was: tonic would for any client that
    // merely accepts gzip, at a cost to every answer).
    let gzip = tonic::codec::CompressionEncoding::Gzip;
    let kv = KvServer::from_arc(kv_service).max_decoding_message_size(max_msg).max_encoding_message_size(usize::MAX).accept_compressed(gzip);
    let maintenance = MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let cluster = ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let watch = WatchServer::new(WatchService::new(ctx.clone()), max_msg);
    let lease = LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let lock = LockServer::new(LockService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let election = ElectionServer::new(ElectionService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let auth = AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(max_msg).accept_compressed(gzip);
    let (kv_direct, route_direct) = (kv.clone(), route.clone());
    let grpc = grpc_metrics::ServedRoutes::default().add_service(kv).add_service(auth).add_service(watch).add_service(lease).add_service(lock).add_service(election).add_service(maintenance).add_service(cluster).add_service(crate::api::health::server()).into_routes();
    let range = axum::routing::post(move |req: axum::extract::Request| route.clone().serve(kv_route::KvCall::Range, req));
    let grpc = grpc.into_axum_router().route(kv_route::RANGE_PATH, range);
    // The JSON gateway calls the gRPC routes above, in process, as etcd's gateway dials its
    // own gRPC server.
    let gateway = Arc::new(crate::gateway::Gateway::new(grpc.clone(), max_msg, gateway_streams, ctx.auth.clone(), ctx.status.clone(), stopping));
    let (auth, status) = (ctx.auth.clone(), ctx.status.clone());
    let router = grpc.merge(crate::gateway::router(gateway)).merge(http::router(ctx, metrics).layer(axum::middleware::map_response(|r| async move { crate::gateway::with_cors(r) }))).fallback(crate::gateway::unknown_path);
    client_service::ClientService::new(kv_direct, route_direct, tonic::service::Routes::from(router), auth, status, leader_loss)
}

/// The signal that stops the server, and its name as Go's `Signal.String` gives it (etcd logs it).
async fn wait_for_signal() -> (i32, &'static str) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    crate::raft::driver::STOPS_ON_SIGTERM.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::select! {
        _ = term.recv() => (libc::SIGTERM, "terminated"),
        _ = int.recv() => (libc::SIGINT, "interrupt"),
    }
}

/// The raft driver's fetch of a leader's snapshot files: over the peer transport
/// (`peer::snapshot`), from the member's first peer URL, on a thread of its own; the driver's
/// executor only awaits the outcome.
fn snapshot_fetcher(me: crate::peer::Identity, membership: crate::cluster::Membership, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> crate::raft::driver::Fetcher {
    std::sync::Arc::new(move |from, d, snap_dir| {
        let url = membership.current().members.iter().find(|m| m.id == from).and_then(|m| m.peer_urls.first().cloned());
        let (tx, rx) = flume::bounded(1);
        let tls = tls.clone();
        let spawned = std::thread::Builder::new().name("snapshot-fetch".into()).spawn(move || {
            let result = match url {
                Some(url) => crate::peer::snapshot::fetch(from, url, tls, me, d, snap_dir),
                None => Err(format!("member {from:x} is not in the member list")),
            };
            let _ = tx.send(result);
        });
        Box::pin(async move {
            spawned.map_err(|e| format!("cannot start a snapshot fetch: {e}"))?;
            rx.recv_async().await.map_err(|_| "the snapshot fetch stopped".to_string())?
        })
    })
}
