//! Every metric name ballast exports, with etcd's names where etcd has the metric, and the
//! Prometheus recorder behind /metrics. (The full etcd set arrives with the Observability
//! issue; names live only here.)

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// etcd: gauge, 1, labelled with the server version clients see.
pub const ETCD_SERVER_VERSION: &str = "etcd_server_version";
/// etcd: gauge, 1 when this member has a leader.
pub const ETCD_SERVER_HAS_LEADER: &str = "etcd_server_has_leader";
/// etcd: gauge, 1 when this member is the leader.
pub const ETCD_SERVER_IS_LEADER: &str = "etcd_server_is_leader";
/// ours: gauge, 1, labelled with ballast's own version.
pub const BALLAST_BUILD_INFO: &str = "ballast_build_info";

/// Installs the global recorder; the handle renders the exposition text for /metrics.
pub fn install(compat_version: &str) -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| format!("metrics recorder: {e}"))?;
    metrics::describe_gauge!(ETCD_SERVER_VERSION, "Which version is running. 1 for 'server_version' label with current version.");
    metrics::describe_gauge!(BALLAST_BUILD_INFO, "ballast build; 1 for the 'version' label with ballast's version.");
    metrics::describe_gauge!(ETCD_SERVER_HAS_LEADER, "Whether or not a leader exists. 1 is existence, 0 is not.");
    metrics::describe_gauge!(ETCD_SERVER_IS_LEADER, "Whether or not this member is a leader. 1 if is, 0 otherwise.");
    metrics::gauge!(ETCD_SERVER_VERSION, "server_version" => compat_version.to_string()).set(1.0);
    metrics::gauge!(BALLAST_BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Refreshes gauges derived from shared status; called on each scrape.
pub fn refresh(status: &crate::status::ServerStatus) {
    let leader = status.leader();
    metrics::gauge!(ETCD_SERVER_HAS_LEADER).set(f64::from(u8::from(leader != 0)));
    metrics::gauge!(ETCD_SERVER_IS_LEADER).set(f64::from(u8::from(leader == status.member_id)));
}
