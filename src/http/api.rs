//! The terminal API under `/api/v1`: lane snapshots, scans, cashier commands, the lane WebSocket
//! and back-office refunds. Documented by the OpenAPI document generated from these handlers.

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::extract::{Body, Caller, SocketCaller};
use super::limits::HttpLimits;
use super::problem::{ApiError, Problem};
use super::resource;
use crate::domain::{Amount, LaneId, PaymentReference};
use crate::lane::view::{LaneEvent, LaneSnapshot, MoneyDto};
use crate::lane::{CommandError, LaneCommand, LaneHandle, Lanes};
use crate::refund::RefundError;
use crate::session::{OrderLine, PayRequest};
use crate::startup::AppState;
use crate::vipps::models::{MAX_AMOUNT_MINOR_UNITS, PaymentState};

/// The longest scan text accepted (a QR code holds at most ~4 KB).
pub const MAX_SCAN_CHARS: usize = 4096;

// What each answer means, as the OpenAPI document says it.
const LANE: &str = "The lane's id, as configured under `[[lanes]]`";
const BAD_REQUEST: &str =
    "The body is not JSON of the documented shape, or a value is wrong; `field` names it";
const UNAUTHORIZED: &str = "Missing or unknown bearer token";
const FORBIDDEN: &str = "A lane token on any lane but its own (another lane's or one that does not exist: \
     the answer is the same)";
const NOT_FOUND: &str = "No such lane (admin token)";
const CONFLICT: &str = "The lane's state does not allow this now; `detail` says why";
const UNAVAILABLE: &str = "The lane is down or did not answer in time (try again), lanehub is \
     shutting down (`type` `shutting_down`: nothing new starts, cancel and reset still work), or \
     it cannot write its database (`type` `store_unavailable`: nothing new starts until it can)";

#[derive(OpenApi)]
#[openapi(
    info(title = "lanehub terminal API", description = "Lane terminals and the back office talk to lanehub through this API. Authenticate with `Authorization: Bearer <token>`: a lane token acts on its own lane, the admin token on every lane and alone may refund. Errors are `application/problem+json`. See docs/terminal-api.md."),
    paths(
        list_lanes, get_lane, post_scan, post_enroll, post_payment, post_cancel, post_reset,
        lane_events, post_refund, openapi,
        super::ops::healthz, super::ops::readyz, super::ops::metrics,
    ),
    components(schemas(Problem, LaneEvent, MoneyDto)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // lanehub is not published under a licence; an empty licence name is noise.
        openapi.info.license = None;
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let get = || (Method::GET, web::get());
    let post = || (Method::POST, web::post());
    cfg.service(
        web::scope("/api/v1")
            .service(resource("/openapi.json", get(), openapi))
            .service(resource("/lanes", get(), list_lanes))
            .service(resource("/lanes/{lane}", get(), get_lane))
            .service(resource("/lanes/{lane}/scans", post(), post_scan))
            .service(resource("/lanes/{lane}/enroll", post(), post_enroll))
            .service(resource("/lanes/{lane}/payment", post(), post_payment))
            .service(resource("/lanes/{lane}/cancel", post(), post_cancel))
            .service(resource("/lanes/{lane}/reset", post(), post_reset))
            .service(resource("/lanes/{lane}/events", get(), lane_events))
            .service(resource(
                "/payments/{reference}/refund",
                post(),
                post_refund,
            ))
            // Not in the OpenAPI document: it answers 404 unless `api.test_hooks` is on.
            .route("/lanes/{lane}/test/panic", web::post().to(post_test_panic))
            .route(
                "/lanes/{lane}/test/scanner",
                web::post().to(post_test_scanner),
            )
            .route("/test/store", web::post().to(post_test_store))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::NotFound("no such endpoint".into()))
            })),
    );
}

/// This document: the terminal API as OpenAPI 3.1, generated from the handlers.
#[utoipa::path(get, path = "/api/v1/openapi.json", security(()), responses(
    (status = 200, description = "The OpenAPI document", body = Object),
))]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

fn lane_id(raw: &str) -> Result<LaneId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no lane `{raw}`")))
}

