//! `lanehub demo`: everything `lanehub run` starts with the embedded simulator, plus virtual
//! customers and cashiers who keep every lane busy, so the metrics, the dashboards and the cashier
//! UI show a living store.
//!
//! - Lanes `1`..`N` (`--lanes`, default 4) replace the configured ones; lane `i` has the token
//!   `demo-lane-<i>-token`. The demo prints them at start: open the printed address in a browser
//!   and sign in with one of them (or with the shipped admin token `demo-admin-token`, printed only
//!   while it is in use) to watch a lane.
//! - Each lane runs checkouts in a loop with small random pauses (`--pause-scale` multiplies
//!   them): a member who pays, a non-member who enrolls and pays, one who declines to enroll, a
//!   declined payment, one left to expire, a cashier cancel, and more. Products (EAN-13) are
//!   scanned before or after the customer's QR and become the receipt's order lines.
//! - Every lane has its own virtual customers (members `4795LLxxxx`, newcomers `4796LLxxxx`, where
//!   `LL` is the lane's position), added to the simulator in-process, so a lane can set what its
//!   customer will do without disturbing another lane.
//! - Payments expire after [`DEMO_PAYMENT_EXPIRY`] in the simulator and the session alike, so an
//!   ignored payment ends while someone watches.
//! - Now and then one Vipps operation answers a short burst of 5xx or 429, or answers slowly; the
//!   fault is cleared a few seconds later, so the Vipps dashboard shows errors and retries.
//! - A one-line summary goes to stdout every [`PROGRESS_INTERVAL`] and once more at the end.
//!
//! What must stay true: the demo acts on lanes only through `LaneHandle::command`, as a terminal
//! does, and on the simulator only as its control API does (customers, behaviours, faults). A
//! checkout that goes wrong is logged and the lane is brought back to idle; the demo never stops a
//! lane.

mod basket;
mod customers;
mod drive;
mod faults;
mod progress;
mod scenario;

pub use basket::{PRODUCTS, Product, ean13, order_line, pay_request};
use customers::*;
use drive::*;
pub use faults::FaultBurst;
use faults::*;
use progress::*;
pub use progress::{Ended, Progress};
pub use scenario::Scenario;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::config::{LaneSettings, LoginBehaviour, PaymentBehaviour, Settings, VippsMode};
use crate::domain::{Amount, LaneId, Msisdn};
use crate::lane::view::{LaneEvent, LaneSnapshot};
use crate::lane::{CommandError, LaneCommand, LaneHandle};
use crate::session::{OrderLine, PayRequest};
use crate::sim::SimState;
use crate::sim::customers::{Behaviour, Customer};
use crate::sim::faults::FaultConfig;
use crate::startup::Application;
use crate::store::{Member, MembershipStore, Store};
use crate::vipps::Operation;

/// Lanes when `--lanes` is not given.
pub const DEFAULT_LANES: u16 = 4;
/// Most lanes the demo opens: phone numbers carry the lane's position in two digits.
pub const MAX_LANES: u16 = 99;
/// Payment expiry in the simulator and the sessions, so an ignored payment ends within a minute.
pub const DEMO_PAYMENT_EXPIRY: Duration = Duration::from_secs(30);
/// How often the progress line is printed.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Club members each lane starts with.
const MEMBERS_PER_LANE: u32 = 3;
/// Newcomer numbers per lane before they wrap around (those already enrolled are skipped).
const NEWCOMERS_PER_LANE: u32 = 10_000;
/// Longest wait for a lane to identify a customer (QR exchange, membership, retries).
const IDENTIFY_LIMIT: Duration = Duration::from_secs(45);
/// Longest wait for an enrollment; the simulator's customers answer within seconds.
const ENROLL_LIMIT: Duration = Duration::from_secs(90);
/// Longest wait for a lane to come up or to settle back to idle after a hiccup.
const SETTLE_LIMIT: Duration = Duration::from_secs(150);
/// How long slow answers last.
const FAULT_BURST: Duration = Duration::from_secs(5);
/// Longest a counted fault (the next N answers fail) waits for calls to spend it.
const FAULT_BURST_LIMIT: Duration = Duration::from_secs(30);
/// How often the demo looks whether a fault was spent.
const FAULT_CHECK: Duration = Duration::from_millis(250);
/// Seconds between fault bursts (not scaled by `--pause-scale`).
const FAULT_EVERY_SECS: Range<f64> = 20.0..40.0;
/// The first fault burst comes sooner, so a short run shows one too.
const FIRST_FAULT_SECS: Range<f64> = 4.0..8.0;

