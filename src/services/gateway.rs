//! API-consumer keys as Kong's `jwt` and `acl` plugins give them in a Sunbird deployment: a
//! consumer token is an HS256 JWT whose `iss` (or header `kid`) names a credential of a
//! consumer; the consumer must hold one of the route's ACL groups. Refusals are Kong's own
//! statuses and messages. Off unless `[gateway] require_api_key` is set.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::consumer::{ConsumerRecord, CredentialKeyRecord, may_consume, valid_group};
use crate::domain::{DomainError, DomainResult, Record};
use crate::storage::{Expect, Store, Table, Transaction};

/// A refusal of the gateway: status and Kong's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KongRefusal {
    pub status: u16,
    pub message: &'static str,
}

const fn refusal(status: u16, message: &'static str) -> KongRefusal {
    KongRefusal { status, message }
}

pub const UNAUTHORIZED: KongRefusal = refusal(401, "Unauthorized");
pub const MULTIPLE_TOKENS: KongRefusal = refusal(401, "Multiple tokens provided");
const NO_ISS: KongRefusal = refusal(401, "No mandatory 'iss' in claims");
const NO_CREDENTIALS: KongRefusal = refusal(403, "No credentials found for given 'iss'");
const INVALID_ALGORITHM: KongRefusal = refusal(403, "Invalid algorithm");
const INVALID_SIGNATURE: KongRefusal = refusal(403, "Invalid signature");
const CANNOT_CONSUME: KongRefusal = refusal(403, "You cannot consume this service");
const UNEXPECTED: KongRefusal = refusal(500, "An unexpected error occurred");

/// Longest consumer token read.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A consumer admitted to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Clone)]
pub struct ConsumerKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The key credential secrets are derived from.
    key: Arc<[u8; 32]>,
    required: bool,
}

impl std::fmt::Debug for ConsumerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerKeys")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ConsumerKeys {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        key: [u8; 32],
        required: bool,
    ) -> Self {
        ConsumerKeys {
            store,
            clock,
            key: Arc::new(key),
            required,
        }
    }

    /// Whether `/api` requests must carry a consumer key (`[gateway] require_api_key`).
    pub fn required(&self) -> bool {
        self.required
    }

    fn secret(&self, credential_key: &str) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.as_slice()).expect("HMAC takes any key length");
        mac.update(b"gateway-consumer-credential\x1f");
        mac.update(credential_key.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn signature(&self, credential_key: &str, signed: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret(credential_key))
            .expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Creates (or extends) consumer `name` with `groups` and a new credential; answers the
    /// consumer token (`iss` = the credential key, no expiry, as Kong's consumer JWTs are).
    pub async fn create(&self, name: &str, groups: &[String]) -> DomainResult<String> {
        let invalid = |what: &str| DomainError::Internal(anyhow::anyhow!("{what}"));
        if name.is_empty() || !valid_group(name) {
            return Err(invalid("a consumer name is letters, digits, '_' and '-'"));
        }
        if groups.is_empty() || !groups.iter().all(|group| valid_group(group)) {
            return Err(invalid("groups are letters, digits, '_' and '-'"));
        }
        let existing = self.store.get(Table::ApiConsumer, name).await?;
        let (mut record, expect) = match existing {
            Some(row) => (
                ConsumerRecord::from_value(row.doc).map_err(DomainError::internal)?,
                Expect::Version(row.version),
            ),
            None => (
                ConsumerRecord {
                    name: name.to_string(),
                    groups: Vec::new(),
                    created_at: sunbird_timestamp(self.clock.now()),
                },
                Expect::Absent,
            ),
        };
        for group in groups {
            if !record.groups.contains(group) {
                record.groups.push(group.clone());
            }
        }
        let key = hex::encode(rand::random::<[u8; 16]>());
        let credential = CredentialKeyRecord {
            key: key.clone(),
            consumer: name.to_string(),
            algorithm: "HS256".into(),
        };
        let mut transaction = Transaction::default();
        transaction.put_record(Table::ApiConsumer, name, &record, expect)?;
        transaction.put_record(Table::ApiCredential, &key, &credential, Expect::Absent)?;
        self.store.commit(transaction).await?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::json!({ "iss": key }).to_string());
        let signed = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.signature(&key, &signed));
        Ok(format!("{signed}.{signature}"))
    }

    /// Kong's `jwt` then `acl` plugin on a consumer token for a route whitelisting `groups`.
    pub async fn admit(&self, token: &str, groups: &[&str]) -> Result<Consumer, KongRefusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(UNAUTHORIZED);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(UNAUTHORIZED);
        };
        let decode = |part: &str| -> Option<Value> {
            let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(Value::is_object)
        };
        let (Some(header_json), Some(claims)) = (decode(header), decode(payload)) else {
            return Err(UNAUTHORIZED);
        };
        let Some(issuer) = claims.get("iss").and_then(Value::as_str) else {
            return Err(NO_ISS);
        };
        let credential_key = header_json
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or(issuer);
        let credential = match self.store.get(Table::ApiCredential, credential_key).await {
            Ok(Some(row)) => CredentialKeyRecord::from_value(row.doc).map_err(|_| UNEXPECTED)?,
            Ok(None) => return Err(NO_CREDENTIALS),
            Err(error) => {
                tracing::warn!(error = %error, "consumer credential unreadable");
                return Err(UNEXPECTED);
            }
        };
        if header_json.get("alg").and_then(Value::as_str) != Some(credential.algorithm.as_str()) {
            return Err(INVALID_ALGORITHM);
        }
        let presented = URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .map_err(|_| INVALID_SIGNATURE)?;
        let expected = self.signature(&credential.key, &format!("{header}.{payload}"));
        use subtle::ConstantTimeEq;
        if !bool::from(expected.as_slice().ct_eq(presented.as_slice())) {
            return Err(INVALID_SIGNATURE);
        }
        let consumer = match self
            .store
            .get(Table::ApiConsumer, &credential.consumer)
            .await
        {
            Ok(Some(row)) => ConsumerRecord::from_value(row.doc).map_err(|_| UNEXPECTED)?,
            Ok(None) => return Err(NO_CREDENTIALS),
            Err(error) => {
                tracing::warn!(error = %error, "consumer unreadable");
                return Err(UNEXPECTED);
            }
        };
        if !may_consume(&consumer.groups, groups) {
            return Err(CANNOT_CONSUME);
        }
        Ok(Consumer {
            name: consumer.name,
            groups: consumer.groups,
        })
    }
}
