//! Outgoing notifications: the `notification` row of one message (an email, an SMS, or a call
//! to another service such as the content service's channel registration), its delivery state,
//! and the retry rule. The message itself (recipients, subject, body) is sealed in the row with
//! the PII key, so the store holds no address or OTP in clear.

use serde::{Deserialize, Serialize};

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn name(self) -> &'static str {
        Medium::from(self).name()
    }
}

/// What a queued message is: a message to a person on one of the [`Channel`]s, or a call to
/// another service (a JSON `POST`: [`OutgoingMessage::to`] is the path on the service,
/// [`OutgoingMessage::body`] the request body), retried and kept like any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Email,
    Sms,
    Call,
}

impl Medium {
    pub fn name(self) -> &'static str {
        match self {
            Medium::Email => "email",
            Medium::Sms => "sms",
            Medium::Call => "call",
        }
    }
}

impl From<Channel> for Medium {
    fn from(channel: Channel) -> Medium {
        match channel {
            Channel::Email => Medium::Email,
            Channel::Sms => Medium::Sms,
        }
    }
}

/// Where a message is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Recorded, not tried yet.
    Queued,
    /// Tried and failed for a reason that may pass; tried again at `next_attempt_ms`.
    Retrying,
    /// Taken by the mail server or the SMS provider.
    Delivered,
    /// Given up on after the last attempt, or refused for good: waits for an operator
    /// (`userorg notifications retry`).
    Dead,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn from_name(name: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Queued,
            DeliveryState::Retrying,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ]
        .into_iter()
        .find(|state| state.name() == name)
    }

    /// Whether the dispatcher still has work with the message.
    pub fn is_pending(self) -> bool {
        matches!(self, DeliveryState::Queued | DeliveryState::Retrying)
    }
}

/// The message as sent: sealed into [`NotificationRecord::sealed`] at enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingMessage {
    /// One email address, or one phone number in international form (`+` and digits): a
    /// message per recipient, so none sees the others and each is delivered on its own.
    pub to: String,
    #[serde(default)]
    pub subject: String,
    pub body: String,
    /// The body is HTML (email only).
    #[serde(default)]
    pub html: bool,
    /// The provider's template id of an SMS (India's DLT registration), if the template has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_template_id: Option<String>,
}

/// One `notification` row, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    pub id: String,
    pub channel: Medium,
    /// The `Message-ID` of an email, the same on every attempt, so a receiving server can tell
    /// a repeat (a crash between the server's acceptance and the delivered mark).
    pub message_id: String,
    /// What caused it: `notification` (the API), `otp`, `welcome`, `merge`, `reset-password`,
    /// `channel-registration`.
    pub source: String,
    /// The template the body was rendered from.
    #[serde(default)]
    pub template: String,
    /// The [`OutgoingMessage`] as JSON, sealed with the PII key (bound to the id).
    pub sealed: String,
    pub state: DeliveryState,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_attempt_ms: i64,
    /// Why the last attempt failed (never the message's content).
    #[serde(default)]
    pub last_error: String,
    pub created_ms: i64,
    #[serde(default)]
    pub delivered_ms: i64,
}

crate::domain::plain_record!(NotificationRecord);

/// The delivery retry rule: `max_attempts` tries in all, the wait before try n + 1 doubling from
/// `base_ms` up to `max_ms`, with full jitter below that ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: i64,
    pub max_ms: i64,
}

impl RetryPolicy {
    /// The ceiling of the wait after `attempts` failed tries (1 for the first).
    pub fn ceiling_ms(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(30);
        self.base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
            .max(1)
    }

    /// When the next try is due after `attempts` failed tries at `now_ms`; `jitter` in [0, 1)
    /// picks the point below the ceiling (half of it at least, so a burst does not come back
    /// at once).
    pub fn next_attempt_ms(&self, attempts: u32, now_ms: i64, jitter: f64) -> i64 {
        let ceiling = self.ceiling_ms(attempts);
        let half = ceiling / 2;
        let spread = ((ceiling - half) as f64 * jitter.clamp(0.0, 1.0)) as i64;
        now_ms.saturating_add(half + spread)
    }
}

impl NotificationRecord {
    /// A failed try: `Retrying` with the next due time, or `Dead` after the last attempt (or at
    /// once for a permanent refusal).
    pub fn fail(
        &mut self,
        policy: &RetryPolicy,
        reason: &str,
        permanent: bool,
        now_ms: i64,
        jitter: f64,
    ) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_error = reason.chars().take(500).collect();
        if permanent || self.attempts >= policy.max_attempts {
            self.state = DeliveryState::Dead;
            self.next_attempt_ms = 0;
        } else {
            self.state = DeliveryState::Retrying;
            self.next_attempt_ms = policy.next_attempt_ms(self.attempts, now_ms, jitter);
        }
    }

    /// Taken by the server: never sent again.
    pub fn deliver(&mut self, now_ms: i64) {
        self.attempts = self.attempts.saturating_add(1);
        self.state = DeliveryState::Delivered;
        self.delivered_ms = now_ms;
        self.next_attempt_ms = 0;
        self.last_error.clear();
    }

    /// An operator's retry of a dead message: a fresh budget, due at once.
    pub fn revive(&mut self) {
        self.state = DeliveryState::Queued;
        self.attempts = 0;
        self.next_attempt_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_ms: 1_000,
            max_ms: 5_000,
        }
    }

    fn record() -> NotificationRecord {
        NotificationRecord {
            id: "n1".into(),
            channel: Medium::Email,
            message_id: "<n1@userorg>".into(),
            source: "notification".into(),
            template: String::new(),
            sealed: String::new(),
            state: DeliveryState::Queued,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: String::new(),
            created_ms: 0,
            delivered_ms: 0,
        }
    }

    #[test]
    fn the_wait_doubles_up_to_the_ceiling_with_jitter_in_its_upper_half() {
        let policy = policy();
        assert_eq!(policy.ceiling_ms(1), 1_000);
        assert_eq!(policy.ceiling_ms(2), 2_000);
        assert_eq!(policy.ceiling_ms(3), 4_000);
        assert_eq!(policy.ceiling_ms(4), 5_000);
        assert_eq!(policy.ceiling_ms(40), 5_000);
        assert_eq!(policy.next_attempt_ms(2, 10_000, 0.0), 11_000);
        assert_eq!(policy.next_attempt_ms(2, 10_000, 0.999_999), 11_999);
    }

    #[test]
    fn failures_retry_until_the_last_attempt_then_the_message_is_dead() {
        let policy = policy();
        let mut message = record();
        for attempt in 1..4 {
            message.fail(&policy, "421 try later", false, 0, 0.5);
            assert_eq!(message.state, DeliveryState::Retrying, "attempt {attempt}");
            assert!(message.next_attempt_ms > 0);
        }
        message.fail(&policy, "421 try later", false, 0, 0.5);
        assert_eq!(message.state, DeliveryState::Dead);
        assert_eq!(message.attempts, 4);
        message.revive();
        assert_eq!(
            (message.state, message.attempts),
            (DeliveryState::Queued, 0)
        );
        message.fail(&policy, "550 no such user", true, 0, 0.5);
        assert_eq!(message.state, DeliveryState::Dead, "a permanent refusal");
    }
}
