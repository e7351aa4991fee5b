//! The OpenAPI conformance harness: validates requests and responses against the official Vipps
//! OpenAPI files themselves.
//!
//! The files are read from `../shared/vipps-specs` beside the crate root, or from the directory in
//! `LANEHUB_VIPPS_SPECS`; they are never copied into this repository. Without them a test warns
//! loudly and passes, except under `CI=true`, where their absence fails the test.
//!
//! OpenAPI 3.0 schemas are converted to JSON Schema 2020-12 for the `jsonschema` crate: every
//! `$ref` (local, or the remote order-management `Receipt`) is inlined under `$defs`, `nullable`
//! becomes a `null` type, `format`, `example`, `discriminator` and vendor extensions are dropped,
//! and `readOnly`/`writeOnly` properties are not required in the direction they are not sent.
//!
//! What must stay true: the files are corrected only through [`DEVIATIONS`], each entry naming the
//! file, the place and the reason; a deviation that no longer matches the files fails loading, so
//! the list cannot go stale silently, and everything not listed is validated strictly.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The environment variable naming the directory that holds the OpenAPI files.
pub const SPECS_ENV: &str = "LANEHUB_VIPPS_SPECS";

pub const ACCESS_TOKEN: &str = "access-token-api.yaml";
pub const CHECK_IN: &str = "check-in-api.yaml";
pub const EPAYMENT: &str = "epayment-api.yaml";
pub const LOGIN: &str = "login-api.yaml";
pub const ORDER_MANAGEMENT: &str = "order-management-api-2.3.24.yaml";
pub const QR: &str = "qr-api.yaml";
pub const USERINFO: &str = "userinfo-api.yaml";
pub const WEBHOOKS: &str = "webhooks-api.yaml";

/// Every file the harness loads; all must be present when the directory is.
pub const FILES: [&str; 8] = [
    ACCESS_TOKEN,
    CHECK_IN,
    EPAYMENT,
    LOGIN,
    ORDER_MANAGEMENT,
    QR,
    USERINFO,
    WEBHOOKS,
];

/// Documents that the files reference by URL, and the local file holding each.
const REMOTE_DOCUMENTS: &[(&str, &str)] = &[(
    "https://raw.githubusercontent.com/vippsas/vipps-order-management-api/2.3.24/docs/swagger.yaml",
    ORDER_MANAGEMENT,
)];

/// One known defect of the official files, and how the harness corrects it.
#[derive(Debug)]
pub struct Deviation {
    /// The file, or `"*"` for a rule that applies to every file.
    pub file: &'static str,
    /// JSON pointer into the file (before correction) that the fix applies to.
    pub pointer: &'static str,
    pub fix: Fix,
    pub reason: &'static str,
}

