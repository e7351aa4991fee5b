//! The cashier web UI at `/`: plain HTML, CSS and JavaScript compiled into the binary, so a lane
//! without a POS integration needs nothing but a browser (no CDN, no build step).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

fn asset(body: &'static str, content_type: &'static str) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!(
        "\"{}\"",
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Asset {
        body,
        content_type,
        etag,
    }
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        include_str!("../../assets/ui/index.html"),
        "text/html; charset=utf-8",
    )
});
static APP_JS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        include_str!("../../assets/ui/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        include_str!("../../assets/ui/style.css"),
        "text/css; charset=utf-8",
    )
});

/// No inline scripts or styles, nothing from other origins; WebSockets to this host only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|req: HttpRequest| async move { serve(&req, &INDEX) }),
    )
    .route(
        "/ui/app.js",
        web::get().to(|req: HttpRequest| async move { serve(&req, &APP_JS) }),
    )
    .route(
        "/ui/style.css",
        web::get().to(|req: HttpRequest| async move { serve(&req, &STYLE) }),
    );
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == asset.etag);
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}
