//! The results file: the run's context (date, machine, load, command line, parameters) above
//! the tables, legends and notes.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use ballast_bench::report::{human, human_bytes};

use crate::fresh::{expiry_opts, watch_opts};
use crate::kv::{self, KEY_LEN, VALUE_LEN};
use crate::lease;
use crate::opts::{mode, selected, Opts};
use crate::restart::{restart_keys, restart_selected, RESTART_VALUE_LEN};
use crate::suite::Text;
use crate::watch;

fn sh_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(work_dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let df = cmd_out("df", &["-T", &work_dir.to_string_lossy()]);
    let fs = df
        .lines()
        .nth(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} ({})",
                f.get(1).unwrap_or(&"?"),
                f.first().unwrap_or(&"?")
            )
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    format!("nproc {nproc}, {model}, RAM {mem}, kernel {kernel}, work dir fs {fs}")
}

/// The command line that ran this harness, for the results file.
pub fn command_line(args: &[String]) -> String {
    std::iter::once("cargo run --release -p ballast-bench --".to_string())
        .chain(args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the results file says about the run besides its tables: taken at the start.
pub struct Context {
    started: String,
    loadavg: String,
    command: String,
}

impl Context {
    pub fn now(command: String) -> Context {
        Context {
            started: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            command,
        }
    }
}

/// The mode line and the KV workloads' parameters.
fn kv_parameters(o: &Opts, md: &mut String) {
    let _ = writeln!(md, "- mode: {}", mode(o));
    let rate = o
        .open_rate
        .map_or("etcd 3.5's put-1000c ops/s in this run".into(), |r| {
            format!("{r:.0}/s (--open-rate)")
        });
    let _ = writeln!(
        md,
        "- KV parameters: preload {} keys ({KEY_LEN} B keys, {VALUE_LEN} B values, 1000 clients / 100 conns, bound {} s), then each workload for {} s on that server; compaction every {} s at the revision seen one interval earlier (physical=false); the targets' default snapshot settings; open-loop rate: {rate}\n",
        human(o.preload_keys),
        o.load_max_secs,
        o.duration,
        o.compact_secs,
    );
}

/// The parameter lines of the selected workload families.
fn parameters(o: &Opts, md: &mut String) {
    if !kv::plan(o).is_empty() {
        kv_parameters(o, md);
    }
    if restart_selected(o) {
        let _ = writeln!(
            md,
            "- restart parameters: {} ({} keys × {RESTART_VALUE_LEN} B), written within {} s, serving within {} s\n",
            human_bytes(o.restart_bytes),
            restart_keys(o),
            o.load_max_secs,
            o.max_secs,
        );
    }
    if watch::IDS.iter().any(|id| selected(o, id)) {
        let w = watch_opts(o);
        let _ = writeln!(
            md,
            "- watch parameters: {} watchers over {} streams / {} connections, watch-1000 at {:.0} puts/s for {} puts, watch-max from {:.0} puts/s doubling, {:.1} s per step, {} idle watchers\n",
            w.watchers,
            watch::WATCH_STREAMS,
            watch::WATCH_CONNS,
            w.rate,
            w.puts,
            w.rate / watch::MAX_START_DIV,
            w.puts as f64 / w.rate / 2.0,
            w.idle_watchers,
        );
    }
    if selected(o, lease::ID) {
        let _ = writeln!(
            md,
            "- lease parameters: {} leases (TTL {} s) kept alive over 1 LeaseKeepAlive stream, {} in flight, {} s measured after 1 s warmup\n",
            o.leases,
            lease::TTL,
            o.leases,
            o.lease_secs,
        );
    }
    if selected(o, lease::expiry::ID) {
        let e = expiry_opts(o);
        let _ = writeln!(
            md,
            "- lease expiry parameters: {} leases (TTL {} s, no keepalive) with one key each, writer {:.0} puts/s while they expire, removal bounded by {:.0} s\n",
            e.leases, e.ttl, e.rate, e.removal_secs,
        );
    }
    if selected(o, crate::pauses::ID) {
        let p = crate::fresh::pause_opts(o);
        let _ = writeln!(
            md,
            "- pauses parameters: {} keys × 1 KiB listed, then {} puts × 256 B over 10000 keys; writer {:.0} puts/s; baseline and list phases {:.0} s each\n",
            p.list_keys, p.history_puts, p.rate, p.phase_secs,
        );
    }
    if selected(o, crate::k8s::ID) {
        let _ = writeln!(md, "- k8s parameters: {}\n", o.k8s.describe());
    }
}

/// Writes the results markdown to `--out`.
pub fn write(o: &Opts, cx: &Context, text: &Text) {
    let mut md = String::new();
    let _ = writeln!(md, "# ballast benchmark results\n");
    let _ = writeln!(md, "- date: {}", cx.started);
    let _ = writeln!(md, "- machine: {}", machine(&o.work_dir));
    let _ = writeln!(
        md,
        "- load average at start (other processes add noise): {}",
        cx.loadavg
    );
    let _ = writeln!(md, "- command: `{}`", cx.command);
    parameters(o, &mut md);
    let _ = writeln!(md, "{}\n{}\n\n{}", text.tbl, text.legend, text.nts);
    match std::fs::File::create(&o.out).and_then(|mut f| f.write_all(md.as_bytes())) {
        Ok(()) => eprintln!("bench: wrote {}", o.out.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", o.out.display()),
    }
}