/// How a [`Deviation`] is corrected.
#[derive(Debug)]
pub enum Fix {
    /// Replace the existing value at the pointer with this JSON (in OpenAPI 3.0 form).
    Replace(&'static str),
    /// Add this JSON (in OpenAPI 3.0 form) at the pointer, which must not exist yet.
    Add(&'static str),
    /// Remove this name from the `required` array at the pointer.
    DropRequired(&'static str),
    /// The `content` map at the pointer declares `declared`; also accept `accepted` with the same
    /// schema.
    AlsoContentType {
        declared: &'static str,
        accepted: &'static str,
    },
    /// The official example at the pointer does not match its own schema; it is not checked.
    InvalidExample,
    /// These statuses may come from the API gateway on any operation, whatever the operation
    /// declares; their bodies are not validated.
    GatewayStatuses(&'static [u16]),
}

/// The single list of corrections to the official files. Keep docs/vipps-spec-deviations.md in
/// step with it.
pub const DEVIATIONS: &[Deviation] = &[
    Deviation {
        file: "*",
        pointer: "",
        fix: Fix::GatewayStatuses(&[401, 403, 422, 429]),
        reason: "Some 401, 403, 422 and 429 answers come from the API gateway in its own format \
                 before any API sees the request; clients must not depend on their bodies \
                 (VIPPS.md, Errors).",
    },
    Deviation {
        file: CHECK_IN,
        pointer: "/components/schemas/LoyaltyCheckInResponse",
        fix: Fix::Replace(
            r#"{"anyOf": [{"type": "string"},
                {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}]}"#,
        ),
        reason: "The 200 schema is `type: string` with an `id` property; the API answers a GUID \
                 either as a bare string or as {\"id\": …}. Both are accepted.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/responses/AdjustResponse/content",
        fix: Fix::AlsoContentType {
            declared: "application/problem+json",
            accepted: "application/json",
        },
        reason: "The successful cancel, capture and refund answers (ModificationResponse) are \
                 declared as application/problem+json; they are sent as application/json.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/schemas/PaymentEvent/required",
        fix: Fix::DropRequired("paymentAction"),
        reason: "PaymentEvent requires `paymentAction`, a property it does not define; the event \
                 name is in `name`.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/schemas/Customer",
        fix: Fix::Replace(
            r##"{"type": "object", "oneOf": [
                {"allOf": [{"$ref": "#/components/schemas/CustomerPhoneNumber"}], "required": ["phoneNumber"]},
                {"allOf": [{"$ref": "#/components/schemas/PersonalQrCode"}], "required": ["personalQr"]},
                {"allOf": [{"$ref": "#/components/schemas/CustomerToken"}], "required": ["customerToken"]}]}"##,
        ),
        reason: "Customer is a oneOf of three objects that require nothing, so every object \
                 matches all three and oneOf always fails. The documented rule is exactly one of \
                 phoneNumber, personalQr and customerToken; each branch now requires its field.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1payments~1{reference}~1cancel/post/requestBody",
        fix: Fix::Add(
            r#"{"required": false, "content": {"application/json": {"schema": {"type": "object",
                "properties": {"cancelTransactionOnly": {"type": "boolean"}}}}}}"#,
        ),
        reason: "Spec 1.4.1 declares no body for cancel; the live API takes \
                 {\"cancelTransactionOnly\": true} (VIPPS.md, ePayment).",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/schemas/Reference",
        fix: Fix::Replace(
            r#"{"type": "string", "pattern": "^[a-zA-Z0-9-]{8,64}$", "minLength": 8, "maxLength": 64}"#,
        ),
        reason: "Spec 1.4.1 limits references to 50 characters; the live API allows 64 \
                 (VIPPS.md, SOURCES.md).",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/parameters/Payment-Reference-ID/schema",
        fix: Fix::Replace(
            r#"{"type": "string", "pattern": "^[a-zA-Z0-9-]{8,64}$", "minLength": 1, "maxLength": 64}"#,
        ),
        reason: "The reference path parameter, as for Reference: 64 characters in the live API.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/schemas/MSN",
        fix: Fix::Replace(
            r#"{"type": "string", "pattern": "^[0-9]{4,7}$", "minLength": 4, "maxLength": 7}"#,
        ),
        reason: "Spec 1.4.1 allows 4 to 6 digits; merchant serial numbers have 4 to 7 \
                 (VIPPS.md, SOURCES.md).",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1payments~1{reference}/get/responses/400",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Get payment declares only 200. A malformed reference or a missing \
                 Merchant-Serial-Number is refused with 400 in the ProblemResponse shape the \
                 file uses for its other operations.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1payments~1{reference}/get/responses/404",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Get payment declares only 200. An unknown reference is 404, as for cancel, \
                 capture and refund, which declare it.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1payments~1{reference}~1events/get/responses/400",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Get payment events declares only 200; as for get payment.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1payments~1{reference}~1events/get/responses/404",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Get payment events declares only 200; as for get payment.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1test~1payments~1{reference}~1approve/post/responses/400",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Force approve declares only 200. Approving a payment that is no longer \
                 CREATED, or with a body that does not match it, is refused with 400 \
                 (ErrorCode 10020).",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/paths/~1epayment~1v1~1test~1payments~1{reference}~1approve/post/responses/404",
        fix: Fix::Add(r##"{"$ref": "#/components/responses/ProblemResponse"}"##),
        reason: "Force approve declares only 200. An unknown reference is 404, as for the \
                 other operations on a payment.",
    },
    Deviation {
        file: WEBHOOKS,
        pointer: "/paths/~1v1~1webhooks~1{id}/delete/responses/404",
        fix: Fix::Add(
            r##"{"description": "Not Found", "content": {"application/problem+json":
                {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}"##,
        ),
        reason: "Delete declares 204 and 400 only. Deleting an id that is not registered \
                 (or not the merchant's) is 404 with the file's ProblemDetails.",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/parameters/Merchant-Serial-Number/schema",
        fix: Fix::Replace(
            r#"{"type": "string", "pattern": "^[0-9]{4,7}$", "minLength": 4, "maxLength": 7}"#,
        ),
        reason: "As for ePayment's MSN: 4 to 7 digits, not 4 to 6.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/OauthTokenResponse/properties/id_token",
        fix: Fix::Replace(r#"{"type": "string"}"#),
        reason: "`id_token` is typed as an integer; it is a JWT string (the file's own example \
                 is one).",
    },
    Deviation {
        file: LOGIN,
        pointer: "/paths/~1access-management-1.0~1access~1oauth2~1token/post/requestBody/content/application~1x-www-form-urlencoded/schema/required",
        fix: Fix::Replace(r#"["grant_type"]"#),
        reason: "The token endpoint's body requires `code` and `redirect_uri` (authorization-code \
                 grant). The CIBA grant lanehub uses sends `grant_type` and `auth_req_id` \
                 instead (VIPPS.md, Login from phone number).",
    },
    Deviation {
        file: LOGIN,
        pointer: "/paths/~1access-management-1.0~1access~1oauth2~1token/post/responses/400",
        fix: Fix::Add(
            r##"{"description": "OAuth error", "content": {"application/json":
                {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}"##,
        ),
        reason: "The token endpoint declares no 400, but polling a CIBA authentication answers \
                 400 with authorization_pending, slow_down, access_denied or expired_token \
                 (VIPPS.md, Login from phone number).",
    },
    Deviation {
        file: USERINFO,
        pointer: "/components/schemas/Userinfo/properties/phone_number/pattern",
        fix: Fix::Replace(r#""^\\d{10,15}$""#),
        reason: "The pattern ^\\d{15}$ rejects every real number, including the file's own \
                 example 4791234567; MSISDNs have 10 to 15 digits.",
    },
    Deviation {
        file: USERINFO,
        pointer: "/components/parameters/Ocp-Apim-Subscription-Key/required",
        fix: Fix::Replace("false"),
        reason: "In the Login flow, userinfo is called with the Login access token only and no \
                 subscription key (VIPPS.md, Environments and headers).",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/schemas/AuthorizationTokenResponse/properties/expires_in/example",
        fix: Fix::InvalidExample,
        reason: "Example 3600 is a number; the field is a string.",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/schemas/AuthorizationTokenResponse/properties/ext_expires_in/example",
        fix: Fix::InvalidExample,
        reason: "Example 3600 is a number; the field is a string.",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/schemas/AuthorizationTokenResponse/properties/expires_on/example",
        fix: Fix::InvalidExample,
        reason: "Example 1547823408 is a number; the field is a string.",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/schemas/AuthorizationTokenResponse/properties/not_before/example",
        fix: Fix::InvalidExample,
        reason: "Example 1547819508 is a number; the field is a string.",
    },
    Deviation {
        file: ACCESS_TOKEN,
        pointer: "/components/schemas/TokenResponse/properties/expires_in/example",
        fix: Fix::InvalidExample,
        reason: "Example 900 is a number; the field is a string.",
    },
    Deviation {
        file: EPAYMENT,
        pointer: "/components/schemas/Address/x-examples/Vipps",
        fix: Fix::InvalidExample,
        reason: "The example's `country` is \"Norway\"; the schema wants an ISO 3166 code such as NO.",
    },
    Deviation {
        file: ORDER_MANAGEMENT,
        pointer: "/components/schemas/OrderLine/required",
        fix: Fix::DropRequired("taxPercentage"),
        reason: "Order Management deprecated `taxPercentage` for `taxRate` (August 2024); Vipps' \
                 own ePayment receipt example sends `taxRate` alone. One of the two is needed.",
    },
    Deviation {
        file: ORDER_MANAGEMENT,
        pointer: "/components/schemas/OrderLine/properties/taxRate",
        fix: Fix::Add(
            r##"{"type": "integer", "minimum": 0, "maximum": 10000, "example": 2500,
                 "description": "Tax rate in percent multiplied by 100: 2500 is 25 %."}"##,
        ),
        reason: "`taxRate` (percent × 100, e.g. 2500) replaces the deprecated `taxPercentage` in \
                 newer Order Management versions and in Vipps' ePayment receipt example; the \
                 pinned 2.3.24 file predates it.",
    },
    Deviation {
        file: ORDER_MANAGEMENT,
        pointer: "/components/schemas/OrderLine/x-examples/OrderLineExample/value",
        fix: Fix::InvalidExample,
        reason: "The OrderLine example is a whole `{orderLines: [...]}` object, not one order line.",
    },
    Deviation {
        file: USERINFO,
        pointer: "/components/schemas/UserinfoAccountInfo/properties/account_number/example",
        fix: Fix::InvalidExample,
        reason: "Example 86011117947 is a number; the field is a string.",
    },
    Deviation {
        file: USERINFO,
        pointer: "/components/schemas/UserinfoError/properties/status/example",
        fix: Fix::InvalidExample,
        reason: "Example 400 is a number; the field is a string.",
    },
    Deviation {
        file: USERINFO,
        pointer: "/components/parameters/Merchant-Serial-Number/example",
        fix: Fix::InvalidExample,
        reason: "Example 123456 is a number; the header is a string.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/claims_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/grant_types_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/id_token_signing_alg_values_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/response_modes_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/response_types_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/scopes_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/subject_types_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
    Deviation {
        file: LOGIN,
        pointer: "/components/schemas/WellKnown/properties/token_endpoint_auth_methods_supported/items/example",
        fix: Fix::InvalidExample,
        reason: "The example of one item is the whole array.",
    },
];

/// The loaded files, corrected by [`DEVIATIONS`], or `None` (after a loud warning) when they are
/// absent outside CI. Panics under `CI=true` when they are absent, and always when they are
/// present but cannot be loaded.
pub fn specs() -> Option<&'static Specs> {
    static SPECS: OnceLock<Option<Specs>> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        let dir = specs_dir();
        if !dir.is_dir() {
            return None;
        }
        match Specs::load(dir) {
            Ok(specs) => Some(specs),
            Err(e) => panic!("cannot load the Vipps OpenAPI files: {e}"),
        }
    });
    if specs.is_none() {
        let dir = specs_dir();
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "the Vipps OpenAPI files are missing at {} (set {SPECS_ENV}); under CI=true the \
                 conformance tests must not be skipped",
                dir.display()
            );
        }
        warn_once(&format!(
            "\n\
             ************************************************************************\n\
             WARNING: the Vipps OpenAPI files are missing at {}\n\
             OpenAPI conformance checks are SKIPPED. Set {SPECS_ENV} to their folder.\n\
             ************************************************************************\n",
            dir.display()
        ));
    }
    specs.as_ref()
}

