//! One-time passwords: the `otp` rows and the rules of their lifecycle.
//!
//! A code is never stored. Its row keeps a random nonce, and the code is the HMAC of that nonce
//! under the blind-index key, cut to digits: the service can send the same code again while it
//! is valid (as Sunbird re-sends an unexpired code), and a copy of the store without the key
//! tells nothing about it. Rows are keyed by the blind-index token of the type and key, so the
//! store holds no address either.

use serde::{Deserialize, Serialize};

/// Where an OTP goes: the contact types a request may name, each an email or a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtpType {
    Email,
    Phone,
    PrevUsedEmail,
    PrevUsedPhone,
    RecoveryEmail,
    RecoveryPhone,
}

impl OtpType {
    pub const ALL: [OtpType; 6] = [
        OtpType::Email,
        OtpType::Phone,
        OtpType::PrevUsedEmail,
        OtpType::PrevUsedPhone,
        OtpType::RecoveryEmail,
        OtpType::RecoveryPhone,
    ];

    /// The name in requests, and the user field holding the value of that type.
    pub fn name(self) -> &'static str {
        match self {
            OtpType::Email => "email",
            OtpType::Phone => "phone",
            OtpType::PrevUsedEmail => "prevUsedEmail",
            OtpType::PrevUsedPhone => "prevUsedPhone",
            OtpType::RecoveryEmail => "recoveryEmail",
            OtpType::RecoveryPhone => "recoveryPhone",
        }
    }

    pub fn from_name(name: &str) -> Option<OtpType> {
        OtpType::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the key is an email (else a phone).
    pub fn is_email(self) -> bool {
        matches!(
            self,
            OtpType::Email | OtpType::PrevUsedEmail | OtpType::RecoveryEmail
        )
    }
}

/// A live code: `otp` row `code␟<token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpRecord {
    /// Hex of 16 random bytes; the code is derived from it.
    pub nonce: String,
    /// Verifications counted so far (each before its comparison).
    #[serde(default)]
    pub attempts: u32,
    pub created_ms: i64,
    pub expires_ms: i64,
}

crate::domain::plain_record!(OtpRecord);

/// When codes were sent to one key in the last day: `otp` row `sends␟<token>`, the per-key
/// rate limit kept in the store itself (authoritative, shared by every instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpSends {
    #[serde(default)]
    pub sent_ms: Vec<i64>,
}

crate::domain::plain_record!(OtpSends);

/// The OTP settings (`[otp]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpPolicy {
    pub length: usize,
    pub ttl_ms: i64,
    /// Verifications allowed per code (Sunbird `sunbird_otp_allowed_attempt`).
    pub allowed_attempts: u32,
    /// Codes sent per key and hour, and per key and day; 0 is no limit.
    pub per_hour: u32,
    pub per_day: u32,
}

/// Which window a refused send exceeded (the `{0}` of Sunbird's `0059` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateWindow {
    Hour,
    Day,
}

impl RateWindow {
    pub fn name(self) -> &'static str {
        match self {
            RateWindow::Hour => "hour",
            RateWindow::Day => "day",
        }
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

impl OtpSends {
    /// Counts a send at `now_ms`, or refuses it naming the full window; sends older than a day
    /// are forgotten.
    pub fn admit(&mut self, policy: &OtpPolicy, now_ms: i64) -> Result<(), RateWindow> {
        self.sent_ms.retain(|sent| now_ms - *sent < DAY_MS);
        let last_hour = self
            .sent_ms
            .iter()
            .filter(|sent| now_ms - **sent < HOUR_MS)
            .count();
        if policy.per_hour > 0 && last_hour >= policy.per_hour as usize {
            return Err(RateWindow::Hour);
        }
        if policy.per_day > 0 && self.sent_ms.len() >= policy.per_day as usize {
            return Err(RateWindow::Day);
        }
        self.sent_ms.push(now_ms);
        Ok(())
    }
}

impl OtpRecord {
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }

    /// Attempts left after the ones counted (Sunbird's `remainingAttempt`).
    pub fn remaining(&self, policy: &OtpPolicy) -> u32 {
        policy.allowed_attempts.saturating_sub(self.attempts)
    }
}

/// `length` decimal digits of a MAC (its first eight bytes as a number, modulo 10^length,
/// zero-padded): uniform up to a bias below 10^-12 for six digits.
pub fn code_digits(mac: &[u8], length: usize) -> String {
    let length = length.clamp(4, 10);
    let mut first = [0u8; 8];
    for (slot, byte) in first.iter_mut().zip(mac) {
        *slot = *byte;
    }
    let number = u64::from_be_bytes(first) % 10u64.pow(length as u32);
    format!("{number:0length$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OtpPolicy {
        OtpPolicy {
            length: 6,
            ttl_ms: 600_000,
            allowed_attempts: 2,
            per_hour: 5,
            per_day: 20,
        }
    }

    #[test]
    fn five_sends_an_hour_and_twenty_a_day() {
        let policy = policy();
        let mut sends = OtpSends::default();
        for n in 0..5 {
            assert_eq!(sends.admit(&policy, n * 1_000), Ok(()));
        }
        assert_eq!(sends.admit(&policy, 5_000), Err(RateWindow::Hour));
        // Fifteen more, five per hour, then the day is full.
        for hour in 1..4 {
            for n in 0..5 {
                assert_eq!(
                    sends.admit(&policy, hour * HOUR_MS + 10_000 + n),
                    Ok(()),
                    "{hour}/{n}"
                );
            }
        }
        assert_eq!(sends.admit(&policy, 5 * HOUR_MS), Err(RateWindow::Day));
        // A day after the first ones, they are forgotten.
        assert_eq!(sends.admit(&policy, DAY_MS + 10_000), Ok(()));
        assert_eq!(sends.sent_ms.len(), 16);
    }

    #[test]
    fn codes_have_the_configured_length_with_leading_zeros() {
        assert_eq!(code_digits(&[0; 32], 6), "000000");
        assert_eq!(code_digits(&[0, 0, 0, 0, 0, 0, 0, 42], 6), "000042");
        assert_eq!(code_digits(&[0xff; 32], 6).len(), 6);
        assert_eq!(code_digits(&[0xff; 32], 2).len(), 4, "at least four digits");
    }
}
