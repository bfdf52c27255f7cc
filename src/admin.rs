//! The admin listener: liveness, readiness, status, metrics and reload.
//! Bind it to a loopback or management address only: it has no authentication.

use crate::metrics::BackendReading;
use crate::state::EdgeState;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

pub struct AdminApp {
    pub state: Arc<EdgeState>,
}

impl AdminApp {
    fn status_json(&self) -> String {
        let plan = self.state.plan.load();
        let now = crate::upstream::health::now_ms();
        let pools: Vec<_> = plan
            .pools
            .iter()
            .map(|p| {
                let backends: Vec<_> = p
                    .backends
                    .iter()
                    .map(|b| {
                        json!({
                            "address": b.addr.to_string(),
                            "weight": b.weight,
                            "region": b.region,
                            "healthy": b.health.probe_healthy(),
                            "ejected": b.health.ejected(now),
                            "available": b.health.available(now),
                            "ejections": b.health.ejections(),
                            "in_flight": b.health.outstanding(),
                        })
                    })
                    .collect();
                json!({"name": p.name, "load_balancing": format!("{:?}", p.algorithm), "backends": backends})
            })
            .collect();
        json!({
            "node_id": plan.node_id,
            "listeners": plan.listeners.iter().map(|l| json!({"name": l.name, "bind": l.bind.to_string()})).collect::<Vec<_>>(),
            "sites": plan.sites.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "pools": pools,
        })
        .to_string()
    }

    /// `/metrics`: the counters, with each backend's health and the logs' dropped lines read
    /// now from the live plan and the log sinks.
    fn metrics_text(&self) -> String {
        let plan = self.state.plan.load();
        let now = crate::upstream::health::now_ms();
        let backends: Vec<BackendReading> = plan
            .pools
            .iter()
            .flat_map(|p| {
                p.backends.iter().map(move |b| BackendReading {
                    pool: &p.name,
                    backend: b.addr,
                    up: b.health.available(now),
                    ejections: b.health.ejections(),
                    in_flight: b.health.outstanding() as u64,
                })
            })
            .collect();
        let logs = [
            ("access", self.state.access_log.dropped()),
            ("waf", self.state.waf_log.dropped()),
        ];
        self.state.metrics.render(&backends, &logs)
    }

    async fn reload_json(&self) -> (u16, String) {
        let state = self.state.clone();
        let outcome = tokio::task::spawn_blocking(move || state.reloader.reload()).await;
        match outcome {
            Ok(Ok(o)) => (
                200,
                json!({"ok": true, "took_ms": o.took.as_secs_f64() * 1000.0,
                       "warnings": o.warnings.iter().map(ToString::to_string).collect::<Vec<_>>()})
                .to_string(),
            ),
            Ok(Err(errors)) => (
                422,
                json!({"ok": false, "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>()}).to_string(),
            ),
            Err(e) => (500, json!({"ok": false, "errors": [e.to_string()]}).to_string()),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Pipelined requests are answered in order; a small body (POST /reload) is read first
        // so that the request behind it starts where it ends.
        crate::pipelining::enable(session);
        crate::pipelining::drain_small_body(session).await;
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let (status, ctype, body): (u16, &str, Vec<u8>) = match (method.as_str(), path.as_str()) {
            (_, "/healthz") => (200, "text/plain", b"ok\n".to_vec()),
            (_, "/readyz")
                if self
                    .state
                    .plan
                    .load()
                    .pools
                    .iter()
                    .all(|p| p.any_available()) =>
            {
                (200, "text/plain", b"ready\n".to_vec())
            }
            (_, "/readyz") => (
                503,
                "text/plain",
                b"not ready: a pool has no available backend\n".to_vec(),
            ),
            (_, "/status") => (200, "application/json", self.status_json().into_bytes()),
            (_, "/metrics") => (
                200,
                "text/plain; version=0.0.4",
                self.metrics_text().into_bytes(),
            ),
            ("POST", "/reload") => {
                let (status, body) = self.reload_json().await;
                (status, "application/json", body.into_bytes())
            }
            (_, "/reload") => (405, "text/plain", b"use POST\n".to_vec()),
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len().to_string())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
