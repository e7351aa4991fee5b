//! lanehub's webhook endpoint: signed deliveries are accepted once, forged, stale and malformed
//! ones are refused, and nothing unverified is routed to a lane.

use std::time::{Duration, SystemTime};

use actix_web::{App, test, web};
use lanehub::domain::{Amount, LaneId, PaymentReference};
use lanehub::http::webhooks::{WebhookReceiver, routes};
use lanehub::lane::view::LaneSnapshot;
use lanehub::lane::{LaneHandle, Lanes};
use lanehub::store::Store;
use lanehub::vipps::signature;
use secrecy::SecretString;

const URL: &str = "https://store.example.no/vipps/webhooks";
const SECRET: &str = "a-webhook-secret-from-vipps";

fn body(reference: &str, name: &str) -> String {
    format!(
        r#"{{"msn":"123456","reference":"{reference}","pspReference":"1","name":"{name}","amount":{{"currency":"NOK","value":100}},"timestamp":"2026-11-27T10:00:00Z","success":true}}"#
    )
}

fn signed(body: &str, secret: &str, date: SystemTime) -> test::TestRequest {
    let date = httpdate::fmt_http_date(date);
    let h = signature::sign(
        secret,
        "/vipps/webhooks",
        "store.example.no",
        &date,
        body.as_bytes(),
    );
    test::TestRequest::post()
        .uri("/vipps/webhooks")
        .insert_header(("x-ms-date", h.date))
        .insert_header(("x-ms-content-sha256", h.content_sha256))
        .insert_header(("authorization", h.authorization))
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned())
}

async fn setup() -> (Store, Lanes, web::Data<WebhookReceiver>) {
    let dir = std::env::temp_dir().join(format!(
        "lanehub-webhooks-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let store = Store::open(&dir).await.unwrap();
    let lane: LaneId = "1".parse().unwrap();
    let reference: PaymentReference = "lh-1-0123456789abcdef".parse().unwrap();
    store
        .record_payment(
            &reference,
            &lane,
            "0123456789abcdef",
            Amount::nok(100),
            "CREATED",
        )
        .await
        .unwrap();
    let lanes = Lanes::default();
    lanes.insert(LaneHandle::new(
        lane.clone(),
        LaneSnapshot {
            lane,
            up: false,
            state: "idle".into(),
            session: None,
            last_session: None,
            message: None,
            scanners: vec![],
            terminal_connected: false,
        },
    ));
    let receiver = WebhookReceiver::new(URL, Duration::from_secs(300)).unwrap();
    receiver.set_secret(SecretString::from(SECRET));
    (store, lanes, web::Data::new(receiver))
}

#[actix_web::test]
async fn deliveries_are_verified_deduplicated_and_refused_when_forged() {
    let (store, lanes, receiver) = setup().await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(lanes))
            .app_data(web::Data::new(store))
            .app_data(receiver)
            .configure(routes),
    )
    .await;
    let now = SystemTime::now();
    let good = body("lh-1-0123456789abcdef", "AUTHORIZED");

    let res = test::call_service(&app, signed(&good, SECRET, now).to_request()).await;
    assert_eq!(res.status(), 200, "a signed delivery is accepted");
    let res = test::call_service(&app, signed(&good, SECRET, now).to_request()).await;
    assert_eq!(
        res.status(),
        200,
        "a repeated delivery is answered but not routed twice"
    );

    let res = test::call_service(&app, signed(&good, "another-secret", now).to_request()).await;
    assert_eq!(res.status(), 401, "a forged signature is refused");

    let tampered = signed(&good, SECRET, now)
        .set_payload(good.replace("100", "999"))
        .to_request();
    let res = test::call_service(&app, tampered).await;
    assert_eq!(res.status(), 401, "a body changed after signing is refused");

    let stale = now - Duration::from_secs(3600);
    let res = test::call_service(&app, signed(&good, SECRET, stale).to_request()).await;
    assert_eq!(res.status(), 401, "a delivery dated an hour ago is refused");

    let unsigned = test::TestRequest::post()
        .uri("/vipps/webhooks")
        .set_payload(good.clone())
        .to_request();
    assert_eq!(test::call_service(&app, unsigned).await.status(), 401);

    let res = test::call_service(&app, signed("{not json", SECRET, now).to_request()).await;
    assert_eq!(res.status(), 400, "signed garbage is refused as malformed");

    let unknown = body("lh-9-ffffffffffffffff", "CAPTURED");
    let res = test::call_service(&app, signed(&unknown, SECRET, now).to_request()).await;
    assert_eq!(
        res.status(),
        200,
        "an unknown reference is acknowledged so Vipps stops retrying"
    );

    let ping = r#"{"auth_req_id":"abc"}"#;
    let res = test::call_service(&app, signed(ping, SECRET, now).to_request()).await;
    assert_eq!(res.status(), 200, "the Login ping is accepted");
}

#[actix_web::test]
async fn without_a_registered_secret_deliveries_wait() {
    let (store, lanes, _) = setup().await;
    let receiver = web::Data::new(WebhookReceiver::new(URL, Duration::from_secs(300)).unwrap());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(lanes))
            .app_data(web::Data::new(store))
            .app_data(receiver)
            .configure(routes),
    )
    .await;
    let good = body("lh-1-0123456789abcdef", "AUTHORIZED");
    let res = test::call_service(&app, signed(&good, SECRET, SystemTime::now()).to_request()).await;
    assert_eq!(
        res.status(),
        503,
        "Vipps retries until lanehub knows its secret"
    );
}
