//! Offline verification of RS256 access tokens against the [`KeyRing`].

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::KeyRing;
use super::signer::ACCESS_TOKEN_TYPE;
use super::{AuthError, strict_json};

/// Default clock skew tolerated on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Default size limit of a token, in bytes. A Keycloak access token with a few realm roles is
/// 1–2 KB; 8 KB is also the usual header-size limit of proxies (R15 "oversized token").
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

/// The user id of a `sub` claim: its last `:` segment (Keycloak's federated ids are
/// `f:<provider id>:<user id>`, and Sunbird stores only the user id); `None` when empty.
pub fn user_id_of_subject(subject: &str) -> Option<&str> {
    subject.rsplit(':').next().filter(|id| !id.is_empty())
}

/// What the verifier accepts besides a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierSettings {
    /// Accepted `iss` values, compared exactly; must not be empty. For Sunbird user tokens this is
    /// `{sunbird_sso_url}realms/{sunbird_sso_realm}`.
    pub issuers: Vec<String>,
    /// Accepted audiences. `None` skips the `aud` check, as Sunbird does (Keycloak puts `account`
    /// there unless an audience mapper is configured). When set, a token must name at least one of
    /// them in `aud` (a string or an array of strings); a token without `aud` is rejected.
    pub audience: Option<Vec<String>>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Tokens longer than this are rejected before any decoding, so a huge header value costs
    /// nothing but a length check.
    pub max_token_bytes: usize,
    /// A key bound to its own issuer: `(kid, issuer)`. A token signed with that key must carry
    /// exactly that issuer, and that issuer is accepted from no other key. Set when the local
    /// signer runs beside an external identity provider.
    pub bound_key: Option<(String, String)>,
}

impl Default for VerifierSettings {
    /// Defaults for everything but the issuers, which have none: set them before use.
    fn default() -> Self {
        VerifierSettings {
            issuers: Vec::new(),
            audience: None,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            bound_key: None,
        }
    }
}

impl VerifierSettings {
    /// Default settings accepting the given issuers.
    pub fn for_issuers<I, S>(issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        VerifierSettings {
            issuers: issuers.into_iter().map(Into::into).collect(),
            ..VerifierSettings::default()
        }
    }

    fn validate(&self) -> Result<(), AuthError> {
        if self.issuers.is_empty() || self.issuers.iter().any(String::is_empty) {
            return Err(AuthError::Settings(
                "at least one non-empty issuer is required",
            ));
        }
        if let Some(audience) = &self.audience
            && (audience.is_empty() || audience.iter().any(String::is_empty))
        {
            return Err(AuthError::Settings(
                "audience, when set, needs at least one non-empty value",
            ));
        }
        if self.max_token_bytes == 0 {
            return Err(AuthError::Settings("max token size must be positive"));
        }
        Ok(())
    }
}

/// A token whose signature and claims passed every check.
#[derive(Clone, PartialEq)]
pub struct VerifiedToken {
    /// The last `:`-separated segment of `sub`: Keycloak federated ids look like
    /// `f:<provider id>:<user id>` and Sunbird stores only the user id.
    pub user_id: String,
    /// The full `sub` claim.
    pub subject: String,
    /// The `iss` claim (one of the accepted issuers).
    pub issuer: String,
    /// The `exp` claim, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// All claims, for callers that need more (`parentId` of a for-token, `roles`, ...).
    pub claims: Map<String, Value>,
}

