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
use crate::store::{Member, MemberSource, MembershipStore, Store};
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

/// Why the demo cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemoError {
    #[error(
        "lanehub demo drives the embedded Vipps simulator's customers, but the configuration sets \
         vipps.mode = \"remote\"; use vipps.mode = \"simulator\" (the default) for the demo"
    )]
    RemoteMode,
    #[error("--lanes must be 1 to {MAX_LANES}, got {0}")]
    LaneCount(u16),
}

impl DemoError {
    pub fn kind(&self) -> &'static str {
        match self {
            DemoError::RemoteMode => "remote_mode",
            DemoError::LaneCount(_) => "lane_count",
        }
    }
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
                let member = Member {
                    phone_number: phone,
                    name,
                    email,
                    consents: vec![],
                    enrolled_at: chrono::Utc::now(),
                    enrolled_lane: Some(lane.id.clone()),
                    source: MemberSource::Import,
                };
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

/// Share of product scans that misread the label first.
const MISREAD_SHARE: f64 = 0.02;
/// Customer payment delays in milliseconds.
const PAY_DELAY_MS: Range<u64> = 1_000..3_000;
/// Customer Login answer delays in milliseconds.
const LOGIN_DELAY_MS: Range<u64> = 1_000..3_000;

/// A customer who approves payments and consents to enrollment.
fn paying_customer() -> Behaviour {
    Behaviour {
        payment: PaymentBehaviour::Approve,
        payment_delay: Duration::from_millis(PAY_DELAY_MS.start),
        login: LoginBehaviour::Consent,
        login_delay: Duration::from_millis(LOGIN_DELAY_MS.start),
    }
}

/// One lane's virtual customers: a few club members and an endless line of newcomers.
#[derive(Debug, Clone)]
struct Cast {
    position: u16,
    next_member: u32,
    next_newcomer: u32,
}

const FIRST_NAMES: [&str; 12] = [
    "Kari", "Ola", "Ingrid", "Lars", "Sofie", "Jonas", "Emma", "Henrik", "Nora", "Magnus", "Ida",
    "Sander",
];
const LAST_NAMES: [&str; 10] = [
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Berg",
];

impl Cast {
    fn new(position: u16) -> Self {
        Cast {
            position,
            next_member: 0,
            // Start somewhere in the range, so a restart on the same data meets new people.
            next_newcomer: rand::random_range(0..NEWCOMERS_PER_LANE),
        }
    }

    fn number(prefix: &str, position: u16, n: u32) -> Msisdn {
        format!("{prefix}{position:02}{n:04}")
            .parse()
            .expect("47, two digits, two lane digits and four digits make a valid msisdn")
    }

    /// The lane's `k`th club member (1-based).
    fn member(&self, k: u32) -> Msisdn {
        Self::number("4795", self.position, k)
    }

    /// The next club member, round robin.
    fn next_member(&mut self) -> Msisdn {
        self.next_member = self.next_member % MEMBERS_PER_LANE + 1;
        self.member(self.next_member)
    }

    fn next_newcomer(&mut self) -> Msisdn {
        self.next_newcomer = (self.next_newcomer + 1) % NEWCOMERS_PER_LANE;
        Self::number("4796", self.position, self.next_newcomer)
    }

    /// A stable name and e-mail address for a number.
    fn name(phone: &Msisdn) -> (String, String) {
        let n: usize = phone.as_str()[4..].parse().unwrap_or(0);
        let first = FIRST_NAMES[n % FIRST_NAMES.len()];
        let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
        let email = format!("{first}.{last}.{}@example.com", &phone.as_str()[4..]).to_lowercase();
        (format!("{first} {last}"), email)
    }
}

/// What one checkout acts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A club member pays.
    MemberPaid,
    /// A non-member enrolls (Vipps Login consent), then pays.
    EnrollThenPay,
    /// A non-member declines the enrollment request, then pays.
    EnrollmentDeclined,
    /// The cashier pays while the customer has not answered the enrollment yet.
    EnrollmentAbandoned,
    /// A non-member pays without being asked to enroll.
    NonMemberPaid,
    /// The customer declines the payment in the app.
    Declined,
    /// The customer ignores the payment request until it expires.
    Expired,
    /// The cashier cancels the payment request while the customer hesitates.
    CashierCancel,
    /// The customer pays by card after all: the cashier closes the session.
    PaidByCard,
}

