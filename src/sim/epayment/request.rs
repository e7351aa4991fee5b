//! Reading and validating ePayment request bodies into the model's types. Every refusal names the
//! offending field (`extraDetails[{name, reason}]`) and, where the live API numbers the error,
//! carries its `ErrorCode`. Nothing here panics on any input.
//!
//! `CreatePaymentRequest` follows the spec (unknown fields are ignored, as the live API does);
//! `receipt` follows the order-management `Receipt` schema it refers to.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::payment::{CustomerId, CustomerInteraction, NewPayment, PaymentMethodType, UserFlow};
use crate::domain::{Amount, Currency, Msisdn, PaymentReference};
use crate::sim::problem::Problem;

/// The largest request body the simulator reads.
pub const MAX_BODY: usize = 64 * 1024;
/// The spec's ceiling for any amount, in minor units.
pub const MAX_AMOUNT: u64 = 65_000_000;

/// A refused request: which field, why, and the live API's title and code for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
    pub title: &'static str,
    pub code: Option<u32>,
    pub status: StatusCode,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
            title: "Bad Request",
            code: None,
            status: StatusCode::BAD_REQUEST,
        }
    }

    pub fn coded(
        field: impl Into<String>,
        reason: impl Into<String>,
        title: &'static str,
        code: u32,
    ) -> Self {
        Invalid {
            title,
            code: Some(code),
            ..Invalid::new(field, reason)
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl From<Invalid> for Problem {
    fn from(i: Invalid) -> Problem {
        let detail = match i.code {
            Some(_) => i.reason.clone(),
            None => "One or more validation errors occurred.".to_owned(),
        };
        Problem::epayment(
            i.status,
            i.title,
            &detail,
            &[(i.field.as_str(), i.reason.as_str())],
            i.code,
        )
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes with a problem.
pub async fn read_body(payload: web::Payload) -> Result<web::Bytes, Problem> {
    match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(Invalid::new("body", format!("The body could not be read: {e}")).into()),
        Err(_) => Err(
            Invalid::new("body", format!("The body is larger than {MAX_BODY} bytes."))
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .into(),
        ),
    }
}

/// Parses a JSON body. An empty body is `None`, so callers decide whether one is required.
pub fn parse_json(bytes: &[u8]) -> Result<Option<Value>, Invalid> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| Invalid::new("body", format!("The body is not valid JSON: {e}.")))
}

/// Deserialises `v` into `T`, naming the field at fault (with `prefix` in front) when it fails.
pub fn typed<T: DeserializeOwned>(v: Value, prefix: &str) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        Invalid::new(field_of(prefix, &path, &message), message)
    })
}

/// Joins `prefix`, the path serde reached and, for a missing or unknown field, its name.
fn field_of(prefix: &str, path: &str, message: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    if path != "." && !path.is_empty() {
        parts.push(path);
    }
    // For a missing field serde stops at the parent; for an unknown one the path names it.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    if let Some(name) = named
        && parts.last().and_then(|last| last.rsplit('.').next()) != Some(name)
    {
        parts.push(name);
    }
    if parts.is_empty() {
        "body".to_owned()
    } else {
        parts.join(".")
    }
}

/// For fields the schema marks required but nullable: `None` when absent, `Some(None)` for null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, Invalid> {
    v.ok_or_else(|| Invalid::new(field, format!("The {field} field is required.")))
}

fn missing_parameter(field: &str, reason: &str) -> Invalid {
    Invalid::coded(field, reason, "Missing required parameter", 4140)
}

/// Checks an amount: within the spec's range, and for a create at least the market minimum.
pub fn check_amount(amount: Amount, field: &str, minimum: bool) -> Result<Amount, Invalid> {
    if amount.value > MAX_AMOUNT {
        return Err(Invalid::coded(
            format!("{field}.value"),
            format!("The amount must be at most {MAX_AMOUNT} minor units."),
            "Invalid amount",
            4040,
        ));
    }
    let least = match (minimum, amount.currency) {
        (true, Currency::Nok) => 100,
        _ => 1,
    };
    if amount.value < least {
        return Err(Invalid::coded(
            format!("{field}.value"),
            format!(
                "The amount is too small: at least {least} minor units of {}.",
                amount.currency
            ),
            "Amount too small",
            6010,
        ));
    }
    Ok(amount)
}

