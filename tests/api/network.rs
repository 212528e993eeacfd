//! Client addresses, address lists and rate limits through the real router.

use serde_json::json;

use crate::helpers::{Reply, TestApp, unique_email};

async fn exists_from(
    app: &TestApp,
    email: &str,
    forwarded_for: Option<&str>,
) -> (Reply, Option<String>) {
    let mut request = app
        .client
        .get(format!("{}/v1/user/exists/email/{email}", app.public));
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.expect("sent");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    let reply = Reply {
        status: response.status(),
        body: response.json().await.expect("envelope"),
    };
    (reply, retry_after)
}

#[tokio::test]
async fn anonymous_lookups_are_rate_limited_per_client_and_spoofed_forwarding_is_ignored() {
    let app = TestApp::spawn_with(&[
        ("USERORG__RATE_LIMITS__LOOKUP_PER_CLIENT_PER_MINUTE", "3"),
        ("USERORG__RATE_LIMITS__PER_IDENTIFIER_PER_MINUTE", "0"),
    ])
    .await;
    for n in 0..3 {
        // A different X-Forwarded-For each time: the peer (127.0.0.1) is no trusted proxy, so
        // the header changes nothing.
        let (reply, _) = exists_from(&app, &unique_email(), Some(&format!("198.51.100.{n}"))).await;
        reply.assert_ok();
    }
    let (reply, retry_after) = exists_from(&app, &unique_email(), Some("203.0.113.77")).await;
    reply.assert_error(
        429,
        "UOS_UEXIST0059",
        "Your per minute rate limit has exceeded. You can retry after some time.",
    );
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=20).contains(&seconds), "retry after {seconds} s");
    // A token holder is accountable: the anonymous quota does not apply.
    let id = app
        .create_user(json!({"firstName": "Known", "email": unique_email()}))
        .await;
    app.get(
        &format!("/v1/user/exists/email/{}", unique_email()),
        Some(&app.token_for(&id)),
    )
    .await
    .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_count_when_the_peer_is_a_trusted_proxy() {
    let app = TestApp::spawn_with(&[
        ("USERORG__NETWORK__TRUSTED_PROXIES", "127.0.0.1"),
        ("USERORG__RATE_LIMITS__LOOKUP_PER_CLIENT_PER_MINUTE", "2"),
        ("USERORG__RATE_LIMITS__PER_IDENTIFIER_PER_MINUTE", "0"),
    ])
    .await;
    for _ in 0..2 {
        exists_from(&app, &unique_email(), Some("198.51.100.1"))
            .await
            .0
            .assert_ok();
    }
    let (spent, _) = exists_from(&app, &unique_email(), Some("198.51.100.1")).await;
    assert_eq!(spent.status.as_u16(), 429, "{}", spent.body);
    // Another client behind the same proxy has its own quota.
    exists_from(&app, &unique_email(), Some("198.51.100.2"))
        .await
        .0
        .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn one_identifier_is_looked_up_a_limited_number_of_times() {
    let app =
        TestApp::spawn_with(&[("USERORG__RATE_LIMITS__PER_IDENTIFIER_PER_MINUTE", "2")]).await;
    let email = unique_email();
    for _ in 0..2 {
        exists_from(&app, &email, None).await.0.assert_ok();
    }
    let (reply, _) = exists_from(&app, &email, None).await;
    assert_eq!(reply.status.as_u16(), 429);
    exists_from(&app, &unique_email(), None).await.0.assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn a_denied_address_is_refused_with_403() {
    let app = TestApp::spawn_with(&[("USERORG__NETWORK__PUBLIC_DENY", "127.0.0.0/8")]).await;
    app.get("/v1/system/settings/list", None)
        .await
        .assert_error(
            403,
            "UOS_SYSRED0071",
            "You are forbidden from accessing specified resource.",
        );
    // The internal listener has its own lists.
    app.get_internal("/v1/system/settings/list")
        .await
        .assert_ok();
    app.stop().await;
}

#[tokio::test]
async fn instances_on_one_redis_share_their_rate_limits() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let prefix = format!("userorg-api-test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("USERORG__CACHE__ENGINE", "redis"),
        ("USERORG__CACHE__REDIS_URL", url.as_str()),
        ("USERORG__CACHE__REDIS_KEY_PREFIX", prefix.as_str()),
        ("USERORG__RATE_LIMITS__LOOKUP_PER_CLIENT_PER_MINUTE", "4"),
        ("USERORG__RATE_LIMITS__PER_IDENTIFIER_PER_MINUTE", "0"),
    ];
    let (first, second) = (
        TestApp::spawn_with(&env).await,
        TestApp::spawn_with(&env).await,
    );
    // Two lookups on each instance spend the one budget of four...
    for app in [&first, &second, &first, &second] {
        exists_from(app, &unique_email(), None).await.0.assert_ok();
    }
    // ...so the fifth is refused, on either instance.
    for app in [&first, &second] {
        let (reply, retry_after) = exists_from(app, &unique_email(), None).await;
        reply.assert_error(
            429,
            "UOS_UEXIST0059",
            "Your per minute rate limit has exceeded. You can retry after some time.",
        );
        assert!(retry_after.is_some());
    }
    first.stop().await;
    second.stop().await;
}