/// `lanehub demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Lanes to open: ids "1".."N", tokens "demo-lane-<id>-token" (printed at start).
    #[arg(long, default_value_t = DEFAULT_LANES,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_LANES)))]
    pub lanes: u16,
    /// Configuration file layered over the built-in defaults (must keep vipps.mode = "simulator").
    #[arg(long, env = "LANEHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// Multiplies every pause of the virtual cashiers and customers: 0 runs checkouts back to
    /// back, 2 is twice as slow.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0, value_parser = parse_pause_scale)]
    pub pause_scale: f64,
}

fn parse_pause_scale(raw: &str) -> Result<f64, String> {
    let scale: f64 = raw
        .parse()
        .map_err(|_| format!("`{raw}` is not a number like 0.5 or 2"))?;
    if !(0.0..=100.0).contains(&scale) {
        return Err(format!("{raw} is outside 0 to 100"));
    }
    Ok(scale)
}

/// Why the demo cannot start; `kind()` is the variant's name in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DemoError {
    #[error(
        "lanehub demo drives the embedded Vipps simulator's customers, but the configuration sets \
         vipps.mode = \"remote\"; use vipps.mode = \"simulator\" (the default) for the demo"
    )]
    RemoteMode,
    #[error("--lanes must be 1 to {MAX_LANES}, got {0}")]
    LaneCount(u16),
}

/// A lane the demo opens, with the token a terminal signs in with.
#[derive(Debug, Clone)]
pub struct DemoLane {
    pub id: LaneId,
    /// The lane's position, 1-based; part of its customers' phone numbers.
    pub position: u16,
    pub token: SecretString,
}

/// Turns `settings` into the demo's: lanes `1`..`lanes` with demo tokens, and the short payment
/// expiry in the simulator and the sessions. Refuses remote Vipps mode.
pub fn prepare(settings: &mut Settings, lanes: u16) -> Result<Vec<DemoLane>, DemoError> {
    if settings.vipps.mode == VippsMode::Remote {
        return Err(DemoError::RemoteMode);
    }
    if !(1..=MAX_LANES).contains(&lanes) {
        return Err(DemoError::LaneCount(lanes));
    }
    let demo: Vec<DemoLane> = (1..=lanes)
        .map(|position| DemoLane {
            id: position
                .to_string()
                .parse()
                .expect("a number of at most two digits is a valid lane id"),
            position,
            token: SecretString::from(format!("demo-lane-{position}-token")),
        })
        .collect();
    settings.lanes = demo
        .iter()
        .map(|l| LaneSettings {
            id: l.id.clone(),
            token: l.token.clone(),
            scanners: vec![],
        })
        .collect();
    settings.sim.payment_expiry = DEMO_PAYMENT_EXPIRY;
    settings.session.payment_expiry = DEMO_PAYMENT_EXPIRY;
    Ok(demo)
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: DemoArgs, mut settings: Settings) -> anyhow::Result<()> {
    let lanes = prepare(&mut settings, args.lanes)?;
    let admin_is_demo = crate::config::DEMO_TOKENS[0] == settings.api.admin_token.expose_secret();
    // A payment always ends by its expiry, the margin and the final read-backs; then some slack.
    let session = settings.session.session_config();
    let follow_limit = session.payment_expiry
        + session.payment_margin
        + session.final_read_window
        + Duration::from_secs(30);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings)?;
        // The first stdout line tells scripts and tests where lanehub listens.
        println!("lanehub listening on http://{}", app.addr());
        let Some(sim) = app.simulator() else {
            anyhow::bail!("lanehub demo needs the embedded Vipps simulator, which did not start");
        };
        println!("Vipps simulator listening on {}", sim.base_url());
        print_sign_in(app.addr(), &lanes, admin_is_demo);

        let demo = Arc::new(Demo {
            started: Instant::now(),
            pause_scale: args.pause_scale,
            sim: sim.simulator.state().clone(),
            store: app.store().clone(),
            tally: Tally::default(),
            lanes: lanes.len(),
            follow_limit,
        });
        demo.seed_members(&lanes).await;
        let mut tasks = Vec::new();
        for lane in &lanes {
            let Some(handle) = app.lanes().get(&lane.id) else {
                anyhow::bail!("lane {} was configured but not started", lane.id);
            };
            tasks.push(actix_web::rt::spawn(drive_lane(
                demo.clone(),
                handle,
                lane.position,
            )));
        }
        tasks.push(actix_web::rt::spawn(inject_faults(demo.clone())));
        tasks.push(actix_web::rt::spawn(print_progress(demo.clone())));

        let stopped = match args.duration {
            Some(secs) => tokio::select! {
                stopped = app.run_until_stopped() => stopped,
                () = tokio::time::sleep(Duration::from_secs(secs)) => Ok(()),
            },
            None => app.run_until_stopped().await,
        };
        for task in tasks {
            task.abort();
        }
        println!("{}", demo.progress());
        stopped?;
        Ok(())
    })
}

