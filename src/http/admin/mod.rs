//! `/admin/v1`: JSON over bearer auth. Thin: extract (the admin, `If-Match`, the body), call
//! the admin services, map the result.

mod audit;
mod documents;
mod explain;
mod extract;
mod failure;
mod keys;
mod preview;
mod revocations;
mod whoami;

use actix_web::{guard, web};

use crate::mint::KeyChange;
use crate::policy::Kind;

pub use failure::AdminFailure;

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/v1")
            .app_data(extract::json_config())
            // Before `/policies/{name}`, and only for POST: a policy named `preview` is
            // still read, replaced and deleted at its own path.
            .service(
                web::resource("/policies/preview")
                    .guard(guard::Post())
                    .to(preview::preview),
            )
            .configure(|c| document_routes(c, "/issuers", Kind::Issuer))
            .configure(|c| document_routes(c, "/policies", Kind::TrustPolicy))
            .configure(|c| document_routes(c, "/github-apps", Kind::GitHubApp))
            .route("/apply", web::post().to(documents::apply))
            .route("/explain", web::post().to(explain::explain))
            .route("/audit", web::get().to(audit::page))
            .route("/audit/{request_id}", web::get().to(audit::one))
            .route("/keys", web::get().to(keys::list))
            .route(
                "/keys/rotate",
                web::post().to(|w, k, i| keys::change(w, k, i, KeyChange::Rotate)),
            )
            .route(
                "/keys/replace",
                web::post().to(|w, k, i| keys::change(w, k, i, KeyChange::Replace)),
            )
            .route(
                "/tokens/revoke",
                web::post().to(revocations::revoke_matching),
            )
            .route(
                "/tokens/{jti}/revoke",
                web::post().to(revocations::revoke_jti),
            )
            .route("/revocations", web::get().to(revocations::list))
            .route("/whoami", web::get().to(whoami::whoami)),
    );
}

/// One kind of document under `path`: list, read, replace, delete, history.
fn document_routes(cfg: &mut web::ServiceConfig, path: &str, kind: Kind) {
    let one = format!("{path}/{{name}}");
    cfg.route(
        path,
        web::get().to(move |r, d, i| documents::list(r, d, i, kind)),
    )
    .route(
        &one,
        web::get().to(move |r, d, i, n| documents::get(r, d, i, n, kind)),
    )
    .route(
        &one,
        web::put().to(move |q, w, m, p, d, i, n| documents::put(q, w, m, p, d, i, n, kind)),
    )
    .route(
        &one,
        web::delete().to(move |w, m, d, i, n| documents::delete(w, m, d, i, n, kind)),
    )
    .route(
        &format!("{one}/history"),
        web::get().to(move |r, d, i, n| documents::history(r, d, i, n, kind)),
    );
}
