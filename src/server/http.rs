//! Plain HTTP endpoints served on the client port beside gRPC (and on --listen-metrics-urls):
//! /health (etcd's JSON), /livez and /readyz (kube-apiserver and kubeadm probe these),
//! /version (etcd's JSON plus a "ballast" field) and /metrics.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::Ctx;

/// etcd reports the cluster version as major.minor.0.
fn cluster_version(compat: &str) -> String {
    let mut parts = compat.split('.');
    format!("{}.{}.0", parts.next().unwrap_or("3"), parts.next().unwrap_or("5"))
}

/// etcd's /health: unhealthy without a leader or with any alarm raised.
fn health(status: &crate::status::ServerStatus) -> (bool, String) {
    if status.leader() == 0 {
        return (false, "RAFT NO LEADER".into());
    }
    let alarms = status.alarms();
    match (0..32).find(|bit| alarms & (1 << bit) != 0) {
        Some(bit) => (false, format!("ALARM {}", crate::apply::alarm_name(bit))),
        None => (true, String::new()),
    }
}

pub fn router(ctx: Arc<Ctx>, metrics: PrometheusHandle) -> Router {
    let health = {
        let ctx = ctx.clone();
        move || async move {
            let (ok, reason) = health(&ctx.status);
            let body = serde_json::json!({ "health": ok.to_string(), "reason": reason }).to_string();
            let code = if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
            (code, [("content-type", "application/json")], body)
        }
    };
    let version = {
        let ctx = ctx.clone();
        move || async move {
            let body = serde_json::json!({
                "etcdserver": ctx.compat_version,
                "etcdcluster": cluster_version(&ctx.compat_version),
                "ballast": env!("CARGO_PKG_VERSION"),
            });
            ([("content-type", "application/json")], body.to_string())
        }
    };
    let probe = {
        let ctx = ctx.clone();
        move || async move {
            if ctx.status.leader() != 0 {
                (axum::http::StatusCode::OK, "ok")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ok: no leader")
            }
        }
    };
    let metrics_route = move || async move {
        crate::metrics::refresh(&ctx.status, &ctx.shards.queue_depths());
        metrics.render()
    };
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(probe))
        .route("/version", get(version))
        .route("/metrics", get(metrics_route))
}
