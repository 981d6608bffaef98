//! The KV workloads (see bench/README.md, "Workloads"): on one server per target, a preload of
//! `--preload-keys` keys, then put with 1, 100 and 1000 clients, an open-loop put at a fixed rate,
//! range linearizable and serializable and txn compare-and-swap, each for `--duration` seconds,
//! while a background compactor runs; all on the load generator of `drive`.
mod client;
mod compactor;
mod drive;
mod lean;
mod pace;
mod run;
mod table;
mod workload;

pub use drive::run_workload;
pub use run::{run_target, KvRows};
pub use table::{notes, secure_table, table, LEGEND, SECURE_LEGEND};
pub use workload::{key, keyed_value, plan, Op, Pace, Plan, Workload, KEY_LEN, VALUE_LEN};
