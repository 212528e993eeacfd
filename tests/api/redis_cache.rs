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

    // And reads are served from them: a row changed in Redis behind the service's back is what
    // the next read shows (the store still holds Name2).
    let key = format!("{prefix}row:user:{id}");
    let cached: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .expect("cached row");
    let mut row: serde_json::Value = serde_json::from_slice(&cached).expect("row json");
    row["doc"]["firstName"] = json!("FromRedis");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(serde_json::to_vec(&row).expect("json"))
        .arg("EX")
        .arg(60)
        .query_async(&mut connection)
        .await
        .expect("set");
    let user = app.get(&format!("/v1/user/read/{id}"), Some(&token)).await;
    assert_eq!(user.assert_ok()["response"]["firstName"], "FromRedis");
    // A write invalidates the entry, so the store's value is back at once.
    app.patch(
        "/v1/user/update",
        json!({"userId": id, "firstName": "Final"}),
        Some(&token),
    )
    .await
    .assert_ok();
    let user = app.get(&format!("/v1/user/read/{id}"), Some(&token)).await;
    assert_eq!(user.assert_ok()["response"]["firstName"], "Final");
    app.stop().await;
}

/// Cache trust on a shared Redis: no password hash is ever written there, and entries that
/// decide access (the user row with its status, roles) expire within the access time to live.
#[tokio::test]
async fn redis_holds_no_password_hash_and_access_entries_expire_quickly() {
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
        .create_user(
            json!({"firstName": "Hashed", "email": unique_email(), "password": "S3cret!pass"}),
        )
        .await;
    let token = app.token_for(&id);
    for _ in 0..2 {
        app.get(&format!("/v1/user/read/{id}"), Some(&token))
            .await
            .assert_ok();
    }
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
    assert!(!keys.is_empty());
    for key in &keys {
        let value: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("value");
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains("argon2"), "{key} holds a password hash");
        assert!(
            !text.contains("passwordHash"),
            "{key} holds a password hash"
        );
    }
    let user_key = format!("{prefix}row:user:{id}");
    assert!(keys.contains(&user_key), "{keys:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&user_key)
        .query_async(&mut connection)
        .await
        .expect("pttl");
    assert!(pttl > 0 && pttl <= 5_000, "user row lives {pttl} ms");
    let role_keys: Vec<&String> = keys.iter().filter(|k| k.contains("row:role:")).collect();
    for key in role_keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("pttl");
        assert!(
            pttl > 5_000,
            "{key} lives the general time to live, {pttl} ms"
        );
    }
    app.stop().await;
}
