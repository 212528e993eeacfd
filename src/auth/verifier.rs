//! Offline verification of RS256 access tokens against the [`KeyRing`].

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::KeyRing;
use super::{AuthError, strict_json};

/// Default clock skew tolerated on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Default size limit of a token, in bytes. A Keycloak access token with a few realm roles is
/// 1–2 KB; 8 KB is also the usual header-size limit of proxies (R15 "oversized token").
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

/// The only `typ` claim value accepted when the claim is present (Keycloak access tokens).
const ACCESS_TOKEN_TYPE: &str = "Bearer";

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
}

impl Default for VerifierSettings {
    /// Defaults for everything but the issuers, which have none: set them before use.
    fn default() -> Self {
        VerifierSettings {
            issuers: Vec::new(),
            audience: None,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
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

        // Claims are parsed only from a token whose signature holds.
        let claims = decode_json_segment(claims_b64)
            .ok_or(AuthError::Malformed("claims are not base64url json"))?;
        self.check_claims(claims, now)
    }

    fn check_claims(
        &self,
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
            Some(Value::String(issuer)) if self.settings.issuers.contains(issuer) => issuer.clone(),
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
        let user_id = subject.rsplit(':').next().unwrap_or_default();
        if user_id.is_empty() {
            return Err(AuthError::Subject);
        }

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
