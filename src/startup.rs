//! `Application::build(settings)` wires the pieces together: the embedded simulator (in simulator
//! mode), the store, the shared Vipps client actor, one actor per lane under the supervisor, the
//! webhook registration, and the HTTP server (HTTPS when `api.tls_cert` and `api.tls_key` are
//! set). Tests build it with port 0 and read the port back.
//!
//! `run_until_stopped` serves until SIGTERM or Ctrl-C, then drains (see
//! `shutdown`): the HTTP server keeps serving reads, cancels, resets and webhooks
//! until the drain is over, and only then stops.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::config::{Settings, VippsMode};
use crate::domain::Msisdn;
use crate::followup::EnrollmentFollower;
use crate::followup::enrollment::{self, FollowSettings};
use crate::http::extract::ApiTokens;
use crate::http::limits::{self, ConnectionCount, HttpLimits};
use crate::http::webhooks::WebhookReceiver;
use crate::lane::effects::{EffectDeps, LoginSettings};
use crate::lane::view::LaneSnapshot;
use crate::lane::{LaneHandle, LaneSpec, Lanes};
use crate::shutdown::{self, Phase, Shutdown};
use crate::sim::{SimServer, Simulator};
use crate::store::{Member, MembershipStore, Store};
use crate::supervisor::{RestartBudget, Supervisor};
use crate::vipps::actor::VippsHandle;

/// A built, listening lanehub.
pub struct Application {
    addr: SocketAddr,
    tls: bool,
    server: actix_web::dev::Server,
    sim: Option<SimServer>,
    settings: Settings,
    lanes: Lanes,
    vipps: VippsHandle,
    store: Store,
    shutdown: Shutdown,
    _supervisor: Supervisor,
}

/// How long the HTTP server gives open connections once the drain is over. Terminal WebSockets
/// were closed by then; keep-alive connections close at once.
pub const HTTP_STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a writable store is probed with a small write, so `/readyz` sees a full disk
/// before a checkout does.
pub const STORE_PROBE_HEALTHY: Duration = Duration::from_secs(15);
/// How often a store that refuses writes is probed, so lanes carry on soon after it is back.
pub const STORE_PROBE_UNHEALTHY: Duration = Duration::from_secs(2);

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub vipps: VippsHandle,
    pub store: Store,
    pub test_hooks: bool,
    /// How often terminal WebSockets are pinged (`api.heartbeat_interval`).
    pub heartbeat: Duration,
    pub shutdown: Shutdown,
}

impl Application {
    /// Binds the listeners and starts everything. Must be called inside an actix system.
    pub fn build(mut settings: Settings) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        let metrics = web::Data::new(crate::metrics::install()?);
        let sim = match settings.vipps.mode {
            VippsMode::Simulator => {
                let listener = TcpListener::bind(settings.sim.listen).map_err(|e| {
                    anyhow::anyhow!("cannot listen on sim.listen {}: {e}", settings.sim.listen)
                })?;
                let sim = Simulator::new(settings.sim.clone()).serve(listener)?;
                settings.vipps.base_url = sim.base_url();
                Some(sim)
            }
            VippsMode::Remote => None,
        };
        let listener = TcpListener::bind(settings.api.listen).map_err(|e| {
            anyhow::anyhow!("cannot listen on api.listen {}: {e}", settings.api.listen)
        })?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && settings.api.tls().is_none() {
            tracing::warn!(
                %addr,
                "api.listen is reachable from the network without TLS: tokens travel in the clear; \
                 set api.tls_cert and api.tls_key, or listen on loopback behind a TLS proxy"
            );
        }
        // Read the certificate before anything starts, so a bad one stops start-up at once.
        let tls = match settings.api.tls() {
            Some((cert, key)) => Some(tls_config(cert, key)?),
            None => None,
        };

