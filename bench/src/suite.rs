//! The whole run: every selected workload on every target, target after target, and the text
//! (tables, legends, notes) of what they returned.
use std::path::Path;

use ballast_bench::report::{human_bytes, ms};

use crate::fresh::{run_k8s, run_lease, run_lease_expiry, run_pauses, run_watch, watch_selected};
use crate::kv::{self, run_target, KvRows, Plan};
use crate::opts::{mode, selected, Opts};
use crate::restart::{self, restart_selected, run_restart, RestartRow};
use crate::targets::{Kind, Target};
use crate::{failover, k8s, lease, pauses, watch};

/// The workloads selected for this run.
pub struct Suite<'o> {
    o: &'o Opts,
    /// The KV workloads: preload, then the sustained ones, on one server per target.
    plan: Plan,
    restart_name: String,
    watch_ids: Vec<&'static str>,
}

/// Every row of the run.
#[derive(Default)]
pub struct Rows<'a> {
    kv: KvRows<'a>,
    restart: Vec<RestartRow<'a>>,
    watch: Vec<watch::WatchRow>,
    lease: Vec<lease::LeaseRow>,
    expiry: Vec<lease::expiry::ExpiryRow>,
    k8s: Vec<k8s::K8sRow>,
    pauses: Vec<pauses::PausesRow>,
    failover: Vec<failover::FailoverRow>,
}

/// The results text: tables, their legends, the notes.
#[derive(Default)]
pub struct Text {
    pub tbl: String,
    pub legend: String,
    pub nts: String,
}

impl Text {
    /// The text of a run of one or more rounds: a single round as it is; several, each round's
    /// tables and notes under its number, the legends once, and the ratios round by round.
    pub fn of_rounds(mut rounds: Vec<Text>) -> Text {
        if rounds.len() == 1 {
            return rounds.remove(0);
        }
        let n = rounds.len();
        let tables: Vec<String> = rounds.iter().map(|r| r.tbl.clone()).collect();
        let mut x = Text { legend: std::mem::take(&mut rounds[0].legend), ..Text::default() };
        for (i, r) in rounds.into_iter().enumerate() {
            x.tbl += &format!("### Round {} of {n}\n\n{}\n\n", i + 1, r.tbl);
            x.nts += &format!("Round {} of {n}:\n\n{}\n", i + 1, r.nts);
        }
        let summary = ballast_bench::rounds::summary(&tables);
        if !summary.is_empty() {
            x.tbl += &format!("### The ratios, round by round\n\n{summary}");
        }
        x
    }

    /// Appends a table (after `sep` if there is one already), its legend and its notes.
    fn add(&mut self, sep: &str, tbl: &str, legend: &str, nts: &str) {
        if !self.tbl.is_empty() {
            self.tbl.push_str(sep);
        }
        self.tbl.push_str(tbl);
        if !self.legend.is_empty() {
            self.legend.push_str("\n\n");
        }
        self.legend.push_str(legend);
        self.nts.push_str(nts);
    }
}

impl<'o> Suite<'o> {
    pub fn new(o: &'o Opts) -> Suite<'o> {
        Suite {
            o,
            plan: kv::plan(o),
            restart_name: format!("restart {}", human_bytes(o.restart_bytes)),
            watch_ids: watch_selected(o),
        }
    }

    /// Whether only KV workloads are selected (the only ones a secure target runs).
    fn only_kv(&self) -> bool {
        !restart_selected(self.o)
            && self.watch_ids.is_empty()
            && ![lease::ID, lease::expiry::ID, k8s::ID, pauses::ID]
                .iter()
                .any(|id| selected(self.o, id))
    }

    /// Runs every selected workload on `targets`, one target after another.
    pub async fn run<'a>(&'a self, targets: &'a [Target]) -> Rows<'a> {
        let mut rows = Rows::default();
        for t in targets {
            match &t.bin {
                Ok(b) => self.run_target(t, b, &mut rows).await,
                Err(e) => eprintln!("bench: skipping {}: {e}", t.name),
            }
        }
        rows
    }

    async fn run_target<'a>(&'a self, t: &'a Target, bin: &Path, rows: &mut Rows<'a>) {
        let o = self.o;
        let dir = o.work_dir.join(t.name);
        if !self.plan.is_empty() {
            run_target(t, bin, &dir, &self.plan, &mut rows.kv, o.keep_data).await;
        }
        if t.kind == Kind::Sol {
            return;
        }
        if t.members > 1 {
            // A cluster runs the KV workloads and the failover only.
            if selected(o, failover::ID) {
                let fdir = dir.join(failover::ID);
                rows.failover.push(failover::run_failover(t, bin, &fdir, o.failover_rounds, o.keep_data).await);
            }
            return;
        }
        if t.secure.is_some() {
            if !self.only_kv() {
                eprintln!(
                    "bench: {}: secure targets run the KV workloads only",
                    t.name
                );
            }
            return;
        }
        if restart_selected(o) {
            rows.restart.push(self.restart(t, bin, &dir).await);
        }
        run_watch(o, t, bin, &dir, &self.watch_ids, &mut rows.watch).await;
        if selected(o, lease::ID) {
            rows.lease
                .push(run_lease(o, t, bin, &dir.join(lease::ID)).await);
        }
        if selected(o, lease::expiry::ID) {
            let edir = dir.join(lease::expiry::ID);
            rows.expiry.push(run_lease_expiry(o, t, bin, &edir).await);
        }
        if selected(o, k8s::ID) {
            rows.k8s.push(run_k8s(o, t, bin, &dir.join(k8s::ID)).await);
        }
        if selected(o, pauses::ID) {
            rows.pauses
                .push(run_pauses(o, t, bin, &dir.join(pauses::ID)).await);
        }
    }

