//! What the broker sends for the console: the page without a credential, behind headers
//! that allow no inline or evaluated script and no framing.

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};

use crate::helpers::spawn_app;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_page_loads_without_a_credential_behind_a_strict_policy() {
    let app = spawn_app().await;
    let page = app.get("/admin/").await;
    assert_eq!(page.status(), 200);
    assert!(header(&page, CONTENT_TYPE.as_str()).starts_with("text/html"));
    let csp = header(&page, CONTENT_SECURITY_POLICY.as_str()).to_owned();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    let html = page.text().await.unwrap();
    // Scripts only from files: no inline script, no inline handlers or styles.
    assert!(html.contains(r#"<script type="module" src="assets/js/main.js"></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    let inline_handler = html.split(" on").skip(1).any(|rest| {
        let name = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        name.len() < rest.len() && name.starts_with('=')
    });
    assert!(!inline_handler && !html.contains("style="), "{html}");

    let script = app.get("/admin/assets/js/main.js").await;
    assert_eq!(script.status(), 200);
    assert!(header(&script, CONTENT_TYPE.as_str()).starts_with("text/javascript"));
    assert!(header(&script, CONTENT_SECURITY_POLICY.as_str()).contains("'none'"));
    let etag = header(&script, ETAG.as_str()).to_owned();
    let again = app
        .client
        .get(format!("{}/admin/assets/js/main.js", app.address))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    for (path, kind) in [
        ("/admin/assets/app.css", "text/css"),
        ("/admin/assets/vendor/js-yaml.mjs", "text/javascript"),
        ("/admin/assets/vendor/js-yaml.LICENSE", "text/plain"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            header(&response, CONTENT_TYPE.as_str()).starts_with(kind),
            "{path}"
        );
    }
    let compressed = app
        .client
        .get(format!("{}/admin/assets/vendor/js-yaml.mjs", app.address))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&compressed, "content-encoding"), "gzip");
    for missing in ["/admin/assets/nope.js", "/admin/assets/../Cargo.toml"] {
        assert_eq!(app.get(missing).await.status(), 404, "{missing}");
    }
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(header(&bare, LOCATION.as_str()), "admin/");
}
