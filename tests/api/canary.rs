//! The log canary of the whole API suite. Every test app logs (the `userorg` crate at debug
//! level) into one process-wide buffer; the phones, emails and credentials the tests send are
//! remembered as they are made; and every time a test app stops, the log written since the
//! last check is searched for them, for any email address, for a JWT and for the test
//! passwords. A hit fails the test that stopped, naming the line, so after the last app of the
//! suite has stopped no secret a test sent appears in any log line written meanwhile.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{LazyLock, Mutex, Once};

use regex::Regex;

/// The passwords tests send (users are created and sign in with these).
const PASSWORDS: &[&str] = &["S3cret!pass", "Wrong#pass1", "Wrong#pass2", "Wrong#pass3"];

/// The fixed phone numbers tests send (generated ones are remembered as they are made).
const FIXED_PHONES: &[&str] = &[
    "2025550143",
    "9123456780",
    "9876512345",
    "9876543210",
    "9876554321",
    "9876556789",
    "9988776655",
];

#[derive(Default)]
struct Canary {
    /// What was logged since the last check.
    log: Vec<u8>,
    phones: HashSet<String>,
    secrets: HashSet<String>,
}

static CANARY: LazyLock<Mutex<Canary>> = LazyLock::new(Mutex::default);
static INSTALL: Once = Once::new();

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").expect("regex")
});
static JWT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}").expect("regex"));
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+").expect("regex"));

struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        lock().log.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lock() -> std::sync::MutexGuard<'static, Canary> {
    CANARY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the process-wide log capture (once).
pub fn install() {
    INSTALL.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new("userorg=debug,warn");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(|| BufferWriter)
            .try_init();
    });
}

/// A phone number a test is about to send.
pub fn remember_phone(phone: &str) {
    lock().phones.insert(phone.to_string());
}

/// Any other secret a test holds (a service credential).
pub fn remember_secret(secret: &str) {
    lock().secrets.insert(secret.to_string());
}

/// What the log written since the last check leaks; the buffer starts afresh.
fn leaks_since_last_check() -> Vec<String> {
    let mut canary = lock();
    let fresh = std::mem::take(&mut canary.log);
    scan(&String::from_utf8_lossy(&fresh), &canary)
}

/// The secrets in `text`, one description per hit.
fn scan(text: &str, canary: &Canary) -> Vec<String> {
    let is_phone = |digits: &str| canary.phones.contains(digits) || FIXED_PHONES.contains(&digits);
    let mut found = Vec::new();
    for line in text.lines() {
        let mut hits: Vec<String> = Vec::new();
        hits.extend(
            EMAIL
                .find_iter(line)
                .map(|m| format!("email {}", m.as_str())),
        );
        hits.extend(JWT.find_iter(line).map(|_| "a JWT".to_string()));
        hits.extend(
            DIGIT_RUN
                .find_iter(line)
                .filter(|m| is_phone(m.as_str()))
                .map(|m| format!("phone {}", m.as_str())),
        );
        hits.extend(
            PASSWORDS
                .iter()
                .filter(|password| line.contains(*password))
                .map(|_| "a password".to_string()),
        );
        hits.extend(
            canary
                .secrets
                .iter()
                .filter(|secret| line.contains(secret.as_str()))
                .map(|_| "the service credential".to_string()),
        );
        for hit in hits {
            found.push(format!("{hit} in: {line}"));
        }
    }
    found
}

/// Fails the calling test when the log written since the last check leaks a secret.
pub fn check() {
    let leaks = leaks_since_last_check();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_canary_finds_each_kind_of_secret() {
    // A canary of its own: planting into the shared buffer would fail whichever test checks
    // it next.
    let mut canary = Canary::default();
    canary.phones.insert("9000000017".into());
    canary.secrets.insert("svc-credential-canary".into());
    let planted = "user asha@example.org phone 9000000017 token eyJhbGciOi.eyJzdWIiOi \
                   password S3cret!pass credential svc-credential-canary";
    let leaks = scan(planted, &canary);
    for kind in [
        "email asha@example.org",
        "a JWT",
        "phone 9000000017",
        "a password",
        "the service credential",
    ] {
        assert!(
            leaks.iter().any(|leak| leak.starts_with(kind)),
            "{kind} not found in {leaks:?}"
        );
    }
    // Masked values and other numbers are no leak.
    assert_eq!(
        scan(
            "masked as******@example.org ******0017 took 9000000018 ms",
            &canary
        ),
        Vec::<String>::new()
    );
}
