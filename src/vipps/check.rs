//! `lanehub check-vipps`: what store IT runs before going live. With the configured credentials
//! and `vipps.base_url` it checks, one line each with ✔, ✘ or ⚠ and a one-line hint: the access
//! token (naming the wrong client id, client secret or subscription key), the merchant serial
//! number, webhook registrations for `vipps.webhook_public_url`, Login (discovery, scopes, the
//! client's credentials) and check-in.
//!
//! What must stay true: it never creates a payment, never starts a Login and never checks in a
//! real customer: the MSN is checked by reading a payment that cannot exist (404), Login by
//! polling a made-up request (`invalid_grant`), check-in with a number nobody has. ✘ marks only
//! what payments need (the token and the MSN); the exit status is 1 if any line is ✘. Everything
//! else that fails is a ⚠: lanehub takes payments without it.

use std::fmt;

use super::client::VippsClient;
use super::error::VippsError;
use super::models::{AccessToken, AuthReqId};
use crate::config::Settings;
use crate::domain::{Msisdn, PaymentReference};

/// A reference no payment has: reading it must answer 404.
const PROBE_REFERENCE: &str = "lanehub-check-vipps-0000";
/// A Login request id Vipps never issued: polling it must answer `invalid_grant`.
const PROBE_AUTH_REQ_ID: &str = "lanehub-check-vipps";
/// A Norwegian number nobody has (no Norwegian subscriber number starts with 0): a check-in to
/// it reaches the endpoint but shows nothing to anyone.
const PROBE_PHONE: &str = "4700000000";
/// The scope Vipps activates per client on request.
const DELEGATED_CONSENTS: &str = "delegatedConsents";

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pass,
    /// Payments cannot work.
    Fail,
    /// Something lanehub can do without (webhooks, enrollment, check-in) does not work.
    Warn,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✔",
            Mark::Fail => "✘",
            Mark::Warn => "⚠",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub mark: Mark,
    pub check: &'static str,
    pub found: String,
    /// What to do about it, if anything.
    pub hint: Option<String>,
}

