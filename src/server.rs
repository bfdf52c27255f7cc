//! Assembles pingora services from a runtime plan and runs them.

use crate::admin::AdminApp;
use crate::config::ListenerProtocol;
use crate::conncap::{CappedApp, ClientConnections};
use crate::logging::LogSink;
use crate::metrics::Metrics;
use crate::netfilter::NetworkFilter;
use crate::plan::RuntimePlan;
use crate::proxy::Edge;
use crate::proxy_header::ProxiedApp;
use crate::redirect::RedirectApp;
use crate::reload::Reloader;
use crate::signals::SignalService;
use crate::state::EdgeState;
use crate::tls::mtls::HandshakeComplete;
use crate::tls::SwappableResolver;
use crate::tls_gate::HelloGate;
use crate::upstream::probe::{PoolSource, ProbeService};
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Binds every listening address of the plan once and lets go of it: an address that is taken,
/// or a port the process may not bind (443 without `CAP_NET_BIND_SERVICE`), is an error here.
/// Pingora binds in its listener threads and a failure there only ends that thread, so the edge
/// would run on without the listener: `systemctl` would show it active and `Restart=` would never
/// fire. (After an upgrade the sockets come from the old process instead.)
fn check_binds(plan: &RuntimePlan) -> anyhow::Result<()> {
    let listeners = plan.listeners.iter().map(|l| (l.name.as_str(), l.bind));
    for (name, addr) in listeners.chain(plan.admin.map(|a| ("admin", a))) {
        std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("listener {name}: cannot listen on {addr}: {e}"))?;
    }
    Ok(())
}

