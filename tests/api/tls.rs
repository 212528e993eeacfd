//! TLS on the public listener: served with the configured certificate, Strict-Transport-Security
//! on answers, plain HTTP refused, and a renewed certificate served without a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

/// A self-signed certificate for localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn client_trusting(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .build()
        .expect("client")
}

fn write(dir: &Path, (cert, key): &(String, String)) {
    // The key first: a reload that sees the new certificate also finds its key.
    std::fs::write(dir.join("key.pem"), key).expect("key");
    std::fs::write(dir.join("cert.pem"), cert).expect("cert");
}

#[tokio::test]
async fn the_public_listener_serves_tls_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = certificate();
    write(dir.path(), &first);
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let app = TestApp::spawn_with(&[
        ("USERORG__HTTP__TLS_CERT_FILE", &cert),
        ("USERORG__HTTP__TLS_KEY_FILE", &key),
        ("USERORG__HTTP__TLS_RELOAD_SECONDS", "1"),
    ])
    .await;
    let port = app.public.rsplit(':').next().expect("port").to_string();
    let url = format!("https://localhost:{port}/health");

    let reply = client_trusting(&first.0)
        .get(&url)
        .send()
        .await
        .expect("TLS request");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["params"]["status"], "SUCCESS");
    assert!(
        reqwest::get(format!("http://localhost:{port}/health"))
            .await
            .is_err(),
        "plain HTTP is not answered on a TLS listener"
    );
    // The internal listener has no certificate configured: plain HTTP, no HSTS.
    let internal = reqwest::get(format!("{}/health", app.internal))
        .await
        .expect("internal");
    assert!(
        internal
            .headers()
            .get("strict-transport-security")
            .is_none()
    );

    // A renewed certificate (a new key pair) is served once the files change.
    let second = certificate();
    write(dir.path(), &second);
    let renewed = client_trusting(&second.0);
    let started = Instant::now();
    loop {
        if let Ok(reply) = renewed.get(&url).send().await {
            assert_eq!(reply.status(), 200);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        client_trusting(&first.0).get(&url).send().await.is_err(),
        "the old certificate is no longer served"
    );
    app.stop().await;
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let mut env = std::collections::HashMap::new();
    env.insert("USERORG__DATA_DIR".to_string(), "/tmp/unused".to_string());
    env.insert(
        "USERORG__HTTP__TLS_CERT_FILE".to_string(),
        "/etc/cert.pem".to_string(),
    );
    let error = userorg::config::Settings::load(None, &env).expect_err("refused");
    assert!(error.to_string().contains("http.tls_key_file"), "{error}");
}