/// A JSON Schema validator for `schema` among `file`'s components, `patch` applied to them first
/// (OpenAPI 3.0 `nullable: true` becomes a type that also admits null); `None`, after the loud
/// warning of [`specs`], where the files are absent outside CI.
pub fn schema_validator(
    file: &str,
    schema: &str,
    patch: impl FnOnce(&mut Value),
) -> Option<jsonschema::Validator> {
    specs()?;
    let text = std::fs::read_to_string(specs_dir().join(file)).expect("spec file");
    let doc: Value = serde_yaml::from_str(&text).expect("spec parses");
    let mut components = doc["components"].clone();
    patch(&mut components);
    nullable_to_json_schema(&mut components);
    let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": components});
    Some(jsonschema::validator_for(&root).expect("schema compiles"))
}

fn nullable_to_json_schema(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([t, "null"]));
            }
            for child in map.values_mut() {
                nullable_to_json_schema(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

/// Where the files are: `$LANEHUB_VIPPS_SPECS`, else `../shared/vipps-specs` from the crate root.
pub fn specs_dir() -> PathBuf {
    match std::env::var_os(SPECS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vipps-specs"),
    }
}

fn warn_once(message: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        // Written to the stderr handle, not with eprintln!, so that the test harness does not
        // capture it: the warning must be seen even when every test passes.
        let _ = std::io::stderr().lock().write_all(message.as_bytes());
    });
}

/// Which way a message travels; `readOnly` properties are not required in requests, `writeOnly`
/// ones not in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug)]
struct Doc {
    /// The path of the first server URL, e.g. `/qr`; empty for files served at the root.
    base_path: String,
    json: Value,
}

/// All the official files, corrected by [`DEVIATIONS`].
#[derive(Debug)]
pub struct Specs {
    docs: BTreeMap<&'static str, Doc>,
}

/// One operation of one file: what a request matched.
#[derive(Debug, Clone)]
pub struct SpecOperation<'a> {
    pub file: &'static str,
    /// Lower-case method, as in the file.
    pub method: String,
    /// The path template as in the file, e.g. `/epayment/v1/payments/{reference}`.
    pub template: String,
    /// Path parameters taken from the request path.
    pub path_params: Vec<(String, String)>,
    path_item: &'a Value,
    op: &'a Value,
}

