//! Webhook signatures as Vipps computes them (HMAC-SHA256 over method, path, date, host and body
//! hash). The simulator signs with [`sign`]; lanehub's receiver checks with [`verify`].
//!
//! The key is the secret's UTF-8 bytes (not base64-decoded) and comparison is constant-time. Both
//! sides take the signed host and path from the registered URL with [`signed_target`], so they
//! agree on its normalised form (host in lower case, default port dropped).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The headers a signed delivery carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-ms-date`, RFC 1123.
    pub date: String,
    /// `x-ms-content-sha256`: base64 of SHA-256 of the raw body.
    pub content_sha256: String,
    /// `Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=…`.
    pub authorization: String,
}

/// Why a delivery's signature was refused; `kind()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("authorization header is not HMAC-SHA256 with the expected signed headers")]
    MalformedAuthorization,
    #[error("body hash does not match x-ms-content-sha256")]
    ContentHashMismatch,
    #[error("signature does not match")]
    BadSignature,
    #[error("x-ms-date is unreadable or outside the allowed clock skew")]
    StaleDate,
}

const AUTH_PREFIX: &str = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=";

/// base64(SHA-256(body)).
pub fn content_hash(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

fn signature(secret: &str, path_and_query: &str, date: &str, host: &str, hash: &str) -> Vec<u8> {
    let to_sign = format!("POST\n{path_and_query}\n{date};{host};{hash}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Signs a delivery of `body` to `path_and_query` on `host` at `date` (RFC 1123).
pub fn sign(
    secret: &str,
    path_and_query: &str,
    host: &str,
    date: &str,
    body: &[u8],
) -> SignedHeaders {
    let hash = content_hash(body);
    let sig = B64.encode(signature(secret, path_and_query, date, host, &hash));
    SignedHeaders {
        date: date.to_owned(),
        authorization: format!("{AUTH_PREFIX}{sig}"),
        content_sha256: hash,
    }
}

/// The host (`host[:port]`, lower case, the port only when not the scheme's default) and the path
/// and query that a delivery to `url` is signed with; `Err` names what is wrong with the URL.
pub fn signed_target(url: &str) -> Result<(String, String), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let name = parsed
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?
        // `Url` lower-cases http(s) hosts already; an IPv6 literal keeps its brackets.
        .to_ascii_lowercase();
    let host = match parsed.port() {
        Some(port) => format!("{name}:{port}"),
        None => name,
    };
    let path_and_query = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    Ok((host, path_and_query))
}

/// Checks a delivery: body hash, then the HMAC, both in constant time. The date's freshness is
/// the caller's decision ([`check_date`]) because only it knows the clock.
pub fn verify(
    secret: &str,
    path_and_query: &str,
    host: &str,
    date: Option<&str>,
    content_sha256: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let date = date.ok_or(SignatureError::MissingHeader("x-ms-date"))?;
    let claimed_hash =
        content_sha256.ok_or(SignatureError::MissingHeader("x-ms-content-sha256"))?;
    let authorization = authorization.ok_or(SignatureError::MissingHeader("authorization"))?;
    let claimed_sig = authorization
        .strip_prefix(AUTH_PREFIX)
        .ok_or(SignatureError::MalformedAuthorization)?;
    let claimed_sig = B64
        .decode(claimed_sig)
        .map_err(|_| SignatureError::MalformedAuthorization)?;

    let actual_hash = content_hash(body);
    if !bool::from(actual_hash.as_bytes().ct_eq(claimed_hash.as_bytes())) {
        return Err(SignatureError::ContentHashMismatch);
    }
    let expected = signature(secret, path_and_query, date, host, &actual_hash);
    if !bool::from(expected.ct_eq(&claimed_sig)) {
        return Err(SignatureError::BadSignature);
    }
    Ok(())
}

/// Whether an RFC 1123 `x-ms-date` is within `tolerance` of `now`, either side. lanehub accepts a
/// correctly signed delivery whatever its date (Vipps may retry a delivery for days without
/// signing it afresh) and only counts the late ones.
pub fn check_date(
    date: &str,
    now: std::time::SystemTime,
    tolerance: std::time::Duration,
) -> Result<(), SignatureError> {
    let sent = httpdate::parse_http_date(date).map_err(|_| SignatureError::StaleDate)?;
    let skew = match now.duration_since(sent) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > tolerance {
        return Err(SignatureError::StaleDate);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official test vector from Vipps' webhook documentation.
    const SECRET: &str =
        "A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKXCIcrLoHncVJKDILsQSxS6NWCccwWm6r6FhGKhiHTBsG2wo/xU6FY/A==";
    const BODY: &str =
        r#"{"some-unique-content":"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-world"}"#;
    const DATE: &str = "Thu, 30 Mar 2023 08:38:32 GMT";
    const HOST: &str = "webhook.site";
    const PATH: &str = "/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63";

    #[test]
    fn official_test_vector_signs() {
        let h = sign(SECRET, PATH, HOST, DATE, BODY.as_bytes());
        assert_eq!(
            h.content_sha256,
            "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4="
        );
        assert_eq!(
            h.authorization,
            format!("{AUTH_PREFIX}agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=")
        );
    }

    /// `verify`'s arguments, so that each case below changes one of the official vector's.
    #[derive(Clone, Copy)]
    struct Args<'a> {
        secret: &'a str,
        path: &'a str,
        date: Option<&'a str>,
        authorization: Option<&'a str>,
        body: &'a str,
    }

    impl Args<'_> {
        fn verify(self) -> Result<(), SignatureError> {
            let hash = "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4=";
            verify(
                self.secret,
                self.path,
                HOST,
                self.date,
                Some(hash),
                self.authorization,
                self.body.as_bytes(),
            )
        }
    }

    #[test]
    fn official_test_vector_verifies_and_tampering_fails() {
        let auth = format!("{AUTH_PREFIX}agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U=");
        let official = Args {
            secret: SECRET,
            path: PATH,
            date: Some(DATE),
            authorization: Some(&auth),
            body: BODY,
        };
        assert_eq!(official.verify(), Ok(()));

        let tampered = BODY.replace("hello", "jello");
        for (args, want) in [
            (
                Args {
                    body: &tampered,
                    ..official
                },
                SignatureError::ContentHashMismatch,
            ),
            (
                Args {
                    secret: "other",
                    ..official
                },
                SignatureError::BadSignature,
            ),
            (
                Args {
                    path: "/other",
                    ..official
                },
                SignatureError::BadSignature,
            ),
            (
                Args {
                    date: None,
                    ..official
                },
                SignatureError::MissingHeader("x-ms-date"),
            ),
            (
                Args {
                    authorization: Some("Bearer x"),
                    ..official
                },
                SignatureError::MalformedAuthorization,
            ),
        ] {
            assert_eq!(args.verify(), Err(want));
        }
    }

    #[test]
    fn the_signed_host_is_normalised() {
        let t = |u: &str| signed_target(u).unwrap();
        assert_eq!(
            t("https://Store.Example.NO:443/vipps/webhooks?lane=1"),
            ("store.example.no".into(), "/vipps/webhooks?lane=1".into())
        );
        assert_eq!(
            t("HTTP://LOCALHOST:80/x"),
            ("localhost".into(), "/x".into())
        );
        assert_eq!(
            t("http://127.0.0.1:8080/x"),
            ("127.0.0.1:8080".into(), "/x".into())
        );
        assert_eq!(t("https://example.com"), ("example.com".into(), "/".into()));
        assert_eq!(t("http://[::1]:9000/v"), ("[::1]:9000".into(), "/v".into()));
        assert!(signed_target("store.example.no/hooks").is_err());
        assert!(signed_target("ftp://store.example.no/hooks").is_err());
    }

    #[test]
    fn date_tolerance() {
        let sent = httpdate::parse_http_date(DATE).unwrap();
        let five = std::time::Duration::from_secs(300);
        assert!(check_date(DATE, sent + std::time::Duration::from_secs(299), five).is_ok());
        assert!(check_date(DATE, sent - std::time::Duration::from_secs(299), five).is_ok());
        assert_eq!(
            check_date(DATE, sent + std::time::Duration::from_secs(301), five),
            Err(SignatureError::StaleDate)
        );
        assert_eq!(
            check_date("yesterday", sent, five),
            Err(SignatureError::StaleDate)
        );
    }
}