impl Scenario {
    /// Every scenario with its relative frequency.
    pub const WEIGHTS: [(Scenario, u32); 9] = [
        (Scenario::MemberPaid, 30),
        (Scenario::EnrollThenPay, 14),
        (Scenario::EnrollmentDeclined, 7),
        (Scenario::EnrollmentAbandoned, 4),
        (Scenario::NonMemberPaid, 12),
        (Scenario::Declined, 12),
        (Scenario::Expired, 4),
        (Scenario::CashierCancel, 10),
        (Scenario::PaidByCard, 5),
    ];

    /// The sum of the weights: `pick` takes a roll below it.
    pub fn total_weight() -> u32 {
        Self::WEIGHTS.iter().map(|(_, w)| w).sum()
    }

    /// The scenario a roll in `0..total_weight()` lands on.
    pub fn pick(roll: u32) -> Scenario {
        let mut left = roll % Self::total_weight();
        for (scenario, weight) in Self::WEIGHTS {
            if left < weight {
                return scenario;
            }
            left -= weight;
        }
        Scenario::MemberPaid
    }

    fn label(self) -> &'static str {
        match self {
            Scenario::MemberPaid => "member_paid",
            Scenario::EnrollThenPay => "enroll_then_pay",
            Scenario::EnrollmentDeclined => "enrollment_declined",
            Scenario::EnrollmentAbandoned => "enrollment_abandoned",
            Scenario::NonMemberPaid => "non_member_paid",
            Scenario::Declined => "declined",
            Scenario::Expired => "expired",
            Scenario::CashierCancel => "cashier_cancel",
            Scenario::PaidByCard => "paid_by_card",
        }
    }

    fn newcomer(self) -> bool {
        matches!(
            self,
            Scenario::EnrollThenPay
                | Scenario::EnrollmentDeclined
                | Scenario::EnrollmentAbandoned
                | Scenario::NonMemberPaid
        )
    }

    fn payment(self) -> PaymentBehaviour {
        match self {
            Scenario::Declined => PaymentBehaviour::Decline,
            Scenario::Expired | Scenario::CashierCancel => PaymentBehaviour::Ignore,
            _ => PaymentBehaviour::Approve,
        }
    }

    fn login(self) -> LoginBehaviour {
        match self {
            Scenario::EnrollmentDeclined => LoginBehaviour::Deny,
            Scenario::EnrollmentAbandoned => LoginBehaviour::Ignore,
            _ => LoginBehaviour::Consent,
        }
    }

    fn enrolls(self) -> bool {
        matches!(
            self,
            Scenario::EnrollThenPay | Scenario::EnrollmentDeclined | Scenario::EnrollmentAbandoned
        )
    }
}

/// A product on the demo store's shelves.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub name: &'static str,
    /// The first 12 digits of its EAN-13; [`ean13`] adds the check digit.
    pub ean_body: &'static str,
    /// Price in øre, VAT included.
    pub price: u64,
    pub vat_percent: u8,
}

/// The shelves. Every price is far above the test amounts that fail on purpose (151, 182, …).
pub const PRODUCTS: [Product; 8] = [
    product("Lettmelk 1 l", "703801000012", 2_190, 15),
    product("Grovbrod", "703801000029", 3_490, 15),
    product("Kaffe 250 g", "703801000036", 6_990, 15),
    product("Epler 1 kg", "703801000043", 2_990, 15),
    product("Laks 400 g", "703801000050", 12_900, 15),
    product("Oppvasktabletter", "703801000067", 8_990, 25),
    product("Batterier AA 4 stk", "703801000074", 5_990, 25),
    product("Blomster", "703801000081", 14_900, 25),
];

const fn product(
    name: &'static str,
    ean_body: &'static str,
    price: u64,
    vat_percent: u8,
) -> Product {
    Product {
        name,
        ean_body,
        price,
        vat_percent,
    }
}

/// The EAN-13 of a 12-digit body: the body and its check digit. `None` if the body is not 12
/// digits.
pub fn ean13(body: &str) -> Option<String> {
    if body.len() != 12 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    Some(format!("{body}{}", (10 - sum % 10) % 10))
}

/// A receipt line for `quantity` of `product`, VAT included in the total.
pub fn order_line(product: &Product, quantity: u32) -> OrderLine {
    let total = product.price * u64::from(quantity);
    let rate = u64::from(product.vat_percent);
    OrderLine {
        name: product.name.to_owned(),
        id: ean13(product.ean_body).unwrap_or_else(|| product.ean_body.to_owned()),
        quantity,
        unit_price: product.price,
        total,
        vat_percent: product.vat_percent,
        vat_amount: total * rate / (100 + rate),
    }
}