impl SpecOperation<'_> {
    pub fn operation_id(&self) -> Option<&str> {
        self.op.get("operationId").and_then(Value::as_str)
    }

    /// The pointer of the operation in its file, e.g. `/paths/~1v1~1exchange/post`.
    pub fn pointer(&self) -> String {
        format!("/paths/{}/{}", escape(&self.template), self.method)
    }
}

/// An official example and the schema it illustrates.
#[derive(Debug, Clone)]
pub struct Example {
    pub file: &'static str,
    /// Pointer of the example value in its file.
    pub pointer: String,
    /// Pointer of the schema it must satisfy, in the same file.
    pub schema: String,
    pub direction: Direction,
    pub value: Value,
}

impl Specs {
    /// Loads and corrects every file in `dir`.
    pub fn load(dir: PathBuf) -> Result<Specs, String> {
        let mut docs = BTreeMap::new();
        for file in FILES {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
            let mut json = yaml_to_json(yaml);
            for d in DEVIATIONS.iter().filter(|d| d.file == file) {
                apply(&mut json, d)
                    .map_err(|e| format!("deviation for {file} {}: {e}", d.pointer))?;
            }
            let base_path = json
                .pointer("/servers/0/url")
                .and_then(Value::as_str)
                .map(server_path)
                .unwrap_or_default();
            docs.insert(file, Doc { base_path, json });
        }
        Ok(Specs { docs })
    }

    /// The corrected document of `file`.
    pub fn document(&self, file: &str) -> Option<&Value> {
        self.docs.get(file).map(|d| &d.json)
    }

