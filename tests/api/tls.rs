//! HTTPS with a certificate made in the test: exchanges (in both shapes, the octo-sts action's
//! included), refusal of a mismatched pair, and certificate reload on SIGHUP.

use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;
use sts_broker::startup::{Application, Options};

use crate::helpers::{spawn_app_with, test_config};

/// A CA (its PEM) and a server certificate and key for 127.0.0.1 / localhost signed by it.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

pub(crate) fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub(crate) fn write_pair(dir: &Path, pki: &Pki) {
    // Write then rename, as certificate managers do, so a reload never reads half a file.
    for (name, text) in [("tls.crt", &pki.cert_pem), ("tls.key", &pki.key_pem)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

pub(crate) fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn exchanges_over_https_in_both_shapes() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki();
    write_pair(certs.path(), &pki);
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let app = spawn_app_with(|c| {
        c.tls_cert_file = Some(cert.clone());
        c.tls_key_file = Some(key.clone());
    })
    .await;
    assert!(
        app.address.starts_with("https://127.0.0.1:"),
        "{}",
        app.address
    );
    let client = client_trusting(&pki.ca_pem);
    let discovery: Value = client
        .get(format!("{}/.well-known/openid-configuration", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["issuer"],
        app.address.as_str(),
        "the default issuer is https"
    );

    // The octo-sts action's exact request, over TLS.
    let subject = app.idp.token(&app.idp.claims());
    let url = format!(
        "{}/sts/exchange?scope=https://deploy.internal&scopes=&identity=api-deploy",
        app.address
    );
    let answer: Value = client
        .get(url)
        .header("authorization", format!("Bearer {subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{answer}"
    );

    let form = crate::helpers::form(&[
        ("grant_type", crate::helpers::GRANT),
        ("subject_token", &subject),
        ("subject_token_type", crate::helpers::ID_TOKEN),
        ("audience", "https://deploy.internal"),
    ]);
    let token = client
        .post(format!("{}/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);

    // Plain HTTP to the HTTPS port gets no answer a client could mistake for success.
    let plain = reqwest::Client::new()
        .get(format!(
            "{}/healthz",
            app.address.replace("https://", "http://")
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn a_mismatched_pair_is_refused_at_start() {
    let certs = tempfile::tempdir().unwrap();
    let (one, other) = (make_pki(), make_pki());
    std::fs::write(certs.path().join("tls.crt"), &one.cert_pem).unwrap();
    std::fs::write(certs.path().join("tls.key"), &other.key_pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let mut config = test_config(&dir.path().join("b.db"), &dir.path().join("policies"));
    config.tls_cert_file = Some(certs.path().join("tls.crt"));
    config.tls_key_file = Some(certs.path().join("tls.key"));
    let err = Application::build(config.clone(), Options::default())
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    config.tls_key_file = None;
    let err = Application::build(config, Options::default())
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("set together"), "{err:#}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_certificate_is_reloaded_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let first = make_pki();
    write_pair(certs.path(), &first);
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let app = spawn_app_with(|c| {
        c.tls_cert_file = Some(cert.clone());
        c.tls_key_file = Some(key.clone());
    })
    .await;
    let healthz = format!("{}/healthz", app.address);
    assert!(
        client_trusting(&first.ca_pem)
            .get(&healthz)
            .send()
            .await
            .is_ok()
    );

    let second = make_pki();
    write_pair(certs.path(), &second);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // New connections (a fresh client each time) must present the new certificate.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client_trusting(&second.ca_pem)
            .get(&healthz)
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client_trusting(&first.ca_pem)
            .get(&healthz)
            .send()
            .await
            .is_err(),
        "the old certificate is gone"
    );
}

/// Over TLS too, connections are counted, and one client is held to its share.
#[tokio::test]
async fn connections_over_https_are_capped_per_client() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki();
    write_pair(certs.path(), &pki);
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    let app = spawn_app_with(|c| {
        c.tls_cert_file = Some(cert.clone());
        c.tls_key_file = Some(key.clone());
        c.max_connections_per_client = Some(1);
    })
    .await;
    let first = client_trusting(&pki.ca_pem);
    let health = format!("{}/healthz", app.address);
    assert_eq!(first.get(&health).send().await.unwrap().status(), 200);
    // The first client keeps its connection open; a second one from the same address is shut.
    let second = client_trusting(&pki.ca_pem);
    assert!(second.get(&health).send().await.is_err());
    let metrics = first
        .get(format!("{}/metrics", app.address))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sts_open_connections 1\n"), "{metrics}");
    assert!(
        metrics.contains("sts_connections_refused_total{limit=\"client\"} 1\n"),
        "{metrics}"
    );
}