/// The lane the caller may act on, or the right error. A lane token gets the same 403 for
/// another lane and for one that does not exist, so it cannot probe which lanes there are; the
/// admin token learns 404 for an unknown lane.
fn lane_for(lanes: &Lanes, caller: &Caller, raw: &str) -> Result<LaneHandle, ApiError> {
    if let Caller::Lane(own) = caller
        && own.as_str() != raw
    {
        return Err(ApiError::OtherLane);
    }
    let id = lane_id(raw)?;
    lanes
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no lane `{id}`")))
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotAllowed(why) => ApiError::NotAllowed(why),
            CommandError::Invalid(why) => ApiError::invalid("text", why),
            CommandError::LaneDown(_) | CommandError::Timeout(_) => {
                ApiError::Unavailable(e.to_string())
            }
            CommandError::ShuttingDown => ApiError::ShuttingDown,
            CommandError::StoreUnavailable(why) => ApiError::StoreUnavailable(why),
        }
    }
}

/// A cashier command as a terminal gives it, over HTTP or on the lane WebSocket: both go
/// through [`TerminalCommand::run`], so both answer alike.
#[derive(Debug)]
pub enum TerminalCommand {
    Scan(ScanBody),
    Pay(PaymentBody),
    Enroll,
    Cancel,
    Reset,
}

impl TerminalCommand {
    /// Checks the command's body and has the lane carry it out; the lane as it is after.
    pub async fn run(self, handle: &LaneHandle) -> Result<LaneSnapshot, ApiError> {
        let cmd = match self {
            TerminalCommand::Scan(body) => LaneCommand::Scan {
                text: body.validate()?,
            },
            TerminalCommand::Pay(body) => LaneCommand::Pay(body.validate()?),
            TerminalCommand::Enroll => LaneCommand::Enroll,
            TerminalCommand::Cancel => LaneCommand::Cancel,
            TerminalCommand::Reset => LaneCommand::Reset,
        };
        Ok(handle.command(cmd).await?)
    }
}

async fn command(handle: &LaneHandle, cmd: TerminalCommand) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cmd.run(handle).await?))
}

/// Every lane the caller may see: all of them for the admin token, its own for a lane token.
#[utoipa::path(get, path = "/api/v1/lanes", responses(
    (status = 200, description = "The lanes, sorted by id", body = Vec<LaneSnapshot>),
    (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
))]
async fn list_lanes(caller: Caller, lanes: web::Data<Lanes>) -> HttpResponse {
    let visible: Vec<LaneSnapshot> = lanes
        .all()
        .into_iter()
        .filter(|l| caller.may_act_on(l.id()))
        .map(|l| l.snapshot())
        .collect();
    HttpResponse::Ok().json(visible)
}

/// One lane: session state, customer (masked), payment, scanners, terminal.
#[utoipa::path(get, path = "/api/v1/lanes/{lane}", params(("lane" = String, Path, description = LANE, example = "1")), responses(
    (status = 200, description = "The lane now", body = LaneSnapshot),
    (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = 403, description = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = 404, description = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
))]
async fn get_lane(
    caller: Caller,
    lanes: web::Data<Lanes>,
    lane: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let handle = lane_for(&lanes, &caller, &lane)?;
    Ok(HttpResponse::Ok().json(handle.snapshot()))
}

/// A scan read by the terminal's own scanner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanBody {
    /// The complete scanned text: a customer's Vipps QR code or a product barcode (EAN-13,
    /// EAN-8, UPC-A). Anything else is answered 400 and reported as a `scan_rejected` event.
    #[schema(
        example = "https://qr.vipps.no/28/2/01/031/4791234567?v=1",
        min_length = 1,
        max_length = 4096
    )]
    pub text: String,
}

impl ScanBody {
    /// The scan text, if it is non-blank, short enough and free of control characters but tab.
    pub fn validate(self) -> Result<String, ApiError> {
        let text = self.text;
        if text.trim().is_empty() {
            return Err(ApiError::invalid("text", "the scan is empty"));
        }
        if text.chars().count() > MAX_SCAN_CHARS {
            return Err(ApiError::invalid(
                "text",
                format!("a scan has at most {MAX_SCAN_CHARS} characters"),
            ));
        }
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ApiError::invalid(
                "text",
                "the scan contains control characters",
            ));
        }
        Ok(text)
    }
}