    /// The restart workload on `t`, in `dir/restart`.
    async fn restart<'a>(&self, t: &'a Target, bin: &Path, dir: &Path) -> RestartRow<'a> {
        let rdir = dir.join("restart");
        let name = &self.restart_name;
        let res = run_restart(self.o, t, bin, &rdir).await;
        match &res {
            Ok(r) => eprintln!(
                "bench: {:<16} {:<28} serving after {} ms  data dir {:.0} MiB  rss {} MiB  cpu {} s",
                t.name,
                name,
                ms(r.serve_us),
                r.disk_mib,
                r.rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
                r.cpu_secs.map_or("—".into(), |c| format!("{c:.2}")),
            ),
            Err(e) => eprintln!("bench: {} {name}: failed: {e}", t.name),
        }
        if !self.o.keep_data {
            let _ = std::fs::remove_dir_all(rdir.join("data"));
        }
        RestartRow { target: t, res }
    }

    /// The tables, legends and notes of `rows`.
    pub fn text(&self, rows: &Rows, targets: &[Target]) -> Text {
        let mut x = Text::default();
        if !self.plan.is_empty() {
            let tbl = kv::table(&rows.kv.rows, &self.plan.rows());
            x.tbl = format!("**{}**\n\n{tbl}", mode(self.o));
            x.legend = kv::LEGEND.to_string();
        }
        x.nts = kv::notes(&rows.kv.rows, targets) + &rows.kv.notes;
        if !self.only_kv() {
            for t in targets.iter().filter(|t| t.secure.is_some()) {
                x.nts += &format!("- {}: secure targets run the KV workloads only\n", t.name);
            }
        }
        if !self.plan.is_empty() {
            let sec = kv::secure_table(&rows.kv.rows, &self.plan.rows());
            if !sec.is_empty() {
                x.tbl += &format!("\n{sec}");
                x.legend += &format!("\n\n{}", kv::SECURE_LEGEND);
            }
        }
        if restart_selected(self.o) {
            let name = &self.restart_name;
            let tbl = restart::restart_table(&rows.restart, name);
            let nts = restart::restart_notes(&rows.restart, name);
            x.add("\n", &tbl, restart::RESTART_LEGEND, &nts);
        }
        if !rows.watch.is_empty() {
            let tbl = watch::tables(&rows.watch, &self.watch_ids);
            x.add("\n\n", &tbl, watch::LEGEND, &watch::notes(&rows.watch));
        }
        if !rows.lease.is_empty() {
            let tbl = lease::table(&rows.lease);
            x.add("\n\n", &tbl, lease::LEGEND, &lease::notes(&rows.lease));
        }
        if !rows.expiry.is_empty() {
            let (tbl, nts) = (
                lease::expiry::table(&rows.expiry),
                lease::expiry::notes(&rows.expiry),
            );
            x.add("\n\n", &tbl, lease::expiry::LEGEND, &nts);
        }
        if !rows.k8s.is_empty() {
            let tbl = k8s::table(&rows.k8s);
            x.add("\n\n", &tbl, k8s::LEGEND, &k8s::notes(&rows.k8s));
        }
        if !rows.pauses.is_empty() {
            let tbl = pauses::table(&rows.pauses);
            x.add("\n\n", &tbl, pauses::LEGEND, &pauses::notes(&rows.pauses));
        }
        if !rows.failover.is_empty() {
            let tbl = failover::table(&rows.failover);
            x.add("\n\n", &tbl, failover::LEGEND, &failover::notes(&rows.failover));
        }
        x
    }
}
