use crate::common::app::spawn_app;
use crate::common::content_type;
use crate::common::sim::token_request;

#[actix_web::test]
async fn healthz_answers_with_the_version() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_web::test]
async fn embedded_simulator_issues_tokens_for_the_default_merchant() {
    let app = spawn_app().await;
    let res = token_request(&app.http, &app.sim.url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_string(),
        "expires_in is a string: {body}"
    );

    let wrong = app
        .http
        .post(format!("{}/accesstoken/get", app.sim.url))
        .header("client_id", "sim-client")
        .header("client_secret", "wrong")
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[actix_web::test]
async fn the_cashier_ui_is_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let index = app.get("/").await;
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(content_type(&index).starts_with("text/html"));
    let html = index.text().await.unwrap();
    for id in [
        "token-input",
        "lane-picker",
        "sign-in-button",
        "state",
        "message",
        "customer",
        "payment",
        "scan-input",
        "enroll-button",
        "pay-button",
        "cancel-button",
        "reset-button",
        "amount-input",
    ] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "index.html lacks #{id}"
        );
    }
    let js = app.get("/ui/app.js").await;
    assert!(content_type(&js).starts_with("text/javascript"));
    let etag = js.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .http
        .get(format!("{}/ui/app.js", app.address))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let css = app.get("/ui/style.css").await;
    assert!(content_type(&css).starts_with("text/css"));
}