/// The payment for a basket of `(product index, quantity)`: amount, description and receipt.
pub fn pay_request(basket: &[(usize, u32)], receipt_number: String) -> PayRequest {
    let lines: Vec<OrderLine> = basket
        .iter()
        .map(|&(i, q)| order_line(&PRODUCTS[i % PRODUCTS.len()], q))
        .collect();
    let amount = lines.iter().map(|l| l.total).sum();
    let items: u32 = basket.iter().map(|(_, q)| q).sum();
    PayRequest {
        amount: Amount::nok(amount),
        description: format!("Demo Store: {items} items"),
        order_lines: Some(lines),
        receipt_number: Some(receipt_number),
    }
}

/// How a checkout ended, from the cashier message the lane showed when its session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Paid,
    Declined,
    Expired,
    Cancelled,
    Unavailable,
    Closed,
    Failed,
    /// Abandoned or interrupted sessions, or a message the demo does not know.
    Other,
}

impl Ended {
    /// The outcome of a session that ended showing the cashier message `code`.
    pub fn from_message(code: &str) -> Ended {
        match code {
            "payment_approved" => Ended::Paid,
            "payment_declined" => Ended::Declined,
            "payment_expired" => Ended::Expired,
            "payment_cancelled" => Ended::Cancelled,
            "vipps_unavailable" => Ended::Unavailable,
            "session_closed" => Ended::Closed,
            "payment_failed" | "qr_not_recognised" => Ended::Failed,
            _ => Ended::Other,
        }
    }
}

/// Cashier messages that end an enrollment (the session goes on, ready for payment).
const ENROLLMENT_ENDS: [&str; 6] = [
    "enrollment_completed",
    "enrollment_declined",
    "enrollment_expired",
    "enrollment_abandoned",
    "enrollment_failed",
    "vipps_unavailable",
];

/// What the demo has seen so far.
#[derive(Debug, Default)]
struct Tally {
    checkouts: AtomicU64,
    paid: AtomicU64,
    declined: AtomicU64,
    expired: AtomicU64,
    cancelled: AtomicU64,
    enrolled: AtomicU64,
    unavailable: AtomicU64,
    closed: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn ended(&self, ended: Ended) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        let slot = match ended {
            Ended::Paid => &self.paid,
            Ended::Declined => &self.declined,
            Ended::Expired => &self.expired,
            Ended::Cancelled => &self.cancelled,
            Ended::Unavailable => &self.unavailable,
            Ended::Closed => &self.closed,
            Ended::Failed => &self.failed,
            Ended::Other => return,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    fn progress(&self, elapsed: Duration, lanes: usize, vipps_errors: u64) -> Progress {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            elapsed_secs: elapsed.as_secs(),
            lanes,
            checkouts: get(&self.checkouts),
            paid: get(&self.paid),
            declined: get(&self.declined),
            expired: get(&self.expired),
            cancelled: get(&self.cancelled),
            enrolled: get(&self.enrolled),
            unavailable: get(&self.unavailable),
            closed: get(&self.closed),
            failed: get(&self.failed),
            vipps_errors,
        }
    }
}

/// The progress line's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub elapsed_secs: u64,
    pub lanes: usize,
    /// Sessions that ended, whatever the outcome.
    pub checkouts: u64,
    pub paid: u64,
    pub declined: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Customers who joined the club.
    pub enrolled: u64,
    pub unavailable: u64,
    pub closed: u64,
    pub failed: u64,
    /// Error answers the simulator's fault injection gave (5xx, 429, 423, hangs, drops).
    pub vipps_errors: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo: {}s lanes={} checkouts={} paid={} declined={} expired={} cancelled={} \
             enrolled={} unavailable={} closed={} failed={} vipps_errors={}",
            self.elapsed_secs,
            self.lanes,
            self.checkouts,
            self.paid,
            self.declined,
            self.expired,
            self.cancelled,
            self.enrolled,
            self.unavailable,
            self.closed,
            self.failed,
            self.vipps_errors
        )
    }
}

async fn print_progress(demo: Arc<Demo>) {
    let mut every = tokio::time::interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    loop {
        every.tick().await;
        println!("{}", demo.progress());
    }
}

