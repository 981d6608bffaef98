//! Plain HTTP endpoints served on the client port beside gRPC (and on --listen-metrics-urls):
//! /health (etcd's JSON), /livez and /readyz (kube-apiserver and kubeadm probe these),
//! /version (etcd's JSON plus a "ballast" field) and /metrics. The health endpoints do what
//! etcd's do: alarms, a leader, and a real read through the server with a timeout (/livez a
//! serializable one; /health and /readyz a linearizable one that also waits for the disk).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::Ctx;
use crate::error::Error;
use crate::proto::etcdserverpb::{AlarmType, RangeRequest};

/// etcd reports the cluster version as major.minor.0.
fn cluster_version(compat: &str) -> String {
    format!("{}.0", crate::config::major_minor(compat))
}

/// etcd's checkHealth: an alarm (unless excluded with `?exclude=NAME`), then no leader (unless
/// `?serializable=true`) make the member unhealthy.
fn health_from_status(status: &crate::status::ServerStatus, excluded: &[String], serializable: bool) -> Result<(), String> {
    let alarms = status.alarms();
    for bit in (0..32).filter(|bit| alarms & (1 << bit) != 0) {
        let name = crate::kv::apply::alarm_name(bit);
        if excluded.contains(&name) {
            continue;
        }
        return Err(match name.as_str() {
            "NOSPACE" | "CORRUPT" => format!("ALARM {name}"),
            _ => "ALARM UNKNOWN".into(),
        });
    }
    if !serializable && status.leader() == 0 {
        return Err("RAFT NO LEADER".into());
    }
    Ok(())
}

/// A read through the whole server, as etcd's health checks do (a Range of one key, keys
/// only), within etcd's request timeout: linearizable unless `serializable`, and then also
/// waiting for every WAL write issued before it to be durable, so a stuck disk, a dead raft
/// core or a stuck shard turns the check red instead of leaving it green.
async fn health_read(ctx: &Ctx, serializable: bool) -> Result<(), Error> {
    let read = async {
        if !serializable {
            ctx.raft.read_index().await?;
            ctx.raft.disk_barrier().await?;
        }
        let r = RangeRequest { key: b"health".to_vec(), keys_only: true, limit: 1, serializable, ..Default::default() };
        crate::kv::range::range_on_shards(&ctx.shards, &r, &ctx.status).await.map(|_| ())
    };
    tokio::time::timeout(ctx.raft.timeout(), read).await.unwrap_or(Err(Error::Timeout))
}

/// etcd's /health (`{"health":"true","reason":""}`, 503 when unhealthy).
async fn health(ctx: &Ctx, query: &HashMap<String, Vec<String>>) -> (bool, String) {
    let excluded = query.get("exclude").cloned().unwrap_or_default();
    let serializable = query.get("serializable").is_some_and(|v| v.iter().any(|s| s == "true"));
    if let Err(reason) = health_from_status(&ctx.status, &excluded, serializable) {
        return (false, reason);
    }
    let result = match health_read(ctx, serializable).await {
        Ok(()) => (true, String::new()),
        Err(e) => (false, format!("RANGE ERROR:{e}")),
    };
    let counted = if result.0 { &crate::metrics::handles().health_success } else { &crate::metrics::handles().health_failures };
    counted.increment(1);
    result
}

/// etcd's /livez and /readyz checks (Kubernetes style): `ok`, or 503 with each check's line.
async fn probe(ctx: &Ctx, ready: bool, verbose: bool) -> (axum::http::StatusCode, String) {
    let mut checks: Vec<(&str, Result<(), String>)> = Vec::new();
    if ready {
        let corrupt = ctx.status.alarms() & (1 << AlarmType::Corrupt as i32) != 0;
        checks.push(("data_corruption", if corrupt { Err("ALARM CORRUPT".into()) } else { Ok(()) }));
    }
    checks.push(("serializable_read", health_read(ctx, true).await.map_err(|e| e.to_string())));
    if ready {
        checks.push(("linearizable_read", health_read(ctx, false).await.map_err(|e| e.to_string())));
    }
    let failed = checks.iter().any(|(_, r)| r.is_err());
    let name = if ready { "readyz" } else { "livez" };
    if !failed && !verbose {
        return (axum::http::StatusCode::OK, "ok".into());
    }
    let mut body: String = checks
        .iter()
        .map(|(check, r)| match r {
            Ok(()) => format!("[+]{check} ok\n"),
            Err(e) => format!("[-]{check} failed: {e}\n"),
        })
        .collect();
    if failed {
        body.push_str(&format!("{name} check failed\n"));
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body)
    } else {
        body.push_str(&format!("{name} check passed\n"));
        (axum::http::StatusCode::OK, body)
    }
}

/// Every value of every query parameter.
fn query_params(uri: &axum::http::Uri) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    out
}

/// etcd's answer to a method other than GET on /health and /version.
fn method_not_allowed() -> Response<Body> {
    let mut resp = crate::gateway::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    resp.headers_mut().insert(axum::http::header::ALLOW, axum::http::HeaderValue::from_static("GET"));
    resp
}

/// The routes of both the client port and `--listen-metrics-urls`.
pub fn router(ctx: Arc<Ctx>, metrics: PrometheusHandle) -> Router {
    // etcd writes the JSON without a content type (Go then names it text/plain); unhealthy,
    // with Go's `http.Error` (a line, and nosniff).
    let health = {
        let ctx = ctx.clone();
        move |method: Method, uri: axum::http::Uri| async move {
            if method != Method::GET {
                return method_not_allowed();
            }
            let (ok, reason) = health(&ctx, &query_params(&uri)).await;
            let body = serde_json::json!({ "health": ok.to_string(), "reason": reason }).to_string();
            if !ok {
                return crate::gateway::text(StatusCode::SERVICE_UNAVAILABLE, &body);
            }
            ([("content-type", "text/plain; charset=utf-8")], body).into_response()
        }
    };
    let version = {
        let ctx = ctx.clone();
        move |method: Method| async move {
            if method != Method::GET {
                return method_not_allowed();
            }
            let body = serde_json::json!({
                "etcdserver": ctx.compat_version,
                "etcdcluster": cluster_version(&ctx.compat_version),
                "ballast": env!("CARGO_PKG_VERSION"),
            });
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
    };
    let probe_route = |ready: bool| {
        let ctx = ctx.clone();
        move |uri: axum::http::Uri| async move { probe(&ctx, ready, query_params(&uri).contains_key("verbose")).await }
    };
    let livez = probe_route(false);
    let readyz = probe_route(true);
    let metrics_route = move || async move {
        crate::metrics::refresh(&ctx.status, &ctx.shards.queue_depths(), ctx.auth.view().state.revision);
        // Prometheus's text format, named as etcd's promhttp names it.
        ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render(&metrics))
    };
    Router::new()
        .route("/health", any(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", any(version))
        .route("/metrics", get(metrics_route))
}