/// The lane commands' endpoints, one line each: the OpenAPI entry, and a handler that maps HTTP
/// onto [`TerminalCommand::run`]. A command with a body names it (`with body: Type, BAD_REQUEST`).
macro_rules! lane_commands {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $path:literal, $(with $body:ident: $ty:ty, $bad:expr,)? $ok:literal => $cmd:expr;
    )+) => {$(
        $(#[doc = $doc])*
        #[utoipa::path(post, path = $path, params(("lane" = String, Path, description = LANE, example = "1")), $(request_body = $ty,)? responses(
                    (status = 200, description = $ok, body = LaneSnapshot),
                    $((status = 400, description = $bad, body = Problem, content_type = "application/problem+json"),)?
                    (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
                    (status = 404, description = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
                    (status = 409, description = CONFLICT, body = Problem, content_type = "application/problem+json"),
                    (status = 503, description = UNAVAILABLE, body = Problem, content_type = "application/problem+json"),
                ))]
        async fn $name(
            caller: Caller,
            lanes: web::Data<Lanes>,
            lane: web::Path<String>,
            $($body: Body<$ty>,)?
        ) -> Result<HttpResponse, ApiError> {
            let handle = lane_for(&lanes, &caller, &lane)?;
            command(&handle, $cmd).await
        }
    )+};
}

lane_commands! {
    /// A scan read by the terminal itself; accepted on every lane whatever its own scanners are.
    /// A customer's Vipps QR starts a checkout; a product barcode is passed on as a `scan` event.
    post_scan = "/api/v1/lanes/{lane}/scans", with body: ScanBody, BAD_REQUEST,
        "The lane after the scan" => TerminalCommand::Scan(body.0);
    /// Sends the payment request to the identified customer's phone.
    post_payment = "/api/v1/lanes/{lane}/payment", with body: PaymentBody, BAD_REQUEST,
        "The lane with the payment requested" => TerminalCommand::Pay(body.0);
    /// Starts enrollment of the identified non-member (Vipps Login from phone number).
    post_enroll = "/api/v1/lanes/{lane}/enroll", "The lane after the command" => TerminalCommand::Enroll;
    /// Cancels the checkout; a payment not yet authorised is cancelled at Vipps.
    post_cancel = "/api/v1/lanes/{lane}/cancel", "The lane after the command" => TerminalCommand::Cancel;
    /// Ends the session and returns the lane to idle (refused while a payment is in flight).
    post_reset = "/api/v1/lanes/{lane}/reset", "The lane after the command" => TerminalCommand::Reset;
}

/// One order line of a receipt; all money in minor units.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderLineBody {
    #[schema(min_length = 1, max_length = 2048, example = "Coffee 500 g")]
    pub name: String,
    /// The product id, e.g. its barcode.
    #[schema(min_length = 1, max_length = 255, example = "7038010000001")]
    pub id: String,
    #[schema(minimum = 1)]
    pub quantity: u32,
    /// Price of one unit including VAT, minor units.
    pub unit_price: u64,
    /// Total of the line including VAT, minor units.
    pub total_amount: u64,
    /// VAT included in `totalAmount`, minor units.
    pub tax_amount: u64,
    /// VAT rate in whole percent: 25, 15, 12 or 0 in Norway.
    #[schema(maximum = 100)]
    pub tax_percentage: u8,
}

/// The cashier pressed "pay".
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PaymentBody {
    /// What the customer pays, 1 to 65000000 minor units.
    pub amount: MoneyDto,
    /// Shown to the customer in Vipps; default `Purchase`.
    #[schema(example = "Groceries", min_length = 3, max_length = 100)]
    pub description: Option<String>,
    /// The receipt's lines; when given, their `totalAmount`s add up to `amount.value`.
    #[serde(default)]
    pub order_lines: Vec<OrderLineBody>,
    /// The POS receipt number; needs `orderLines`.
    #[schema(example = "R-1001", pattern = "^[A-Za-z0-9-]{1,30}$")]
    pub receipt_number: Option<String>,
}

/// Turns money from the API into `Amount`, naming `field` when it is wrong. Zero is refused: no
/// payment or refund is of nothing.
pub fn amount(dto: MoneyDto, field: &str) -> Result<Amount, ApiError> {
    let currency = dto
        .currency
        .parse()
        .map_err(|e: crate::domain::InvalidValue| {
            ApiError::invalid(format!("{field}.currency"), e.reason)
        })?;
    if dto.value == 0 {
        return Err(ApiError::invalid(
            format!("{field}.value"),
            "the amount must be above 0",
        ));
    }
    if dto.value > MAX_AMOUNT_MINOR_UNITS {
        return Err(ApiError::invalid(
            format!("{field}.value"),
            format!("at most {MAX_AMOUNT_MINOR_UNITS} minor units (Vipps' limit)"),
        ));
    }
    Ok(Amount::new(currency, dto.value))
}