/// Why one checkout did not run to its end.
#[derive(Debug, thiserror::Error)]
enum DriveError {
    #[error("lane refused {command}: {error}")]
    Command {
        command: &'static str,
        error: CommandError,
    },
    #[error("no {what} within {}s", .limit.as_secs())]
    Timeout { what: &'static str, limit: Duration },
    #[error("the lane's event stream closed")]
    Closed,
}

impl DriveError {
    fn kind(&self) -> &'static str {
        match self {
            DriveError::Command { error, .. } => error.kind(),
            DriveError::Timeout { .. } => "timeout",
            DriveError::Closed => "closed",
        }
    }
}

/// A lane's events since the watch began, read in order.
struct LaneWatch {
    lane: LaneHandle,
    rx: broadcast::Receiver<Arc<LaneEvent>>,
}

impl LaneWatch {
    fn new(lane: &LaneHandle) -> Self {
        let (_, _, rx) = lane.subscribe();
        LaneWatch {
            lane: lane.clone(),
            rx,
        }
    }

    /// Forgets the events so far: what happens next answers the next command.
    fn skip_past(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    async fn command(
        &self,
        cmd: LaneCommand,
        command: &'static str,
    ) -> Result<LaneSnapshot, DriveError> {
        self.lane
            .command(cmd)
            .await
            .map_err(|error| DriveError::Command { command, error })
    }

    /// The first snapshot, `first` or a later event's, for which `done` holds.
    async fn until(
        &mut self,
        first: Option<LaneSnapshot>,
        what: &'static str,
        limit: Duration,
        done: impl Fn(&LaneSnapshot) -> bool,
    ) -> Result<LaneSnapshot, DriveError> {
        if let Some(s) = first.filter(|s| done(s)) {
            return Ok(s);
        }
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(DriveError::Timeout { what, limit }),
                Ok(Ok(event)) if done(&event.snapshot) => return Ok(event.snapshot.clone()),
                Ok(Ok(_)) => {}
                // Missed events: the lane as it is now tells enough.
                Ok(Err(RecvError::Lagged(_))) => {
                    let now = self.lane.snapshot();
                    if done(&now) {
                        return Ok(now);
                    }
                }
                Ok(Err(RecvError::Closed)) => return Err(DriveError::Closed),
            }
        }
    }
}

fn state_is(s: &LaneSnapshot, state: &str) -> bool {
    s.state == state
}

fn message_code(s: &LaneSnapshot) -> &str {
    s.message.as_ref().map_or("", |m| m.code.as_str())
}

/// One lane's endless line of customers.
async fn drive_lane(demo: Arc<Demo>, lane: LaneHandle, position: u16) {
    let mut rng: StdRng = rand::make_rng();
    let mut cast = Cast::new(position);
    // Lanes start at slightly different times, as cashiers do.
    demo.pause(&mut rng, 0.0..0.5, 1.0).await;
    for n in 1u64.. {
        // The first checkout is a quick member payment, so a short run shows money coming in.
        let (scenario, pace) = if n == 1 {
            (Scenario::MemberPaid, 0.3)
        } else {
            let roll = rng.random_range(0..Scenario::total_weight());
            (Scenario::pick(roll), 1.0)
        };
        let receipt = format!("demo-{}-{n}", lane.id());
        match checkout(&demo, &lane, &mut cast, &mut rng, scenario, pace, receipt).await {
            Ok(ended) => demo.tally.ended(ended),
            Err(e) => {
                tracing::warn!(lane = %lane.id(), scenario = scenario.label(), kind = e.kind(), error = %e, "demo: checkout did not finish as planned");
                settle(&lane).await;
            }
        }
        // The next customer steps up.
        demo.pause(&mut rng, 1.0..4.0, 1.0).await;
    }
}