impl Line {
    fn new(mark: Mark, check: &'static str, found: impl Into<String>) -> Self {
        Line {
            mark,
            check,
            found: found.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.mark.symbol(), self.check, self.found)?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

/// Every line, in the order checked.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// Whether everything payments need works.
    pub fn ready_for_payments(&self) -> bool {
        self.lines.iter().all(|l| l.mark != Mark::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// `lanehub check-vipps`: prints the report and returns 0 if payments would work, else 1.
pub fn run(settings: &Settings) -> std::process::ExitCode {
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(check(settings)),
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if settings.vipps.mode == crate::config::VippsMode::Simulator {
        println!(
            "vipps.mode is \"simulator\": checking vipps.base_url {} all the same",
            settings.vipps.base_url
        );
    }
    print!("{report}");
    if report.ready_for_payments() {
        println!("Ready for payments.");
        std::process::ExitCode::SUCCESS
    } else {
        println!("Not ready for payments: fix the lines marked ✘.");
        std::process::ExitCode::FAILURE
    }
}

/// Runs every check against `settings.vipps.base_url`.
pub async fn check(settings: &Settings) -> Report {
    let vipps = &settings.vipps;
    let mut report = Report::default();
    let client = match VippsClient::new(vipps) {
        Ok(c) => c,
        Err(e) => {
            report.lines.push(
                Line::new(Mark::Fail, "client", e.to_string())
                    .hint("fix vipps.base_url or the credential it names"),
            );
            return report;
        }
    };
    let token = match client.fetch_token().await {
        Ok(token) => {
            report.lines.push(Line::new(
                Mark::Pass,
                "access token",
                format!(
                    "issued to client id {} at {}",
                    vipps.client_id,
                    client.base_url()
                ),
            ));
            Some(token)
        }
        Err(e) => {
            report.lines.push(token_refused(&e));
            None
        }
    };
    match &token {
        Some(token) => report
            .lines
            .push(merchant_serial_number(&client, token, settings).await),
        None => report.lines.push(
            Line::new(
                Mark::Fail,
                "merchant serial number",
                format!("{} not checked", vipps.merchant_serial_number),
            )
            .hint("needs an access token"),
        ),
    }
    let held = held_registration(settings).await;
    report
        .lines
        .push(webhooks(&client, token.as_ref(), &vipps.webhook_public_url, &held).await);
    report
        .lines
        .extend(login(&client, &vipps.login_scopes).await);
    report.lines.push(check_in(&client, token.as_ref()).await);
    report
}

/// Names the credential the token service refused, from how it refused.
fn token_refused(e: &VippsError) -> Line {
    let found = match e.status() {
        Some(_) => format!("refused: {e}"),
        None => format!("failed: {e}"),
    };
    let line = Line::new(Mark::Fail, "access token", found);
    let problem = e.problem();
    let oauth = problem.and_then(|p| p.oauth_error.as_deref());
    let text = problem
        .and_then(|p| p.detail.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match (e.status(), oauth) {
        // The API gateway answers before the token service, in its own shape.
        (Some(401), None) if text.contains("subscription key") || problem.is_some() => line.hint(
            "the subscription key is wrong or not active: check vipps.subscription_key \
             (Ocp-Apim-Subscription-Key)",
        ),
        (_, Some("invalid_client")) => {
            line.hint("the client secret is wrong for this client id: check vipps.client_secret")
        }
        (_, Some("unauthorized_client")) => {
            line.hint("the client id is unknown: check vipps.client_id")
        }
        (Some(401 | 403), _) => line.hint(
            "check vipps.client_id, vipps.client_secret and vipps.subscription_key (all from \
             the same sales unit's API keys)",
        ),
        (Some(_), _) => line.hint("Vipps refused the token request; see its answer"),
        (None, _) => line.hint(format!(
            "Vipps could not be reached: check vipps.base_url, DNS, the firewall and the CA \
             certificates ({})",
            e.kind()
        )),
    }
}

/// Reads a payment that cannot exist: 404 means the MSN and the keys belong together.
async fn merchant_serial_number(
    client: &VippsClient,
    token: &AccessToken,
    settings: &Settings,
) -> Line {
    let msn = &settings.vipps.merchant_serial_number;
    let reference: PaymentReference = match PROBE_REFERENCE.parse() {
        Ok(r) => r,
        // A constant that is a valid reference; kept as a line rather than a panic.
        Err(e) => return Line::new(Mark::Fail, "merchant serial number", e.to_string()),
    };
    let check = "merchant serial number";
    match client.get_payment(token, &reference).await {
        Err(e) if e.status() == Some(404) => Line::new(
            Mark::Pass,
            check,
            format!("{msn}: ePayment answers an unknown payment with 404, as it should"),
        ),
        Ok(_) => Line::new(Mark::Pass, check, format!("{msn}: ePayment reads payments")),
        Err(e) if e.status() == Some(403) => Line::new(Mark::Fail, check, format!("{msn}: {e}"))
            .hint(
                "the MSN is not a sales unit of these API keys: check vipps.merchant_serial_number",
            ),
        Err(e) if e.status() == Some(401) => Line::new(Mark::Fail, check, format!("{msn}: {e}"))
            .hint(
                "ePayment refused the keys: check vipps.subscription_key and that ePayment is \
                 active for the sales unit",
            ),
        Err(e) => Line::new(Mark::Fail, check, format!("{msn}: {e}"))
            .hint("expected 404 for an unknown payment"),
    }
}

/// What lanehub's store says about the webhook registration it holds the secret of.
enum Held {
    /// No database in `store.data_dir` (lanehub has not run here yet).
    NoStore,
    Unreadable(String),
    /// The registration id for the URL whose secret is stored, if any.
    Id(Option<String>),
}

/// Reads the held registration from an existing store; never creates one.
async fn held_registration(settings: &Settings) -> Held {
    let path = settings.store.data_dir.join(crate::store::DATABASE_FILE);
    if !path.exists() {
        return Held::NoStore;
    }
    let store = match crate::store::Store::open_file(path, crate::store::OpenMode::Existing).await {
        Ok(store) => store,
        Err(e) => return Held::Unreadable(e.to_string()),
    };
    let url = &settings.vipps.webhook_public_url;
    match crate::vipps::registration::held_registration(&store, url).await {
        Ok(id) => Held::Id(id),
        Err(e) => Held::Unreadable(e.to_string()),
    }
}

async fn webhooks(
    client: &VippsClient,
    token: Option<&AccessToken>,
    url: &str,
    held: &Held,
) -> Line {
    let check = "webhooks";
    if url.is_empty() {
        return Line::new(Mark::Warn, check, "vipps.webhook_public_url is empty")
            .hint("payments are followed by polling alone; set it for faster answers");
    }
    let Some(token) = token else {
        return Line::new(Mark::Warn, check, "not checked").hint("needs an access token");
    };
    match client.list_webhooks(token).await {
        Ok(all) => {
            let ours: Vec<&str> = all
                .iter()
                .filter(|w| w.url == url)
                .map(|w| w.id.as_str())
                .collect();
            let in_all = all.len();
            let orphans = match held {
                Held::Id(Some(id)) => ours.iter().filter(|o| **o != id.as_str()).count(),
                Held::Id(None) => ours.len(),
                Held::NoStore | Held::Unreadable(_) => ours.len().saturating_sub(1),
            };
            let store_note = match held {
                Held::Id(_) => String::new(),
                Held::NoStore => "; no lanehub database here to tell whose secret it holds".into(),
                Held::Unreadable(e) => format!("; lanehub's database cannot be read ({e})"),
            };
            match (ours.len(), orphans) {
                (0, _) => Line::new(Mark::Warn, check, format!("none registered for {url}"))
                    .hint("lanehub registers it at start; until then polling follows payments"),
                (1, 0) => Line::new(
                    Mark::Pass,
                    check,
                    format!("1 registration for {url}, no orphans ({in_all} in all){store_note}"),
                ),
                (n, orphans) => Line::new(
                    Mark::Warn,
                    check,
                    format!(
                        "{n} registration{} for {url}, {orphans} of them orphans whose secret \
                         lanehub does not hold ({in_all} in all){store_note}",
                        if n == 1 { "" } else { "s" }
                    ),
                )
                .hint(
                    "their deliveries fail; lanehub deletes them at start (and registers anew \
                     if it holds none)",
                ),
            }
        }
        Err(e) => Line::new(Mark::Warn, check, format!("cannot list: {e}"))
            .hint("check that the Webhooks API is active for the keys; polling follows payments"),
    }
}

/// Discovery, the configured scopes, and the Login client's credentials.
async fn login(client: &VippsClient, scopes: &[String]) -> Vec<Line> {
    let mut lines = Vec::new();
    match client.discovery().await {
        Ok(config) => {
            lines.push(Line::new(
                Mark::Pass,
                "login discovery",
                format!("issuer {}", config.issuer),
            ));
            let missing: Vec<&str> = scopes
                .iter()
                .filter(|s| {
                    !config.scopes_supported.is_empty() && !config.scopes_supported.contains(s)
                })
                .map(String::as_str)
                .collect();
            let asked = scopes.join(" ");
            let line = if missing.is_empty() {
                Line::new(Mark::Pass, "login scopes", format!("{asked} offered"))
            } else {
                Line::new(
                    Mark::Warn,
                    "login scopes",
                    format!("{} not offered by Vipps", missing.join(" ")),
                )
                .hint("every enrollment would be refused: fix vipps.login_scopes")
            };
            let line = if scopes.iter().any(|s| s == DELEGATED_CONSENTS) && missing.is_empty() {
                line.hint(
                    "delegatedConsents works only once Vipps activated it for the client (not \
                     checkable without a customer); otherwise enrollments fail with invalid_scope",
                )
            } else {
                line
            };
            lines.push(line);
        }
        Err(e) => lines.push(
            Line::new(Mark::Warn, "login discovery", e.to_string())
                .hint("enrollment will not work; check vipps.base_url"),
        ),
    }
    let check = "login client";
    let line = match client
        .login_token(&AuthReqId(PROBE_AUTH_REQ_ID.to_owned()))
        .await
    {
        Err(e) if e.status() == Some(400) => Line::new(
            Mark::Pass,
            check,
            "client id and secret accepted (a made-up request is refused as it should)",
        ),
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            Line::new(Mark::Warn, check, e.to_string()).hint(
                "Login refused the client id and secret: activate Login for the sales unit and \
                 check vipps.client_id and vipps.client_secret",
            )
        }
        Err(e) => Line::new(Mark::Warn, check, e.to_string())
            .hint("enrollment may not work; expected invalid_grant for a made-up request"),
        Ok(answer) => Line::new(
            Mark::Warn,
            check,
            format!("unexpected answer to a made-up request: {answer:?}"),
        ),
    };
    lines.push(line);
    lines
}

/// Check-in is best effort: never a failure.
async fn check_in(client: &VippsClient, token: Option<&AccessToken>) -> Line {
    let check = "check-in";
    let Some(token) = token else {
        return Line::new(Mark::Warn, check, "not checked").hint("needs an access token");
    };
    let phone: Msisdn = match PROBE_PHONE.parse() {
        Ok(p) => p,
        Err(e) => return Line::new(Mark::Warn, check, e.to_string()),
    };
    match client.check_in(token, &phone, false).await {
        Ok(_) => Line::new(
            Mark::Pass,
            check,
            "the endpoint answers (checked with a number nobody has)",
        ),
        Err(e) if matches!(e.status(), Some(400 | 404)) => Line::new(
            Mark::Pass,
            check,
            format!("the endpoint answers (it refused a number nobody has: {e})"),
        ),
        Err(e) if e.status().is_some_and(|s| s >= 500) => {
            Line::new(Mark::Warn, check, e.to_string()).hint(
                "Vipps' test environment answers 500 (check-in is a proof of concept there); \
             lanehub carries on without it",
            )
        }
        Err(e) => Line::new(Mark::Warn, check, e.to_string())
            .hint("customers get no check-in screen; lanehub carries on without it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_valid_values() {
        assert!(PROBE_REFERENCE.parse::<PaymentReference>().is_ok());
        assert!(PROBE_PHONE.parse::<Msisdn>().is_ok());
    }

    #[test]
    fn only_a_failure_makes_the_report_not_ready() {
        let mut report = Report::default();
        report
            .lines
            .push(Line::new(Mark::Warn, "check-in", "HTTP 500").hint("carries on"));
        assert!(report.ready_for_payments());
        assert_eq!(report.to_string(), "⚠ check-in: HTTP 500 — carries on\n");
        report
            .lines
            .push(Line::new(Mark::Fail, "access token", "refused"));
        assert!(!report.ready_for_payments());
    }
}
