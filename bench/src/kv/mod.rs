//! The KV workloads (see bench/README.md, "Workloads"): put with 1, 100 and 1000 clients, range
//! linearizable and serializable, txn compare-and-swap and load, each a closed loop of a fixed
//! op count on the load generator of `drive`.
mod client;
mod drive;
mod run;
mod table;
mod workload;

pub use drive::run_workload;
pub use run::run_target;
pub use table::{notes, table, Row, LEGEND};
pub use workload::{key, keyed_value, workloads, Op, Workload, KEY_LEN, VALUE_LEN};
