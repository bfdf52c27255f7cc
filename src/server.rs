//! Assembles pingora services from a runtime plan and runs them.

use crate::admin::AdminApp;
use crate::config::ListenerProtocol;
use crate::plan::RuntimePlan;
use crate::proxy::Edge;
use crate::redirect::RedirectApp;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Builds the pingora server for a plan. Nothing listens until [`Server::run_forever`].
pub fn build(plan: RuntimePlan) -> anyhow::Result<Server> {
    pingora::tls::install_default_crypto_provider();
    let conf = ServerConf {
        threads: plan.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(plan.graceful_shutdown_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let shared = Arc::new(ArcSwap::from_pointee(plan));
    let plan = shared.load_full();
    let mut services: Vec<Box<dyn pingora::services::ServiceWithDependents>> = Vec::new();
    for (idx, listener) in plan.listeners.iter().enumerate() {
        let addr = listener.bind.to_string();
        match listener.protocol {
            ListenerProtocol::Redirect => {
                let app = RedirectApp {
                    https_port: listener.redirect_port,
                    status: listener.redirect_status,
                };
                let mut svc = Service::new(format!("redirect {}", listener.name), app);
                svc.add_tcp(&addr);
                services.push(Box::new(svc));
            }
            ListenerProtocol::Http | ListenerProtocol::Https => {
                let tls = listener.protocol == ListenerProtocol::Https;
                let edge = Edge::new(shared.clone(), idx, tls);
                let mut svc = pingora::proxy::http_proxy_service_with_name(
                    &server.configuration,
                    edge,
                    &listener.name,
                );
                match (&listener.certificates, tls) {
                    (Some(resolver), true) => {
                        let mut settings = TlsSettings::intermediate("", "")?;
                        settings.set_cert_resolver(resolver.clone());
                        if listener.http2 {
                            settings.enable_h2();
                        }
                        svc.add_tls_with_settings(&addr, None, settings);
                    }
                    _ => svc.add_tcp(&addr),
                }
                services.push(Box::new(svc));
            }
        }
    }
    if let Some(admin) = plan.admin {
        let mut svc = Service::new(
            "admin".to_string(),
            AdminApp {
                plan: shared.clone(),
            },
        );
        svc.add_tcp(&admin.to_string());
        services.push(Box::new(svc));
    }
    let probes = pingora::services::background::background_service(
        "health probes",
        crate::upstream::probe::ProbeService {
            plan: shared.clone(),
        },
    );
    services.push(Box::new(probes));
    for svc in services {
        server.add_boxed_service(svc);
    }
    Ok(server)
}
