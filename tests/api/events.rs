//! Domain events published to a Redis stream (`[events] redis_stream`), end to end: a change
//! through the API becomes a stream entry with its entity, version and outbox position.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, unique_email};

pub(crate) use userorg::notify::redis_stream::testing::stream_entries as entries;

pub(crate) fn field<'a>(entry: &'a [(String, String)], name: &str) -> &'a str {
    entry
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

/// The entries of `stream` that `wanted` keeps, once at least `count` of them are there. The
/// publisher runs on its own (nothing to flush), so this polls, and fails the test when they
/// have not all arrived within ten seconds.
pub(crate) async fn entries_matching(
    url: &str,
    stream: &str,
    count: usize,
    wanted: impl Fn(&[(String, String)]) -> bool,
) -> Vec<Vec<(String, String)>> {
    let started = Instant::now();
    loop {
        let found: Vec<Vec<(String, String)>> = entries(url, stream)
            .await
            .into_iter()
            .filter(|entry| wanted(entry))
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of {count} awaited events reached the stream: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The entity ids the stream has published so far.
pub(crate) async fn published_ids(url: &str, stream: &str) -> HashSet<String> {
    entries(url, stream)
        .await
        .iter()
        .map(|entry| field(entry, "id").to_string())
        .collect()
}

#[tokio::test]
async fn a_created_and_updated_user_is_published_to_the_stream_in_order() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let stream = format!("userorg-test:events:{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(&[
        ("USERORG__EVENTS__REDIS_STREAM", &stream),
        ("USERORG__EVENTS__REDIS_URL", &url),
    ])
    .await;
    let id = app
        .create_user(json!({"firstName": "Streamed", "email": unique_email()}))
        .await;
    let updated = app
        .patch(
            "/v1/user/update",
            json!({"userId": id, "lastName": "Twice"}),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let mine = entries_matching(&url, &stream, 2, |entry| field(entry, "id") == id).await;
    assert_eq!(
        mine.iter()
            .map(|entry| (field(entry, "topic"), field(entry, "version")))
            .collect::<Vec<_>>(),
        [("user", "1"), ("user", "2")],
        "the create, then the update, with the versions they reached"
    );
    let positions: Vec<&str> = mine.iter().map(|entry| field(entry, "position")).collect();
    assert!(
        positions[0] < positions[1],
        "in outbox order: {positions:?}"
    );
    assert!(
        positions
            .iter()
            .all(|p| !p.is_empty() && hex::decode(p).is_ok()),
        "{positions:?}"
    );
    app.stop().await;
}
