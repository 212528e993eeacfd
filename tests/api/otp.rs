//! OTP generate and verify (R19, R21) through the real router: the lifecycle on the injected
//! clock, the attempt budget under concurrent guesses, the per-key send limits, Sunbird's v1
//! legacy names and v2 codes, the request rules, and no code at rest or in a log.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email, unique_phone};
use crate::mail::SmtpSink;

async fn generate(app: &TestApp, version: &str, request: Value) -> Reply {
    app.post(&format!("/{version}/otp/generate"), request, None)
        .await
}

async fn verify(app: &TestApp, version: &str, request: Value) -> Reply {
    app.post(&format!("/{version}/otp/verify"), request, None)
        .await
}

/// A 400 `0063` with the attempts left in `result`.
fn assert_failed_attempt(reply: &Reply, err: &str, status: &str, remaining: u32) {
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    assert_eq!(reply.err(), err, "{}", reply.body);
    assert_eq!(reply.body["params"]["status"], status, "{}", reply.body);
    assert_eq!(
        reply.errmsg(),
        format!("OTP verification failed. Remaining attempt count is {remaining}."),
    );
    assert_eq!(reply.body["responseCode"], "CLIENT_ERROR");
    assert_eq!(
        reply.body["result"],
        json!({"maxAllowedAttempt": 2, "remainingAttempt": remaining})
    );
}

/// Another code than `code`, of the same length.
fn wrong(code: &str) -> String {
    let first = code.as_bytes()[0];
    let other = if first == b'9' {
        '0'
    } else {
        (first + 1) as char
    };
    format!("{other}{}", &code[1..])
}

#[tokio::test]
async fn a_code_is_sent_counted_used_once_and_then_invalid() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    generate(&app, "v2", json!({"key": email, "type": "email"}))
        .await
        .assert_ok();
    let code = app.otp_mailed_to(&email).await;
    assert_eq!(code.len(), 6);
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Sunbird: your one-time code");
    assert!(
        mails[0].body.contains("valid for 10 minutes"),
        "{}",
        mails[0].body
    );

    let first = verify(
        &app,
        "v2",
        json!({"key": email, "type": "email", "otp": wrong(&code)}),
    )
    .await;
    assert_failed_attempt(&first, "UOS_OTPVERFY0063", "FAILED", 1);
    verify(
        &app,
        "v2",
        json!({"key": email.to_uppercase(), "type": "email", "otp": code}),
    )
    .await
    .assert_ok();
    verify(
        &app,
        "v2",
        json!({"key": email, "type": "email", "otp": code}),
    )
    .await
    .assert_error(400, "UOS_OTPVERFY0057", "Invalid OTP.");
    app.stop().await;
}

#[tokio::test]
async fn an_unexpired_code_is_sent_again_and_an_expired_one_is_refused() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let request = json!({"key": email, "type": "email"});
    generate(&app, "v1", request.clone()).await.assert_ok();
    let first = app.otp_mailed_to(&email).await;
    app.clock.advance(chrono::Duration::seconds(300));
    generate(&app, "v1", request.clone()).await.assert_ok();
    assert_eq!(
        app.otp_mailed_to(&email).await,
        first,
        "the live code again"
    );
    let again = app.mails_to(&email).await;
    assert_eq!(again.len(), 2);
    assert!(
        again[1].body.contains("valid for 5 minutes"),
        "{}",
        again[1].body
    );

    // Past its ten minutes the code is gone: refused, and the next request makes a new one.
    app.clock.advance(chrono::Duration::seconds(301));
    verify(
        &app,
        "v1",
        json!({"key": email, "type": "email", "otp": first}),
    )
    .await
    .assert_error(400, "UOS_OTPVERFY0057", "Invalid OTP.");
    generate(&app, "v1", request).await.assert_ok();
    assert_eq!(app.mails_to(&email).await.len(), 3);
    let fresh = app.otp_mailed_to(&email).await;
    verify(
        &app,
        "v1",
        json!({"key": email, "type": "email", "otp": fresh}),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn thirty_two_concurrent_wrong_guesses_are_counted_exactly() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    generate(&app, "v2", json!({"key": email, "type": "email"}))
        .await
        .assert_ok();
    let code = app.otp_mailed_to(&email).await;
    let guess = wrong(&code);
    let replies = futures::future::join_all((0..32).map(|n| {
        let (app, email, guess) = (&app, email.clone(), guess.clone());
        // v1 and v2 share the budget.
        let version = if n % 2 == 0 { "v1" } else { "v2" };
        async move {
            verify(
                app,
                version,
                json!({"key": email, "type": "email", "otp": guess}),
            )
            .await
        }
    }))
    .await;
    let remaining: Vec<u64> = replies
        .iter()
        .filter_map(|reply| reply.body["result"]["remainingAttempt"].as_u64())
        .collect();
    let mut sorted = remaining.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![0, 1],
        "exactly the two allowed attempts were counted"
    );
    let invalid = replies
        .iter()
        .filter(|reply| reply.errmsg() == "Invalid OTP.")
        .count();
    assert_eq!(invalid, 30, "every other guess found no code to compare");
    // The right code after the budget is spent is refused too.
    verify(
        &app,
        "v2",
        json!({"key": email, "type": "email", "otp": code}),
    )
    .await
    .assert_error(400, "UOS_OTPVERFY0057", "Invalid OTP.");
    app.stop().await;
}

