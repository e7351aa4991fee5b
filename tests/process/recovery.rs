//! Killing lanehub (SIGKILL) in the middle of a payment and starting it again on the same data
//! directory: every payment ends in its correct final state, the journal and the lane agree, and
//! the simulator never holds a second payment for a checkout.
//!
//! The real binary runs twice against one `lanehub sim` process (remote mode, polling only, no
//! webhooks). The simulator's faults and controls place each kill: a create request that is
//! processed but never answered, a customer who acts only while lanehub is down, a capture held
//! before it reaches Vipps.

use serde_json::{Value, json};

use crate::common::app::Api;
use crate::common::process::{Process, Rig};
use crate::common::snapshot::{captured, ids};
use crate::common::{AMOUNT, DECLINER, NON_MEMBER};

#[tokio::test]
async fn killed_before_the_create_was_answered() {
    let rig = Rig::new();
    rig.sim.behave(NON_MEMBER, "approve", 150, "consent").await;
    // Vipps creates the payment but lanehub never hears back.
    let hang = json!({"hangNext": 1, "hangMs": 60_000});
    rig.sim.faults("payment_create", hang).await;
    let (lanehub, api) = rig.lanehub(&[]).await;
    rig.checkout(&api, "1", NON_MEMBER).await;
    rig.sim
        .wait_payments("created the payment", |l| l.len() == 1)
        .await;
    let waiting = api
        .wait_lane("1", "sent the create", |s| {
            s["state"] == "awaiting_payment_creation"
        })
        .await;
    let (session, reference) = ids(&waiting);
    lanehub.kill();

    let (lanehub, api) = rig.lanehub(&[]).await;
    let done = api.wait_message("1", "payment_approved").await;
    assert_eq!(done["state"], "idle");
    let payment = rig.sim.payment(&reference).await;
    assert_eq!(captured(&payment), AMOUNT);
    assert_eq!(rig.sim.payments().await.len(), 1);
    rig.assert_journal("1", &session, &reference, "paid", AMOUNT)
        .await;
    lanehub.kill();
}

#[tokio::test]
async fn killed_while_customers_decide() {
    let rig = Rig::new();
    // Both customers act only while lanehub is down.
    rig.sim.behave(NON_MEMBER, "ignore", 0, "consent").await;
    rig.sim.behave(DECLINER, "ignore", 0, "consent").await;
    let (lanehub, api) = rig.lanehub(&[]).await;
    rig.checkout(&api, "1", NON_MEMBER).await;
    rig.checkout(&api, "2", DECLINER).await;
    let created = |s: &Value| s["session"]["payment"]["state"] == "CREATED";
    let one = api.wait_lane("1", "saw the payment", created).await;
    let two = api.wait_lane("2", "saw the payment", created).await;
    let ((s1, r1), (s2, r2)) = (ids(&one), ids(&two));
    lanehub.kill();

    rig.sim.approve(&r1).await;
    rig.sim.post(&format!("/payments/{r2}/decline")).await;
    let (lanehub, api) = rig.lanehub(&[]).await;
    api.wait_message("1", "payment_approved").await;
    api.wait_message("2", "payment_declined").await;
    assert_eq!(captured(&rig.sim.payment(&r1).await), AMOUNT);
    let declined = rig.sim.payment(&r2).await;
    assert_eq!(
        (&declined["state"], captured(&declined)),
        (&json!("ABORTED"), 0)
    );
    assert_eq!(rig.sim.payments().await.len(), 2);
    rig.assert_journal("1", &s1, &r1, "paid", AMOUNT).await;
    rig.assert_journal("2", &s2, &r2, "declined", 0).await;
    lanehub.kill();
}

#[tokio::test]
async fn killed_after_approval_before_the_capture_reached_vipps() {
    let rig = Rig::new();
    rig.sim.behave(NON_MEMBER, "approve", 150, "consent").await;
    // Captures are held before Vipps sees them, long enough to kill lanehub meanwhile.
    let held = json!({"latencyMs": 60_000});
    rig.sim.faults("payment_capture", held).await;
    let (lanehub, _, session, reference) =
        checked_out_until(&rig, "awaiting_capture", "started the capture").await;
    lanehub.kill();
    let payment = rig.sim.payment(&reference).await;
    assert_eq!(
        (&payment["state"], captured(&payment)),
        (&json!("AUTHORIZED"), 0)
    );

    rig.sim.clear_faults("payment_capture").await;
    let (lanehub, api) = rig.lanehub(&[]).await;
    api.wait_message("1", "payment_approved").await;
    // Captured once, whatever became of the held request.
    assert_eq!(captured(&rig.sim.payment(&reference).await), AMOUNT);
    rig.assert_journal("1", &session, &reference, "paid", AMOUNT)
        .await;
    lanehub.kill();
}

/// Starts lanehub and checks the non-member out on lane 1 until the lane is in `state` (`what`
/// says what that means); lanehub, its API, the session id and the payment reference.
async fn checked_out_until(rig: &Rig, state: &str, what: &str) -> (Process, Api, String, String) {
    let (lanehub, api) = rig.lanehub(&[]).await;
    rig.checkout(&api, "1", NON_MEMBER).await;
    let there = api.wait_lane("1", what, |s| s["state"] == state).await;
    let (session, reference) = ids(&there);
    (lanehub, api, session, reference)
}

