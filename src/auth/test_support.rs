//! Test fixtures: RSA keys generated once per test binary and hand-made JWS tokens.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};

pub(crate) const TRUSTED_KID: &str = "trusted-key";
pub(crate) const ISSUER: &str = "https://sso.example.org/auth/realms/sunbird";

/// Key generation is the slow part of these tests; two keys serve every test of the binary.
pub(crate) struct TestKeys {
    /// The key the verifier trusts.
    pub(crate) trusted: RsaPrivateKey,
    /// A key the verifier does not know, for forged tokens.
    pub(crate) attacker: RsaPrivateKey,
}

pub(crate) fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand_core::OsRng;
        TestKeys {
            trusted: RsaPrivateKey::new(&mut rng, 2048).expect("generate trusted test key"),
            attacker: RsaPrivateKey::new(&mut rng, 2048).expect("generate attacker test key"),
        }
    })
}

pub(crate) fn spki_pem(key: &RsaPrivateKey) -> String {
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("encode spki pem")
}

pub(crate) fn pkcs1_pem(key: &RsaPrivateKey) -> String {
    key.to_public_key()
        .to_pkcs1_pem(LineEnding::LF)
        .expect("encode pkcs1 pem")
}

/// The SPKI DER body in standard base64 without armour, as Keycloak's admin console shows it.
pub(crate) fn bare_base64(key: &RsaPrivateKey) -> String {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .expect("encode spki der");
    base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
}

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header` and `claims` (serialised as given) with RS256 under `key`: any header,
/// including hostile ones, can be produced.
pub(crate) fn sign_rs256(header: &Value, claims: &Value, key: &RsaPrivateKey) -> String {
    sign_raw(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        key,
    )
}

/// Like [`sign_rs256`] on raw JSON bytes, for payloads `serde_json::Value` cannot express
/// (duplicate keys).
pub(crate) fn sign_raw(header: &[u8], claims: &[u8], key: &RsaPrivateKey) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let der = key.to_pkcs1_der().expect("encode pkcs1 der");
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_rsa_der(der.as_bytes()),
        Algorithm::RS256,
    )
    .expect("sign test token");
    format!("{signing_input}.{signature}")
}

pub(crate) fn rs256_header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": kid})
}

/// Keycloak-like access token claims valid around `now`.
pub(crate) fn access_claims(now: i64) -> Value {
    json!({
        "exp": now + 300,
        "iat": now,
        "jti": "5b0f1c1e-8d7c-4e6b-9b3e-000000000001",
        "iss": ISSUER,
        "aud": "account",
        "sub": "f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:874ed8a5-782e-4f6c-8f36-e0288455901e",
        "typ": "Bearer",
        "azp": "portal",
    })
}
