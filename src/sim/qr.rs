//! QR exchange: `POST /qr/v1/exchange` turns a scanned personal QR into a phone number.

use actix_web::web;

pub(super) fn api_routes(_cfg: &mut web::ServiceConfig) {}
