//! A tiny internal API that trusts the broker: `GET /deploy` needs scope `deploy:write`.
//!
//! ```sh
//! BROKER_URL=https://sts.example.com AUDIENCE=https://deploy.internal \
//!   cargo run --example internal_api
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/deploy
//! ```
//!
//! Against `serve --dev` (whose example policy grants `read write` for
//! `https://api.example.internal`), a dev token is refused with 403 `insufficient_scope`:
//! add a policy granting `deploy:write` to see a 200.

use actix_web::{App, HttpResponse, HttpServer, web};
use clap::Parser;
use serde_json::json;
use sts_verifier::Verifier;
use sts_verifier::actix::BrokerToken;

/// Settings, from flags or the environment.
#[derive(Parser)]
struct Args {
    /// The broker's issuer URL (its `iss`), e.g. https://sts.example.com.
    #[arg(long, env = "BROKER_URL")]
    broker_url: String,
    /// This API's audience: tokens must be issued for it.
    #[arg(long, env = "AUDIENCE", default_value = "https://deploy.internal")]
    audience: String,
    /// Address to serve on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
}

/// Runs only for a valid broker token for this audience that carries `deploy:write`.
async fn deploy(token: BrokerToken) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "deploying_for": token.sub,
        "policy": token.client_id,
        "on_behalf_of": token.act.as_ref().map(|a| &a.sub),
    }))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let verifier = Verifier::builder(&args.broker_url)
        .audience(&args.audience)
        .required_scopes(["deploy:write"])
        .build()?;
    let verifier = web::Data::new(verifier);
    println!(
        "internal API on http://{}/deploy trusting {} for {}",
        args.listen, args.broker_url, args.audience
    );
    HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .route("/deploy", web::get().to(deploy))
    })
    .bind(args.listen)?
    .run()
    .await?;
    Ok(())
}