impl fmt::Debug for VerifiedToken {
    // Keycloak tokens carry the user's name and e-mail: only claim names are shown, so a debug
    // print of a request context cannot leak personal data into the logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("user_id", &self.user_id)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .field("claim_names", &self.claims.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Verifies access tokens offline against a [`KeyRing`].
///
/// Rules, in the order they are applied (each maps to one [`AuthError`] variant):
///
/// 1. size: a token longer than `max_token_bytes` is rejected before decoding;
/// 2. shape: three base64url (no padding) segments, header and claims JSON objects without
///    duplicate keys; a `crit` header is rejected because no extension is understood;
/// 3. algorithm: the header `alg` must be exactly `RS256`, whatever the key (no `none`, no
///    HMAC keyed with the public key, no ES*/PS*);
/// 4. key: the header `kid` picks the key among the ring, and only there. `jku`, `x5u`, `jwk` and
///    `x5c` are never looked at. A token **without `kid` is rejected** rather than tried against
///    every key: Sunbird's own validator fails on such tokens (`kid` is dereferenced
///    unconditionally), Keycloak always sets it, and refusing keeps the cost of a bad token at one
///    RSA operation whatever the size of the ring;
/// 5. signature: RSASSA-PKCS1-v1_5 with SHA-256, signature length equal to the modulus length;
/// 6. claims, only once the signature holds: `exp` required, `nbf` checked when present, both
///    integers (a string, a fraction such as `1.7e9` or `1700000000.5`, or a value beyond `i64`
///    is malformed: Sunbird itself casts `exp` to an integer, and R15 lists float `exp` among the
///    tokens to refuse); `iss` one of the accepted issuers; `aud` when configured; the `typ` claim,
///    when present, must be `Bearer` (an ID or refresh token is not an access token: ASVS 9.2.2);
///    `sub` a non-empty string whose last `:` segment is non-empty.
///
/// The verifier is cheap to clone and shares its ring between clones, so
/// [`TokenVerifier::reload_keys`] on one clone is seen by all.
#[derive(Clone)]
pub struct TokenVerifier {
    // The ring is swapped whole, never edited in place, so a reader holding the previous `Arc`
    // keeps a consistent snapshot and the lock is held only for a pointer copy.
    keys: Arc<RwLock<Arc<KeyRing>>>,
    settings: Arc<VerifierSettings>,
    // Clients send the same token with every request, and an RSA check costs far more than the
    // rest of a request: the SHA-256 of every token whose signature held is remembered, so a
    // repeated token skips only the signature check. Every claim (expiry included) is checked
    // again on each use, and a key change forgets everything.
    verified_signatures: moka::sync::Cache<[u8; 32], ()>,
}

/// Tokens whose signature is remembered at most, and for how long.
const VERIFIED_SIGNATURE_CAPACITY: u64 = 100_000;
const VERIFIED_SIGNATURE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys())
            .field("settings", &self.settings)
            .finish()
    }
}