impl PaymentBody {
    /// The payment request, once amount, description, receipt number and order lines are valid.
    pub fn validate(self) -> Result<PayRequest, ApiError> {
        let pay = PayRequest {
            amount: amount(self.amount, "amount")?,
            description: self.description.unwrap_or_else(|| "Purchase".to_owned()),
            order_lines: (!self.order_lines.is_empty()).then(|| {
                self.order_lines
                    .into_iter()
                    .map(|l| OrderLine {
                        name: l.name,
                        id: l.id,
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        total: l.total_amount,
                        vat_percent: l.tax_percentage,
                        vat_amount: l.tax_amount,
                    })
                    .collect()
            }),
            receipt_number: self.receipt_number,
        };
        // The rules are the session's; this layer only names the field for the terminal.
        pay.validate()
            .map_err(|p| ApiError::invalid(p.field, p.reason))?;
        Ok(pay)
    }
}

/// The lane's live events as a WebSocket: a `snapshot` event on connect, then every change, each
/// with a `seq` one higher than the last. The terminal may send its commands on it too, as JSON
/// text `{"id", "command", "body"}`, each answered `{"kind": "answer", "id", "status", "body"}`
/// as HTTP would answer it (see docs/terminal-api.md). Browsers may pass the token as
/// `?access_token=` (this route only: every other answers 401 to a token in the URL).
#[utoipa::path(get, path = "/api/v1/lanes/{lane}/events", params(
    ("lane" = String, Path, description = LANE, example = "1"),
    ("access_token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers (browsers)"),
), responses(
    (status = 101, description = "Switching to a WebSocket of LaneEvent JSON text messages, and answers to the commands the terminal sends on it"),
    (status = 400, description = "Not a WebSocket upgrade request", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = 403, description = FORBIDDEN, body = Problem, content_type = "application/problem+json"),
    (status = 404, description = NOT_FOUND, body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "The lane has `api.max_websockets_per_lane` live WebSockets already", body = Problem, content_type = "application/problem+json"),
))]
async fn lane_events(
    SocketCaller(caller): SocketCaller,
    lanes: web::Data<Lanes>,
    state: web::Data<AppState>,
    limits: web::Data<HttpLimits>,
    lane: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let handle = lane_for(&lanes, &caller, &lane)?;
    let limit = limits.websockets_per_lane;
    let socket = handle.open_socket(limit).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "lane {lane} already has {limit} live WebSockets (api.max_websockets_per_lane); \
             close one or try again later"
        ))
    })?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::InvalidBody {
            field: None,
            detail: format!("not a WebSocket upgrade: {e}"),
        })?;
    // Counted before the snapshot is taken, so the snapshot already shows the terminal.
    let socket = socket.connected();
    actix_web::rt::spawn(super::socket::serve(
        handle,
        socket,
        session,
        stream,
        state.heartbeat,
        state.shutdown.subscribe(),
    ));
    Ok(response)
}

/// A refund from the back office.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// How much to give back: at most what was captured and not yet refunded.
    pub amount: MoneyDto,
}

/// A payment after a refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundAnswer {
    #[schema(value_type = String, example = "lh-1-369fe628389f4b028fc35b0118099a5f")]
    pub reference: PaymentReference,
    /// The ePayment state; a captured payment stays `AUTHORIZED` after refunds.
    #[schema(value_type = String, example = "AUTHORIZED")]
    pub state: PaymentState,
    pub aggregate: AggregateView,
}

/// What happened to a payment's money so far, in minor units.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregateView {
    #[schema(value_type = MoneyDto)]
    pub authorized_amount: Amount,
    #[schema(value_type = MoneyDto)]
    pub cancelled_amount: Amount,
    #[schema(value_type = MoneyDto)]
    pub captured_amount: Amount,
    #[schema(value_type = MoneyDto)]
    pub refunded_amount: Amount,
}