    /// The operation a request matches: the file whose server path prefixes `path` and whose
    /// template matches the rest, preferring the template with the most literal segments.
    pub fn operation(&self, method: &str, path: &str) -> Option<SpecOperation<'_>> {
        let method = method.to_ascii_lowercase();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut best: Option<(usize, SpecOperation<'_>)> = None;
        for (&file, doc) in &self.docs {
            let Some(rest) = strip_base(path, &doc.base_path) else {
                continue;
            };
            let Some(paths) = doc.json.get("paths").and_then(Value::as_object) else {
                continue;
            };
            for (template, item) in paths {
                let Some(op) = item.get(&method) else {
                    continue;
                };
                let Some((literals, params)) = match_template(template, rest) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(score, _)| literals > *score) {
                    best = Some((
                        literals,
                        SpecOperation {
                            file,
                            method: method.clone(),
                            template: template.clone(),
                            path_params: params,
                            path_item: item,
                            op,
                        },
                    ));
                }
            }
        }
        best.map(|(_, op)| op)
    }

    /// [`Specs::operation`], or the error that the files describe no such operation.
    fn known_operation(&self, method: &str, path: &str) -> Result<SpecOperation<'_>, Vec<String>> {
        self.operation(method, path).ok_or_else(|| {
            vec![format!(
                "{method} {path}: no such operation in the OpenAPI files"
            )]
        })
    }

    /// Checks a request: the operation exists, required headers and query parameters are present
    /// and valid, path parameters are valid, credentials required by `security` are present, and
    /// the body (JSON, or a form given as a JSON object of strings) matches the schema for its
    /// `Content-Type`.
    pub fn validate_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let op = self.known_operation(method, path)?;
        let at = format!("{} {path}", method.to_ascii_uppercase());
        let mut errors = Vec::new();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let query: Vec<(String, String)> = path
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();

        for (param_ptr, param) in self.parameters(&op) {
            let name = param
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let location = param.get("in").and_then(Value::as_str).unwrap_or_default();
            let required = param.get("required").and_then(Value::as_bool) == Some(true);
            let value: Option<String> = match location {
                "header" => header(name).map(str::to_owned),
                "query" => query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
                "path" => op
                    .path_params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
                _ => continue,
            };
            let Some(value) = value else {
                if required {
                    errors.push(format!(
                        "{at}: missing required {location} parameter `{name}`"
                    ));
                }
                continue;
            };
            if param.get("schema").is_some() {
                let schema_ptr = format!("{param_ptr}/schema");
                let instance = self.coerce_parameter(op.file, &schema_ptr, &value);
                if let Err(errs) =
                    self.validate_value(op.file, &schema_ptr, Direction::Request, &instance)
                {
                    errors.extend(
                        errs.into_iter()
                            .map(|e| format!("{at}: {location} parameter `{name}`: {e}")),
                    );
                }
            }
        }

        if let Err(e) = self.check_security(&op, &header) {
            errors.push(format!("{at}: {e}"));
        }

        match (self.request_body(&op), body) {
            (None, None) => {}
            (None, Some(_)) => errors.push(format!(
                "{at}: a body was sent but the operation declares none"
            )),
            (Some((body_ptr, decl)), body) => {
                let required = decl.get("required").and_then(Value::as_bool) == Some(true);
                match body {
                    None if required => errors.push(format!("{at}: the request body is required")),
                    None => {}
                    Some(body) => {
                        let content_type = header("content-type");
                        match self.media_type(op.file, &body_ptr, content_type) {
                            Err(e) => errors.push(format!("{at}: request {e}")),
                            Ok(None) => {}
                            Ok(Some(schema_ptr)) => {
                                if let Err(errs) = self.validate_value(
                                    op.file,
                                    &schema_ptr,
                                    Direction::Request,
                                    body,
                                ) {
                                    errors.extend(
                                        errs.into_iter().map(|e| format!("{at}: request body {e}")),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        verdict(errors)
    }

    /// Checks a response: the status is declared (or `default`, or a gateway status listed in
    /// [`DEVIATIONS`]), its content type is declared, and the body matches the schema.
    pub fn validate_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let op = self.known_operation(method, path)?;
        let at = format!("{} {path} -> {status}", method.to_ascii_uppercase());
        let responses_ptr = format!("{}/responses", op.pointer());
        let responses = op.op.get("responses").and_then(Value::as_object);
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let key = responses.and_then(|r| {
            [code.as_str(), range.as_str(), "default"]
                .into_iter()
                .find(|k| r.contains_key(*k))
        });
        let Some(key) = key else {
            if gateway_statuses().contains(&status) {
                return Ok(());
            }
            let declared: Vec<&str> = responses
                .map(|r| r.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(vec![format!(
                "{at}: status {status} is not declared (declared: {})",
                declared.join(", ")
            )]);
        };
        let (response_ptr, response) =
            self.resolve(op.file, &format!("{responses_ptr}/{}", escape(key)));
        let Some(response) = response else {
            return Err(vec![format!("{at}: unresolvable response {response_ptr}")]);
        };
        if response
            .get("content")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            // The file describes no body for this answer, so there is nothing to check it against.
            return Ok(());
        }
        let Some(body) = body else {
            return Err(vec![format!(
                "{at}: the response declares a body but none was sent"
            )]);
        };
        let schema_ptr = match self.media_type(op.file, &response_ptr, content_type) {
            Err(e) => return Err(vec![format!("{at}: response {e}")]),
            Ok(None) => return Ok(()),
            Ok(Some(p)) => p,
        };
        self.validate_value(op.file, &schema_ptr, Direction::Response, body)
            .map_err(|errs| {
                errs.into_iter()
                    .map(|e| format!("{at}: response body {e}"))
                    .collect()
            })
    }

    /// Validates `value` against the schema at `pointer` in `file`. Each error names the place in
    /// the value (a JSON pointer, `(root)` for the value itself) and what is wrong.
    pub fn validate_value(
        &self,
        file: &str,
        pointer: &str,
        direction: Direction,
        value: &Value,
    ) -> Result<(), Vec<String>> {
        let schema = self
            .json_schema(file, pointer, direction)
            .map_err(|e| vec![format!("schema {file}#{pointer}: {e}")])?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&schema)
            .map_err(|e| vec![format!("schema {file}#{pointer} does not compile: {e}")])?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() {
                    "(root)".to_owned()
                } else {
                    at
                };
                format!("{at}: {e}")
            })
            .collect();
        verdict(errors)
    }

    /// The JSON Schema 2020-12 equivalent of the OpenAPI schema at `pointer` in `file`, with every
    /// referenced schema inlined under `$defs`.
    pub fn json_schema(
        &self,
        file: &str,
        pointer: &str,
        direction: Direction,
    ) -> Result<Value, String> {
        let (&file, doc) = self
            .docs
            .get_key_value(file)
            .ok_or_else(|| format!("no such file {file}"))?;
        let node = doc
            .json
            .pointer(pointer)
            .ok_or_else(|| format!("nothing at {pointer}"))?;
        let mut conv = Converter {
            specs: self,
            direction,
            defs: Map::new(),
            seen: HashSet::new(),
            pending: Vec::new(),
        };
        let root = conv.convert(file, node)?;
        while let Some((key, file, pointer)) = conv.pending.pop() {
            let node = self
                .document(file)
                .and_then(|d| d.pointer(&pointer))
                .ok_or_else(|| format!("unresolvable $ref {file}#{pointer}"))?;
            let converted = conv.convert(file, node)?;
            conv.defs.insert(key, converted);
        }
        let mut root = match root {
            Value::Object(m) => m,
            other => return Ok(other),
        };
        if !conv.defs.is_empty() {
            root.insert("$defs".into(), Value::Object(conv.defs));
        }
        Ok(Value::Object(root))
    }

    /// Every official example for a schema, parameter, request body or response, with the
    /// schema it must satisfy.
    pub fn examples(&self) -> Vec<Example> {
        let mut out = Vec::new();
        for (&file, doc) in &self.docs {
            let mut w = ExampleWalker {
                file,
                json: &doc.json,
                out: &mut out,
            };
            w.document();
        }
        out
    }

    /// The operation's parameters (path item and operation merged, refs resolved), each with the
    /// pointer of its resolved definition.
    fn parameters<'a>(&'a self, op: &SpecOperation<'a>) -> Vec<(String, &'a Value)> {
        let item_ptr = format!("/paths/{}", escape(&op.template));
        let mut by_key: Vec<(String, &'a Value)> = Vec::new();
        let lists = [
            (
                format!("{item_ptr}/parameters"),
                op.path_item.get("parameters"),
            ),
            (
                format!("{}/parameters", op.pointer()),
                op.op.get("parameters"),
            ),
        ];
        for (list_ptr, list) in lists {
            let Some(list) = list.and_then(Value::as_array) else {
                continue;
            };
            for i in 0..list.len() {
                let (ptr, param) = self.resolve(op.file, &format!("{list_ptr}/{i}"));
                let Some(param) = param else { continue };
                let key = |p: &Value| {
                    (
                        p.get("name")
                            .and_then(Value::as_str)
                            .map(str::to_ascii_lowercase),
                        p.get("in").and_then(Value::as_str).map(str::to_owned),
                    )
                };
                // An operation-level parameter overrides the path item's of the same name.
                by_key.retain(|(_, p)| key(p) != key(param));
                by_key.push((ptr, param));
            }
        }
        by_key
    }

    fn request_body<'a>(&'a self, op: &SpecOperation<'a>) -> Option<(String, &'a Value)> {
        op.op.get("requestBody")?;
        let (ptr, body) = self.resolve(op.file, &format!("{}/requestBody", op.pointer()));
        body.map(|b| (ptr, b))
    }

    /// The schema pointer for the media type in the `content` of the object at `owner_ptr` that
    /// matches `content_type`; `Ok(None)` when the media type declares no schema.
    fn media_type(
        &self,
        file: &str,
        owner_ptr: &str,
        content_type: Option<&str>,
    ) -> Result<Option<String>, String> {
        let content = self
            .document(file)
            .and_then(|d| d.pointer(&format!("{owner_ptr}/content")))
            .and_then(Value::as_object)
            .ok_or_else(|| "declares no content".to_owned())?;
        let declared: Vec<&str> = content.keys().map(String::as_str).collect();
        let Some(sent) = content_type else {
            return Err(format!(
                "has a body but no Content-Type (declared: {})",
                declared.join(", ")
            ));
        };
        let sent_essence = essence(sent);
        let matches = |key: &str| {
            let k = essence(key);
            k == sent_essence
                || k == "*/*"
                || k.strip_suffix("/*")
                    .is_some_and(|t| sent_essence.split('/').next() == Some(t))
        };
        // An exact match wins over a wildcard.
        let key = declared
            .iter()
            .find(|k| essence(k) == sent_essence)
            .or_else(|| declared.iter().find(|k| matches(k)))
            .ok_or_else(|| {
                format!(
                    "Content-Type {sent} is not declared (declared: {})",
                    declared.join(", ")
                )
            })?;
        let schema_ptr = format!("{owner_ptr}/content/{}/schema", escape(key));
        Ok(self
            .document(file)
            .and_then(|d| d.pointer(&schema_ptr))
            .map(|_| schema_ptr))
    }

    /// Header, query and path values arrive as text; numbers and booleans are parsed when the
    /// schema asks for them so that they can be validated.
    fn coerce_parameter(&self, file: &str, schema_ptr: &str, raw: &str) -> Value {
        let (_, schema) = self.resolve(file, schema_ptr);
        let ty = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
        match ty {
            Some("integer" | "number") => serde_json::from_str::<serde_json::Number>(raw)
                .map(Value::Number)
                .unwrap_or_else(|_| Value::String(raw.to_owned())),
            Some("boolean") => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(raw.to_owned()),
            },
            _ => Value::String(raw.to_owned()),
        }
    }

    /// At least one of the operation's (or the file's) security requirements is met by the
    /// headers. Only presence and scheme are checked; the simulator checks the values.
    fn check_security<'h>(
        &self,
        op: &SpecOperation<'_>,
        header: &dyn Fn(&str) -> Option<&'h str>,
    ) -> Result<(), String> {
        let doc = self.document(op.file).unwrap_or(&Value::Null);
        let Some(requirements) = op
            .op
            .get("security")
            .or_else(|| doc.get("security"))
            .and_then(Value::as_array)
        else {
            return Ok(());
        };
        if requirements.is_empty() {
            return Ok(());
        }
        let mut wanted = Vec::new();
        for requirement in requirements {
            let Some(schemes) = requirement.as_object() else {
                continue;
            };
            let met = schemes.keys().all(|name| {
                let scheme = doc.pointer(&format!("/components/securitySchemes/{}", escape(name)));
                let Some(scheme) = scheme else { return false };
                let ty = scheme.get("type").and_then(Value::as_str);
                match ty {
                    Some("apiKey") => {
                        let name = scheme
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        scheme.get("in").and_then(Value::as_str) != Some("header")
                            || header(name).is_some()
                    }
                    Some("http") => {
                        let want = scheme
                            .get("scheme")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        header("authorization").is_some_and(|v| {
                            v.split_once(' ')
                                .is_some_and(|(s, _)| s.eq_ignore_ascii_case(want))
                        })
                    }
                    _ => header("authorization").is_some(),
                }
            });
            if met {
                return Ok(());
            }
            wanted.push(schemes.keys().cloned().collect::<Vec<_>>().join(" + "));
        }
        Err(format!(
            "missing credentials: expected one of {}",
            wanted.join(", ")
        ))
    }

    /// Follows local `$ref`s from the node at `pointer`, returning the final pointer and node.
    fn resolve<'a>(&'a self, file: &str, pointer: &str) -> (String, Option<&'a Value>) {
        let mut pointer = pointer.to_owned();
        for _ in 0..16 {
            let node = self.document(file).and_then(|d| d.pointer(&pointer));
            match node.and_then(|n| n.get("$ref")).and_then(Value::as_str) {
                Some(r) if r.starts_with("#/") => pointer = r[1..].to_owned(),
                _ => return (pointer, node),
            }
        }
        (pointer, None)
    }
}