impl TokenVerifier {
    /// Creates a verifier; fails when the settings cannot accept any token (no issuer, an empty
    /// audience list, a zero size limit).
    pub fn new(keys: KeyRing, settings: VerifierSettings) -> Result<TokenVerifier, AuthError> {
        settings.validate()?;
        Ok(TokenVerifier {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            settings: Arc::new(settings),
            verified_signatures: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_SIGNATURE_CAPACITY)
                .time_to_live(VERIFIED_SIGNATURE_TTL)
                .build(),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }

    /// A snapshot of the current key ring.
    pub fn keys(&self) -> Arc<KeyRing> {
        // A poisoned lock still holds a whole ring (it is only ever replaced), so use it.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the key ring; tokens verified afterwards use the new keys.
    pub fn replace_keys(&self, keys: KeyRing) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        // A removed key must not keep vouching for tokens it signed.
        self.verified_signatures.invalidate_all();
    }

    /// Reads the key directory again and swaps the new ring in; returns the number of keys.
    ///
    /// On error the current ring stays in force. This does blocking file I/O: from async code call
    /// it on a blocking thread (a timer or a SIGHUP handler, for instance).
    pub fn reload_keys(&self) -> Result<usize, AuthError> {
        let reloaded = self.keys().reload()?;
        let count = reloaded.len();
        self.replace_keys(reloaded);
        tracing::info!(keys = count, "token verification keys reloaded");
        Ok(count)
    }

    /// Verifies `token` at the current time.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// Verifies `token` as if the time were `now` (seconds since the Unix epoch), so tests and
    /// callers with an injected clock need not sleep or forge timestamps.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<VerifiedToken, AuthError> {
        if token.trim().is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > self.settings.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed("token must have three segments"));
        };
        if signature_b64.is_empty() {
            return Err(AuthError::Malformed("signature is empty"));
        }

        let header = decode_json_segment(header_b64)
            .ok_or(AuthError::Malformed("header is not base64url json"))?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(AuthError::Algorithm);
        }
        if header.contains_key("crit") {
            return Err(AuthError::Malformed(
                "critical header parameters are not supported",
            ));
        }
        let kid = match header.get("kid") {
            None => return Err(AuthError::NoKeyId),
            Some(Value::String(kid)) => kid,
            Some(_) => return Err(AuthError::Malformed("kid is not a string")),
        };

        let ring = self.keys();
        let key = ring.get(kid).ok_or(AuthError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        if signature.len() != key.modulus_bytes {
            return Err(AuthError::BadSignature);
        }
        let digest = token_digest(token);
        if !self.verified_signatures.contains_key(&digest) {
            // The signing input is the two first segments exactly as sent, dot included.
            let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
            let signature_holds = jsonwebtoken::crypto::verify(
                signature_b64,
                signing_input.as_bytes(),
                &key.decoding_key,
                Algorithm::RS256,
            )
            .unwrap_or(false);
            if !signature_holds {
                return Err(AuthError::BadSignature);
            }
            self.verified_signatures.insert(digest, ());
        }

        // Claims are parsed only from a token whose signature holds.
        let claims = decode_json_segment(claims_b64)
            .ok_or(AuthError::Malformed("claims are not base64url json"))?;
        self.check_claims(kid, claims, now)
    }

    /// Whether `issuer` is accepted from the key `kid`.
    fn issuer_accepted(&self, kid: &str, issuer: &str) -> bool {
        match &self.settings.bound_key {
            Some((bound_kid, bound_issuer)) if bound_kid == kid => issuer == bound_issuer,
            Some((_, bound_issuer)) if bound_issuer == issuer => false,
            _ => self.settings.issuers.iter().any(|i| i == issuer),
        }
    }

    fn check_claims(
        &self,
        kid: &str,
        claims: Map<String, Value>,
        now: i64,
    ) -> Result<VerifiedToken, AuthError> {
        let leeway = i64::try_from(self.settings.leeway_seconds).unwrap_or(i64::MAX);

        let expires_at =
            integer_claim(&claims, "exp")?.ok_or(AuthError::Malformed("exp claim is required"))?;
        if expires_at.saturating_add(leeway) <= now {
            return Err(AuthError::Expired);
        }
        if let Some(not_before) = integer_claim(&claims, "nbf")?
            && not_before > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid);
        }

        let issuer = match claims.get("iss") {
            Some(Value::String(issuer)) if self.issuer_accepted(kid, issuer) => issuer.clone(),
            _ => return Err(AuthError::WrongIssuer),
        };

        if let Some(accepted) = &self.settings.audience {
            let named = |value: &Value| {
                value
                    .as_str()
                    .is_some_and(|aud| accepted.iter().any(|a| a == aud))
            };
            let audience_ok = match claims.get("aud") {
                Some(single @ Value::String(_)) => named(single),
                Some(Value::Array(items)) => {
                    items.iter().all(Value::is_string) && items.iter().any(named)
                }
                _ => false,
            };
            if !audience_ok {
                return Err(AuthError::WrongAudience);
            }
        }

        match claims.get("typ") {
            None => {}
            Some(Value::String(typ)) if typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) => {}
            Some(_) => return Err(AuthError::WrongTokenType),
        }

        let subject = match claims.get("sub") {
            Some(Value::String(subject)) => subject.clone(),
            _ => return Err(AuthError::Subject),
        };
        let user_id = user_id_of_subject(&subject).ok_or(AuthError::Subject)?;

        Ok(VerifiedToken {
            user_id: user_id.to_owned(),
            subject,
            issuer,
            expires_at,
            claims,
        })
    }
}

/// Decodes a base64url (unpadded, canonical) segment holding a JSON object without duplicate keys.
fn decode_json_segment(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    strict_json::parse_object(&bytes)
}