/// Refunds (part of) a captured payment. Admin token only.
#[utoipa::path(post, path = "/api/v1/payments/{reference}/refund", params(("reference" = String, Path, description = "The payment reference from the lane's `session.payment.reference`", example = "lh-1-369fe628389f4b028fc35b0118099a5f", pattern = "^[a-zA-Z0-9-]{8,64}$")), request_body = RefundBody, responses(
    (status = 200, description = "The payment after the refund", body = RefundAnswer),
    (status = 400, description = BAD_REQUEST, body = Problem, content_type = "application/problem+json"),
    (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not the admin token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Vipps refused the refund (e.g. more than was captured and not yet refunded)", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many changes of this payment (or calls to Vipps) right now; try again in a minute", body = Problem, content_type = "application/problem+json"),
    (status = 502, description = "Vipps answered something lanehub could not understand; the refund may or may not have happened", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Vipps or the store cannot be reached now; try again", body = Problem, content_type = "application/problem+json"),
))]
async fn post_refund(
    caller: Caller,
    reference: web::Path<String>,
    state: web::Data<AppState>,
    body: Body<RefundBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let reference: PaymentReference = reference
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no payment `{reference}`")))?;
    let amount = amount(body.0.amount, "amount")?;
    let result = crate::refund::refund(&state.store, &state.vipps, &reference, amount)
        .await
        .map_err(|e| match e {
            RefundError::UnknownPayment => ApiError::NotFound(format!("no payment `{reference}`")),
            RefundError::OtherCurrency { .. } => {
                ApiError::invalid("amount.currency", e.to_string())
            }
            RefundError::StoreUnavailable(_) | RefundError::VippsUnavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
            RefundError::TooOften(_) => ApiError::TooManyRequests(e.to_string()),
            RefundError::Refused(detail) => ApiError::NotAllowed(detail),
            RefundError::OutcomeUnknown(detail) => ApiError::BadGateway(detail),
        })?;
    let a = result.aggregate;
    Ok(HttpResponse::Ok().json(RefundAnswer {
        reference,
        state: result.state,
        aggregate: AggregateView {
            authorized_amount: a.authorized_amount,
            cancelled_amount: a.cancelled_amount,
            captured_amount: a.captured_amount,
            refunded_amount: a.refunded_amount,
        },
    }))
}

/// A test hook answers 404 unless `api.test_hooks` is on, and takes the admin token only.
fn test_hook(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if !state.test_hooks {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    caller.require_admin()
}

/// Feeds text to the lane's simulated scanner, as a hardware scanner would (nobody gets an
/// answer; the terminal sees events). Admin token, and only with `api.test_hooks`.
async fn post_test_scanner(
    caller: Caller,
    lanes: web::Data<Lanes>,
    state: web::Data<AppState>,
    lane: web::Path<String>,
    body: Body<ScanBody>,
) -> Result<HttpResponse, ApiError> {
    test_hook(&state, &caller)?;
    let handle = lane_for(&lanes, &caller, &lane)?;
    if handle.inject_scan(body.0.text).await {
        Ok(HttpResponse::Accepted().finish())
    } else {
        Err(ApiError::Unavailable(format!(
            "lane {lane} is down or has no simulated scanner"
        )))
    }
}

/// `{"refuseWrites": bool}` for `POST /api/v1/test/store`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestStoreBody {
    refuse_writes: bool,
}

/// Makes every store write fail as on a full disk (or stops doing so), so store faults can be
/// tested end to end. Admin token, and only with `api.test_hooks`.
async fn post_test_store(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<TestStoreBody>,
) -> Result<HttpResponse, ApiError> {
    test_hook(&state, &caller)?;
    state.store.refuse_writes(body.0.refuse_writes);
    tracing::warn!(
        refuse_writes = body.0.refuse_writes,
        "test hook: store writes"
    );
    // Learn the new state at once rather than at the next probe.
    let _ = state.store.probe_write().await;
    Ok(HttpResponse::NoContent().finish())
}

/// Makes a lane panic so supervision can be tested. Admin token, and only with `api.test_hooks`.
async fn post_test_panic(
    caller: Caller,
    lanes: web::Data<Lanes>,
    state: web::Data<AppState>,
    lane: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    test_hook(&state, &caller)?;
    let handle = lane_for(&lanes, &caller, &lane)?;
    if handle.inject_panic() {
        Ok(HttpResponse::Accepted().finish())
    } else {
        Err(ApiError::Unavailable(format!("lane {lane} is down")))
    }
}