/// The statuses listed by [`Fix::GatewayStatuses`].
/// `Ok` when nothing was found wrong, else every error found.
fn verdict(errors: Vec<String>) -> Result<(), Vec<String>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn gateway_statuses() -> Vec<u16> {
    DEVIATIONS
        .iter()
        .filter_map(|d| match d.fix {
            Fix::GatewayStatuses(s) => Some(s),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

/// Whether the example at `pointer` in `file` is listed as invalid in [`DEVIATIONS`].
pub fn is_invalid_example(file: &str, pointer: &str) -> bool {
    DEVIATIONS
        .iter()
        .any(|d| matches!(d.fix, Fix::InvalidExample) && d.file == file && d.pointer == pointer)
}

fn apply(doc: &mut Value, d: &Deviation) -> Result<(), String> {
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| format!("the fix is not JSON: {e}"))
    };
    match &d.fix {
        Fix::Replace(text) => {
            let value = parse(text)?;
            let slot = doc
                .pointer_mut(d.pointer)
                .ok_or("nothing there to replace (stale deviation?)")?;
            *slot = value;
        }
        Fix::Add(text) => {
            let value = parse(text)?;
            if doc.pointer(d.pointer).is_some() {
                return Err("already present (stale deviation?)".into());
            }
            let (parent, last) = d.pointer.rsplit_once('/').ok_or("bad pointer")?;
            let parent = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .ok_or("no object to add to")?;
            parent.insert(unescape(last), value);
        }
        Fix::DropRequired(name) => {
            let list = doc
                .pointer_mut(d.pointer)
                .and_then(Value::as_array_mut)
                .ok_or("no `required` array there")?;
            let before = list.len();
            list.retain(|v| v.as_str() != Some(name));
            if list.len() == before {
                return Err(format!("`{name}` is not required there (stale deviation?)"));
            }
        }
        Fix::AlsoContentType { declared, accepted } => {
            let content = doc
                .pointer_mut(d.pointer)
                .and_then(Value::as_object_mut)
                .ok_or("no content map there")?;
            let media = content
                .get(*declared)
                .cloned()
                .ok_or_else(|| format!("{declared} is not declared (stale deviation?)"))?;
            if content.contains_key(*accepted) {
                return Err(format!("{accepted} is already declared (stale deviation?)"));
            }
            content.insert((*accepted).to_owned(), media);
        }
        Fix::InvalidExample => {
            if doc.pointer(d.pointer).is_none() {
                return Err("no example there (stale deviation?)".into());
            }
        }
        Fix::GatewayStatuses(_) => {}
    }
    Ok(())
}

/// Converts OpenAPI 3.0 schema objects to JSON Schema 2020-12, collecting referenced schemas.
struct Converter<'a> {
    specs: &'a Specs,
    direction: Direction,
    defs: Map<String, Value>,
    seen: HashSet<String>,
    pending: Vec<(String, &'static str, String)>,
}

/// Keywords whose value is a single subschema.
const SUBSCHEMA: &[&str] = &["items", "not"];
/// Keywords whose value is a list of subschemas.
const SUBSCHEMA_LISTS: &[&str] = &["allOf", "oneOf", "anyOf"];
/// Keywords that mean the same in OpenAPI 3.0 and JSON Schema 2020-12 and are copied as they are.
const VERBATIM: &[&str] = &[
    "multipleOf",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
];

impl Converter<'_> {
    fn convert(&mut self, file: &'static str, node: &Value) -> Result<Value, String> {
        let Some(obj) = node.as_object() else {
            return Ok(node.clone());
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            // In OpenAPI 3.0 a $ref's siblings are ignored.
            return self.reference(file, reference);
        }
        let mut out = Map::new();
        for &k in VERBATIM {
            if let Some(v) = obj.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);
        if let Some(ty) = obj.get("type") {
            let ty = if nullable {
                json!([ty, "null"])
            } else {
                ty.clone()
            };
            out.insert("type".into(), ty);
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            let mut values = values.clone();
            if nullable && !values.contains(&Value::Null) {
                values.push(Value::Null);
            }
            out.insert("enum".into(), Value::Array(values));
        }
        // OpenAPI 3.0 (like draft 4) makes the exclusive bounds booleans.
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            match obj.get(flag) {
                Some(Value::Bool(true)) => {
                    if let Some(b) = out.remove(bound) {
                        out.insert(flag.into(), b);
                    }
                }
                Some(n @ Value::Number(_)) => {
                    out.insert(flag.into(), n.clone());
                }
                _ => {}
            }
        }
        for &k in SUBSCHEMA {
            if let Some(v) = obj.get(k) {
                out.insert(k.into(), self.convert(file, v)?);
            }
        }
        for &k in SUBSCHEMA_LISTS {
            if let Some(Value::Array(list)) = obj.get(k) {
                let converted = list
                    .iter()
                    .map(|s| self.convert(file, s))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(k.into(), Value::Array(converted));
            }
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(b)) => {
                out.insert("additionalProperties".into(), Value::Bool(*b));
            }
            Some(s @ Value::Object(_)) => {
                out.insert("additionalProperties".into(), self.convert(file, s)?);
            }
            _ => {}
        }
        let mut skip_required = HashSet::new();
        if let Some(Value::Object(props)) = obj.get("properties") {
            let mut converted = Map::new();
            for (name, prop) in props {
                let flag = match self.direction {
                    Direction::Request => "readOnly",
                    Direction::Response => "writeOnly",
                };
                if prop.get(flag).and_then(Value::as_bool) == Some(true) {
                    skip_required.insert(name.clone());
                }
                converted.insert(name.clone(), self.convert(file, prop)?);
            }
            out.insert("properties".into(), Value::Object(converted));
        }
        if let Some(Value::Array(required)) = obj.get("required") {
            let required: Vec<Value> = required
                .iter()
                .filter(|r| r.as_str().is_none_or(|r| !skip_required.contains(r)))
                .cloned()
                .collect();
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
        }
        if nullable && !obj.contains_key("type") {
            return Ok(json!({"anyOf": [Value::Object(out), {"type": "null"}]}));
        }
        Ok(Value::Object(out))
    }

    fn reference(&mut self, file: &'static str, reference: &str) -> Result<Value, String> {
        let (target_file, pointer) = self.specs.locate(file, reference)?;
        let key = format!("{target_file}{pointer}")
            .replace('~', "_")
            .replace('/', ".");
        if self.seen.insert(key.clone()) {
            self.pending.push((key.clone(), target_file, pointer));
        }
        Ok(json!({ "$ref": format!("#/$defs/{key}") }))
    }
}

