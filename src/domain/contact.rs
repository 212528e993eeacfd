//! Email and phone values, valid by construction, and the Sunbird masking of both.

use std::sync::LazyLock;

use regex::Regex;

/// Sunbird's email check (`ProjectUtil.isEmailvalid`): a local part of word characters, `+`, `-`,
/// `.`, `_`; a domain of labels; a top-level domain of at least two letters.
static EMAIL_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[_A-Za-z0-9+-]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(\.[A-Za-z]{2,})$",
    )
    .expect("static email pattern compiles")
});

static COUNTRY_CODE_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+?[0-9]{1,3}$").expect("static country code pattern compiles"));

/// A syntactically valid email, trimmed and lower-cased (Sunbird lower-cases `email` on write).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Email> {
        let value = raw.trim().to_lowercase();
        if value.len() > 254 || !EMAIL_PATTERN.is_match(&value) {
            return None;
        }
        Some(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        mask_email(&self.0)
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneError {
    /// The country code is not `+` and 1 to 3 digits.
    CountryCode,
    /// The number is not valid for the country (libphonenumber rules), or carries a `+`.
    Number,
}

/// A phone number valid for its country, kept as Sunbird keeps it: the national digits and a
/// separate `+CC` country code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    number: String,
    country_code: String,
}

impl Phone {
    /// Validates `raw` the way Sunbird does with libphonenumber: no `+` inside the number, the
    /// country code defaults to `default_country_code` (digits, e.g. "91").
    pub fn parse(
        raw: &str,
        country_code: Option<&str>,
        default_country_code: &str,
    ) -> Result<Phone, PhoneError> {
        let code_digits = match country_code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) => {
                if !COUNTRY_CODE_PATTERN.is_match(code) {
                    return Err(PhoneError::CountryCode);
                }
                code.trim_start_matches('+').to_string()
            }
            None => default_country_code.trim_start_matches('+').to_string(),
        };
        let number: String = raw.trim().to_string();
        if number.is_empty() || number.contains('+') {
            return Err(PhoneError::Number);
        }
        if !number
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Err(PhoneError::Number);
        }
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let parsed = phonenumber::parse(None, format!("+{code_digits}{digits}"))
            .map_err(|_| PhoneError::Number)?;
        if parsed.code().value().to_string() != code_digits || !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Number);
        }
        Ok(Phone {
            number: parsed.national().value().to_string(),
            country_code: format!("+{code_digits}"),
        })
    }

    /// The national number, digits only.
    pub fn number(&self) -> &str {
        &self.number
    }

    /// `+CC`.
    pub fn country_code(&self) -> &str {
        &self.country_code
    }

    pub fn masked(&self) -> String {
        mask_phone(&self.number)
    }

    /// What the phone blind index is computed over: the international form `+<CC><national>`,
    /// so the same national number under two country codes gets two tokens (two people).
    pub fn index_form(&self) -> String {
        format!("{}{}", self.country_code, self.number)
    }

    /// The index form of a phone a caller searches or looks up by: an international number
    /// (`+919876543210`), or a national one under `default_country_code`. A value that is no
    /// valid phone still gets a form (it matches nobody), so a search never widens on it.
    pub fn index_form_of(raw: &str, default_country_code: &str) -> String {
        let trimmed = raw.trim();
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if trimmed.starts_with('+') {
            return match phonenumber::parse(None, format!("+{digits}")) {
                Ok(parsed) => format!("+{}{}", parsed.code().value(), parsed.national().value()),
                Err(_) => format!("+{digits}"),
            };
        }
        match Phone::parse(trimmed, None, default_country_code) {
            Ok(phone) => phone.index_form(),
            Err(_) => format!("+{}{digits}", default_country_code.trim_start_matches('+')),
        }
    }
}

/// Sunbird masking: the first two characters of the local part stay, the rest of it becomes `*`,
/// the domain stays. `asha.rao@example.org` -> `as******@example.org`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let kept: String = local.chars().take(2).collect();
            let hidden = local.chars().count().saturating_sub(2);
            format!("{kept}{}@{domain}", "*".repeat(hidden))
        }
        None => email.to_string(),
    }
}

/// Sunbird masking: every digit but the last four becomes `*` (numbers shorter than ten digits
/// are returned as they are, as Sunbird does).
pub fn mask_phone(phone: &str) -> String {
    let count = phone.chars().count();
    if count < 10 {
        return phone.to_string();
    }
    phone
        .chars()
        .enumerate()
        .map(|(index, c)| if index < count - 4 { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Asha.Rao@Example.ORG ").map(|e| e.as_str().to_string()),
            Some("asha.rao@example.org".to_string())
        );
        for bad in [
            "",
            "asha",
            "asha@",
            "@example.org",
            "asha@example",
            "a b@example.org",
            "asha@@example.org",
        ] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
        assert!(Email::parse("first.last@sub.example.co.in").is_some());
        assert!(Email::parse("first+tag@example.org").is_some());
    }

    #[test]
    fn the_phone_index_form_carries_the_country_code() {
        let indian = Phone::parse("9876543210", None, "91").expect("valid");
        let american = Phone::parse("2025550143", Some("+1"), "91").expect("valid");
        assert_eq!(indian.index_form(), "+919876543210");
        assert_eq!(american.index_form(), "+12025550143");
        // A lookup finds the same form from a national or an international spelling.
        assert_eq!(Phone::index_form_of(" 98765-43210 ", "91"), "+919876543210");
        assert_eq!(Phone::index_form_of("+919876543210", "91"), "+919876543210");
        assert_eq!(
            Phone::index_form_of("+1 202 555 0143", "91"),
            "+12025550143"
        );
        // The same national digits under another code are another phone.
        assert_ne!(
            Phone::index_form_of("9876543210", "1"),
            Phone::index_form_of("9876543210", "91")
        );
        assert_eq!(Phone::index_form_of("12", "91"), "+9112");
    }

    #[test]
    fn phones_follow_libphonenumber_rules_with_default_country_91() {
        let phone = Phone::parse("9876543210", None, "91").expect("valid indian mobile");
        assert_eq!(phone.number(), "9876543210");
        assert_eq!(phone.country_code(), "+91");
        assert_eq!(
            Phone::parse("+919876543210", None, "91"),
            Err(PhoneError::Number)
        );
        assert_eq!(Phone::parse("12345", None, "91"), Err(PhoneError::Number));
        assert_eq!(
            Phone::parse("98765432101234", None, "91"),
            Err(PhoneError::Number)
        );
        assert_eq!(
            Phone::parse("98765abc10", None, "91"),
            Err(PhoneError::Number)
        );
        assert_eq!(
            Phone::parse("9876543210", Some("+abc"), "91"),
            Err(PhoneError::CountryCode)
        );
        let us = Phone::parse("2015550123", Some("+1"), "91").expect("valid US number");
        assert_eq!(us.country_code(), "+1");
    }

    #[test]
    fn masking_matches_sunbird() {
        assert_eq!(mask_email("asha.rao@example.org"), "as******@example.org");
        assert_eq!(mask_email("ab@x.org"), "ab@x.org");
        assert_eq!(mask_phone("9876543210"), "******3210");
        assert_eq!(mask_phone("12345"), "12345");
    }
}
