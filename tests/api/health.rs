use crate::helpers::spawn_app;

#[actix_web::test]
async fn healthz_answers_with_the_version() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_web::test]
async fn embedded_simulator_issues_tokens_for_the_default_merchant() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/accesstoken/get", app.sim_url))
        .header("client_id", "sim-client")
        .header("client_secret", "sim-secret")
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .header("Merchant-Serial-Number", "123456")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_string(),
        "expires_in is a string: {body}"
    );

    let wrong = app
        .client
        .post(format!("{}/accesstoken/get", app.sim_url))
        .header("client_id", "sim-client")
        .header("client_secret", "wrong")
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