#[tokio::test]
async fn five_codes_an_hour_and_twenty_a_day_then_429() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let request = json!({"key": email, "type": "email"});
    for _ in 0..5 {
        generate(&app, "v2", request.clone()).await.assert_ok();
    }
    generate(&app, "v2", request.clone()).await.assert_error(
        429,
        "UOS_OTPCRT0059",
        "Your per hour rate limit has exceeded. You can retry after some time.",
    );
    let legacy = generate(&app, "v1", request.clone()).await;
    assert_eq!(legacy.status.as_u16(), 429);
    assert_eq!(legacy.err(), "ERROR_RATE_LIMIT_EXCEEDED");
    assert_eq!(legacy.body["params"]["status"], "ERROR_RATE_LIMIT_EXCEEDED");
    assert_eq!(legacy.body["responseCode"], "TOO_MANY_REQUESTS");
    assert_eq!(
        legacy.errmsg(),
        "Your per hour rate limit has exceeded. You can retry after some time."
    );
    // A refused request sent nothing.
    assert_eq!(app.mails_to(&email).await.len(), 5);
    // Three more hours of five: twenty in the day, then the day is full.
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::minutes(61));
        for _ in 0..5 {
            generate(&app, "v2", request.clone()).await.assert_ok();
        }
    }
    app.clock.advance(chrono::Duration::minutes(61));
    generate(&app, "v2", request.clone()).await.assert_error(
        429,
        "UOS_OTPCRT0059",
        "Your per day rate limit has exceeded. You can retry after some time.",
    );
    // Another key has its own budget.
    generate(&app, "v2", json!({"key": unique_email(), "type": "email"}))
        .await
        .assert_ok();
    assert_eq!(app.mails_to(&email).await.len(), 20);
    app.stop().await;
}

#[tokio::test]
async fn v1_verify_answers_sunbirds_legacy_name() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    generate(&app, "v1", json!({"key": email, "type": "email"}))
        .await
        .assert_ok();
    let code = app.otp_mailed_to(&email).await;
    let reply = verify(
        &app,
        "v1",
        json!({"key": email, "type": "email", "otp": wrong(&code)}),
    )
    .await;
    assert_failed_attempt(
        &reply,
        "OTP_VERIFICATION_FAILED",
        "OTP_VERIFICATION_FAILED",
        1,
    );
    // Other failures of v1 keep their codes.
    verify(
        &app,
        "v1",
        json!({"key": unique_email(), "type": "email", "otp": "123456"}),
    )
    .await
    .assert_error(400, "UOS_OTPVERFY0057", "Invalid OTP.");
    app.stop().await;
}