fn print_sign_in(addr: std::net::SocketAddr, lanes: &[DemoLane], admin_is_demo: bool) {
    println!(
        "demo: {} lanes; open http://{addr}/ and sign in with a lane token:",
        lanes.len()
    );
    for lane in lanes {
        // Demo tokens are generated here, not configured secrets: printing them is the point.
        println!("demo:   lane {}: {}", lane.id, lane.token.expose_secret());
    }
    if admin_is_demo {
        println!(
            "demo:   every lane: {} (admin)",
            crate::config::DEMO_TOKENS[0]
        );
    }
}

/// What every demo task shares.
struct Demo {
    started: Instant,
    pause_scale: f64,
    sim: Arc<SimState>,
    store: Store,
    tally: Tally,
    lanes: usize,
    /// Longest wait for a requested payment to reach its outcome.
    follow_limit: Duration,
}

impl Demo {
    /// A random pause of `secs` seconds, times `pace` and `--pause-scale`.
    async fn pause(&self, rng: &mut StdRng, secs: Range<f64>, pace: f64) {
        let secs = rng.random_range(secs) * pace * self.pause_scale;
        if secs > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
    }

    fn progress(&self) -> Progress {
        let injected = self.sim.faults.view().injected;
        self.tally.progress(
            self.started.elapsed(),
            self.lanes,
            injected.server_error
                + injected.too_many_requests
                + injected.locked
                + injected.hang
                + injected.drop,
        )
    }

    /// Adds the customer to the simulator, or sets what an existing one does from now on.
    fn put_customer(&self, phone: &Msisdn, member: bool, behaviour: Behaviour) {
        let mut customers = self
            .sim
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = customers.get_mut(phone) {
            c.behaviour = behaviour;
            return;
        }
        let (name, email) = Cast::name(phone);
        customers.insert(Customer {
            phone_number: phone.clone(),
            name,
            email,
            member,
            behaviour,
            qr_token_url: String::new(),
            qr_clear_text_url: None,
            qr_future_url: String::new(),
        });
    }

    /// The QR a customer shows: the clear-text Vipps code or the tokenised one.
    fn qr(&self, phone: &Msisdn, tokenised: bool) -> Option<String> {
        let customers = self
            .sim
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let c = customers.get(phone)?;
        if tokenised {
            Some(c.qr_token_url.clone())
        } else {
            c.qr_clear_text_url.clone()
        }
    }