/// Builds the pingora server for a plan. Nothing listens until [`Built::run_forever`].
/// `config_path` is what a reload reads again (none for the embedded demo).
/// With `upgrade`, the listening sockets are taken over from the running edge
/// that shares `[server] upgrade_sock` (pingora's graceful upgrade).
pub fn build(
    plan: RuntimePlan,
    config_path: Option<std::path::PathBuf>,
    upgrade: bool,
) -> anyhow::Result<Built> {
    pingora::tls::install_default_crypto_provider();
    // A panic in a request is logged once, with its request id, by the hook that contains it.
    crate::proxy::panics::install_hook();
    if !upgrade {
        check_binds(&plan)?;
    }
    let conf = ServerConf {
        threads: plan.threads,
        work_stealing: plan.work_stealing,
        grace_period_seconds: Some(plan.graceful_shutdown_seconds),
        graceful_shutdown_timeout_seconds: Some(plan.graceful_shutdown_seconds),
        upgrade_sock: plan.upgrade_sock.clone(),
        pid_file: plan.pid_file.clone(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let access_log = LogSink::open(plan.access_log.clone())?;
    let waf_log = LogSink::open(plan.waf_log.clone())?;
    let resolvers: Vec<Option<Arc<SwappableResolver>>> = plan
        .listeners
        .iter()
        .map(|l| {
            l.certificates
                .clone()
                .map(|c| Arc::new(SwappableResolver::new(c)))
        })
        .collect();
    let shared = Arc::new(ArcSwap::from_pointee(plan));
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(EdgeState {
        plan: shared.clone(),
        metrics: metrics.clone(),
        access_log,
        waf_log,
        reloader: Reloader::new(config_path, shared.clone(), resolvers.clone(), metrics),
    });
    let connections: Arc<ClientConnections> = Arc::default();
    let plan = shared.load_full();
    let mut services: Vec<Box<dyn pingora::services::ServiceWithDependents>> = Vec::new();
    for (idx, listener) in plan.listeners.iter().enumerate() {
        let addr = listener.bind.to_string();
        let filter = Arc::new(NetworkFilter {
            state: state.clone(),
            connections: connections.clone(),
            port: listener.bind.port(),
        });
        match listener.protocol {
            ListenerProtocol::Redirect => {
                let app = RedirectApp {
                    https_port: listener.redirect_port,
                    status: listener.redirect_status,
                    pipelined: Some(
                        state
                            .metrics
                            .pipelined_requests
                            .with_label_values(&[listener.name.as_str()]),
                    ),
                };
                let app = ProxiedApp {
                    inner: Arc::new(CappedApp {
                        inner: Arc::new(app),
                        state: state.clone(),
                        connections: connections.clone(),
                    }),
                    state: state.clone(),
                    listener: idx,
                };
                let mut svc = Service::new(format!("redirect {}", listener.name), app);
                svc.set_connection_filter(filter);
                svc.add_listener(endpoint(&addr, listener.read_buffer_bytes));
                services.push(Box::new(svc));
            }
            ListenerProtocol::Http | ListenerProtocol::Https => {
                let tls = listener.protocol == ListenerProtocol::Https;
                let edge = Edge::new(state.clone(), idx, tls);
                let app = ProxiedApp {
                    inner: Arc::new(CappedApp {
                        inner: Arc::new(pingora::proxy::http_proxy(&server.configuration, edge)),
                        state: state.clone(),
                        connections: connections.clone(),
                    }),
                    state: state.clone(),
                    listener: idx,
                };
                let mut svc = Service::new(listener.name.clone(), app);
                svc.set_connection_filter(filter);
                match (resolvers.get(idx).cloned().flatten(), tls) {
                    (Some(resolver), true) => {
                        let mut settings =
                            TlsSettings::with_callbacks(Box::new(HandshakeComplete {
                                metrics: state.metrics.clone(),
                            }))?;
                        settings.set_cert_resolver(resolver);
                        if let Some(auth) = &listener.client_auth {
                            settings.set_client_cert_verifier(auth.verifier.clone());
                        }
                        svc.endpoints().set_pre_tls_callback(Arc::new(HelloGate {
                            state: state.clone(),
                            listener: idx,
                        }));
                        if listener.http2 {
                            settings.enable_h2();
                        }
                        svc.add_listener(endpoint(&addr, listener.read_buffer_bytes).tls(settings));
                    }
                    _ => svc.add_listener(endpoint(&addr, listener.read_buffer_bytes)),
                }
                services.push(Box::new(svc));
            }
        }
    }
    if let Some(admin) = plan.admin {
        let mut svc = Service::new(
            "admin".to_string(),
            AdminApp {
                state: state.clone(),
            },
        );
        svc.add_tcp(&admin.to_string());
        services.push(Box::new(svc));
    }
    let probes = pingora::services::background::background_service(
        "health probes",
        ProbeService {
            pools: LivePools(shared.clone()),
        },
    );
    services.push(Box::new(probes));
    let signals = pingora::services::background::background_service(
        "signals",
        SignalService {
            state: state.clone(),
        },
    );
    services.push(Box::new(signals));
    for svc in services {
        server.add_boxed_service(svc);
    }
    Ok(Built { server, state })
}

/// The pools of the live plan, for the health probes (which know pools, not plans).
struct LivePools(Arc<ArcSwap<RuntimePlan>>);

impl PoolSource for LivePools {
    fn for_each_pool(&self, f: &mut dyn FnMut(&Arc<crate::upstream::Pool>)) {
        for pool in &self.0.load_full().pools {
            f(pool);
        }
    }
}

/// A TCP endpoint whose client connections get read buffers of `read_buffer_bytes`.
fn endpoint(addr: &str, read_buffer_bytes: usize) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(read_buffer_bytes))
}

/// A built edge: the pingora server and the state its services share.
pub struct Built {
    server: Server,
    state: Arc<EdgeState>,
}

impl Built {
    /// Serves until a signal stops the edge, then writes out the lines still
    /// waiting in the logs' buffers (their writer threads would die with the process).
    pub fn run_forever(self) -> ! {
        self.server.run(pingora::server::RunArgs::default());
        self.state.access_log.flush();
        self.state.waf_log.flush();
        std::process::exit(0)
    }
}
