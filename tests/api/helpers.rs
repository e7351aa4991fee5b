//! `spawn_app()` starts the real application on free ports with a private data directory.

use std::path::PathBuf;

use lanehub::config::Settings;
use lanehub::startup::Application;

pub struct TestApp {
    pub address: String,
    pub sim_url: String,
    pub client: reqwest::Client,
    #[allow(dead_code)]
    pub data_dir: PathBuf,
}

/// A fresh, unique directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lanehub-test-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Settings on free ports with the embedded simulator and a private data dir.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load(None, Vec::new()).expect("built-in defaults load");
    settings.api.listen = "127.0.0.1:0".parse().unwrap();
    settings.sim.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = temp_dir("data");
    settings
}

/// Starts lanehub inside the current actix system.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let data_dir = settings.store.data_dir.clone();
    let app = Application::build(settings).expect("application builds");
    let address = format!("http://{}", app.addr());
    let sim_url = app.simulator().expect("simulator mode").base_url();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        sim_url,
        client: reqwest::Client::new(),
        data_dir,
    }
}