/// Kills `lanehub` and starts it again; asserts lane 1 comes up idle: the outcome stays.
async fn restarted_idle(rig: &Rig, lanehub: Process) -> Process {
    lanehub.kill();
    let (lanehub, api) = rig.lanehub(&[]).await;
    let snapshot = api.wait_lane("1", "up", |s| s["up"] == true).await;
    assert_eq!(snapshot["state"], "idle", "{snapshot}");
    lanehub
}

/// The cashier is never told a final outcome while lanehub cannot write: no code in `seen` other
/// than the ones that say "wait".
fn assert_nothing_final(snapshot: &Value) {
    let code = snapshot["message"]["code"].as_str().unwrap_or_default();
    assert!(
        !code.starts_with("payment_")
            || code == "payment_requested"
            || code == "payment_authorised",
        "the cashier was told {code} while nothing could be saved: {snapshot}"
    );
}

#[tokio::test]
async fn a_full_disk_while_the_customer_approves_never_tells_the_cashier_a_wrong_outcome() {
    let Some(rig) = Rig::on_small_disk() else {
        return;
    };
    rig.sim
        .behave(NON_MEMBER, "approve", 1_500, "consent")
        .await;
    let (lanehub, api, session, reference) =
        checked_out_until(&rig, "awaiting_payment", "sent the payment").await;

    // The disk fills while the customer decides; the customer approves.
    rig.disk().fill();
    let waiting = api.wait_message("1", "store_unavailable").await;
    assert_nothing_final(&waiting);
    rig.sim
        .wait_payments("authorised the payment", |l| {
            l.iter().any(|p| p["state"] == "AUTHORIZED")
        })
        .await;
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["store"]["writable"], false, "{ready}");
    assert!(
        ready["store"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("full"),
        "{ready}"
    );
    // The capture could not be journalled, so it was not sent.
    assert_eq!(captured(&rig.sim.payment(&reference).await), 0);

    // A crash while the disk is full, and a start on the full disk.
    lanehub.kill();
    let (lanehub, api) = rig.lanehub(&[]).await;
    let waiting = api.wait_message("1", "store_unavailable").await;
    assert_nothing_final(&waiting);
    assert_eq!(waiting["state"], "awaiting_capture", "{waiting}");
    assert_eq!(captured(&rig.sim.payment(&reference).await), 0);

    // Space again: the session finishes by itself, without a restart.
    rig.disk().free();
    api.wait_message("1", "payment_approved").await;
    assert_eq!(captured(&rig.sim.payment(&reference).await), AMOUNT);
    rig.assert_journal("1", &session, &reference, "paid", AMOUNT)
        .await;

    // A crash after the outcome: the next start says the same.
    let lanehub = restarted_idle(&rig, lanehub).await;
    assert_eq!(rig.sim.payments().await.len(), 1);
    assert_eq!(captured(&rig.sim.payment(&reference).await), AMOUNT);
    lanehub.kill();
}

#[tokio::test]
async fn a_cancel_while_the_disk_is_full_is_carried_out_and_stays_the_outcome_after_a_crash() {
    let Some(rig) = Rig::on_small_disk() else {
        return;
    };
    rig.sim.behave(NON_MEMBER, "approve", 300, "consent").await;
    // A crash before the customer acts: the disk fills while lanehub is down.
    let (lanehub, _, session, reference) =
        checked_out_until(&rig, "awaiting_payment", "sent the payment").await;
    lanehub.kill();
    rig.disk().fill();
    rig.sim
        .wait_payments("authorised the payment", |l| {
            l.iter().any(|p| p["state"] == "AUTHORIZED")
        })
        .await;

    // Started on the full disk: the approved payment cannot be captured yet.
    let (lanehub, api) = rig.lanehub(&[]).await;
    let waiting = api.wait_message("1", "store_unavailable").await;
    assert_nothing_final(&waiting);
    // The customer pays otherwise; the cashier cancels while nothing can be saved.
    let cancelling = api
        .ok(
            reqwest::Method::POST,
            "/api/v1/lanes/1/cancel",
            Some(json!({})),
        )
        .await;
    assert_eq!(cancelling["state"], "awaiting_cancel", "{cancelling}");
    assert_nothing_final(&cancelling);

    rig.disk().free();
    api.wait_message("1", "payment_cancelled").await;
    let payment = rig.sim.payment(&reference).await;
    assert_eq!(captured(&payment), 0, "{payment}");
    assert_eq!(
        payment["aggregate"]["cancelledAmount"]["value"],
        json!(AMOUNT)
    );
    rig.assert_journal("1", &session, &reference, "cancelled", 0)
        .await;

    // A crash after the outcome: nothing is captured on the next start.
    let lanehub = restarted_idle(&rig, lanehub).await;
    assert_eq!(captured(&rig.sim.payment(&reference).await), 0);
    lanehub.kill();
}
