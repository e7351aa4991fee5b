//! The built-in Vipps simulator: the official paths and shapes of the Vipps APIs lanehub uses
//! (access token, QR exchange, check-in, Login from phone number, ePayment, webhooks), virtual
//! customers who act on requests, fault injection, and a control API under `/sim/v1/`.
//!
//! It is served alone by `lanehub sim` and embedded by `lanehub run` in simulator mode. State is
//! in memory behind short-lived mutexes that are never held across an `.await`. Time-driven
//! behaviour (customers answering, payments expiring, webhook retries) runs in [`SimState::tick`],
//! driven every [`TICK`] by a background task and at once when the control API moves the clock.

pub mod auth;
pub mod checkin;
pub mod clock;
pub mod control;
pub mod customers;
pub mod epayment;
pub mod faults;
pub mod login;
pub mod problem;
pub mod qr;
pub mod ratelimit;
pub mod webhooks;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio::time::Instant;

use crate::config::SimSettings;

/// How often time-driven behaviour is evaluated.
pub const TICK: Duration = Duration::from_millis(100);

/// Everything the simulator knows. Shared by all HTTP workers and the background ticker.
#[derive(Debug)]
pub struct SimState {
    pub settings: SimSettings,
    pub clock: clock::SimClock,
    pub tokens: Mutex<HashMap<String, auth::IssuedToken>>,
    pub customers: Mutex<customers::Customers>,
    pub checkins: Mutex<Vec<checkin::CheckInRecord>>,
    pub logins: Mutex<login::Logins>,
    pub payments: Mutex<epayment::Payments>,
    pub webhooks: webhooks::Webhooks,
    pub faults: faults::Faults,
}

impl SimState {
    pub fn new(settings: SimSettings) -> Self {
        let customers = customers::Customers::from_config(&settings.customers);
        SimState {
            clock: clock::SimClock::default(),
            tokens: Mutex::default(),
            customers: Mutex::new(customers),
            checkins: Mutex::default(),
            logins: Mutex::default(),
            payments: Mutex::default(),
            webhooks: webhooks::Webhooks::default(),
            faults: faults::Faults::default(),
            settings,
        }
    }

    /// The simulated customers. A panic elsewhere does not lock them away: every change is made
    /// whole under the lock.
    pub fn customers(&self) -> std::sync::MutexGuard<'_, customers::Customers> {
        self.customers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies everything that is due at `now`: customers acting, expiries, webhook deliveries.
    pub fn tick(self: &Arc<Self>, now: Instant) {
        auth::tick(self, now);
        login::tick(self, now);
        epayment::tick(self, now);
        webhooks::tick(self, now);
    }
}

/// A cheap handle to a simulator's state; clone it freely.
#[derive(Debug, Clone)]
pub struct Simulator {
    state: Arc<SimState>,
}

/// A running simulator: where it listens and how to stop it.
pub struct SimServer {
    pub addr: SocketAddr,
    pub simulator: Simulator,
    pub server: actix_web::dev::ServerHandle,
    ticker: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// The base URL a Vipps client should use to reach this simulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the listener and the background task.
    pub async fn stop(self) {
        self.ticker.abort();
        self.server.stop(true).await;
    }
}

impl Simulator {
    pub fn new(settings: SimSettings) -> Self {
        Simulator {
            state: Arc::new(SimState::new(settings)),
        }
    }

    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// All routes: the Vipps APIs (behind fault injection) and the control API under `/sim/v1`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let back_pressure = || actix_web::middleware::from_fn(webhooks::back_pressure);
        cfg.app_data(web::Data::from(self.state.clone()))
            .service(
                web::scope("/sim/v1")
                    .wrap(back_pressure())
                    .configure(control::routes),
            )
            .service(
                web::scope("")
                    .wrap(actix_web::middleware::from_fn(faults::middleware))
                    .wrap(back_pressure())
                    .configure(auth::api_routes)
                    .configure(qr::api_routes)
                    .configure(checkin::api_routes)
                    .configure(login::api_routes)
                    .configure(epayment::api_routes)
                    .configure(webhooks::api_routes),
            );
    }

    /// Serves the simulator on `listener` and starts its background ticker. Must run inside an
    /// actix system (or a tokio runtime with a `LocalSet`).
    pub fn serve(self, listener: TcpListener) -> std::io::Result<SimServer> {
        let addr = listener.local_addr()?;
        let sim = self.clone();
        let server = HttpServer::new(move || {
            let sim = sim.clone();
            App::new().configure(move |cfg| sim.configure(cfg))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = spawn_server(server);
        let ticker = spawn_ticker(self.state.clone(), TICK, |_| {});
        tracing::info!(%addr, "Vipps simulator listening");
        Ok(SimServer {
            addr,
            simulator: self,
            server: handle,
            ticker,
        })
    }
}

/// Runs an HTTP server in the background on the current actix system; the handle stops it.
pub fn spawn_server(server: actix_web::dev::Server) -> actix_web::dev::ServerHandle {
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

/// Ticks `state` every `every` (a tick waits for room in the webhook queues it filled), then
/// tells `after` the instant ticked. Must run inside an actix system.
pub fn spawn_ticker(
    state: Arc<SimState>,
    every: Duration,
    mut after: impl FnMut(Instant) + 'static,
) -> tokio::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = state.clock.now();
            webhooks::tick_producing(&state, now).await;
            after(now);
        }
    })
}
