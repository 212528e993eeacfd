//! Time, injectable so tests can move it instead of sleeping.

use chrono::{DateTime, Local, NaiveDate};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Local>;

    fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Local> {
        Local::now()
    }
}

/// A clock a test sets and moves (Keycloak's way of testing expiry: move time, never sleep).
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Local>>,
}

#[cfg(any(test, feature = "testing"))]
impl ManualClock {
    /// Starts at the given time.
    pub fn at(now: DateTime<Local>) -> Self {
        ManualClock {
            now: std::sync::Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Local>) {
        match self.now.lock() {
            Ok(mut guard) => *guard = now,
            Err(poisoned) => *poisoned.into_inner() = now,
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        let next = self.now() + by;
        self.set(next);
    }
}

#[cfg(any(test, feature = "testing"))]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Local> {
        match self.now.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Sunbird's timestamp format (`yyyy-MM-dd HH:mm:ss:SSSZ`), used for `ts`, `createdDate`,
/// `updatedDate` and `orgJoinDate`: `2024-07-01 12:47:05:123+0530`.
pub fn sunbird_timestamp(at: DateTime<Local>) -> String {
    at.format("%Y-%m-%d %H:%M:%S:%3f%z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_use_the_sunbird_layout() {
        let at = Local
            .with_ymd_and_hms(2024, 7, 1, 12, 47, 5)
            .single()
            .expect("valid local time");
        let text = sunbird_timestamp(at);
        assert!(text.starts_with("2024-07-01 12:47:05:000"), "{text}");
        let zone = &text["2024-07-01 12:47:05:000".len()..];
        assert_eq!(zone.len(), 5, "{text}");
        assert!(zone.starts_with('+') || zone.starts_with('-'));
    }
}