/// Amount type errors carry the live API's "Invalid amount" code.
fn amount_error(mut i: Invalid) -> Invalid {
    if i.field.ends_with("mount.value") || i.field.ends_with("mount") {
        i.title = "Invalid amount";
        i.code = Some(4040);
        i.reason = format!(
            "{} Amounts are integers in minor units, like øre or cent.",
            i.reason
        );
    }
    i
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCustomer {
    phone_number: Option<String>,
    personal_qr: Option<String>,
    customer_token: Option<String>,
}

#[derive(Deserialize)]
struct RawPaymentMethod {
    #[serde(rename = "type")]
    kind: Option<PaymentMethodType>,
}

#[derive(Deserialize)]
struct RawProfile {
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawQrFormat {
    format: Option<String>,
    size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndustryData {
    airline_data: Option<AirlineData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AirlineData {
    agency_invoice_number: String,
    airline_code: String,
    airline_designator_code: String,
    passenger_name: String,
    ticket_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCreate {
    amount: Option<Amount>,
    customer: Option<RawCustomer>,
    customer_interaction: Option<CustomerInteraction>,
    industry_data: Option<RawIndustryData>,
    payment_method: Option<RawPaymentMethod>,
    profile: Option<RawProfile>,
    reference: Option<String>,
    return_url: Option<String>,
    user_flow: Option<UserFlow>,
    expires_at: Option<String>,
    qr_format: Option<RawQrFormat>,
    payment_description: Option<String>,
    receipt: Option<Value>,
    metadata: Option<BTreeMap<String, String>>,
    receipt_url: Option<String>,
}

/// The scopes `profile.scope` may ask for.
const SCOPES: [&str; 6] = [
    "name",
    "address",
    "email",
    "phoneNumber",
    "birthDate",
    "nin",
];

/// Validates a `CreatePaymentRequest` received at `now`.
pub fn create_payment(body: Option<Value>, now: DateTime<Utc>) -> Result<NewPayment, Invalid> {
    let body =
        body.ok_or_else(|| Invalid::new("body", "A CreatePaymentRequest body is required."))?;
    if !body.is_object() {
        return Err(Invalid::new("body", "The body must be a JSON object."));
    }
    let raw: RawCreate = typed(body, "").map_err(amount_error)?;

    let reference = required(raw.reference, "reference")?;
    let reference: PaymentReference = reference
        .parse()
        .map_err(|e: crate::domain::InvalidValue| Invalid::new("reference", e.reason))?;
    let amount = check_amount(required(raw.amount, "amount")?, "amount", true)?;
    let method = required(raw.payment_method, "paymentMethod")?;
    let payment_method = required(method.kind, "paymentMethod.type")?;
    let user_flow = required(raw.user_flow, "userFlow")?;
    let customer = raw.customer.map(customer).transpose()?;

    if user_flow == UserFlow::PushMessage && customer.is_none() {
        return Err(missing_parameter(
            "customer",
            "userFlow PUSH_MESSAGE requires a customer (phoneNumber, personalQr or customerToken).",
        ));
    }
    if user_flow == UserFlow::WebRedirect && raw.return_url.is_none() {
        return Err(missing_parameter(
            "returnUrl",
            "userFlow WEB_REDIRECT requires a returnUrl.",
        ));
    }
    if payment_method == PaymentMethodType::Card && user_flow != UserFlow::WebRedirect {
        return Err(Invalid::new(
            "paymentMethod.type",
            "paymentMethod CARD can only be combined with userFlow WEB_REDIRECT.",
        ));
    }
    for (field, url) in [
        ("returnUrl", &raw.return_url),
        ("receiptUrl", &raw.receipt_url),
    ] {
        if let Some(url) = url {
            check_app_url(field, url)?;
        }
    }
    if let Some(d) = &raw.payment_description {
        let n = d.chars().count();
        if !(3..=100).contains(&n) {
            return Err(Invalid::new(
                "paymentDescription",
                format!("The paymentDescription must be 3 to 100 characters long, not {n}."),
            ));
        }
    }
    if let Some(m) = &raw.metadata {
        check_metadata(m)?;
    }
    let scope = raw.profile.and_then(|p| p.scope);
    if let Some(s) = &scope {
        check_scope(s)?;
    }
    let expires_at = raw
        .expires_at
        .map(|raw_at| expires_at(&raw_at, user_flow, raw.receipt.is_some(), now))
        .transpose()?;
    let qr_format = match raw.qr_format {
        None => None,
        Some(_) if user_flow != UserFlow::Qr => {
            return Err(Invalid::new(
                "qrFormat",
                "qrFormat can only be used with userFlow QR.",
            ));
        }
        Some(q) => Some(qr_format(q)?),
    };
    if let Some(receipt) = &raw.receipt {
        check_receipt(receipt.clone(), amount.currency)?;
    }
    if let Some(airline) = raw.industry_data.and_then(|d| d.airline_data) {
        check_airline(&airline)?;
    }
    Ok(NewPayment {
        reference,
        amount,
        payment_method,
        user_flow,
        customer,
        customer_interaction: raw.customer_interaction.unwrap_or_default(),
        payment_description: raw.payment_description,
        receipt: raw.receipt,
        metadata: raw.metadata,
        scope,
        return_url: raw.return_url,
        expires_at,
        qr_format,
    })
}

fn customer(c: RawCustomer) -> Result<CustomerId, Invalid> {
    let given = [&c.phone_number, &c.personal_qr, &c.customer_token]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(Invalid::new(
            "customer",
            format!(
                "Exactly one of customer.phoneNumber, customer.personalQr and customer.customerToken is required, not {given}."
            ),
        ));
    }
    if let Some(phone) = c.phone_number {
        let digits = (10..=15).contains(&phone.len()) && phone.bytes().all(|b| b.is_ascii_digit());
        let parsed = phone.parse::<Msisdn>().ok().filter(|_| digits);
        return parsed.map(CustomerId::PhoneNumber).ok_or_else(|| {
            Invalid::coded(
                "customer.phoneNumber",
                "The phone number must be an MSISDN: 10 to 15 digits with the country code and no prefix, like 4791234567.",
                "Invalid phone number",
                4070,
            )
        });
    }
    if let Some(qr) = c.personal_qr {
        if !(5..=255).contains(&qr.chars().count()) {
            return Err(Invalid::coded(
                "customer.personalQr",
                "The personalQr must be the complete content of the scanned QR code, 5 to 255 characters.",
                "Invalid PersonalQr",
                4060,
            ));
        }
        return Ok(CustomerId::PersonalQr(qr));
    }
    match c.customer_token {
        Some(t) if !t.is_empty() => Ok(CustomerId::CustomerToken(t)),
        _ => Err(Invalid::coded(
            "customer.customerToken",
            "The customerToken must not be empty.",
            "Invalid CustomerToken",
            4050,
        )),
    }
}

/// `returnUrl` and `receiptUrl`: `https://` or a custom app scheme, never plain `http://`.
fn check_app_url(field: &str, url: &str) -> Result<(), Invalid> {
    let bad = |reason: &str| Invalid::coded(field, reason, "Invalid URL", 4090);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| bad(&format!("The {field} is not a valid URL: {e}.")))?;
    if parsed.scheme() == "http" {
        return Err(bad(&format!(
            "The {field} must use https:// or a custom URL scheme."
        )));
    }
    Ok(())
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if m.len() > 5 {
        return Err(Invalid::coded(
            "metadata",
            format!("At most 5 metadata entries are allowed, not {}.", m.len()),
            "Metadata capacity exceeded",
            4100,
        ));
    }
    for (k, v) in m {
        for (what, text, max, title, code) in [
            ("key", k, 100, "Metadata key length exceeded", 4120),
            ("value", v, 500, "Metadata value length exceeded", 4130),
        ] {
            if text.chars().count() > max {
                return Err(Invalid::coded(
                    format!("metadata.{k}"),
                    format!("A metadata {what} is at most {max} characters."),
                    title,
                    code,
                ));
            }
        }
    }
    Ok(())
}

fn check_scope(scope: &str) -> Result<(), Invalid> {
    let words: Vec<&str> = scope.split(' ').filter(|w| !w.is_empty()).collect();
    let unknown = words.iter().find(|w| !SCOPES.contains(w));
    if words.is_empty() || unknown.is_some() {
        return Err(Invalid::coded(
            "profile.scope",
            format!(
                "The scope must be space-separated words from: {}{}.",
                SCOPES.join(", "),
                unknown
                    .map(|w| format!("; `{w}` is not one"))
                    .unwrap_or_default()
            ),
            "Invalid scope",
            4080,
        ));
    }
    Ok(())
}

fn expires_at(
    raw: &str,
    flow: UserFlow,
    has_receipt: bool,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Invalid> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| Invalid::new("expiresAt", format!("The expiresAt must be RFC 3339: {e}.")))?
        .with_timezone(&Utc);
    if !matches!(flow, UserFlow::PushMessage | UserFlow::Qr) {
        return Err(Invalid::new(
            "expiresAt",
            "expiresAt can only be combined with userFlow PUSH_MESSAGE or QR.",
        ));
    }
    if !has_receipt {
        return Err(Invalid::coded(
            "receipt",
            "A payment with expiresAt requires a receipt.",
            "Long living payments require a receipt",
            6130,
        ));
    }
    if at <= now + chrono::Duration::minutes(10) {
        return Err(Invalid::coded(
            "expiresAt",
            "The expiresAt must be more than 10 minutes in the future.",
            "Expiration date is too soon",
            6120,
        ));
    }
    if at >= now + chrono::Duration::days(28) {
        return Err(Invalid::coded(
            "expiresAt",
            "The expiresAt must be less than 28 days in the future.",
            "Expiration date is too late",
            6110,
        ));
    }
    Ok(at)
}

fn qr_format(q: RawQrFormat) -> Result<String, Invalid> {
    const FORMATS: [&str; 3] = ["TEXT/TARGETURL", "IMAGE/SVG+XML", "IMAGE/PNG"];
    let format = required(q.format, "qrFormat.format")?;
    if !FORMATS.contains(&format.as_str()) {
        return Err(Invalid::new(
            "qrFormat.format",
            format!("The format must be one of {}.", FORMATS.join(", ")),
        ));
    }
    if let Some(size) = q.size
        && !(100..=2000).contains(&size)
    {
        return Err(Invalid::new(
            "qrFormat.size",
            "The size must be 100 to 2000 pixels.",
        ));
    }
    Ok(format)
}

fn check_airline(a: &AirlineData) -> Result<(), Invalid> {
    let f = "industryData.airlineData";
    let checks: [(&str, &str, usize, usize); 5] = [
        ("agencyInvoiceNumber", &a.agency_invoice_number, 1, 6),
        ("airlineCode", &a.airline_code, 3, 3),
        ("airlineDesignatorCode", &a.airline_designator_code, 2, 2),
        ("passengerName", &a.passenger_name, 1, 49),
        (
            "ticketNumber",
            a.ticket_number.as_deref().unwrap_or("-"),
            1,
            150,
        ),
    ];
    for (name, value, min, max) in checks {
        let n = value.chars().count();
        if !(min..=max).contains(&n) {
            return Err(Invalid::new(
                format!("{f}.{name}"),
                format!("The {name} must be {min} to {max} characters long."),
            ));
        }
    }
    Ok(())
}

// The order-management API's `Receipt` schema (2.3.24).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    order_lines: Vec<OrderLine>,
    bottom_line: BottomLine,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Fields are read by serde to check their types.
struct OrderLine {
    name: String,
    id: String,
    total_amount: i64,
    total_amount_excluding_tax: i64,
    total_tax_amount: i64,
    /// Deprecated by `tax_rate`; either is taken.
    tax_percentage: Option<i64>,
    /// Percent × 100.
    tax_rate: Option<i64>,
    unit_info: Option<UnitInfo>,
    discount: Option<u64>,
    product_url: Option<String>,
    is_return: Option<bool>,
    is_shipping: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct UnitInfo {
    #[serde(default, deserialize_with = "present")]
    unit_price: Option<Option<u64>>,
    quantity: String,
    quantity_unit: Option<QuantityUnit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum QuantityUnit {
    Pcs,
    Kg,
    Km,
    Minute,
    Litre,
    Kwh,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct BottomLine {
    #[serde(default, deserialize_with = "present")]
    currency: Option<Option<Currency>>,
    tip_amount: Option<u64>,
    gift_card_amount: Option<u64>,
    pos_id: Option<String>,
    total_amount: Option<i64>,
    total_tax: Option<u64>,
    total_discount: Option<u64>,
    shipping_amount: Option<u64>,
    shipping_info: Option<ShippingInfo>,
    payment_sources: Option<PaymentSources>,
    barcode: Option<Barcode>,
    receipt_number: Option<String>,
    terminal_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ShippingInfo {
    #[serde(default, deserialize_with = "present")]
    amount: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    amount_excluding_tax: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    tax_amount: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    tax_percentage: Option<Option<u64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PaymentSources {
    gift_card: Option<i64>,
    card: Option<i64>,
    voucher: Option<i64>,
    cash: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Barcode {
    #[serde(default, deserialize_with = "present")]
    format: Option<Option<BarcodeFormat>>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<String>>,
}

#[derive(Deserialize)]
enum BarcodeFormat {
    #[serde(rename = "EAN-13")]
    Ean13,
    #[serde(rename = "CODE 39")]
    Code39,
    #[serde(rename = "CODE 128")]
    Code128,
}

fn check_receipt(v: Value, currency: Currency) -> Result<(), Invalid> {
    let r: Receipt = typed(v, "receipt")?;
    if r.order_lines.is_empty() {
        return Err(Invalid::new(
            "receipt.orderLines",
            "A receipt needs at least one order line.",
        ));
    }
    for (i, line) in r.order_lines.iter().enumerate() {
        let at = |f: &str| format!("receipt.orderLines[{i}].{f}");
        match (line.tax_rate, line.tax_percentage) {
            (None, None) => {
                return Err(Invalid::new(
                    at("taxRate"),
                    "An order line needs taxRate (or the deprecated taxPercentage).",
                ));
            }
            (Some(rate), _) if !(0..=10_000).contains(&rate) => {
                return Err(Invalid::new(
                    at("taxRate"),
                    "The taxRate must be 0 to 10000 (percent multiplied by 100).",
                ));
            }
            (_, Some(percent)) if !(0..=100).contains(&percent) => {
                return Err(Invalid::new(
                    at("taxPercentage"),
                    "The taxPercentage must be 0 to 100.",
                ));
            }
            (Some(rate), Some(percent)) if rate != percent * 100 => {
                return Err(Invalid::new(
                    at("taxRate"),
                    "taxRate and taxPercentage disagree; send taxRate alone.",
                ));
            }
            _ => {}
        }
        if let Some(u) = &line.unit_info {
            if u.unit_price.is_none() {
                return Err(Invalid::new(
                    at("unitInfo.unitPrice"),
                    "The unitPrice field is required (it may be null).",
                ));
            }
            if !valid_quantity(&u.quantity) {
                return Err(Invalid::new(
                    at("unitInfo.quantity"),
                    "The quantity must match ^\\d+([\\.]\\d{1,8})?$ and be at most 10 characters, like \"2\" or \"0.822\".",
                ));
            }
        }
    }
    let b = &r.bottom_line;
    match b.currency {
        None => {
            return Err(Invalid::new(
                "receipt.bottomLine.currency",
                "The currency field is required.",
            ));
        }
        Some(Some(c)) if c != currency => {
            return Err(Invalid::new(
                "receipt.bottomLine.currency",
                format!("The receipt's currency must be the payment's, {currency}."),
            ));
        }
        Some(_) => {}
    }
    if let Some(s) = &b.shipping_info {
        let fields = [
            ("amount", s.amount),
            ("amountExcludingTax", s.amount_excluding_tax),
            ("taxAmount", s.tax_amount),
            ("taxPercentage", s.tax_percentage),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| v.is_none()) {
            return Err(Invalid::new(
                format!("receipt.bottomLine.shippingInfo.{name}"),
                format!("The {name} field is required (it may be null)."),
            ));
        }
        if s.tax_percentage.flatten().is_some_and(|p| p > 100) {
            return Err(Invalid::new(
                "receipt.bottomLine.shippingInfo.taxPercentage",
                "The taxPercentage must be 0 to 100.",
            ));
        }
    }
    if let Some(bc) = &b.barcode {
        for (name, missing) in [("format", bc.format.is_none()), ("data", bc.data.is_none())] {
            if missing {
                return Err(Invalid::new(
                    format!("receipt.bottomLine.barcode.{name}"),
                    format!("The {name} field is required (it may be null)."),
                ));
            }
        }
    }
    Ok(())
}

fn valid_quantity(q: &str) -> bool {
    if q.len() > 10 {
        return false;
    }
    let (int, frac) = match q.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (q, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(|f| digits(f) && f.len() <= 8)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModification {
    modification_amount: Option<Amount>,
}

/// Validates a capture or refund body: `{"modificationAmount": {currency, value}}`.
pub fn modification(body: Option<Value>) -> Result<Amount, Invalid> {
    let body = body.ok_or_else(|| {
        Invalid::new(
            "modificationAmount",
            "The modificationAmount field is required.",
        )
    })?;
    let raw: RawModification = typed(body, "").map_err(amount_error)?;
    let amount = required(raw.modification_amount, "modificationAmount")?;
    check_amount(amount, "modificationAmount", false).map_err(|mut i| {
        // Below the minimum here means zero: that is an invalid amount, not a market minimum.
        if i.code == Some(6010) {
            i = Invalid::coded(
                i.field,
                "The amount must be greater than 0.",
                "Invalid amount",
                4040,
            );
        }
        i
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCancel {
    cancel_transaction_only: Option<bool>,
}

/// Validates an optional cancel body; returns `cancelTransactionOnly`.
pub fn cancel(body: Option<Value>) -> Result<bool, Invalid> {
    match body {
        None => Ok(false),
        Some(v) => {
            let raw: RawCancel = typed(v, "")?;
            Ok(raw.cancel_transaction_only.unwrap_or(false))
        }
    }
}

#[derive(Deserialize)]
struct RawForceApprove {
    customer: Option<RawCustomer>,
    token: Option<String>,
}

/// A validated force-approve body.
#[derive(Debug, Default)]
pub struct ForceApprove {
    pub customer: Option<CustomerId>,
    pub token: Option<String>,
}

/// Validates an optional `ForceApprove` body.
pub fn force_approve(body: Option<Value>) -> Result<ForceApprove, Invalid> {
    let Some(v) = body else {
        return Ok(ForceApprove::default());
    };
    let raw: RawForceApprove = typed(v, "")?;
    Ok(ForceApprove {
        customer: raw.customer.map(customer).transpose()?,
        token: raw.token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "amount": {"currency": "NOK", "value": 1000},
            "paymentMethod": {"type": "WALLET"},
            "customer": {"phoneNumber": "4791234567"},
            "reference": "ref-12345678",
            "userFlow": "PUSH_MESSAGE",
            "customerInteraction": "CUSTOMER_PRESENT",
            "paymentDescription": "Groceries",
            "receipt": {
                "orderLines": [{
                    "name": "Milk", "id": "7038010009457", "totalAmount": 1000,
                    "totalAmountExcludingTax": 870, "totalTaxAmount": 130, "taxPercentage": 15,
                    "unitInfo": {"unitPrice": 1000, "quantity": "1", "quantityUnit": "PCS"}
                }],
                "bottomLine": {"currency": "NOK", "posId": "lane-1", "receiptNumber": "42"}
            }
        })
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut v = base();
        let mut node = &mut v;
        for p in &path[..path.len() - 1] {
            node = match p.parse::<usize>() {
                Ok(i) => &mut node[i],
                Err(_) => &mut node[*p],
            };
        }
        let last = path[path.len() - 1];
        if value.is_null() {
            node.as_object_mut().unwrap().remove(last);
        } else {
            node[last] = value;
        }
        v
    }

    #[test]
    fn an_order_line_takes_tax_rate_or_the_deprecated_tax_percentage() {
        let mut by_rate = with(
            &["receipt", "orderLines", "0", "taxPercentage"],
            Value::Null,
        );
        by_rate["receipt"]["orderLines"][0]["taxRate"] = json!(1500);
        assert!(create_payment(Some(by_rate), Utc::now()).is_ok());
        assert!(create_payment(Some(base()), Utc::now()).is_ok());
        let neither = with(
            &["receipt", "orderLines", "0", "taxPercentage"],
            Value::Null,
        );
        assert_eq!(refused(neither).field, "receipt.orderLines[0].taxRate");
    }

    fn refused(body: Value) -> Invalid {
        create_payment(Some(body), Utc::now()).unwrap_err()
    }

    #[test]
    fn accepts_the_lane_request() {
        let p = create_payment(Some(base()), Utc::now()).unwrap();
        assert_eq!(p.amount, Amount::nok(1000));
        assert_eq!(p.customer_interaction, CustomerInteraction::CustomerPresent);
        assert!(matches!(p.customer, Some(CustomerId::PhoneNumber(_))));
    }

    #[test]
    fn refusals_name_the_field_and_code() {
        let cases: Vec<(Value, &str, Option<u32>)> = vec![
            (with(&["reference"], json!("short")), "reference", None),
            (with(&["reference"], Value::Null), "reference", None),
            (
                with(&["reference"], json!("a".repeat(65))),
                "reference",
                None,
            ),
            (
                with(&["amount", "value"], json!(10.5)),
                "amount.value",
                Some(4040),
            ),
            (
                with(&["amount", "value"], json!(-1)),
                "amount.value",
                Some(4040),
            ),
            (
                with(&["amount", "value"], json!(65_000_001)),
                "amount.value",
                Some(4040),
            ),
            (
                with(&["amount", "value"], json!(99)),
                "amount.value",
                Some(6010),
            ),
            (
                with(&["amount", "currency"], json!("SEK")),
                "amount.currency",
                None,
            ),
            (
                with(&["amount", "value"], Value::Null),
                "amount.value",
                Some(4040),
            ),
            (with(&["paymentMethod"], Value::Null), "paymentMethod", None),
            (
                with(&["paymentMethod", "type"], json!("CASH")),
                "paymentMethod.type",
                None,
            ),
            (
                with(&["paymentMethod", "type"], json!("CARD")),
                "paymentMethod.type",
                None,
            ),
            (with(&["userFlow"], json!("SMOKE_SIGNAL")), "userFlow", None),
            (with(&["customer"], Value::Null), "customer", Some(4140)),
            (with(&["customer"], json!({})), "customer", None),
            (
                with(
                    &["customer"],
                    json!({"phoneNumber": "4791234567", "customerToken": "x"}),
                ),
                "customer",
                None,
            ),
            (
                with(&["customer", "phoneNumber"], json!("+4791234567")),
                "customer.phoneNumber",
                Some(4070),
            ),
            (
                with(&["customer", "phoneNumber"], json!("12345")),
                "customer.phoneNumber",
                Some(4070),
            ),
            (
                with(&["customer"], json!({"personalQr": "abc"})),
                "customer.personalQr",
                Some(4060),
            ),
            (
                with(&["customerInteraction"], json!("MAYBE")),
                "customerInteraction",
                None,
            ),
            (
                with(&["paymentDescription"], json!("ab")),
                "paymentDescription",
                None,
            ),
            (
                with(&["paymentDescription"], json!("x".repeat(101))),
                "paymentDescription",
                None,
            ),
            (
                with(&["userFlow"], json!("WEB_REDIRECT")),
                "returnUrl",
                Some(4140),
            ),
            (
                with(&["returnUrl"], json!("http://example.com")),
                "returnUrl",
                Some(4090),
            ),
            (
                with(&["profile"], json!({"scope": "name shoeSize"})),
                "profile.scope",
                Some(4080),
            ),
            (
                with(
                    &["metadata"],
                    json!({"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}),
                ),
                "metadata",
                Some(4100),
            ),
            (with(&["metadata"], json!({"a": 1})), "metadata.a", None),
            (
                with(&["qrFormat"], json!({"format": "IMAGE/PNG"})),
                "qrFormat",
                None,
            ),
            (with(&["expiresAt"], json!("tomorrow")), "expiresAt", None),
            (
                with(&["receipt", "orderLines"], json!([])),
                "receipt.orderLines",
                None,
            ),
            (
                with(&["receipt", "orderLines", "0", "name"], Value::Null),
                "receipt.orderLines[0].name",
                None,
            ),
            (
                with(&["receipt", "orderLines", "0", "taxPercentage"], json!(101)),
                "receipt.orderLines[0].taxPercentage",
                None,
            ),
            (
                with(&["receipt", "orderLines", "0", "taxRate"], json!(10_001)),
                "receipt.orderLines[0].taxRate",
                None,
            ),
            (
                with(&["receipt", "orderLines", "0", "taxRate"], json!(2500)),
                "receipt.orderLines[0].taxRate",
                None,
            ),
            (
                with(&["receipt", "orderLines", "0", "totalAmount"], json!("10")),
                "receipt.orderLines[0].totalAmount",
                None,
            ),
            (
                with(
                    &["receipt", "orderLines", "0", "unitInfo", "quantity"],
                    json!("1,5"),
                ),
                "receipt.orderLines[0].unitInfo.quantity",
                None,
            ),
            (
                with(
                    &["receipt", "orderLines", "0", "unitInfo", "unitPrice"],
                    Value::Null,
                ),
                "receipt.orderLines[0].unitInfo.unitPrice",
                None,
            ),
            (
                with(&["receipt", "bottomLine", "currency"], Value::Null),
                "receipt.bottomLine.currency",
                None,
            ),
            (
                with(&["receipt", "bottomLine", "currency"], json!("EUR")),
                "receipt.bottomLine.currency",
                None,
            ),
            (
                with(
                    &["receipt", "bottomLine", "barcode"],
                    json!({"format": "QR"}),
                ),
                "receipt.bottomLine.barcode.format",
                None,
            ),
            (
                with(
                    &["industryData"],
                    json!({"airlineData": {"agencyInvoiceNumber": "1", "airlineCode": "74", "airlineDesignatorCode": "KL", "passengerName": "X"}}),
                ),
                "industryData.airlineData.airlineCode",
                None,
            ),
        ];
        for (body, field, code) in cases {
            let i = refused(body.clone());
            assert_eq!(i.field, field, "{body}: {i:?}");
            assert_eq!(i.code, code, "{body}: {i:?}");
            assert!(!i.reason.is_empty());
        }
    }

    #[test]
    fn expires_at_rules() {
        let now = Utc::now();
        let at = |mins: i64| json!((now + chrono::Duration::minutes(mins)).to_rfc3339());
        let ok = create_payment(Some(with(&["expiresAt"], at(60))), now).unwrap();
        assert!(ok.expires_at.is_some());
        assert_eq!(
            refused_at(with(&["expiresAt"], at(5)), now).code,
            Some(6120)
        );
        assert_eq!(
            refused_at(with(&["expiresAt"], at(60 * 24 * 29)), now).code,
            Some(6110)
        );
        let mut no_receipt = with(&["expiresAt"], at(60));
        no_receipt.as_object_mut().unwrap().remove("receipt");
        assert_eq!(refused_at(no_receipt, now).code, Some(6130));
    }

    fn refused_at(body: Value, now: DateTime<Utc>) -> Invalid {
        create_payment(Some(body), now).unwrap_err()
    }

    #[test]
    fn bodies_that_are_not_json_objects() {
        assert_eq!(parse_json(b"  ").unwrap(), None);
        assert_eq!(parse_json(b"{").unwrap_err().field, "body");
        assert_eq!(create_payment(None, Utc::now()).unwrap_err().field, "body");
        assert_eq!(
            create_payment(Some(json!([1])), Utc::now())
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn modification_and_cancel_bodies() {
        let m = |v: Value| modification(Some(v));
        assert_eq!(
            m(json!({"modificationAmount": {"currency": "NOK", "value": 5}})).unwrap(),
            Amount::nok(5)
        );
        assert_eq!(
            m(json!({"modificationAmount": {"currency": "NOK", "value": 0}}))
                .unwrap_err()
                .code,
            Some(4040)
        );
        assert_eq!(
            m(json!({"modificationAmount": {"currency": "NOK", "value": 1.5}}))
                .unwrap_err()
                .field,
            "modificationAmount.value"
        );
        assert_eq!(m(json!({})).unwrap_err().field, "modificationAmount");
        assert_eq!(modification(None).unwrap_err().field, "modificationAmount");
        assert!(!cancel(None).unwrap());
        assert!(cancel(Some(json!({"cancelTransactionOnly": true}))).unwrap());
        assert_eq!(
            cancel(Some(json!({"cancelTransactionOnly": "yes"})))
                .unwrap_err()
                .field,
            "cancelTransactionOnly"
        );
    }

    #[test]
    fn quantity_pattern() {
        for ok in ["1", "0.822", "12345678", "1.12345678"] {
            assert!(valid_quantity(ok), "{ok}");
        }
        for bad in ["", "1.", ".5", "1,5", "-1", "1.123456789", "12345678901"] {
            assert!(!valid_quantity(bad), "{bad}");
        }
    }
}
