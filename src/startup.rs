//! `Application::build(settings)` wires the pieces together: the embedded simulator (in simulator
//! mode), and the HTTP server. Tests build it with port 0 and read the bound port back.

use std::net::{SocketAddr, TcpListener};

use actix_web::{App, HttpServer, web};

use crate::config::{Settings, VippsMode};
use crate::http::extract::ApiTokens;
use crate::lane::Lanes;
use crate::sim::{SimServer, Simulator};

/// A built, listening lanehub.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    sim: Option<SimServer>,
    settings: Settings,
}

impl Application {
    /// Binds the listeners and starts the embedded simulator when `vipps.mode = "simulator"`.
    /// Must be called inside an actix system.
    pub fn build(mut settings: Settings) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
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
        let lanes = web::Data::new(Lanes::default());
        let tokens = web::Data::new(ApiTokens::from_settings(&settings));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(lanes.clone())
                .app_data(tokens.clone())
                .configure(crate::http::routes)
        })
        .listen(listener)?
        .run();
        tracing::info!(%addr, vipps = %settings.vipps.base_url, "lanehub listening");
        Ok(Application {
            addr,
            server,
            sim,
            settings,
        })
    }

    /// Where the HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The embedded simulator, in simulator mode.
    pub fn simulator(&self) -> Option<&SimServer> {
        self.sim.as_ref()
    }

    /// The effective settings (with the embedded simulator's URL as `vipps.base_url`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Serves until the process is told to stop (SIGINT or SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
        result
    }
}
