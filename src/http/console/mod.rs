//! `/admin/`: the web console. One static page and its scripts and styles, embedded in the
//! binary (see [`assets`]); every view is drawn in the browser from the admin API's own
//! answers. The page holds no data, so it loads without a credential; the scripts call
//! `/admin/v1` with the admin's bearer token, which they keep in the tab's `sessionStorage`
//! and never put in a URL or a cookie (so there is no ambient credential to forge requests
//! with, and nothing for CSRF to ride on).

mod assets;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, middleware, web};

use assets::Asset;

/// What the console's responses allow: its own scripts and styles and calls to its own
/// origin, nothing inline, nothing evaluated, no framing. Trusted Types make the browser
/// refuse any HTML string put into the page (`innerHTML` and kin), so a value from a token
/// or a policy can only ever reach the page as text.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
    trusted-types 'none'";

/// Registers `/admin` (a redirect), `/admin/` (the page) and `/admin/assets/…`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(to_console))
        .route("/admin/", web::get().to(page))
        .service(
            web::resource("/admin/assets/{path:.+}")
                .wrap(middleware::Compress::default())
                .route(web::get().to(asset)),
        );
}

/// `/admin` → `/admin/` (relative, so it holds behind a proxy that adds a path prefix).
async fn to_console() -> HttpResponse {
    secured(HttpResponse::PermanentRedirect())
        .insert_header((header::LOCATION, "admin/"))
        .finish()
}

async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, &assets::PAGE)
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match assets::find(&path) {
        Some(asset) => serve(&req, asset),
        None => secured(HttpResponse::NotFound())
            .content_type("text/plain; charset=utf-8")
            .body("no such file"),
    }
}

/// The asset, or 304 when the browser holds this very version.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let etag = asset.etag();
    // Weak comparison (RFC 9110 §13.1.2), as If-None-Match asks.
    let opaque = etag.trim_start_matches("W/");
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == opaque || t == "*")
        });
    let mut response = match fresh {
        true => secured(HttpResponse::NotModified()),
        false => secured(HttpResponse::Ok()),
    };
    // Revalidated on every load: an upgraded broker serves its new scripts at once.
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag));
    match fresh {
        true => response.finish(),
        false => response
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body),
    }
}

/// A response with the console's security headers.
fn secured(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CROSS_ORIGIN_OPENER_POLICY, "same-origin"),
        (header::CROSS_ORIGIN_RESOURCE_POLICY, "same-origin"),
    ] {
        builder.insert_header((name, HeaderValue::from_static(value)));
    }
    builder
}
