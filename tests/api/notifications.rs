//! Email and SMS through the real router and the dispatcher: `/v1/notification/email` and
//! `/v2/notification` with their rules, delivery to a real SMTP server (aiosmtpd) that is
//! down and then up, a permanent refusal to the dead letters and `userorg notifications retry`.

use std::collections::HashMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, unique_email, unique_phone};
use crate::mail::SmtpSink;

fn email_request(recipients: &[String]) -> Value {
    json!({
        "subject": "Exam dates",
        "body": "<p>The exams start on <b>Monday</b>.</p>",
        "recipientEmails": recipients,
    })
}

fn env_of(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn the_email_route_sends_one_message_per_recipient() {
    let app = TestApp::spawn().await;
    let (a, b) = (unique_email(), unique_email());
    let c = unique_email();
    let user = app
        .create_user(json!({"firstName": "Chitra", "email": c}))
        .await;
    let mut request = email_request(&[a.clone(), b.clone(), a.to_uppercase()]);
    request["recipientUserIds"] = json!([user]);
    let reply = app
        .post("/v1/notification/email", request, Some(&app.admin_token))
        .await;
    assert_eq!(reply.assert_ok(), &json!({"response": "SUCCESS"}));
    for address in [&a, &b, &c] {
        let mails = app.mails_to(address).await;
        assert_eq!(mails.len(), 1, "one message to {address}");
        assert_eq!(mails[0].subject, "Exam dates");
        assert!(
            mails[0]
                .body
                .contains("<p>The exams start on <b>Monday</b>.</p>"),
            "{}",
            mails[0].body
        );
        assert!(
            mails[0].message_id.ends_with("@userorg.local>"),
            "{}",
            mails[0].message_id
        );
    }
    assert!(app.mails_to(&c).await[0].body.contains("Hello Chitra,"));
    assert!(app.mails_to(&a).await[0].body.contains("Hello User,"));
    app.stop().await;
}

#[tokio::test]
async fn sms_mode_sends_the_body_to_phones() {
    let app = TestApp::spawn().await;
    let phone = unique_phone();
    let reply = app
        .post(
            "/v1/notification/email",
            json!({"mode": "sms", "body": "School is closed today", "recipientPhones": [phone]}),
            Some(&app.admin_token),
        )
        .await;
    reply.assert_ok();
    let sent = app.sms_sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["to"], format!("+91{phone}"));
    assert_eq!(sent[0]["body"], "School is closed today");
    app.stop().await;
}

