//! The JWT tamper matrix (R15) through the real router: hand-made tokens, each sent to three
//! routes that need a user token, each refused with 401 and one identical body (the reason is
//! never told to the caller). The verifier's unit tests hold the same cases one level down.
//!
//! Of R15's 22 cases, the two about account merges (a merged-away user's token, an expired
//! `x-source-user-token`) wait for the merge API; the revoked-role case (403) is
//! `consistency.rs` (`rights_end_at_once_when_a_role_is_revoked`, on moka and on Redis).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, pkcs1::DecodeRsaPrivateKey};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Reply, TestApp, unique_email};

const AUDIENCE: &str = "userorg-matrix";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header` and `payload` (JSON text, so duplicate names can be written) with `key`.
fn rs256(key: &RsaPrivateKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

struct Forge {
    key: RsaPrivateKey,
    public_pem: String,
    kid: String,
    issuer: String,
}

impl Forge {
    fn of(app: &TestApp) -> Forge {
        let text = std::fs::read_to_string(app.signer.private_key_path()).expect("key file");
        let key = RsaPrivateKey::from_pkcs8_pem(&text)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&text))
            .expect("private key");
        Forge {
            key,
            public_pem: app.signer.public_key_pem().to_string(),
            kid: app.signer.kid().to_string(),
            issuer: app.issuer.clone(),
        }
    }

    fn header(&self) -> Value {
        json!({"alg": "RS256", "typ": "JWT", "kid": self.kid})
    }

    fn claims(&self, subject: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "sub": subject, "iss": self.issuer, "aud": AUDIENCE, "typ": "Bearer",
            "iat": now, "nbf": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        rs256(&self.key, &header.to_string(), &claims.to_string())
    }

    /// A valid token for `subject` with `change` applied to its claims.
    fn with_claims(&self, subject: &str, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims(subject);
        change(&mut claims);
        self.sign(&self.header(), &claims)
    }

    /// A token signed with the real key whose header has `change` applied.
    fn with_header(&self, subject: &str, change: impl FnOnce(&mut Value)) -> String {
        let mut header = self.header();
        change(&mut header);
        self.sign(&header, &self.claims(subject))
    }
}

/// The body of a refusal without what differs per request.
fn comparable(reply: &Reply) -> Value {
    let mut body = reply.body.clone();
    body["ts"] = Value::Null;
    body["params"]["msgid"] = Value::Null;
    body["params"]["resmsgid"] = Value::Null;
    body["id"] = Value::Null;
    body["ver"] = Value::Null;
    body
}

#[tokio::test]
async fn every_tampered_token_is_refused_with_one_401_body_on_every_route() {
    let mut app = TestApp::spawn_with(&[("USERORG__AUTH__AUDIENCE", AUDIENCE)]).await;
    let forge = Forge::of(&app);
    // With an audience configured, the suite's admin token needs it too.
    app.admin_token = forge.sign(&forge.header(), &forge.claims(&app.admin_id));
    let admin = Some(app.admin_token.clone());
    let id = app
        .create_user(json!({"firstName": "Target", "email": unique_email()}))
        .await;
    let blocked = app
        .create_user(json!({"firstName": "Blocked", "email": unique_email()}))
        .await;
    let deleted = app
        .create_user(json!({"firstName": "Deleted", "email": unique_email()}))
        .await;
    let blocked_token = forge.sign(&forge.header(), &forge.claims(&blocked));
    let deleted_token = forge.sign(&forge.header(), &forge.claims(&deleted));
    app.post(
        "/v1/user/block",
        json!({"userId": blocked}),
        admin.as_deref(),
    )
    .await
    .assert_ok();
    app.post(
        "/v1/user/delete",
        json!({"userId": deleted}),
        admin.as_deref(),
    )
    .await
    .assert_ok();

    let valid = forge.sign(&forge.header(), &forge.claims(&id));
    let (head, rest) = valid.split_once('.').expect("three parts");
    let (payload, signature) = rest.split_once('.').expect("three parts");
    let now = chrono::Utc::now().timestamp();

    let attacker = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).expect("attacker key");
    let attacker_jwk = json!({
        "kty": "RSA",
        "n": b64(&attacker.n().to_bytes_be()),
        "e": b64(&attacker.e().to_bytes_be()),
    });
    let hs256_with_public_key = {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": forge.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(forge.claims(&id).to_string().as_bytes())
        );
        let mut mac =
            Hmac::<Sha256>::new_from_slice(forge.public_pem.as_bytes()).expect("hmac key");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let flipped_payload = {
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).expect("payload");
        bytes[10] ^= 0x01;
        format!("{head}.{}.{signature}", b64(&bytes))
    };
    let attacker_signed = |header: Value| {
        let claims = forge.claims(&id);
        rs256(&attacker, &header.to_string(), &claims.to_string())
    };
    let duplicate_subject = {
        let claims = forge.claims(&id).to_string();
        // The first `sub` names the admin, the last the target: a parser that keeps either
        // one silently would let the token through.
        let doubled = claims.replacen('{', &format!("{{\"sub\":\"{}\",", app.admin_id), 1);
        rs256(&forge.key, &forge.header().to_string(), &doubled)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{payload}.",
                b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes())
            ),
        ),
        ("HS256 keyed with the RSA public key", hs256_with_public_key),
        ("stripped signature", format!("{head}.{payload}.")),
        ("flipped payload bit", flipped_payload),
        (
            "unknown kid",
            forge.with_header(&id, |h| h["kid"] = json!("no-such-key")),
        ),
        (
            "kid path traversal",
            forge.with_header(&id, |h| h["kid"] = json!("../../../../etc/passwd")),
        ),
        (
            "attacker jku",
            attacker_signed(
                json!({"alg": "RS256", "typ": "JWT", "kid": "evil", "jku": "http://127.0.0.1:9/jwks.json"}),
            ),
        ),
        (
            "attacker x5u",
            attacker_signed(
                json!({"alg": "RS256", "typ": "JWT", "kid": "evil", "x5u": "http://127.0.0.1:9/cert.pem"}),
            ),
        ),
        (
            "embedded attacker jwk",
            attacker_signed(json!({"alg": "RS256", "typ": "JWT", "jwk": attacker_jwk})),
        ),
        (
            "embedded jwk under the real kid",
            attacker_signed(
                json!({"alg": "RS256", "typ": "JWT", "kid": forge.kid, "jwk": attacker_jwk}),
            ),
        ),
        (
            "expired beyond the leeway",
            forge.with_claims(&id, |c| {
                c["iat"] = json!(now - 7200);
                c["nbf"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
        ),
        (
            "not yet valid",
            forge.with_claims(&id, |c| c["nbf"] = json!(now + 3600)),
        ),
        (
            "wrong issuer",
            forge.with_claims(&id, |c| {
                c["iss"] = json!("https://evil.example/realms/sunbird")
            }),
        ),
        (
            "wrong audience",
            forge.with_claims(&id, |c| c["aud"] = json!("another-service")),
        ),
        (
            "missing audience",
            forge.with_claims(&id, |c| {
                c.as_object_mut().expect("claims").remove("aud");
            }),
        ),
        (
            "an ID token",
            forge.with_claims(&id, |c| c["typ"] = json!("ID")),
        ),
        (
            "exp as a string",
            forge.with_claims(&id, |c| c["exp"] = json!((now + 600).to_string())),
        ),
        (
            "exp as a float",
            forge.with_claims(&id, |c| c["exp"] = json!(now as f64 + 600.5)),
        ),
        (
            "oversized token",
            forge.with_claims(&id, |c| c["pad"] = json!("x".repeat(9000))),
        ),
        ("bad base64", "!!!.@@@.###".to_string()),
        ("duplicate claims", duplicate_subject),
        ("a deleted user's token", deleted_token),
        ("a blocked user's token", blocked_token),
    ];
    let refusal = app.get(&format!("/v1/user/read/{id}"), None).await;
    refusal.assert_error(401, "UOS_0070", "You are not authorized.");
    let expected = comparable(&refusal);
    for (case, token) in &cases {
        let token = Some(token.as_str());
        let replies = [
            app.get(&format!("/v1/user/read/{id}"), token).await,
            app.patch(
                "/v1/user/update",
                json!({"userId": id, "firstName": "Tampered"}),
                token,
            )
            .await,
            app.post("/v3/user/search", json!({"filters": {}}), token)
                .await,
        ];
        for reply in replies {
            assert_eq!(reply.status.as_u16(), 401, "{case}: {}", reply.body);
            assert_eq!(comparable(&reply), expected, "{case}: {}", reply.body);
        }
    }
    // The valid token of the same forge is accepted, so the refusals are the tampering's.
    app.get(&format!("/v1/user/read/{id}"), Some(&valid))
        .await
        .assert_ok();
    let read = app
        .get(&format!("/v1/user/read/{id}"), admin.as_deref())
        .await;
    assert_eq!(read.assert_ok()["response"]["firstName"], "Target");
    app.stop().await;
}