        // The store's error stays in the chain: `cli` exits with its own code for a newer schema.
        let store = Store::open_blocking(&settings.store.data_dir).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot open the store in {}",
                settings.store.data_dir.display()
            ))
        })?;
        actix::spawn(
            store
                .clone()
                .watch_writable(STORE_PROBE_HEALTHY, STORE_PROBE_UNHEALTHY),
        );
        let vipps = VippsHandle::start(&settings.vipps, settings.vipps.actor_settings())?;
        let members = crate::members::start(&settings.members, &settings.store.name, &store)?;
        // In simulator mode the lanes wait for the demo members in this store's own club (a
        // moment): a scan before they are in it would welcome a member as a stranger. A shared
        // club (PostgreSQL, the CRM) may be slow or away; the lanes never wait for it.
        let wait_for_seed =
            sim.is_some() && settings.members.provider == crate::config::MembersProvider::Sqlite;
        let (seeded, ready) = tokio::sync::watch::channel(!wait_for_seed);
        if sim.is_some() {
            seed_demo_members(&settings, members.clone(), seeded);
        }

        let follower = EnrollmentFollower::new(store.clone());
        let config = Arc::new(settings.session.session_config());
        let login = Arc::new(LoginSettings::from_settings(&settings));
        let specs: Vec<LaneSpec> = settings
            .lanes
            .iter()
            .map(|lane| LaneSpec {
                handle: LaneHandle::new(lane.id.clone(), LaneSnapshot::before_start(&lane.id)),
                deps: EffectDeps {
                    lane: lane.id.clone(),
                    vipps: vipps.clone(),
                    store: store.clone(),
                    members: members.clone(),
                    follower: follower.clone(),
                    login: login.clone(),
                },
                config: config.clone(),
                scanners: lane.scanners.clone(),
                ready: ready.clone(),
            })
            .collect();
        let threads = match settings.supervisor.lane_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shutdown = Shutdown::default();
        let supervisor = Supervisor::start(
            specs,
            RestartBudget {
                max_restarts: settings.supervisor.max_restarts,
                window: settings.supervisor.restart_window,
            },
            threads,
            shutdown.clone(),
        );
        let lanes = supervisor.lanes().clone();

        // In simulator mode lanehub receives the simulator's webhooks on its own listener. Over
        // HTTPS the simulator would not trust lanehub's certificate, so polling alone follows
        // payments there.
        let webhook_url = match (&settings.vipps.webhook_public_url, settings.vipps.mode) {
            (url, _) if !url.is_empty() => Some(url.clone()),
            (_, VippsMode::Simulator) if tls.is_none() => {
                Some(format!("http://{addr}/vipps/webhooks"))
            }
            _ => None,
        };
        let receiver = webhook_url.as_deref().and_then(|url| {
            WebhookReceiver::new(url, settings.api.webhook_date_tolerance).map(Arc::new)
        });
        if let (Some(url), Some(receiver)) = (webhook_url, receiver.clone()) {
            let (vipps, store, shutdown) = (vipps.clone(), store.clone(), shutdown.clone());
            let backoff = crate::backoff::Backoff {
                initial: settings.vipps.webhook_registration_backoff,
                max: settings.vipps.webhook_registration_max_backoff,
            };
            actix_web::rt::spawn(async move {
                let registered =
                    crate::vipps::registration::register(&vipps, &store, &url, backoff, &shutdown);
                if let Some(secret) = registered.await {
                    receiver.set_secret(secret);
                }
            });
        }

        crate::followup::payments::spawn(
            store.clone(),
            vipps.clone(),
            crate::followup::payments::WatchSettings {
                interval: settings.supervisor.unconfirmed_payment_interval,
                window: settings.supervisor.unconfirmed_payment_window,
            },
            shutdown.clone(),
        );

        enrollment::spawn(
            store.clone(),
            members.clone(),
            vipps.clone(),
            FollowSettings {
                interval: settings.supervisor.late_enrollment_interval,
                window: settings.supervisor.late_enrollment_window,
            },
            shutdown.clone(),
        );

        crate::supervisor::retention::spawn(
            store.clone(),
            settings.store.journal_retention,
            shutdown.clone(),
        );

        let state = web::Data::new(AppState {
            vipps: vipps.clone(),
            store: store.clone(),
            test_hooks: settings.api.test_hooks,
            heartbeat: settings.api.heartbeat_interval,
            shutdown: shutdown.clone(),
        });
        let lanes_data = web::Data::new(lanes.clone());
        let tokens = web::Data::new(ApiTokens::from_settings(&settings));
        let store_data = web::Data::new(store.clone());
        let receiver_data = receiver.map(web::Data::from);
        let limits = web::Data::new(HttpLimits {
            body_timeout: settings.api.body_timeout,
            websockets_per_lane: settings.api.max_websockets_per_lane,
        });
        let (workers, per_worker) = limits::workers_for(settings.api.max_connections);
        let connections = ConnectionCount::new(workers * per_worker);
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap(from_fn(limits::body_deadline))
                .app_data(limits.clone())
                .app_data(lanes_data.clone())
                .app_data(tokens.clone())
                .app_data(state.clone())
                .app_data(store_data.clone())
                .app_data(metrics.clone());
            if let Some(r) = &receiver_data {
                app = app.app_data(r.clone());
            }
            app.configure(crate::http::routes)
        })
        // lanehub handles SIGTERM and Ctrl-C itself: the server must keep serving while lanes
        // drain, and stops only afterwards.
        .disable_signals()
        .shutdown_timeout(HTTP_STOP_GRACE.as_secs())
        // Each worker stops taking connections at its share of `api.max_connections`; the
        // count only says so in the log.
        .workers(workers)
        .max_connections(per_worker)
        // Lane events are small WebSocket frames pushed one after another: with Nagle's
        // algorithm each waited for the terminal's delayed ACK (up to 40 ms).
        .tcp_nodelay(true)
        .on_connect(move |_, extensions| {
            extensions.insert(connections.opened());
        });
        let is_tls = tls.is_some();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        tracing::info!(%addr, tls = is_tls, vipps = %settings.vipps.base_url, lanes = settings.lanes.len(), max_connections = workers * per_worker, "lanehub listening");
        Ok(Application {
            addr,
            tls: is_tls,
            server,
            sim,
            settings,
            lanes,
            vipps,
            store,
            shutdown,
            _supervisor: supervisor,
        })
    }

    /// Where the HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL: `https://…` when TLS is configured, else `http://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The embedded simulator, in simulator mode.
    pub fn simulator(&self) -> Option<&SimServer> {
        self.sim.as_ref()
    }

    /// The effective settings (with the embedded simulator's URL as `vipps.base_url`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    pub fn vipps(&self) -> &VippsHandle {
        &self.vipps
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// lanehub's phase: running, draining or stopping.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Serves until SIGTERM or Ctrl-C, then drains for at most `supervisor.shutdown_deadline`
    /// (a second signal cuts the drain short) and stops. Sessions left open are logged and stay
    /// in the journal for the next start.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = self.server;
        let result = tokio::select! {
            result = &mut server => Some(result),
            () = stop_requested() => None,
        };
        if let Some(result) = result {
            // The server ended on its own (it cannot bind or accept any more).
            self.shutdown.advance(Phase::Stopping);
            if let Some(sim) = self.sim {
                sim.stop().await;
            }
            return result;
        }
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
            tracing::debug!(error = %e, "cannot tell systemd that lanehub is stopping");
        }
        let deadline = self.settings.supervisor.shutdown_deadline;
        let drain = shutdown::drain(&self.lanes, &self.store, &self.shutdown, deadline);
        let drained = tokio::select! {
            drained = drain => Some(drained),
            () = stop_requested() => None,
        };
        if drained.is_none() {
            tracing::warn!(
                "asked again to stop: drain cut short; open sessions stay in the journal"
            );
            self.shutdown.advance(Phase::Stopping);
        }
        // The server future carries the stop out, so it is polled alongside.
        let ((), result) = tokio::join!(handle.stop(true), server);
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
        match drained {
            Some(d) if d.left_open.is_empty() => tracing::info!(
                payments_followed = d.payments_in_flight,
                "lanehub stopped; no session left open"
            ),
            Some(d) => tracing::warn!(
                payments_followed = d.payments_in_flight,
                deadline_passed = d.deadline_passed,
                left_open = d.left_open.len(),
                "lanehub stopped; sessions left open for recovery at the next start"
            ),
            None => tracing::warn!("lanehub stopped before its drain was over"),
        }
        result
    }
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops lanehub")
            }
        }
    }
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("Ctrl-C received"),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for Ctrl-C either");
            std::future::pending::<()>().await;
        }
    }
}

