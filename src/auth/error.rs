//! The one error type of the auth layer.

use std::path::PathBuf;

/// Why a token was rejected, or why key material could not be loaded or used.
///
/// The variants exist for logs and metrics ([`AuthError::reason`]); the HTTP layer answers every
/// token rejection with the same 401 body so a caller cannot probe which check failed. Messages
/// never contain the token, a claim value taken from it, or key material: a header value such as
/// `kid` is attacker-controlled and could otherwise smuggle text into the logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (absent or blank header).
    #[error("no token")]
    Missing,
    /// The token is longer than `max_token_bytes`; rejected before any parsing.
    #[error("token exceeds the size limit")]
    TooLarge,
    /// The token is not a well-formed compact JWS with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header `alg` is not RS256 (covers `none`, HS*, ES*, PS*, ...).
    #[error("token algorithm is not allowed")]
    Algorithm,
    /// The header has no `kid`; keys are never guessed (see [`crate::auth::TokenVerifier`]).
    #[error("token has no key id")]
    NoKeyId,
    /// The header `kid` names no key of the ring.
    #[error("token key id is not trusted")]
    UnknownKey,
    /// The signature does not verify with the key named by `kid`.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past beyond the leeway (a missing or non-integer `exp` is `Malformed`).
    #[error("token is expired")]
    Expired,
    /// `nbf` is in the future beyond the leeway.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is missing or not one of the accepted issuers.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// An audience is configured and `aud` is missing or names none of it.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The `typ` claim is present and is not `Bearer` (an ID or refresh token, for instance).
    #[error("token type is not accepted")]
    WrongTokenType,
    /// `sub` is missing, not a string, or has an empty user id segment.
    #[error("token subject is missing or empty")]
    Subject,
    /// A key file or directory could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file or PEM text does not hold a usable key.
    #[error("unusable key {origin}: {reason}")]
    Key {
        /// Where the key came from (a file path or a `kid`), never the key itself.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Key generation or token signing failed.
    #[error("local signing: {0}")]
    Signing(&'static str),
    /// The verifier or signer was given settings that cannot work.
    #[error("invalid auth settings: {0}")]
    Settings(&'static str),
}

impl AuthError {
    /// A stable, snake_case name of the reason, for log fields and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::NoKeyId => "no_key_id",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongTokenType => "wrong_token_type",
            AuthError::Subject => "subject",
            AuthError::Io { .. } => "io",
            AuthError::Key { .. } => "key",
            AuthError::Signing(_) => "signing",
            AuthError::Settings(_) => "settings",
        }
    }

    /// True when the error is about the presented token (answer 401), false when it is a fault of
    /// this service (key files, signing, settings: answer 500 and log at error level).
    pub fn is_token_rejection(&self) -> bool {
        !matches!(
            self,
            AuthError::Io { .. }
                | AuthError::Key { .. }
                | AuthError::Signing(_)
                | AuthError::Settings(_)
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuthError::Io {
            path: path.into(),
            source,
        }
    }
}
