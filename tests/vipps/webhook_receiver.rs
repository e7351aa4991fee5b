//! lanehub's webhook endpoint: signed deliveries are accepted once whatever their date, forged and
//! malformed ones are refused, and nothing unverified is routed to a lane. Deliveries are signed
//! with `signature::sign` for the registered URL as the simulator signs them
//! (`sim::webhooks::delivery::Target`).

use std::time::{Duration, SystemTime};

use actix_http::Request;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test, web};
use lanehub::domain::{Amount, LaneId, PaymentReference};
use lanehub::http::webhooks::{WebhookReceiver, routes};
use lanehub::lane::view::LaneSnapshot;
use lanehub::lane::{LaneHandle, Lanes};
use lanehub::sim::webhooks::delivery::Target;
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
    signed_for(URL, body, secret, date)
}

/// A delivery signed as the simulator signs one for a registration of `url`.
fn signed_for(url: &str, body: &str, secret: &str, date: SystemTime) -> test::TestRequest {
    let date = httpdate::fmt_http_date(date);
    let target = Target::new("wh-1".into(), url.parse().unwrap(), secret.to_owned());
    let h = signature::sign(
        secret,
        &target.path_and_query,
        &target.host,
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
    setup_for(URL).await
}

async fn setup_for(url: &str) -> (Store, Lanes, web::Data<WebhookReceiver>) {
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
            lanehub::store::PaymentIndexState::Created,
        )
        .await
        .unwrap();
    let lanes = Lanes::default();
    lanes.insert(LaneHandle::new(
        lane.clone(),
        LaneSnapshot::before_start(&lane),
    ));
    let receiver = WebhookReceiver::new(url, Duration::from_secs(300)).unwrap();
    receiver.set_secret(SecretString::from(SECRET));
    (store, lanes, web::Data::new(receiver))
}

/// lanehub's webhook routes over `store`, `lanes` and `receiver`.
async fn service(
    store: Store,
    lanes: Lanes,
    receiver: web::Data<WebhookReceiver>,
) -> impl Service<Request, Response = ServiceResponse, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .app_data(web::Data::new(lanes))
            .app_data(web::Data::new(store))
            .app_data(receiver)
            .configure(routes),
    )
    .await
}

#[actix_web::test]
async fn deliveries_are_verified_deduplicated_and_refused_when_forged() {
    let (store, lanes, receiver) = setup().await;
    let app = service(store, lanes, receiver).await;
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

    // Vipps retries a failed delivery for days and may keep its first date: a correct signature
    // is accepted whatever the age, a wrong one is not.
    let metrics = lanehub::metrics::install().unwrap();
    let late_count = || {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("lanehub_webhooks_late_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let before = late_count();
    let late = body("lh-1-0123456789abcdef", "CAPTURED");
    let old = now - Duration::from_secs(3 * 24 * 3600);
    let res = test::call_service(&app, signed(&late, SECRET, old).to_request()).await;
    assert_eq!(
        res.status(),
        200,
        "a delivery dated three days ago is accepted"
    );
    assert_eq!(late_count(), before + 1.0, "and counted as late");
    let forged_old = signed(&late.replace("CAPTURED", "REFUNDED"), "another-secret", old);
    let res = test::call_service(&app, forged_old.to_request()).await;
    assert_eq!(
        res.status(),
        401,
        "an old date does not excuse a bad signature"
    );

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
async fn the_signed_host_is_the_normalised_one() {
    // Registered with capitals and the default port; Vipps (and the simulator) sign the host in
    // lower case without the port.
    let url = "https://Store.Example.NO:443/vipps/webhooks";
    let (store, lanes, receiver) = setup_for(url).await;
    let app = service(store, lanes, receiver).await;
    let good = body("lh-1-0123456789abcdef", "AUTHORIZED");
    let res = test::call_service(
        &app,
        signed_for(url, &good, SECRET, SystemTime::now()).to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn without_a_registered_secret_deliveries_wait() {
    let (store, lanes, _) = setup().await;
    let receiver = web::Data::new(WebhookReceiver::new(URL, Duration::from_secs(300)).unwrap());
    let app = service(store, lanes, receiver).await;
    let good = body("lh-1-0123456789abcdef", "AUTHORIZED");
    let res = test::call_service(&app, signed(&good, SECRET, SystemTime::now()).to_request()).await;
    assert_eq!(
        res.status(),
        503,
        "Vipps retries until lanehub knows its secret"
    );
}