#[tokio::test]
async fn the_email_routes_refuse_bad_requests_and_callers_with_sunbirds_codes() {
    let app = TestApp::spawn_with(&[("USERORG__NOTIFICATIONS__MAX_RECIPIENTS", "2")]).await;
    let admin = Some(app.admin_token.as_str());
    let plain = app
        .create_user(json!({"firstName": "Plain", "email": unique_email()}))
        .await;
    let plain_token = app.token_for(&plain);
    let ok = email_request(&[unique_email()]);
    app.post("/v1/notification/email", ok.clone(), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    app.post("/v1/notification/email", ok.clone(), Some(&plain_token))
        .await
        .assert_error(
            403,
            "UOS_EMAILNOTI0071",
            "You are forbidden from accessing specified resource.",
        );
    let mut cases: Vec<(Value, &str, String)> = Vec::new();
    let without = |field: &str| {
        let mut request = ok.clone();
        request.as_object_mut().expect("object").remove(field);
        request
    };
    cases.push((
        without("subject"),
        "UOS_EMAILNOTI0030",
        "Mandatory parameter subject is missing.".into(),
    ));
    cases.push((
        without("body"),
        "UOS_EMAILNOTI0030",
        "Mandatory parameter body is missing.".into(),
    ));
    cases.push((
        email_request(&[unique_email(), unique_email(), unique_email()]),
        "UOS_EMAILNOTI0044",
        "Email notification is not sent as the number of recipients exceeded configured limit (2)."
            .into(),
    ));
    cases.push((
        email_request(&["not-an-email".to_string()]),
        "UOS_EMAILNOTI0017",
        "Invalid value not-an-email for parameter recipientEmails. Please provide a valid value."
            .into(),
    ));
    let mut fax = ok.clone();
    fax["mode"] = json!("fax");
    cases.push((
        fax,
        "UOS_EMAILNOTI0017",
        "Invalid value fax for parameter mode. Please provide a valid value.".into(),
    ));
    let mut template = ok.clone();
    template["emailTemplateType"] = json!("noSuchTemplate");
    cases.push((
        template,
        "UOS_EMAILNOTI0017",
        "Invalid value noSuchTemplate for parameter emailTemplateType. Please provide a valid value.".into(),
    ));
    let mut nobody = ok.clone();
    nobody["recipientUserIds"] = json!(["nobody"]);
    cases.push((
        nobody,
        "UOS_EMAILNOTI0017",
        "Invalid value nobody for parameter recipientUserIds. Please provide a valid value.".into(),
    ));
    let mut typed = ok.clone();
    typed["recipientEmails"] = json!("one@example.test");
    cases.push((
        typed,
        "UOS_EMAILNOTI0003",
        "Data type of recipientEmails should be List.".into(),
    ));
    for (request, err, message) in cases {
        app.post("/v1/notification/email", request, admin)
            .await
            .assert_error(400, err, &message);
    }
    // The private twin answers services on the internal listener.
    app.post_internal("/private/user/v1/notification/email", ok.clone())
        .await
        .assert_ok();
    // v2 takes notification-service's request, from an ADMIN or a service only.
    let v2 = json!({"notifications": [{"mode": "email", "ids": [unique_email()],
        "config": {"subject": "Hi {{ name }}"}, "template": {"data": "<p>Dear {{ name }}</p>",
        "params": {"name": "<Asha>"}}}]});
    app.post("/v2/notification", v2.clone(), Some(&plain_token))
        .await
        .assert_error(
            403,
            "UOS_NOTI0071",
            "You are forbidden from accessing specified resource.",
        );
    app.post("/v2/notification", v2.clone(), admin)
        .await
        .assert_ok();
    let to = v2["notifications"][0]["ids"][0]
        .as_str()
        .expect("id")
        .to_string();
    let mails = app.mails_to(&to).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Hi <Asha>");
    assert!(
        mails[0].body.contains("<p>Dear &lt;Asha&gt;</p>"),
        "{}",
        mails[0].body
    );
    app.post(
        "/v2/notification",
        json!({"notifications": [{"mode": "email", "ids": []}]}),
        admin,
    )
    .await
    .assert_error(400, "UOS_NOTI0030", "Mandatory parameter ids is missing.");
    app.stop().await;
}

#[tokio::test]
async fn fifty_messages_queued_while_the_smtp_server_is_down_arrive_once_each() {
    let mailbox = tempfile::tempdir().expect("tempdir");
    let Some(mut smtp) = SmtpSink::start(mailbox.path()) else {
        return;
    };
    smtp.down();
    let env = smtp.env();
    let app = TestApp::spawn_with(&env_of(&env)).await;
    let recipients: Vec<String> = (0..50).map(|_| unique_email()).collect();
    app.post(
        "/v1/notification/email",
        email_request(&recipients),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    // Every attempt while the server is down fails and is put off.
    app.deliver().await;
    assert!(smtp.received().is_empty());
    smtp.up(None);
    // Before the retries are due nothing is sent; once they are, everything is.
    app.deliver().await;
    assert!(smtp.received().is_empty(), "retries wait for their time");
    app.clock.advance(chrono::Duration::minutes(11));
    app.deliver().await;
    app.clock.advance(chrono::Duration::minutes(11));
    app.deliver().await;
    let received = smtp.received();
    let mut count: HashMap<String, usize> = HashMap::new();
    for mail in &received {
        *count.entry(mail.to.clone()).or_default() += 1;
    }
    assert_eq!(received.len(), 50, "each message once");
    for address in &recipients {
        assert_eq!(count.get(address), Some(&1), "{address}");
    }
    let ids: std::collections::HashSet<&str> = received
        .iter()
        .map(|mail| mail.message_id.as_str())
        .collect();
    assert_eq!(ids.len(), 50, "one Message-ID per message");
    app.stop().await;
}

pub(crate) fn notifications_cli(data_dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .arg("notifications")
        .args(args)
        .env("USERORG__DATA_DIR", data_dir)
        .envs(crate::helpers::engine_env(data_dir))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_refused_message_goes_to_the_dead_letters_and_retry_delivers_it() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg notifications`") {
        return;
    }
    let mailbox = tempfile::tempdir().expect("tempdir");
    let Some(mut smtp) = SmtpSink::start(mailbox.path()) else {
        return;
    };
    smtp.up(Some("550 5.7.1 refused by policy"));
    let env = smtp.env();
    let mut env = env_of(&env);
    env.push(("USERORG__NOTIFICATIONS__MAX_ATTEMPTS", "3"));
    let app = TestApp::spawn_with(&env).await;
    let (refused, later) = (unique_email(), unique_email());
    app.post(
        "/v1/notification/email",
        email_request(std::slice::from_ref(&refused)),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    app.deliver().await;
    // A message the server refuses for good is dead at once, not retried.
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    let dead = notifications_cli(&data_dir, &["list", "--state", "dead"]);
    let lines: Vec<&str> = dead.lines().collect();
    assert_eq!(lines.len(), 1, "{dead}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(
        &fields[1..6],
        ["email", "dead", "1", "notification", "emailtemplate"]
    );
    assert_eq!(fields[7], "smtp server answered 550");
    assert!(!dead.contains(&refused), "the list shows no address");

    // A temporary refusal is retried up to max_attempts, then dead too.
    smtp.up(Some("451 4.3.0 try again later"));
    let app = TestApp::start_again(dir, &env).await;
    app.post(
        "/v1/notification/email",
        email_request(std::slice::from_ref(&later)),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    for _ in 0..3 {
        app.deliver().await;
        app.clock.advance(chrono::Duration::minutes(11));
    }
    let dir = app.stop_keeping_data().await;
    let dead = notifications_cli(&data_dir, &["list", "--state", "dead"]);
    assert_eq!(dead.lines().count(), 2, "{dead}");
    assert!(dead.contains("\tdead\t3\t"), "three attempts: {dead}");
    assert!(dead.contains("smtp server answered 451"), "{dead}");

    // The server takes mail again; the operator retries the dead letters.
    smtp.up(None);
    let retried = notifications_cli(&data_dir, &["retry", "--dead"]);
    assert_eq!(retried.trim(), "queued 2 messages again");
    let app = TestApp::start_again(dir, &env).await;
    app.deliver().await;
    let received = smtp.received();
    let mut to: Vec<&str> = received.iter().map(|mail| mail.to.as_str()).collect();
    to.sort();
    let mut expected = vec![refused.as_str(), later.as_str()];
    expected.sort();
    assert_eq!(to, expected);
    let dir = app.stop_keeping_data().await;
    let delivered = notifications_cli(&data_dir, &["list", "--state", "delivered"]);
    assert_eq!(delivered.lines().count(), 2, "{delivered}");
    assert!(notifications_cli(&data_dir, &["list", "--state", "dead"]).is_empty());
    drop(dir);
}

#[tokio::test]
async fn kill_9_during_a_burst_loses_nothing_and_sends_nothing_delivered_again() {
    if crate::helpers::skip_with_an_in_process_store("it kills the binary") {
        return;
    }
    let mailbox = tempfile::tempdir().expect("tempdir");
    let Some(smtp) = SmtpSink::start(mailbox.path()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut env = smtp.env();
    env.push(("USERORG__NOTIFICATIONS__CONCURRENCY".into(), "4".into()));
    let env = env_of(&env);
    let server = crate::durability::Server::start_with(&data_dir, None, &env).await;
    let token = crate::durability::admin_token(&data_dir);
    let client = reqwest::Client::new();
    let batches: Vec<Vec<String>> = (0..6)
        .map(|_| (0..25).map(|_| unique_email()).collect())
        .collect();
    let sends = batches.iter().map(|recipients| {
        client
            .post(format!("{}/v1/notification/email", server.base))
            .header("x-authenticated-user-token", &token)
            .json(&json!({"request": email_request(recipients)}))
            .send()
    });
    for reply in futures::future::join_all(sends).await {
        assert_eq!(reply.expect("sent").status(), 200, "every burst is queued");
    }
    let started = std::time::Instant::now();
    while smtp.received().len() < 20 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "delivery did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill_hard();
    let at_kill = smtp.received().len();
    assert!(
        at_kill < 150,
        "killed in the middle of the burst ({at_kill} sent)"
    );
    // What the store says was delivered when the process died.
    let delivered_before: std::collections::HashSet<String> =
        notifications_cli(&data_dir, &["list", "--state", "delivered"])
            .lines()
            .map(|line| line.split('\t').next().expect("id").to_string())
            .collect();

    let server = crate::durability::Server::start_with(&data_dir, None, &env).await;
    let all: Vec<&String> = batches.iter().flatten().collect();
    let started = std::time::Instant::now();
    loop {
        let reached: std::collections::HashSet<String> =
            smtp.received().into_iter().map(|mail| mail.to).collect();
        if all.iter().all(|address| reached.contains(*address)) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "not every acknowledged message arrived after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.kill_hard();
    let received = smtp.received();
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for mail in &received {
        let id = mail
            .message_id
            .trim_start_matches('<')
            .split('@')
            .next()
            .expect("id")
            .to_string();
        *per_message.entry(id).or_default() += 1;
    }
    assert_eq!(per_message.len(), 150, "every message arrived");
    for id in &delivered_before {
        assert_eq!(
            per_message.get(id),
            Some(&1),
            "{id} was delivered, and sent again"
        );
    }
    // Only a message in flight at the kill (taken by the server, not yet marked) may come
    // twice: at most one per concurrent send.
    let repeats: usize = per_message.values().map(|n| n - 1).sum();
    assert!(repeats <= 4, "{repeats} repeats");
    println!(
        "kill -9 after {at_kill} of 150 sent; {} marked delivered before; {repeats} sent twice",
        delivered_before.len()
    );
}

#[tokio::test]
async fn a_broken_message_row_does_not_hold_the_others_back() {
    use userorg::storage::{Expect, Table, Topic, Transaction};
    let app = TestApp::spawn().await;
    // A row that does not parse (a newer build's state, a damaged copy), in the outbox and on
    // the retry list.
    let mut transaction = Transaction::default();
    transaction.put(
        Table::Notification,
        "broken",
        json!({"state": "sending-v9"}),
        Expect::Absent,
    );
    transaction.put(
        Table::NotificationDue,
        "broken",
        json!({"dueMs": 0}),
        Expect::Absent,
    );
    transaction.event(Topic::Notification, "broken", 1);
    app.stored().commit(transaction).await.expect("committed");
    let to = unique_email();
    app.post(
        "/v1/notification/email",
        email_request(std::slice::from_ref(&to)),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    assert_eq!(
        app.mails_to(&to).await.len(),
        1,
        "delivered past the broken row"
    );
    let due = app
        .stored()
        .get(Table::NotificationDue, "broken")
        .await
        .expect("read");
    assert!(due.is_none(), "the broken row is off the retry list");
    app.stop().await;
}

fn templates_cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_userorg"))
        .arg("templates")
        .args(args)
        .env("USERORG__DATA_DIR", data_dir)
        .envs(crate::helpers::engine_env(data_dir))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the CLI runs")
}

#[tokio::test]
async fn a_tenants_own_template_is_used_for_its_users_only() {
    if crate::helpers::skip_with_an_in_process_store("it runs `userorg templates`") {
        return;
    }
    let app = TestApp::spawn().await;
    let channel = format!("tpl{}", uuid::Uuid::new_v4().simple());
    let tenant = app
        .create_org(
            json!({"orgName": "Own Words", "isTenant": true, "channel": channel,
                           "organisationType": "board"}),
        )
        .await;
    let (inside, outside) = (unique_email(), unique_email());
    let member = app
        .create_user(json!({"firstName": "Member", "email": inside, "channel": channel}))
        .await;
    let other = app
        .create_user(json!({"firstName": "Other", "email": outside}))
        .await;
    let dir = app.stop_keeping_data().await;
    let data_dir = dir.path().join("data");
    let body = dir.path().join("body.html");
    std::fs::write(&body, "<p>Our own words, {{ name }}: {{ link }}</p>").expect("body");
    let body_arg = body.display().to_string();
    let set = templates_cli(
        &data_dir,
        &[
            "set",
            "resetPasswordLink",
            "--tenant",
            &tenant,
            "--body-file",
            &body_arg,
            "--subject",
            "Set it, {{ name }}",
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    // A template that does not render, or a name nobody seeded, is refused.
    std::fs::write(&body, "{% if %}").expect("body");
    let broken = templates_cli(
        &data_dir,
        &[
            "set",
            "resetPasswordLink",
            "--tenant",
            &tenant,
            "--body-file",
            &body_arg,
        ],
    );
    assert!(!broken.status.success());
    let unknown = templates_cli(
        &data_dir,
        &["set", "noSuchTemplate", "--body-file", &body_arg],
    );
    assert!(!unknown.status.success());
    let listed = String::from_utf8_lossy(&templates_cli(&data_dir, &["list"]).stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|line| line == format!("resetPasswordLink\t{tenant}\temail")),
        "{listed}"
    );

    let app = TestApp::start_again(dir, &[]).await;
    for user in [&member, &other] {
        app.post_internal(
            "/private/user/v1/password/reset",
            json!({"userId": user, "type": "email"}),
        )
        .await
        .assert_ok();
    }
    let own = app.mails_to(&inside).await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].subject, "Set it, Member");
    assert!(
        own[0].body.contains("Our own words, Member"),
        "{}",
        own[0].body
    );
    let seeded = app.mails_to(&outside).await;
    assert_eq!(seeded.len(), 1);
    assert!(
        !seeded[0].body.contains("Our own words"),
        "{}",
        seeded[0].body
    );
}
