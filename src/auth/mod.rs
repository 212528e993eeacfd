//! Access-token authentication: offline RS256 verification of Keycloak/Sunbird JWTs and local
//! signing for an embedded install.
//!
//! Sunbird's `AccessTokenValidator` checks user tokens offline: every file in
//! `accesstoken.publickey.basepath` is an RSA public key whose *file name* is the JWT `kid`, the
//! `kid` picks the key, the signature is SHA256withRSA and the user id is the last `:` segment of
//! `sub`. This module keeps that contract and closes the gaps the original leaves open (no `nbf`,
//! `aud` or token-type check, tokens logged on failure):
//!
//! - [`KeyRing`] loads the key directory (file name = `kid`) and can be reloaded at run time;
//! - [`TokenVerifier`] checks a token against the ring with a fixed algorithm allow-list (RS256),
//!   keys chosen only from the ring, and strict claim rules;
//! - [`LocalSigner`] creates and keeps the signing key pair of an embedded install and mints tokens
//!   the verifier accepts, so `userorg token --admin` needs no Keycloak;
//! - [`bearer_or_raw`] extracts the token from a header value.
//!
//! Every rejection is an [`AuthError`] whose variant names the reason for logs and metrics; the
//! HTTP layer answers all of them with the same 401 body so a caller learns nothing about why a
//! token failed. Errors never carry the token or key material.

mod error;
mod keys;
mod service;
mod signer;
mod strict_json;
#[cfg(test)]
mod test_support;
mod verifier;

pub use error::AuthError;
pub use keys::KeyRing;
pub use service::ServiceCredential;
pub use signer::{ACCESS_TOKEN_TYPE, LOCAL_KID_PREFIX, LocalSigner, MintClaims};
pub use verifier::{
    DEFAULT_LEEWAY_SECONDS, DEFAULT_MAX_TOKEN_BYTES, TokenVerifier, VerifiedToken,
    VerifierSettings, user_id_of_subject,
};

/// Returns the token carried by a header value, with an optional `Bearer ` prefix removed.
///
/// Sunbird clients send the user token raw in `x-authenticated-user-token`, while generic OAuth
/// clients send `Bearer <token>`; both forms are accepted so neither kind of client has to change.
/// The scheme is matched case-insensitively (RFC 9110 §11.1) and surrounding whitespace is
/// dropped. An empty result means "no token" and is rejected by [`TokenVerifier::verify`] as
/// [`AuthError::Missing`].
pub fn bearer_or_raw(header_value: &str) -> &str {
    let trimmed = header_value.trim();
    const SCHEME: &str = "bearer";
    match (trimmed.get(..SCHEME.len()), trimmed.get(SCHEME.len()..)) {
        (Some(prefix), Some(rest))
            if prefix.eq_ignore_ascii_case(SCHEME)
                && (rest.is_empty() || rest.starts_with([' ', '\t'])) =>
        {
            rest.trim_start()
        }
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_or_raw;

    #[test]
    fn bearer_or_raw_accepts_raw_and_prefixed_tokens() {
        assert_eq!(bearer_or_raw("abc.def.ghi"), "abc.def.ghi");
        assert_eq!(bearer_or_raw("Bearer abc.def.ghi"), "abc.def.ghi");
        assert_eq!(bearer_or_raw("bearer   abc.def.ghi "), "abc.def.ghi");
        assert_eq!(bearer_or_raw("BEARER\tabc"), "abc");
        assert_eq!(bearer_or_raw("  abc  "), "abc");
        assert_eq!(bearer_or_raw(""), "");
        assert_eq!(bearer_or_raw("Bearer "), "");
        // A token that merely starts with the letters of the scheme is not stripped.
        assert_eq!(bearer_or_raw("Bearerabc"), "Bearerabc");
        // Multi-byte input must not panic on a char boundary.
        assert_eq!(bearer_or_raw("bearé"), "bearé");
    }
}
