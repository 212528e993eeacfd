//! The whole service on the Redis cache engine: reads are served from Redis and every write
//! invalidates what it changed, so a read after a write never sees the old row.

use serde_json::json;

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn the_service_works_on_the_redis_cache() {
    let Some(url) = userorg::test_tiers::redis() else {
        return;
    };
    let prefix = format!("userorg-api-test:{}:", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(&[
        ("USERORG__CACHE__ENGINE", "redis"),
        ("USERORG__CACHE__REDIS_URL", &url),
        ("USERORG__CACHE__REDIS_KEY_PREFIX", &prefix),
    ])
    .await;
    let id = app
        .create_user(json!({"firstName": "Cached", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    for round in 0..3 {
        let name = format!("Name{round}");
        app.patch(
            "/v1/user/update",
            json!({"userId": id, "firstName": name}),
            Some(&token),
        )
        .await
        .assert_ok();
        // Read twice: the first read fills Redis, the second is served from it.
        for _ in 0..2 {
            let user = app.get(&format!("/v1/user/read/{id}"), Some(&token)).await;
            assert_eq!(user.assert_ok()["response"]["firstName"], name.as_str());
        }
    }
    // The entries really are in Redis, under the configured prefix.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("keys");
    assert!(keys.iter().any(|k| k.contains(&id)), "{keys:?}");
    app.stop().await;
}