#[tokio::test]
async fn a_phone_gets_its_code_by_sms_and_a_user_id_names_the_stored_contact() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    generate(
        &app,
        "v2",
        json!({"key": phone, "type": "phone", "templateId": "wardLoginOTP"}),
    )
    .await
    .assert_ok();
    let sent = app.sms_sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["to"], format!("+91{phone}"));
    let body = sent[0]["body"].as_str().expect("text");
    assert!(body.contains("to sign in your ward"), "{body}");
    let code = crate::mail::code_in(body).expect("a code");
    verify(
        &app,
        "v2",
        json!({"key": phone, "type": "phone", "otp": code}),
    )
    .await
    .assert_ok();

    // By user id: the key is the user's stored email.
    let email = unique_email();
    let user_id = app
        .create_user(json!({"firstName": "Otp", "email": email}))
        .await;
    generate(&app, "v2", json!({"userId": user_id, "type": "email"}))
        .await
        .assert_ok();
    let code = app.otp_mailed_to(&email).await;
    verify(
        &app,
        "v2",
        json!({"userId": user_id, "type": "email", "otp": code}),
    )
    .await
    .assert_ok();
    // A type the user has no value of.
    generate(
        &app,
        "v2",
        json!({"userId": user_id, "type": "recoveryPhone"}),
    )
    .await
    .assert_error(400, "UOS_OTPCRT0019", "Please provide valid recoveryPhone.");
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_sunbirds_codes_and_messages() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let cases: Vec<(&str, Value, u16, &str, String)> = vec![
        (
            "generate",
            json!({"key": email}),
            400,
            "UOS_OTPCRT0030",
            "Mandatory parameter type is missing.".into(),
        ),
        (
            "generate",
            json!({"type": "email"}),
            400,
            "UOS_OTPCRT0030",
            "Mandatory parameter key is missing.".into(),
        ),
        (
            "generate",
            json!({"key": email, "type": "fax"}),
            400,
            "UOS_OTPCRT0017",
            "Invalid value fax for parameter type. Please provide a valid value.".into(),
        ),
        (
            "generate",
            json!({"key": "not-an-email", "type": "email"}),
            400,
            "UOS_OTPCRT0017",
            "Invalid value not-an-email for parameter key. Please provide a valid value.".into(),
        ),
        (
            "generate",
            json!({"key": "12", "type": "phone"}),
            400,
            "UOS_OTPCRT0017",
            "Invalid value 12 for parameter key. Please provide a valid value.".into(),
        ),
        (
            "generate",
            json!({"key": email, "type": 5}),
            400,
            "UOS_OTPCRT0003",
            "Data type of type should be String.".into(),
        ),
        (
            "generate",
            json!({"userId": "nobody", "type": "email"}),
            404,
            "UOS_OTPCRT0013",
            "Requested user resource not found".into(),
        ),
        (
            "generate",
            json!({"key": email, "type": "email", "templateId": "other"}),
            500,
            "UOS_OTPCRT0023",
            "Valid identifier is not present in List, Valid supported identifiers are ".into(),
        ),
        (
            "verify",
            json!({"key": email, "type": "email"}),
            400,
            "UOS_OTPVERFY0030",
            "Mandatory parameter otp is missing.".into(),
        ),
    ];
    for (operation, request, status, err, message) in cases {
        let reply = if operation == "generate" {
            generate(&app, "v2", request.clone()).await
        } else {
            verify(&app, "v2", request.clone()).await
        };
        reply.assert_error(status, err, &message);
    }
    assert!(app.mails_to(&email).await.is_empty(), "nothing was sent");
    app.stop().await;
}

/// Every file under `dir`, read as bytes.
fn every_file(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

/// True when `code` occurs in `bytes` not as part of a longer run of digits.
fn contains_code(bytes: &[u8], code: &str) -> bool {
    let needle = code.as_bytes();
    bytes.windows(needle.len()).enumerate().any(|(at, window)| {
        window == needle
            && !at.checked_sub(1).is_some_and(|i| bytes[i].is_ascii_digit())
            && !bytes.get(at + needle.len()).is_some_and(u8::is_ascii_digit)
    })
}

#[tokio::test]
async fn no_code_is_kept_in_the_data_dir_or_written_to_a_log() {
    let mailbox = tempfile::tempdir().expect("tempdir");
    let Some(smtp) = SmtpSink::start(mailbox.path()) else {
        return;
    };
    let env = smtp.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(&env).await;
    let email = unique_email();
    generate(&app, "v2", json!({"key": email, "type": "email"}))
        .await
        .assert_ok();
    app.deliver().await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "the real server took the message");
    assert_eq!(received[0].to, email);
    let code = crate::mail::code_in(&received[0].body).expect("a code");
    // The log canary fails the test when the code shows in any log line.
    crate::canary::remember_secret(&code);
    for (path, bytes) in every_file(&app.data_dir()) {
        assert!(
            !contains_code(&bytes, &code),
            "the code is in {} in clear",
            path.display()
        );
    }
    // And the check itself finds a code where there is one.
    assert!(contains_code(received[0].raw.as_bytes(), &code));
    verify(
        &app,
        "v2",
        json!({"key": email, "type": "email", "otp": code}),
    )
    .await
    .assert_ok();
    app.stop().await;
}
