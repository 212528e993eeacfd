//! Sign-in state: a user's credential with its brute-force counters (Keycloak's lockout rule),
//! and the sessions the sign-in opens, with the digest of each one's current refresh token.

use serde::{Deserialize, Serialize};

/// The `user_credential` row: the password hash and the brute-force state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRecord {
    pub user_id: String,
    pub password_hash: String,
    /// Failed attempts since the last success (or since failures were forgotten).
    #[serde(default)]
    pub num_failures: u32,
    /// When the last attempt was counted, in ms since the epoch.
    #[serde(default)]
    pub last_failure_ms: i64,
    /// Sign-in refused until then (a temporary lockout), in ms since the epoch.
    #[serde(default)]
    pub locked_until_ms: i64,
    /// A permanent lockout, lifted only by an administrator.
    #[serde(default)]
    pub locked: bool,
}

crate::domain::plain_record!(CredentialRecord);

/// Keycloak's brute-force detection settings (`bruteForceProtected` and its numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub enabled: bool,
    /// Failures before a lockout (`failureFactor`).
    pub failure_factor: u32,
    /// The wait added per `failure_factor` failures (`waitIncrementSeconds`), in ms.
    pub wait_increment_ms: i64,
    /// The longest wait (`maxFailureWaitSeconds`), in ms.
    pub max_wait_ms: i64,
    /// Failures are forgotten after this long without one (`maxDeltaTimeSeconds`), in ms.
    pub failure_reset_ms: i64,
    /// Lock for good instead of for a while (`permanentLockout`).
    pub permanent: bool,
}

impl CredentialRecord {
    /// Whether sign-in is refused at `now_ms` without looking at the password.
    pub fn is_locked(&self, policy: &LockoutPolicy, now_ms: i64) -> bool {
        policy.enabled && (self.locked || now_ms < self.locked_until_ms)
    }

    /// Counts an attempt before its password is compared, so that concurrent guesses can never
    /// pass the budget between a comparison and its count; a success then calls
    /// [`CredentialRecord::succeed`]. Reaching a multiple of the failure factor locks the account
    /// for `wait_increment * (failures / factor)`, at most `max_wait` (or for good).
    pub fn count_attempt(&mut self, policy: &LockoutPolicy, now_ms: i64) {
        if self.num_failures > 0 && now_ms - self.last_failure_ms > policy.failure_reset_ms {
            self.num_failures = 0;
        }
        self.num_failures = self.num_failures.saturating_add(1);
        self.last_failure_ms = now_ms;
        if !policy.enabled || policy.failure_factor == 0 {
            return;
        }
        if self.num_failures >= policy.failure_factor {
            if policy.permanent {
                self.locked = true;
            } else {
                let steps = i64::from(self.num_failures / policy.failure_factor);
                let wait = policy
                    .wait_increment_ms
                    .saturating_mul(steps)
                    .min(policy.max_wait_ms);
                self.locked_until_ms = now_ms.saturating_add(wait);
            }
        }
    }

    /// A right password: the counters start again.
    pub fn succeed(&mut self) {
        self.num_failures = 0;
        self.last_failure_ms = 0;
        self.locked_until_ms = 0;
        self.locked = false;
    }
}

/// A sign-in session (`user_session` row, key `userId␟sessionId`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: String,
    pub realm: String,
    pub client_id: String,
    pub scope: String,
    pub started_ms: i64,
    pub refreshed_ms: i64,
    /// The absolute end of the session (Keycloak's SSO Session Max), in ms.
    pub expires_ms: i64,
    /// SHA-256 (hex) of the `jti` of the refresh token that may be used next.
    pub refresh_digest: String,
}

crate::domain::plain_record!(SessionRecord);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            enabled: true,
            failure_factor: 3,
            wait_increment_ms: 60_000,
            max_wait_ms: 150_000,
            failure_reset_ms: 3_600_000,
            permanent: false,
        }
    }

    #[test]
    fn the_factor_locks_for_a_growing_wait_up_to_the_maximum() {
        let policy = policy();
        let mut record = CredentialRecord::default();
        for at in [0, 1, 2] {
            assert!(!record.is_locked(&policy, at));
            record.count_attempt(&policy, at);
        }
        assert_eq!(record.num_failures, 3);
        assert!(record.is_locked(&policy, 2 + 59_999));
        assert!(!record.is_locked(&policy, 2 + 60_000));
        // Three more: two factors, twice the wait; then capped.
        for at in [70_000, 70_001, 70_002] {
            record.count_attempt(&policy, at);
        }
        assert_eq!(record.locked_until_ms, 70_002 + 120_000);
        for at in [300_000, 300_001, 300_002] {
            record.count_attempt(&policy, at);
        }
        assert_eq!(record.locked_until_ms, 300_002 + 150_000);
        record.succeed();
        assert_eq!(record, CredentialRecord::default());
    }

    #[test]
    fn failures_are_forgotten_after_the_reset_time_and_off_means_never_locked() {
        let policy = policy();
        let mut record = CredentialRecord::default();
        record.count_attempt(&policy, 0);
        record.count_attempt(&policy, 1);
        record.count_attempt(&policy, 1 + 3_600_001);
        assert_eq!(record.num_failures, 1);
        let off = LockoutPolicy {
            enabled: false,
            ..policy
        };
        for at in 0..10 {
            record.count_attempt(&off, at);
        }
        assert!(!record.is_locked(&off, 10));
        let permanent = LockoutPolicy {
            permanent: true,
            ..policy
        };
        let mut record = CredentialRecord::default();
        for at in 0..3 {
            record.count_attempt(&permanent, at);
        }
        assert!(record.locked && record.is_locked(&permanent, i64::MAX));
    }

    #[test]
    fn a_row_written_before_the_counters_existed_reads_with_none() {
        use crate::domain::Record;
        let record =
            CredentialRecord::from_value(serde_json::json!({"userId": "u", "passwordHash": "h"}))
                .expect("parses");
        assert_eq!(record.num_failures, 0);
        assert_eq!(record.password_hash, "h");
    }
}
