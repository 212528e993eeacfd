//! `/v1|v2/otp/generate` and `/v1|v2/otp/verify` (reference §8.10), on stronger storage than
//! Sunbird's: the code is derived from a random nonce under the blind-index key and never
//! stored (`domain::otp`), the row and the per-key send counts are kept in the store (shared
//! by every instance, authoritative), and a verification is counted by a compare-and-set
//! commit *before* the code is compared, so concurrent guesses are counted exactly and none
//! is compared past the budget. A code is single use: its row is deleted by a commit that
//! expects the version its own count produced.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::crypto::PiiVault;
use crate::domain::contact::{Email, Phone};
use crate::domain::notification::Channel;
use crate::domain::otp::{OtpPolicy, OtpRecord, OtpSends, OtpType, code_digits};
use crate::domain::{DomainError, DomainResult, ErrorCode, Record};
use crate::notify::templates::{self, OTP_TEMPLATE_IDS};
use crate::services::json::{Body, opt_nonblank, required_str, success};
use crate::services::notifications::{NotificationService, stored_address};
use crate::storage::records::{get_record, user};
use crate::storage::{Expect, Store, StoreError, Table, Transaction, Versioned, compose_key};

/// Rounds of a compare-and-set on one OTP row before giving up with 503: each lost round is
/// another request's commit on the same row landing, so this is far more than any burst on
/// one key needs.
const CAS_ROUNDS: usize = 1_000;

/// The blind-index namespace of OTP row keys, and of the code derivation.
const KEY_KIND: &str = "otp-key";
const CODE_KIND: &str = "otp-code";

#[derive(Clone)]
pub struct OtpService {
    store: Arc<dyn Store>,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    policy: OtpPolicy,
    notifications: NotificationService,
    default_country_code: String,
}

/// Where a request's code goes: the channel, the address, and the row keys it is kept under.
struct Target {
    channel: Channel,
    address: String,
    code_key: String,
    sends_key: String,
    tenant: Option<String>,
}