/// Reads a NumericDate claim: absent is `None`, an integer is its value, anything else (string,
/// fraction, out of `i64` range) is malformed.
fn integer_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or(AuthError::Malformed(
            "exp and nbf must be integer numeric dates",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use jsonwebtoken::EncodingKey;
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::test_support::{
        ISSUER, TRUSTED_KID, access_claims, b64, rs256_header, sign_raw, sign_rs256, spki_pem,
        test_keys,
    };

    const NOW: i64 = 1_750_000_000;

    fn trusted_ring() -> KeyRing {
        let mut ring = KeyRing::new();
        ring.insert_pem(TRUSTED_KID, &spki_pem(&test_keys().trusted))
            .expect("trusted key loads");
        ring
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(trusted_ring(), VerifierSettings::for_issuers([ISSUER]))
            .expect("valid settings")
    }

    fn verifier_with_audience(audience: &[&str]) -> TokenVerifier {
        let settings = VerifierSettings {
            audience: Some(audience.iter().map(|a| a.to_string()).collect()),
            ..VerifierSettings::for_issuers([ISSUER])
        };
        TokenVerifier::new(trusted_ring(), settings).expect("valid settings")
    }

    /// A token signed by the trusted key under its kid.
    fn token(claims: &Value) -> String {
        sign_rs256(&rs256_header(TRUSTED_KID), claims, &test_keys().trusted)
    }

    fn claims_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut claims = access_claims(NOW);
        edit(claims.as_object_mut().expect("claims are an object"));
        claims
    }

    /// Signs an arbitrary signing input with the trusted key (for segments that are not JSON).
    fn sign_input(signing_input: &str) -> String {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let der = test_keys().trusted.to_pkcs1_der().expect("pkcs1 der");
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_rsa_der(der.as_bytes()),
            Algorithm::RS256,
        )
        .expect("sign");
        format!("{signing_input}.{signature}")
    }

    /// Verifies a token that must fail, and checks the error text leaks none of it.
    fn reject(verifier: &TokenVerifier, token: &str) -> AuthError {
        let error = verifier
            .verify_at(token, NOW)
            .expect_err("token must be rejected");
        let message = error.to_string();
        for segment in token.split('.').filter(|s| s.len() > 3) {
            assert!(
                !message.contains(segment),
                "error message leaks the token: {message}"
            );
        }
        assert!(error.is_token_rejection(), "{error:?} is a token rejection");
        error
    }

    #[test]
    fn valid_token_round_trip() {
        let verified = verifier()
            .verify_at(&token(&access_claims(NOW)), NOW)
            .expect("valid token");
        assert_eq!(verified.user_id, "874ed8a5-782e-4f6c-8f36-e0288455901e");
        assert_eq!(
            verified.subject,
            "f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:874ed8a5-782e-4f6c-8f36-e0288455901e"
        );
        assert_eq!(verified.issuer, ISSUER);
        assert_eq!(verified.expires_at, NOW + 300);
        assert_eq!(verified.claims.get("azp"), Some(&json!("portal")));
    }

    #[test]
    fn a_remembered_signature_never_skips_the_claim_checks() {
        let verifier = verifier();
        let token = token(&access_claims(NOW));
        verifier
            .verify_at(&token, NOW)
            .expect("first use verifies the signature");
        verifier
            .verify_at(&token, NOW)
            .expect("second use is remembered");
        // The same token later than its expiry is refused even though its signature held.
        assert!(matches!(
            verifier.verify_at(&token, NOW + 3600),
            Err(AuthError::Expired)
        ));
        // A token differing in one signature character is a different token.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert!(matches!(
            reject(&verifier, &forged),
            AuthError::BadSignature
        ));
        // Replacing the keys forgets every remembered signature.
        verifier.replace_keys(KeyRing::new());
        assert!(matches!(reject(&verifier, &token), AuthError::UnknownKey));
    }

    #[test]
    fn plain_subject_is_the_user_id() {
        let claims = claims_with(|c| {
            c.insert("sub".into(), json!("0123-user"));
        });
        let verified = verifier()
            .verify_at(&token(&claims), NOW)
            .expect("valid token");
        assert_eq!(verified.user_id, "0123-user");
    }

    #[test]
    fn verify_uses_the_system_clock() {
        let now = chrono::Utc::now().timestamp();
        assert!(verifier().verify(&token(&access_claims(now))).is_ok());
        assert!(matches!(
            verifier().verify(&token(&access_claims(now - 3600))),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn missing_token_is_rejected() {
        assert!(matches!(reject(&verifier(), ""), AuthError::Missing));
        assert!(matches!(reject(&verifier(), "  "), AuthError::Missing));
    }

    #[test]
    fn alg_none_is_rejected() {
        let claims = b64(access_claims(NOW).to_string());
        for alg in ["none", "None", "NONE"] {
            let header = b64(json!({"alg": alg, "kid": TRUSTED_KID}).to_string());
            let unsigned = format!("{header}.{claims}.");
            assert!(matches!(
                reject(&verifier(), &unsigned),
                AuthError::Malformed(_)
            ));
            let with_junk = format!("{header}.{claims}.{}", b64("junk"));
            assert!(matches!(
                reject(&verifier(), &with_junk),
                AuthError::Algorithm
            ));
        }
    }

    #[test]
    fn hs256_keyed_with_the_public_key_is_rejected() {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": TRUSTED_KID});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string()),
            b64(access_claims(NOW).to_string())
        );
        let pem = spki_pem(&test_keys().trusted);
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(pem.as_bytes()),
            Algorithm::HS256,
        )
        .expect("hmac sign");
        let forged = format!("{signing_input}.{signature}");
        assert!(matches!(reject(&verifier(), &forged), AuthError::Algorithm));
    }

    #[test]
    fn every_algorithm_but_rs256_is_rejected() {
        for alg in [
            "RS384", "RS512", "PS256", "ES256", "EdDSA", "HS512", "rs256", "",
        ] {
            let header = json!({"alg": alg, "kid": TRUSTED_KID});
            let token = sign_rs256(&header, &access_claims(NOW), &test_keys().trusted);
            assert!(
                matches!(reject(&verifier(), &token), AuthError::Algorithm),
                "{alg}"
            );
        }
        let header = json!({"kid": TRUSTED_KID});
        let token = sign_rs256(&header, &access_claims(NOW), &test_keys().trusted);
        assert!(matches!(reject(&verifier(), &token), AuthError::Algorithm));
    }

    #[test]
    fn stripped_signature_is_rejected() {
        let token = token(&access_claims(NOW));
        let (unsigned, _) = token.rsplit_once('.').expect("three segments");
        assert!(matches!(
            reject(&verifier(), &format!("{unsigned}.")),
            AuthError::Malformed(_)
        ));
        assert!(matches!(
            reject(&verifier(), unsigned),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn flipped_payload_or_signature_bit_is_rejected() {
        let token = token(&access_claims(NOW));
        let segments: Vec<&str> = token.split('.').collect();

        let mut claims = URL_SAFE_NO_PAD.decode(segments[1]).expect("claims decode");
        let position = claims.len() / 2;
        claims[position] ^= 0x01;
        let tampered = format!("{}.{}.{}", segments[0], b64(&claims), segments[2]);
        assert!(matches!(
            reject(&verifier(), &tampered),
            AuthError::BadSignature
        ));

        let mut signature = URL_SAFE_NO_PAD
            .decode(segments[2])
            .expect("signature decode");
        signature[10] ^= 0x80;
        let tampered = format!("{}.{}.{}", segments[0], segments[1], b64(&signature));
        assert!(matches!(
            reject(&verifier(), &tampered),
            AuthError::BadSignature
        ));

        // A truncated signature has the wrong length for the key.
        let tampered = format!("{}.{}.{}", segments[0], segments[1], b64(&signature[..128]));
        assert!(matches!(
            reject(&verifier(), &tampered),
            AuthError::BadSignature
        ));
    }

    #[test]
    fn unknown_or_missing_kid_is_rejected() {
        let claims = access_claims(NOW);
        let token = sign_rs256(&rs256_header("other-key"), &claims, &test_keys().trusted);
        assert!(matches!(reject(&verifier(), &token), AuthError::UnknownKey));

        let token = sign_rs256(&json!({"alg": "RS256"}), &claims, &test_keys().trusted);
        assert!(matches!(reject(&verifier(), &token), AuthError::NoKeyId));

        let token = sign_rs256(
            &json!({"alg": "RS256", "kid": 7}),
            &claims,
            &test_keys().trusted,
        );
        assert!(matches!(
            reject(&verifier(), &token),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn kid_path_traversal_never_reaches_the_file_system() {
        // A trusted key file sits next to the key directory: a kid walking out of the directory
        // must not find it, because kids are looked up in the loaded ring, never opened as paths.
        let root = tempfile::tempdir().expect("tempdir");
        let keys_dir = root.path().join("keys");
        fs::create_dir(&keys_dir).expect("keys dir");
        fs::write(keys_dir.join(TRUSTED_KID), spki_pem(&test_keys().trusted)).expect("key file");
        fs::write(root.path().join("outside"), spki_pem(&test_keys().trusted)).expect("outside");
        let ring = KeyRing::load_dir(&keys_dir).expect("ring loads");
        let verifier =
            TokenVerifier::new(ring, VerifierSettings::for_issuers([ISSUER])).expect("verifier");

        for kid in [
            "../outside",
            "../../etc/passwd",
            "/etc/passwd",
            "./trusted-key",
            "trusted-key/",
        ] {
            let token = sign_rs256(
                &rs256_header(kid),
                &access_claims(NOW),
                &test_keys().trusted,
            );
            assert!(
                matches!(reject(&verifier, &token), AuthError::UnknownKey),
                "{kid}"
            );
        }
    }

    #[test]
    fn keys_named_by_the_token_are_ignored() {
        let attacker = &test_keys().attacker;
        let attacker_public = spki_pem(attacker);
        let attacker_jwk = json!({"kty": "RSA", "kid": "attacker", "e": "AQAB", "n": "AAAA"});
        let hostile_headers = [
            json!({"alg": "RS256", "kid": "attacker", "jku": "https://evil.example/jwks.json"}),
            json!({"alg": "RS256", "kid": TRUSTED_KID, "jku": "https://evil.example/jwks.json"}),
            json!({"alg": "RS256", "kid": TRUSTED_KID, "x5u": "https://evil.example/cert.pem"}),
            json!({"alg": "RS256", "kid": TRUSTED_KID, "jwk": attacker_jwk}),
            json!({"alg": "RS256", "kid": TRUSTED_KID, "x5c": [attacker_public]}),
        ];
        for header in hostile_headers {
            let token = sign_rs256(&header, &access_claims(NOW), attacker);
            let error = reject(&verifier(), &token);
            assert!(
                matches!(error, AuthError::BadSignature | AuthError::UnknownKey),
                "{header}: {error:?}"
            );
        }
    }

    #[test]
    fn expiry_is_enforced_with_leeway() {
        let leeway = DEFAULT_LEEWAY_SECONDS as i64;
        let at = |exp: i64| {
            claims_with(|c| {
                c.insert("exp".into(), json!(exp));
            })
        };
        assert!(
            verifier()
                .verify_at(&token(&at(NOW - leeway + 1)), NOW)
                .is_ok()
        );
        assert!(matches!(
            reject(&verifier(), &token(&at(NOW - leeway))),
            AuthError::Expired
        ));
        assert!(matches!(
            reject(&verifier(), &token(&at(NOW - 3600))),
            AuthError::Expired
        ));
        assert!(matches!(
            reject(&verifier(), &token(&at(i64::MIN))),
            AuthError::Expired
        ));
    }

    #[test]
    fn not_before_is_enforced_with_leeway() {
        let leeway = DEFAULT_LEEWAY_SECONDS as i64;
        let at = |nbf: i64| {
            claims_with(|c| {
                c.insert("nbf".into(), json!(nbf));
            })
        };
        assert!(verifier().verify_at(&token(&at(NOW + leeway)), NOW).is_ok());
        assert!(matches!(
            reject(&verifier(), &token(&at(NOW + leeway + 1))),
            AuthError::NotYetValid
        ));
        assert!(matches!(
            reject(&verifier(), &token(&at(i64::MAX))),
            AuthError::NotYetValid
        ));
    }

    #[test]
    fn numeric_dates_must_be_integers() {
        let cases = [
            ("exp", json!((NOW + 300).to_string())),
            ("exp", json!((NOW + 300) as f64 + 0.5)),
            ("exp", json!((NOW + 300) as f64)),
            ("exp", json!(1.8e9)),
            ("exp", json!(u64::MAX)),
            ("exp", json!(null)),
            ("exp", json!([NOW + 300])),
            ("nbf", json!(NOW.to_string())),
            ("nbf", json!(NOW as f64)),
        ];
        for (name, value) in cases {
            let claims = claims_with(|c| {
                c.insert(name.into(), value.clone());
            });
            assert!(
                matches!(
                    reject(&verifier(), &token(&claims)),
                    AuthError::Malformed(_)
                ),
                "{name}={value}"
            );
        }
        let no_exp = claims_with(|c| {
            c.remove("exp");
        });
        assert!(matches!(
            reject(&verifier(), &token(&no_exp)),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn issuer_must_be_accepted() {
        let cases = [
            Some(json!("https://evil.example/auth/realms/sunbird")),
            Some(json!(format!("{ISSUER}/"))),
            Some(json!([ISSUER])),
            Some(json!("")),
            None,
        ];
        for issuer in cases {
            let claims = claims_with(|c| match &issuer {
                Some(value) => {
                    c.insert("iss".into(), value.clone());
                }
                None => {
                    c.remove("iss");
                }
            });
            assert!(
                matches!(reject(&verifier(), &token(&claims)), AuthError::WrongIssuer),
                "{issuer:?}"
            );
        }
        let two_issuers = VerifierSettings::for_issuers(["https://other.example", ISSUER]);
        let verifier = TokenVerifier::new(trusted_ring(), two_issuers).expect("verifier");
        assert!(verifier.verify_at(&token(&access_claims(NOW)), NOW).is_ok());
    }

    #[test]
    fn audience_is_checked_only_when_configured() {
        let with_aud = |aud: Option<Value>| {
            claims_with(|c| match aud {
                Some(value) => {
                    c.insert("aud".into(), value);
                }
                None => {
                    c.remove("aud");
                }
            })
        };
        let strict = verifier_with_audience(&["userorg", "lms"]);
        for accepted in [
            json!("userorg"),
            json!(["account", "lms"]),
            json!(["userorg"]),
        ] {
            assert!(
                strict
                    .verify_at(&token(&with_aud(Some(accepted.clone()))), NOW)
                    .is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            Some(json!("account")),
            Some(json!(["account"])),
            Some(json!([])),
            Some(json!(["userorg", 5])),
            Some(json!(5)),
            Some(json!("USERORG")),
            None,
        ] {
            let claims = with_aud(refused.clone());
            assert!(
                matches!(reject(&strict, &token(&claims)), AuthError::WrongAudience),
                "{refused:?}"
            );
        }
        // Unconfigured: any aud, or none, passes (Keycloak's default `account`).
        assert!(verifier().verify_at(&token(&with_aud(None)), NOW).is_ok());
        assert!(
            verifier()
                .verify_at(&token(&with_aud(Some(json!(["x", "y"])))), NOW)
                .is_ok()
        );
    }

    #[test]
    fn only_access_tokens_are_accepted() {
        for typ in ["ID", "Refresh", "Offline", "Logout", ""] {
            let claims = claims_with(|c| {
                c.insert("typ".into(), json!(typ));
            });
            assert!(
                matches!(
                    reject(&verifier(), &token(&claims)),
                    AuthError::WrongTokenType
                ),
                "{typ}"
            );
        }
        let claims = claims_with(|c| {
            c.insert("typ".into(), json!(["Bearer"]));
        });
        assert!(matches!(
            reject(&verifier(), &token(&claims)),
            AuthError::WrongTokenType
        ));
        let lower = claims_with(|c| {
            c.insert("typ".into(), json!("bearer"));
        });
        assert!(verifier().verify_at(&token(&lower), NOW).is_ok());
        let absent = claims_with(|c| {
            c.remove("typ");
        });
        assert!(verifier().verify_at(&token(&absent), NOW).is_ok());
    }

    #[test]
    fn subject_is_required_and_non_empty() {
        for subject in [
            None,
            Some(json!("")),
            Some(json!("f:provider:")),
            Some(json!(42)),
            Some(json!(null)),
        ] {
            let claims = claims_with(|c| match &subject {
                Some(value) => {
                    c.insert("sub".into(), value.clone());
                }
                None => {
                    c.remove("sub");
                }
            });
            assert!(
                matches!(reject(&verifier(), &token(&claims)), AuthError::Subject),
                "{subject:?}"
            );
        }
    }

    #[test]
    fn oversized_token_is_rejected_before_parsing() {
        let huge = "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert!(matches!(reject(&verifier(), &huge), AuthError::TooLarge));
        let padded = claims_with(|c| {
            c.insert("padding".into(), json!("x".repeat(DEFAULT_MAX_TOKEN_BYTES)));
        });
        assert!(matches!(
            reject(&verifier(), &token(&padded)),
            AuthError::TooLarge
        ));
    }

    #[test]
    fn bad_base64_is_rejected() {
        let token = token(&access_claims(NOW));
        let segments: Vec<&str> = token.split('.').collect();
        let variants = [
            format!("{}=.{}.{}", segments[0], segments[1], segments[2]),
            format!(
                "{}.{}.{}",
                segments[0].replace('e', "+"),
                segments[1],
                segments[2]
            ),
            format!("!{}.{}.{}", segments[0], segments[1], segments[2]),
            format!("{}.{}.{}==", segments[0], segments[1], segments[2]),
            format!("{}.{}.{}*", segments[0], segments[1], segments[2]),
        ];
        for variant in variants {
            let error = reject(&verifier(), &variant);
            assert!(
                matches!(error, AuthError::Malformed(_) | AuthError::Algorithm),
                "{error:?}"
            );
        }
        // Signed over a claims segment that is not base64url: the signature holds, decoding fails.
        let header = b64(rs256_header(TRUSTED_KID).to_string());
        let signed = sign_input(&format!("{header}.not*base64"));
        assert!(matches!(
            reject(&verifier(), &signed),
            AuthError::Malformed(_)
        ));
        // Signed over claims that are base64url but not a JSON object.
        let signed = sign_input(&format!("{header}.{}", b64("[1,2,3]")));
        assert!(matches!(
            reject(&verifier(), &signed),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn wrong_segment_count_is_rejected() {
        let token = token(&access_claims(NOW));
        assert!(matches!(
            reject(&verifier(), &format!("{token}.extra.more")),
            AuthError::Malformed(_)
        ));
        assert!(matches!(
            reject(&verifier(), "only-one-segment"),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn duplicate_claims_or_header_parameters_are_rejected() {
        let trusted = &test_keys().trusted;
        let header = rs256_header(TRUSTED_KID).to_string();
        let claims = format!(
            r#"{{"exp":{},"iss":"{ISSUER}","sub":"victim","sub":"attacker"}}"#,
            NOW + 300
        );
        let token = sign_raw(header.as_bytes(), claims.as_bytes(), trusted);
        assert!(matches!(
            reject(&verifier(), &token),
            AuthError::Malformed(_)
        ));

        let header = format!(r#"{{"alg":"RS256","kid":"{TRUSTED_KID}","kid":"other"}}"#);
        let token = sign_raw(
            header.as_bytes(),
            access_claims(NOW).to_string().as_bytes(),
            trusted,
        );
        assert!(matches!(
            reject(&verifier(), &token),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn critical_header_extensions_are_rejected() {
        let header = json!({"alg": "RS256", "kid": TRUSTED_KID, "crit": ["b64"], "b64": false});
        let token = sign_rs256(&header, &access_claims(NOW), &test_keys().trusted);
        assert!(matches!(
            reject(&verifier(), &token),
            AuthError::Malformed(_)
        ));
    }

    #[test]
    fn settings_that_accept_nothing_are_refused() {
        let refused = [
            VerifierSettings::default(),
            VerifierSettings::for_issuers([""]),
            VerifierSettings {
                audience: Some(vec![]),
                ..VerifierSettings::for_issuers([ISSUER])
            },
            VerifierSettings {
                audience: Some(vec![String::new()]),
                ..VerifierSettings::for_issuers([ISSUER])
            },
            VerifierSettings {
                max_token_bytes: 0,
                ..VerifierSettings::for_issuers([ISSUER])
            },
        ];
        for settings in refused {
            let error = TokenVerifier::new(KeyRing::new(), settings).expect_err("refused");
            assert!(matches!(error, AuthError::Settings(_)));
            assert!(!error.is_token_rejection());
        }
    }

    #[test]
    fn reload_picks_up_added_and_removed_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = KeyRing::load_dir(dir.path()).expect("empty ring");
        let verifier =
            TokenVerifier::new(ring, VerifierSettings::for_issuers([ISSUER])).expect("verifier");
        let clone = verifier.clone();
        let token = token(&access_claims(NOW));
        assert!(matches!(reject(&verifier, &token), AuthError::UnknownKey));

        fs::write(dir.path().join(TRUSTED_KID), spki_pem(&test_keys().trusted)).expect("write key");
        assert_eq!(verifier.reload_keys().expect("reload"), 1);
        assert!(
            clone.verify_at(&token, NOW).is_ok(),
            "clones share the reloaded ring"
        );

        fs::remove_file(dir.path().join(TRUSTED_KID)).expect("remove key");
        assert_eq!(clone.reload_keys().expect("reload"), 0);
        assert!(matches!(reject(&verifier, &token), AuthError::UnknownKey));
    }

    #[test]
    fn reload_without_a_directory_is_an_error_and_keeps_the_ring() {
        let verifier = verifier();
        assert!(matches!(
            verifier.reload_keys(),
            Err(AuthError::Settings(_))
        ));
        assert!(verifier.verify_at(&token(&access_claims(NOW)), NOW).is_ok());
    }

    #[test]
    fn debug_output_hides_personal_claims() {
        let claims = claims_with(|c| {
            c.insert("email".into(), json!("someone@example.org"));
        });
        let verified = verifier()
            .verify_at(&token(&claims), NOW)
            .expect("valid token");
        let debug = format!("{verified:?}");
        assert!(!debug.contains("someone@example.org"));
        assert!(debug.contains("email"));
    }
}