/// Brings a lane back to idle after a checkout went wrong: cancel, close, wait.
async fn settle(lane: &LaneHandle) {
    let mut watch = LaneWatch::new(lane);
    let mut now = lane.snapshot();
    if now.up && !state_is(&now, "idle") {
        for cmd in [LaneCommand::Cancel, LaneCommand::Reset] {
            if let Ok(s) = lane.command(cmd).await {
                now = s;
            }
        }
    }
    let result = watch
        .until(Some(now), "idle lane", SETTLE_LIMIT, |s| {
            s.up && state_is(s, "idle")
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(lane = %lane.id(), error = %e, "demo: lane did not settle");
    }
}

/// One customer at the till, start to end.
#[allow(clippy::too_many_arguments)]
async fn checkout(
    demo: &Demo,
    lane: &LaneHandle,
    cast: &mut Cast,
    rng: &mut StdRng,
    scenario: Scenario,
    pace: f64,
    receipt: String,
) -> Result<Ended, DriveError> {
    let mut watch = LaneWatch::new(lane);
    watch
        .until(Some(lane.snapshot()), "idle lane", SETTLE_LIMIT, |s| {
            s.up && state_is(s, "idle")
        })
        .await?;
    // Who is at the till, and what they will do.
    let phone = if scenario.newcomer() {
        demo.newcomer(cast).await
    } else {
        cast.next_member()
    };
    let behaviour = Behaviour {
        payment: scenario.payment(),
        payment_delay: Duration::from_millis(rng.random_range(PAY_DELAY_MS)),
        login: scenario.login(),
        login_delay: Duration::from_millis(rng.random_range(LOGIN_DELAY_MS)),
    };
    demo.put_customer(&phone, !scenario.newcomer(), behaviour);
    let tokenised = rng.random_bool(0.5);
    let Some(qr) = demo.qr(&phone, tokenised).or_else(|| demo.qr(&phone, true)) else {
        return Ok(Ended::Other);
    };

    // The basket; products are scanned before the QR or after it.
    let items = rng.random_range(1..=4usize);
    let basket: Vec<(usize, u32)> = (0..items)
        .map(|_| {
            (
                rng.random_range(0..PRODUCTS.len()),
                rng.random_range(1..=3u32),
            )
        })
        .collect();
    let scan_first = rng.random_bool(0.5);
    if scan_first {
        scan_products(demo, &watch, rng, &basket, pace).await?;
    }

    demo.pause(rng, 0.5..1.5, pace).await;
    watch.skip_past();
    let scanned = watch
        .command(LaneCommand::Scan { text: qr }, "the customer's QR")
        .await?;
    let ready = watch
        .until(Some(scanned), "identified customer", IDENTIFY_LIMIT, |s| {
            state_is(s, "ready_for_payment") || state_is(s, "idle")
        })
        .await?;
    if state_is(&ready, "idle") {
        return Ok(Ended::from_message(message_code(&ready)));
    }
    let member = ready
        .session
        .as_ref()
        .and_then(|s| s.customer.as_ref())
        .and_then(|c| c.member);

    if !scan_first {
        scan_products(demo, &watch, rng, &basket, pace).await?;
    }

    if scenario.enrolls() && member == Some(false) {
        demo.pause(rng, 0.5..1.5, pace).await;
        let asked = watch.command(LaneCommand::Enroll, "enroll").await?;
        if scenario == Scenario::EnrollmentAbandoned {
            // The cashier does not wait for the customer's answer.
            watch
                .until(Some(asked), "consent request", ENROLL_LIMIT, |s| {
                    state_is(s, "awaiting_consent") || state_is(s, "ready_for_payment")
                })
                .await?;
            demo.pause(rng, 1.0..2.0, pace).await;
        } else {
            let done = watch
                .until(Some(asked), "enrollment outcome", ENROLL_LIMIT, |s| {
                    state_is(s, "ready_for_payment") && ENROLLMENT_ENDS.contains(&message_code(s))
                })
                .await?;
            if message_code(&done) == "enrollment_completed" {
                demo.tally.enrolled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    demo.pause(rng, 0.5..2.0, pace).await;
    if scenario == Scenario::PaidByCard {
        let closed = watch.command(LaneCommand::Reset, "close").await?;
        let ended = watch
            .until(Some(closed), "closed session", IDENTIFY_LIMIT, |s| {
                state_is(s, "idle")
            })
            .await?;
        return Ok(Ended::from_message(message_code(&ended)));
    }

    let request = pay_request(&basket, receipt);
    let mut now = watch.command(LaneCommand::Pay(request), "pay").await?;
    if scenario == Scenario::CashierCancel {
        now = watch
            .until(Some(now), "payment request", demo.follow_limit, |s| {
                state_is(s, "awaiting_payment") || state_is(s, "idle")
            })
            .await?;
        if !state_is(&now, "idle") {
            demo.pause(rng, 1.5..4.0, pace).await;
            match watch.command(LaneCommand::Cancel, "cancel").await {
                Ok(s) => now = s,
                // The payment moved on meanwhile (e.g. a capture in flight): follow it.
                Err(DriveError::Command {
                    error: CommandError::NotAllowed(_),
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let ended = watch
        .until(Some(now), "payment outcome", demo.follow_limit, |s| {
            state_is(s, "idle")
        })
        .await?;
    Ok(Ended::from_message(message_code(&ended)))
}

/// The cashier scans the basket's products, with a misread now and then.
async fn scan_products(
    demo: &Demo,
    watch: &LaneWatch,
    rng: &mut StdRng,
    basket: &[(usize, u32)],
    pace: f64,
) -> Result<(), DriveError> {
    for &(i, quantity) in basket {
        let product = &PRODUCTS[i % PRODUCTS.len()];
        let Some(ean) = ean13(product.ean_body) else {
            continue;
        };
        for _ in 0..quantity {
            demo.pause(rng, 0.2..0.8, pace).await;
            if rng.random_bool(MISREAD_SHARE) {
                // A damaged label: the last digit is read wrong and the lane refuses the scan.
                let misread = format!("{}{}", &ean[..12], (ean.as_bytes()[12] - b'0' + 1) % 10);
                match watch
                    .command(LaneCommand::Scan { text: misread }, "a misread barcode")
                    .await
                {
                    Ok(_)
                    | Err(DriveError::Command {
                        error: CommandError::Invalid(_),
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
                demo.pause(rng, 0.3..0.8, pace).await;
            }
            watch
                .command(LaneCommand::Scan { text: ean.clone() }, "a product scan")
                .await?;
        }
    }
    Ok(())
}

/// A short fault on one Vipps operation.
#[derive(Debug, Clone)]
pub struct FaultBurst {
    pub operation: Operation,
    pub config: FaultConfig,
    pub label: &'static str,
}

impl FaultBurst {
    /// Operations a fault may hit: those a checkout calls often. Bursts stay short (at most two
    /// errors) so retries succeed and the circuit breaker stays closed.
    const OPERATIONS: [Operation; 5] = [
        Operation::PaymentGet,
        Operation::PaymentCreate,
        Operation::PaymentCapture,
        Operation::QrExchange,
        Operation::CheckIn,
    ];

    /// The burst for two rolls: which operation, and which kind of fault.
    pub fn pick(operation_roll: usize, kind_roll: u32) -> FaultBurst {
        let operation = Self::OPERATIONS[operation_roll % Self::OPERATIONS.len()];
        let (label, config) = match kind_roll % 3 {
            0 => (
                "server_errors",
                FaultConfig {
                    server_error_next: 2,
                    ..FaultConfig::default()
                },
            ),
            1 => (
                "too_many_requests",
                FaultConfig {
                    too_many_requests_next: 2,
                    retry_after_secs: Some(1),
                    ..FaultConfig::default()
                },
            ),
            _ => (
                "slow_answers",
                FaultConfig {
                    latency_ms: 400,
                    jitter_ms: 1_200,
                    ..FaultConfig::default()
                },
            ),
        };
        FaultBurst {
            operation,
            config,
            label,
        }
    }
}

/// Now and then a short burst of Vipps errors or slow answers on one operation.
async fn inject_faults(demo: Arc<Demo>) {
    let mut rng: StdRng = rand::make_rng();
    let mut wait = FIRST_FAULT_SECS;
    let mut first = true;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(rng.random_range(wait.clone()))).await;
        wait = FAULT_EVERY_SECS;
        // The first burst hits payment reads, which every checkout makes, so even a short run
        // shows errors and retries.
        let burst = if std::mem::take(&mut first) {
            FaultBurst::pick(0, 0)
        } else {
            FaultBurst::pick(rng.random_range(0..usize::MAX), rng.random_range(0..3))
        };
        let faults = &demo.sim.faults;
        if let Err(e) = faults.set_operation(burst.operation, burst.config.clone()) {
            tracing::warn!(error = %e, "demo: fault burst refused");
            continue;
        }
        tracing::info!(
            operation = burst.operation.as_str(),
            fault = burst.label,
            "demo: Vipps fault burst"
        );
        // Counted faults (the next N answers fail) stay until calls spent them, within a limit;
        // slow answers stay for a fixed while.
        let counted = burst.config.server_error_next + burst.config.too_many_requests_next > 0;
        let limit = if counted {
            FAULT_BURST_LIMIT
        } else {
            FAULT_BURST
        };
        let started = Instant::now();
        let mut check = tokio::time::interval(FAULT_CHECK);
        loop {
            check.tick().await;
            let spent = || {
                faults
                    .view()
                    .operations
                    .get(burst.operation.as_str())
                    .is_none_or(|c| c.server_error_next + c.too_many_requests_next == 0)
            };
            if started.elapsed() >= limit || (counted && spent()) {
                break;
            }
        }
        faults.clear_operation(burst.operation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