impl OtpService {
    pub fn new(
        store: Arc<dyn Store>,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        policy: OtpPolicy,
        notifications: NotificationService,
        default_country_code: String,
    ) -> Self {
        OtpService {
            store,
            vault,
            clock,
            policy,
            notifications,
            default_country_code,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The code of a row: digits of the HMAC of its nonce.
    fn code_of(&self, record: &OtpRecord) -> String {
        let mac = self.vault.token(CODE_KIND, &record.nonce);
        code_digits(&hex::decode(mac).unwrap_or_default(), self.policy.length)
    }

    /// The request's type and key (or the user's stored value of that type).
    async fn target(&self, body: &Body) -> DomainResult<Target> {
        let kind_name = required_str(body, "type")?;
        let kind = OtpType::from_name(&kind_name).ok_or_else(|| {
            DomainError::rule(ErrorCode::invalidParameterValue, &[&kind_name, "type"])
        })?;
        let mut tenant = None;
        let raw = match opt_nonblank(body, "userId")? {
            Some(user_id) => {
                let found = user(&self.store, &user_id)
                    .await?
                    .filter(|found| !found.record.is_deleted)
                    .ok_or_else(|| DomainError::not_found("user"))?;
                let record = found.record;
                tenant = Some(record.root_org_id.clone());
                let sealed = match kind {
                    OtpType::Email => record.email.clone(),
                    OtpType::Phone => record.phone.clone(),
                    OtpType::PrevUsedEmail => record.prev_used_email.clone(),
                    OtpType::PrevUsedPhone => record.prev_used_phone.clone(),
                    OtpType::RecoveryEmail => record.recovery_email.clone(),
                    OtpType::RecoveryPhone => record.recovery_phone.clone(),
                };
                let channel = if kind.is_email() {
                    Channel::Email
                } else {
                    Channel::Sms
                };
                stored_address(
                    &self.vault,
                    &user_id,
                    &record,
                    sealed.as_deref(),
                    channel,
                    &self.default_country_code,
                )
                .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &[kind.name()]))?
            }
            None => required_str(body, "key")?,
        };
        let (channel, address) = if kind.is_email() {
            let email = Email::parse(&raw).ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&raw, "key"])
            })?;
            (Channel::Email, email.as_str().to_string())
        } else {
            let phone = if raw.trim().starts_with('+') {
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                phonenumber::parse(None, format!("+{digits}"))
                    .ok()
                    .filter(phonenumber::is_valid)
                    .map(|parsed| {
                        format!("+{}{}", parsed.code().value(), parsed.national().value())
                    })
            } else {
                Phone::parse(&raw, None, &self.default_country_code)
                    .ok()
                    .map(|phone| phone.index_form())
            };
            let phone = phone.ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&raw, "key"])
            })?;
            (Channel::Sms, phone)
        };
        let token = self
            .vault
            .token(KEY_KIND, &format!("{}:{address}", channel.name()));
        Ok(Target {
            channel,
            address,
            code_key: compose_key(&["code", &token]),
            sends_key: compose_key(&["sends", &token]),
            tenant,
        })
    }

    /// `POST /v1|v2/otp/generate`: a new code, or the live one again, sent to the key.
    pub async fn generate(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        let template_id = opt_nonblank(body, "templateId")?;
        if let Some(id) = &template_id
            && !OTP_TEMPLATE_IDS.contains(&id.as_str())
        {
            // Sunbird answers an unknown template id so, with its unfilled message and 500.
            return Err(DomainError::unfilled(ErrorCode::invalidIdentifier).with_status(500));
        }
        let target = self.target(body).await?;
        let template_name = match target.channel {
            Channel::Email => templates::otp_email_template(template_id.as_deref()),
            Channel::Sms => template_id
                .as_deref()
                .unwrap_or(templates::OTP_SMS_TEMPLATE),
        };
        let template = self
            .notifications
            .template(template_name, target.tenant.as_deref())
            .await?
            .ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("template {template_name} is missing"))
            })?;
        for _ in 0..CAS_ROUNDS {
            let now = self.now_ms();
            let code_row =
                get_record::<OtpRecord>(&self.store, Table::Otp, &target.code_key).await?;
            let sends_row =
                get_record::<OtpSends>(&self.store, Table::Otp, &target.sends_key).await?;
            let mut sends = sends_row
                .as_ref()
                .map(|row| row.record.clone())
                .unwrap_or_default();
            sends.admit(&self.policy, now).map_err(|window| {
                DomainError::rule(ErrorCode::errorRateLimitExceeded, &[window.name()])
            })?;
            let mut transaction = Transaction::default();
            transaction.put_record(Table::Otp, &target.sends_key, &sends, expect_of(&sends_row))?;
            let record = match &code_row {
                // As Sunbird does: an unexpired code is sent again.
                Some(live) if usable(&live.record, &self.policy, now) => live.record.clone(),
                _ => {
                    let fresh = OtpRecord {
                        nonce: hex::encode(rand::random::<[u8; 16]>()),
                        attempts: 0,
                        created_ms: now,
                        expires_ms: now + self.policy.ttl_ms,
                    };
                    transaction.put_record(
                        Table::Otp,
                        &target.code_key,
                        &fresh,
                        expect_of(&code_row),
                    )?;
                    fresh
                }
            };
            if code_row
                .as_ref()
                .is_some_and(|live| usable(&live.record, &self.policy, now))
            {
                transaction.check(Table::Otp, &target.code_key, expect_of(&code_row));
            }
            let minutes = ((record.expires_ms - now).max(0) + 59_999) / 60_000;
            let vars = json!({
                "otp": self.code_of(&record),
                "otpExpiryInMinutes": minutes,
                "installationName": self.notifications.options().installation_name,
            });
            self.notifications.queue(
                &mut transaction,
                target.channel,
                "otp",
                &template,
                &vars,
                &target.address,
            )?;
            match self.store.commit(transaction).await {
                Ok(_) => return Ok(success()),
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(DomainError::Unavailable(
            "the OTP changed concurrently too often".into(),
        ))
    }

    /// `POST /v1|v2/otp/verify`.
    pub async fn verify(&self, body: &Body) -> DomainResult<Map<String, Value>> {
        let given = required_str(body, "otp")?;
        let target = self.target(body).await?;
        let invalid = || DomainError::rule(ErrorCode::errorInvalidOTP, &[]);
        for _ in 0..CAS_ROUNDS {
            let now = self.now_ms();
            let Some(current) =
                get_record::<OtpRecord>(&self.store, Table::Otp, &target.code_key).await?
            else {
                return Err(invalid());
            };
            if !current.record.is_live(now) || current.record.remaining(&self.policy) == 0 {
                self.forget(&target.code_key, current.version).await?;
                return Err(invalid());
            }
            // Counted first: the comparison below only runs for an attempt already recorded.
            let mut counted = current.record.clone();
            counted.attempts += 1;
            let mut transaction = Transaction::default();
            transaction.put_record(
                Table::Otp,
                &target.code_key,
                &counted,
                Expect::Version(current.version),
            )?;
            match self.store.commit(transaction).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(other) => return Err(other.into()),
            }
            let counted_version = current.version + 1;
            let expected = self.code_of(&counted);
            let matches: bool = expected.as_bytes().ct_eq(given.trim().as_bytes()).into();
            if matches {
                let mut single_use = Transaction::default();
                single_use.delete(
                    Table::Otp,
                    &target.code_key,
                    Expect::Version(counted_version),
                );
                return match self.store.commit(single_use).await {
                    Ok(_) => Ok(success()),
                    // Another verification was counted after this one: the code is spent or
                    // being spent there; this one does not get to use it.
                    Err(StoreError::Conflict { .. }) => Err(invalid()),
                    Err(other) => Err(other.into()),
                };
            }
            let remaining = counted.remaining(&self.policy);
            if remaining == 0 {
                self.forget(&target.code_key, counted_version).await?;
            }
            let mut result = Map::new();
            result.insert(
                "maxAllowedAttempt".into(),
                json!(self.policy.allowed_attempts),
            );
            result.insert("remainingAttempt".into(), json!(remaining));
            return Err(DomainError::rule(
                ErrorCode::otpVerificationFailed,
                &[&remaining.to_string()],
            )
            .with_result(result));
        }
        Err(DomainError::Unavailable(
            "the OTP changed concurrently too often".into(),
        ))
    }

    /// Deletes a spent or expired row at the version seen (a newer code stays).
    async fn forget(&self, key: &str, version: u64) -> DomainResult<()> {
        let mut transaction = Transaction::default();
        transaction.delete(Table::Otp, key, Expect::Version(version));
        match self.store.commit(transaction).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}

/// A code that can still be verified: unexpired, with attempts left (a spent code whose
/// deletion lost a race is replaced, never sent again).
fn usable(record: &OtpRecord, policy: &OtpPolicy, now_ms: i64) -> bool {
    record.is_live(now_ms) && record.remaining(policy) > 0
}

fn expect_of<T: Record>(row: &Option<Versioned<T>>) -> Expect {
    match row {
        Some(row) => Expect::Version(row.version),
        None => Expect::Absent,
    }
}
