//! The admin listener: liveness, readiness and a status document.
//! Bind it to a loopback or management address only.

use crate::plan::RuntimePlan;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub plan: Arc<ArcSwap<RuntimePlan>>,
}

impl AdminApp {
    fn status_json(&self) -> String {
        let plan = self.plan.load();
        let now = crate::upstream::health::now_ms();
        let pools: Vec<_> = plan
            .pools
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "backends": p.backends.iter().map(|b| serde_json::json!({
                        "address": b.addr.to_string(),
                        "weight": b.weight,
                        "region": b.region,
                        "healthy": b.health.probe_healthy(),
                        "ejected": b.health.ejected(now),
                        "ejections": b.health.ejections(),
                        "in_flight": b.health.outstanding(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "node_id": plan.node_id,
            "listeners": plan.listeners.iter().map(|l| serde_json::json!({"name": l.name, "bind": l.bind.to_string()})).collect::<Vec<_>>(),
            "sites": plan.sites.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "pools": pools,
        })
        .to_string()
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, ctype, body) = match session.req_header().uri.path() {
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.plan.load().pools.iter().all(|p| p.any_available()) => {
                (200, "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => (
                503,
                "text/plain",
                b"not ready: a pool has no available backend\n".to_vec(),
            ),
            "/status" => (200, "application/json", self.status_json().into_bytes()),
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