impl Specs {
    /// The file and pointer a `$ref` written in `file` points to.
    fn locate(
        &self,
        file: &'static str,
        reference: &str,
    ) -> Result<(&'static str, String), String> {
        let (url, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let target = if url.is_empty() {
            file
        } else if let Some((_, local)) = REMOTE_DOCUMENTS.iter().find(|(u, _)| *u == url) {
            local
        } else if let Some(local) = FILES.iter().find(|f| **f == url) {
            local
        } else {
            return Err(format!("$ref {reference} points outside the known files"));
        };
        if self
            .document(target)
            .and_then(|d| d.pointer(fragment))
            .is_none()
        {
            return Err(format!("$ref {reference} (in {file}) points at nothing"));
        }
        Ok((target, fragment.to_owned()))
    }
}

/// Collects every example in one file.
struct ExampleWalker<'a> {
    file: &'static str,
    json: &'a Value,
    out: &'a mut Vec<Example>,
}

impl ExampleWalker<'_> {
    fn at(&self, pointer: &str) -> Option<&Value> {
        self.json.pointer(pointer)
    }

    fn keys(&self, pointer: &str) -> Vec<String> {
        self.at(pointer)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&mut self, pointer: String, schema: &str, direction: Direction) {
        if let Some(value) = self.at(&pointer).cloned() {
            self.out.push(Example {
                file: self.file,
                pointer,
                schema: schema.to_owned(),
                direction,
                value,
            });
        }
    }

    fn document(&mut self) {
        for name in self.keys("/components/schemas") {
            self.schema(
                &format!("/components/schemas/{}", escape(&name)),
                Direction::Response,
            );
        }
        for name in self.keys("/components/parameters") {
            self.parameter(&format!("/components/parameters/{}", escape(&name)));
        }
        for name in self.keys("/components/requestBodies") {
            self.content(
                &format!("/components/requestBodies/{}", escape(&name)),
                Direction::Request,
            );
        }
        for name in self.keys("/components/responses") {
            self.content(
                &format!("/components/responses/{}", escape(&name)),
                Direction::Response,
            );
        }
        for template in self.keys("/paths") {
            let item = format!("/paths/{}", escape(&template));
            self.parameters(&format!("{item}/parameters"));
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                let op = format!("{item}/{method}");
                if self.at(&op).is_none() {
                    continue;
                }
                self.parameters(&format!("{op}/parameters"));
                self.content(&format!("{op}/requestBody"), Direction::Request);
                for status in self.keys(&format!("{op}/responses")) {
                    self.content(
                        &format!("{op}/responses/{}", escape(&status)),
                        Direction::Response,
                    );
                }
            }
        }
    }

    fn parameters(&mut self, list: &str) {
        let n = self.at(list).and_then(Value::as_array).map_or(0, Vec::len);
        for i in 0..n {
            self.parameter(&format!("{list}/{i}"));
        }
    }

    fn parameter(&mut self, pointer: &str) {
        let Some(param) = self.at(pointer) else {
            return;
        };
        if param.get("$ref").is_some() || param.get("schema").is_none() {
            return;
        }
        let schema = format!("{pointer}/schema");
        if param.get("example").is_some() {
            self.push(format!("{pointer}/example"), &schema, Direction::Request);
        }
        self.schema(&schema, Direction::Request);
    }

    /// Examples of the media types in the `content` of a request body or response.
    fn content(&mut self, owner: &str, direction: Direction) {
        if self.at(owner).is_some_and(|o| o.get("$ref").is_some()) {
            return;
        }
        for media in self.keys(&format!("{owner}/content")) {
            let media = format!("{owner}/content/{}", escape(&media));
            let schema = format!("{media}/schema");
            if self.at(&schema).is_none() {
                continue;
            }
            if self.at(&format!("{media}/example")).is_some() {
                self.push(format!("{media}/example"), &schema, direction);
            }
            for name in self.keys(&format!("{media}/examples")) {
                let value = format!("{media}/examples/{}/value", escape(&name));
                self.push(value, &schema, direction);
            }
            self.schema(&schema, direction);
        }
    }

    /// Examples on a schema and on the schemas nested in it.
    fn schema(&mut self, pointer: &str, direction: Direction) {
        let Some(node) = self.at(pointer) else { return };
        if node.get("$ref").is_some() {
            return;
        }
        if node.get("example").is_some() {
            self.push(format!("{pointer}/example"), pointer, direction);
        }
        for name in self.keys(&format!("{pointer}/x-examples")) {
            let mut example = format!("{pointer}/x-examples/{}", escape(&name));
            // x-examples (a vendor extension) holds either bare values or Example Objects.
            let wrapped = self
                .at(&example)
                .and_then(Value::as_object)
                .is_some_and(|o| o.len() == 1 && o.contains_key("value"));
            if wrapped {
                example.push_str("/value");
            }
            self.push(example, pointer, direction);
        }
        for name in self.keys(&format!("{pointer}/properties")) {
            self.schema(
                &format!("{pointer}/properties/{}", escape(&name)),
                direction,
            );
        }
        for k in ["items", "not", "additionalProperties"] {
            if self
                .at(pointer)
                .and_then(|n| n.get(k))
                .is_some_and(Value::is_object)
            {
                self.schema(&format!("{pointer}/{k}"), direction);
            }
        }
        for k in SUBSCHEMA_LISTS {
            let n = self
                .at(&format!("{pointer}/{k}"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for i in 0..n {
                self.schema(&format!("{pointer}/{k}/{i}"), direction);
            }
        }
    }
}

/// YAML to JSON; map keys that YAML reads as numbers or booleans (`200:`) become strings.
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                n.as_f64().map_or(Value::Null, |f| json!(f))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// The path of a server URL: `https://api.vipps.no/qr` → `/qr`.
fn server_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.trim_end_matches('/').to_owned()
}

fn strip_base<'p>(path: &'p str, base: &str) -> Option<&'p str> {
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Matches a request path (below the server path) against a template; returns the number of
/// literal segments and the path parameters. A trailing slash is not significant.
fn match_template(template: &str, path: &str) -> Option<(usize, Vec<(String, String)>)> {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if t.len() != p.len() {
        return None;
    }
    let mut literals = 0;
    let mut params = Vec::new();
    for (t, p) in t.iter().zip(&p) {
        if let Some(name) = t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            params.push((name.to_owned(), (*p).to_owned()));
        } else if t == p {
            literals += 1;
        } else {
            return None;
        }
    }
    Some((literals, params))
}

/// The media type without parameters, lower case: `application/json;charset=UTF-8` →
/// `application/json`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Escapes one JSON-pointer token.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}
