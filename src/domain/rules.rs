//! Small pure rules of the user domain: password policy, generated usernames, date of birth,
//! identifiers.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, NaiveDate};
use rand::RngExt;

/// The configurable password policy (Sunbird `sunbird_pass_regex`). It needs look-arounds, hence
/// `fancy_regex`.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pattern: fancy_regex::Regex,
}

impl PasswordPolicy {
    pub fn new(pattern: &str) -> Result<Self, fancy_regex::Error> {
        Ok(PasswordPolicy {
            pattern: fancy_regex::Regex::new(pattern)?,
        })
    }

    /// True when the password satisfies the policy. A pathological pattern that exceeds the
    /// regex engine's backtracking limit counts as a refusal, never as an acceptance.
    pub fn accepts(&self, password: &str) -> bool {
        self.pattern.is_match(password).unwrap_or(false)
    }
}

/// The base of a generated username: first and last name, transliterated to ASCII, lower-cased,
/// with everything but letters and digits removed (Sunbird slugs the name, drops dashes and runs
/// Junidecode on the result).
pub fn username_base(first_name: &str, last_name: Option<&str>) -> String {
    let full = match last_name {
        Some(last) if !last.trim().is_empty() => format!("{first_name} {last}"),
        _ => first_name.to_string(),
    };
    let ascii = deunicode::deunicode(&full).to_lowercase();
    let base: String = ascii.chars().filter(char::is_ascii_alphanumeric).collect();
    if base.is_empty() {
        "user".to_string()
    } else {
        base
    }
}

const USERNAME_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// One candidate: `base_` plus `suffix_length` random lower-case letters and digits.
pub fn username_candidate(base: &str, suffix_length: usize) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..suffix_length)
        .map(|_| USERNAME_ALPHABET[rng.random_range(0..USERNAME_ALPHABET.len())] as char)
        .collect();
    format!("{base}_{suffix}")
}

/// Sunbird's slug of a channel (`Slug.makeSlug`): ASCII transliteration, whitespace to `-`,
/// only letters, digits, `_`, `-` and `.` kept, runs of `-` collapsed, no `-` at either end,
/// lower case. `"My Channel"` -> `my-channel`.
pub fn slugify(text: &str) -> String {
    let ascii = deunicode::deunicode(text.trim());
    let mut slug = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        let c = if c.is_whitespace() { '-' } else { c };
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            continue;
        }
        if c == '-' && slug.ends_with('-') {
            continue;
        }
        slug.push(c.to_ascii_lowercase());
    }
    slug.trim_matches('-').to_string()
}

/// A username given by the caller, transliterated to ASCII and lower-cased as Sunbird stores it.
pub fn normalise_username(raw: &str) -> String {
    deunicode::deunicode(raw.trim()).to_lowercase()
}

/// Sunbird keeps only the year of birth: a 4-digit year becomes `YYYY-12-31`. A full
/// `YYYY-MM-DD` date is accepted too and kept as given.
pub fn parse_dob(raw: &str) -> Option<String> {
    let value = raw.trim();
    if value.len() == 4 && value.chars().all(|c| c.is_ascii_digit()) {
        let year: i32 = value.parse().ok()?;
        if !(1900..=2200).contains(&year) {
            return None;
        }
        return Some(format!("{value}-12-31"));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|date| date.year() >= 1900)
        .map(|date| date.format("%Y-%m-%d").to_string())
}

/// Sunbird's `isMinor`: younger than 18 years counted from the stored dob (a `YYYY-12-31` dob
/// makes everyone as young as possible within the year).
pub fn is_minor(dob: &str, today: NaiveDate) -> bool {
    let Ok(birth) = NaiveDate::parse_from_str(dob, "%Y-%m-%d") else {
        return false;
    };
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age < 18
}

/// A new user id: a random UUID as Sunbird uses.
pub fn new_user_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Sunbird's numeric, time-ordered ids (`ProjectUtil.getUniqueIdFromTimestamp`): the epoch
/// milliseconds plus a random number, shifted left by 13 bits, plus a process counter. Used for
/// organisation ids; uniqueness across instances rests on the random part and, in the store, on
/// the insert-if-absent write.
pub fn new_timestamp_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis() as u64;
    let random: u64 = rand::rng().random_range(0..1_000_000u64);
    let counter = ID_COUNTER.fetch_add(1, Ordering::Relaxed) % (1 << 13);
    let id = ((millis + random) << 13) + counter;
    format!("0{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUNBIRD_DEFAULT: &str =
        r"^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z])(?=.*[^a-zA-Z0-9\s])(?!.*\s).{8,}$";

    #[test]
    fn password_policy_requires_every_class_and_no_space() {
        let policy = PasswordPolicy::new(SUNBIRD_DEFAULT).expect("compiles");
        assert!(policy.accepts("S3cret!pass"));
        assert!(policy.accepts("Ab1!efgh"), "exactly 8 characters is enough");
        for bad in [
            "Sh0rt!",
            "alllower1!",
            "ALLUPPER1!",
            "NoDigits!!",
            "NoSpecial12",
            "Has Space1!",
            "",
        ] {
            assert!(!policy.accepts(bad), "{bad}");
        }
    }

    #[test]
    fn usernames_are_ascii_slugs_with_a_random_suffix() {
        assert_eq!(username_base("Asha", Some("Rao")), "asharao");
        assert_eq!(username_base("Zoë", Some("Ñúñez")), "zoenunez");
        assert_eq!(username_base("मोहन", None), "mohn");
        assert_eq!(username_base("!!!", None), "user");
        let candidate = username_candidate("asharao", 4);
        assert!(candidate.starts_with("asharao_"));
        assert_eq!(candidate.len(), "asharao_".len() + 4);
        assert!(
            candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        );
        assert_eq!(normalise_username("  Ásha_R "), "asha_r");
    }

    #[test]
    fn slugs_follow_sunbird() {
        assert_eq!(slugify("My Channel"), "my-channel");
        assert_eq!(slugify("  Ünïcode  Chännel!! "), "unicode-channel");
        assert_eq!(slugify("a--b__c.d"), "a-b__c.d");
        assert_eq!(slugify("-x-"), "x");
        assert_eq!(slugify("***"), "");
    }

    #[test]
    fn dob_keeps_the_year_sunbird_style() {
        assert_eq!(parse_dob("1990").as_deref(), Some("1990-12-31"));
        assert_eq!(parse_dob("1990-05-17").as_deref(), Some("1990-05-17"));
        for bad in ["199", "19900", "abcd", "1990-13-01", "1800"] {
            assert_eq!(parse_dob(bad), None, "{bad}");
        }
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
        assert!(is_minor("2010-12-31", today));
        assert!(!is_minor("1990-12-31", today));
        assert!(
            is_minor("2008-12-31", today),
            "turns 18 only at the end of 2026"
        );
    }

    #[test]
    fn timestamp_ids_are_numeric_unique_and_ordered() {
        let a = new_timestamp_id();
        let b = new_timestamp_id();
        assert_ne!(a, b);
        assert!(a.starts_with('0') && a.chars().all(|c| c.is_ascii_digit()));
        assert!(uuid::Uuid::parse_str(&new_user_id()).is_ok());
    }
}