/// The rustls server configuration from PEM files; errors name the file and what is wrong.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("api.tls_cert `{}`: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "api.tls_cert `{}`: no CERTIFICATE in the file",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("api.tls_key `{}`: {e}", key.display()))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            anyhow::anyhow!(
                "api.tls_cert `{}` and api.tls_key `{}` do not make a usable pair: {e}",
                cert.display(),
                key.display()
            )
        })
}

/// In simulator mode the virtual customers marked `member` are in the club, so the demo's member
/// checkout works on a fresh data directory.
fn seed_demo_members(
    settings: &Settings,
    members: Arc<dyn MembershipStore>,
    seeded: tokio::sync::watch::Sender<bool>,
) {
    let seed: Vec<(Msisdn, String, String)> = settings
        .sim
        .customers
        .iter()
        .filter(|c| c.member)
        .map(|c| (c.phone_number.clone(), c.name.clone(), c.email.clone()))
        .collect();
    actix_web::rt::spawn(async move {
        for (phone, name, email) in seed {
            if let Ok(None) = members.member(&phone).await {
                let member = Member::imported(phone, name, email, None);
                if let Err(e) = members.upsert_member(member).await {
                    tracing::warn!(error = %e, "could not seed a demo member");
                }
            }
        }
        seeded.send_replace(true);
    });
}
