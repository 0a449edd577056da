//! Clients as the limits count them: an IPv6 client by its /64.

use crate::helpers::{GRANT, ID_TOKEN, form, spawn_app_with};

/// The per-client rate limit counts an IPv6 client by its /64, through `X-Forwarded-For`
/// from a trusted proxy; the audit record keeps the whole address.
#[tokio::test]
async fn the_client_rate_limit_counts_ipv6_clients_by_their_64() {
    let app = spawn_app_with(|c| {
        c.rate_limit_per_client = "2/m".into();
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let exchange_as = |forwarded: &'static str| {
        let body = form(&[
            ("grant_type", GRANT),
            ("subject_token", &app.idp.token(&app.idp.claims())),
            ("subject_token_type", ID_TOKEN),
            ("audience", "https://deploy.internal"),
        ]);
        let request = app
            .client
            .post(format!("{}/token", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", forwarded)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            (response.status().as_u16(), id)
        }
    };
    let (status, id) = exchange_as("2001:db8:1:2::1").await;
    assert_eq!(status, 200);
    assert_eq!(exchange_as("2001:db8:1:2:ffff:ffff:ffff:ffff").await.0, 200);
    assert_eq!(
        exchange_as("2001:db8:1:2:abcd::7").await.0,
        429,
        "a third address of the same /64 is the same client"
    );
    assert_eq!(
        exchange_as("2001:db8:1:3::1").await.0,
        200,
        "the next /64 is another client"
    );
    assert_eq!(exchange_as("198.51.100.1").await.0, 200);
    let store = sts_broker::storage::connect(app.config.database_url.expose())
        .await
        .unwrap();
    let record = &store.audit_by_request(&id).await.unwrap()[0];
    assert_eq!(record.event.client_addr.as_deref(), Some("2001:db8:1:2::1"));
}