    /// Puts each lane's regular customers in the simulator and the loyalty club.
    async fn seed_members(&self, lanes: &[DemoLane]) {
        for lane in lanes {
            let cast = Cast::new(lane.position);
            for k in 1..=MEMBERS_PER_LANE {
                let phone = cast.member(k);
                self.put_customer(&phone, true, paying_customer());
                let (name, email) = Cast::name(&phone);
                let member = Member::imported(phone, name, email, Some(lane.id.clone()));
                if let Err(e) = self.store.upsert_member(member).await {
                    tracing::warn!(lane = %lane.id, error = %e, "demo: could not seed a member");
                }
            }
        }
    }

    /// A newcomer's number that is not in the club yet (an earlier run may have enrolled some).
    async fn newcomer(&self, cast: &mut Cast) -> Msisdn {
        let mut phone = cast.next_newcomer();
        for _ in 0..20 {
            match self.store.member(&phone).await {
                Ok(Some(_)) => phone = cast.next_newcomer(),
                _ => break,
            }
        }
        phone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn defaults() -> Settings {
        Settings::load(None, Vec::new()).expect("the built-in defaults load")
    }

    #[test]
    fn ean13_adds_the_check_digit() {
        // The GS1 example 400638133393 has check digit 1.
        assert_eq!(ean13("400638133393").as_deref(), Some("4006381333931"));
        assert_eq!(ean13("703801000012").as_deref(), Some("7038010000126"));
        assert_eq!(ean13("40063813339"), None);
        assert_eq!(ean13("40063813339x"), None);
        for product in PRODUCTS {
            let ean = ean13(product.ean_body).expect("shelf EANs have 12-digit bodies");
            match crate::scanner::classify::classify(&ean) {
                crate::scanner::ScanKind::Product(_) => {}
                other => panic!("{ean} is not read as a product: {other:?}"),
            }
        }
    }

    #[test]
    fn pay_requests_add_up_and_validate() {
        let request = pay_request(&[(0, 2), (5, 1), (7, 3)], "demo-1-7".into());
        assert_eq!(request.amount, Amount::nok(2 * 2_190 + 8_990 + 3 * 14_900));
        assert_eq!(request.description, "Demo Store: 6 items");
        assert_eq!(request.validate(), Ok(()));
        let lines = request.order_lines.expect("order lines are sent");
        // 25 % VAT included in 89.90 is 17.98.
        assert_eq!(lines[1].vat_amount, 1_798);
        assert_eq!(lines[0].id, "7038010000126");
    }

    #[test]
    fn scenarios_follow_their_weights() {
        let total = Scenario::total_weight();
        let mut seen = std::collections::HashMap::new();
        for roll in 0..total {
            *seen.entry(Scenario::pick(roll)).or_insert(0u32) += 1;
        }
        for (scenario, weight) in Scenario::WEIGHTS {
            assert_eq!(seen.get(&scenario), Some(&weight), "{scenario:?}");
        }
        assert_eq!(Scenario::pick(0), Scenario::MemberPaid);
        assert_eq!(Scenario::pick(total), Scenario::MemberPaid);
    }

    #[test]
    fn scenarios_ask_the_customer_for_what_they_show() {
        assert_eq!(Scenario::Declined.payment(), PaymentBehaviour::Decline);
        assert_eq!(Scenario::Expired.payment(), PaymentBehaviour::Ignore);
        assert_eq!(Scenario::CashierCancel.payment(), PaymentBehaviour::Ignore);
        assert_eq!(Scenario::EnrollmentDeclined.login(), LoginBehaviour::Deny);
        assert!(Scenario::EnrollThenPay.newcomer() && Scenario::EnrollThenPay.enrolls());
        assert!(!Scenario::MemberPaid.newcomer() && !Scenario::MemberPaid.enrolls());
    }

    #[test]
    fn prepare_opens_demo_lanes_with_short_expiry() {
        let mut settings = defaults();
        let lanes = prepare(&mut settings, 12).expect("simulator mode");
        assert_eq!(settings.lanes.len(), 12);
        assert_eq!(lanes[11].id.as_str(), "12");
        assert_eq!(lanes[6].token.expose_secret(), "demo-lane-7-token");
        for lane in &settings.lanes {
            // The configuration's own rule for lane tokens.
            assert!(lane.token.expose_secret().len() >= 16, "{}", lane.id);
        }
        assert_eq!(settings.sim.payment_expiry, DEMO_PAYMENT_EXPIRY);
        assert_eq!(settings.session.payment_expiry, DEMO_PAYMENT_EXPIRY);
        assert_eq!(
            prepare(&mut defaults(), 0).map(|_| ()),
            Err(DemoError::LaneCount(0))
        );
    }

    #[test]
    fn prepare_refuses_remote_mode() {
        let mut settings = defaults();
        settings.vipps.mode = VippsMode::Remote;
        let err = prepare(&mut settings, 2).expect_err("remote mode");
        assert_eq!(err.kind(), "remote_mode");
        assert!(
            err.to_string().contains("vipps.mode = \"simulator\""),
            "{err}"
        );
    }

    #[test]
    fn customers_get_lane_numbers_and_stable_names() {
        let mut cast = Cast::new(7);
        assert_eq!(cast.next_member().as_str(), "4795070001");
        assert_eq!(cast.next_member().as_str(), "4795070002");
        assert_eq!(cast.next_member().as_str(), "4795070003");
        assert_eq!(cast.next_member().as_str(), "4795070001");
        cast.next_newcomer = NEWCOMERS_PER_LANE - 1;
        assert_eq!(cast.next_newcomer().as_str(), "4796070000");
        let kari = cast.member(1);
        assert_eq!(
            Cast::name(&kari),
            (
                "Jonas Larsen".to_owned(),
                "jonas.larsen.070001@example.com".to_owned()
            )
        );
    }

    #[test]
    fn outcomes_come_from_the_final_message() {
        assert_eq!(Ended::from_message("payment_approved"), Ended::Paid);
        assert_eq!(Ended::from_message("payment_declined"), Ended::Declined);
        assert_eq!(Ended::from_message("payment_expired"), Ended::Expired);
        assert_eq!(Ended::from_message("payment_cancelled"), Ended::Cancelled);
        assert_eq!(Ended::from_message("session_closed"), Ended::Closed);
        assert_eq!(Ended::from_message("vipps_unavailable"), Ended::Unavailable);
        assert_eq!(Ended::from_message("session_abandoned"), Ended::Other);
    }

    #[test]
    fn the_progress_line_counts_what_ended() {
        let tally = Tally::default();
        for ended in [Ended::Paid, Ended::Paid, Ended::Declined, Ended::Other] {
            tally.ended(ended);
        }
        tally.enrolled.fetch_add(1, Ordering::Relaxed);
        let line = tally
            .progress(Duration::from_millis(12_900), 4, 7)
            .to_string();
        assert_eq!(
            line,
            "demo: 12s lanes=4 checkouts=4 paid=2 declined=1 expired=0 cancelled=0 enrolled=1 \
             unavailable=0 closed=0 failed=0 vipps_errors=7"
        );
    }

    #[test]
    fn fault_bursts_are_valid_and_short() {
        for op in 0..FaultBurst::OPERATIONS.len() {
            for kind in 0..3 {
                let burst = FaultBurst::pick(op, kind);
                let scope = crate::sim::faults::Scope::Operation(burst.operation);
                assert_eq!(burst.config.validate(scope), Ok(()), "{burst:?}");
                assert!(burst.config.server_error_next + burst.config.too_many_requests_next <= 2);
            }
        }
    }

    #[test]
    fn pause_scale_is_checked() {
        assert_eq!(parse_pause_scale("0.5"), Ok(0.5));
        assert!(parse_pause_scale("-1").unwrap_err().contains("outside"));
        assert!(
            parse_pause_scale("fast")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
