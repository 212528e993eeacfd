//! Two userorg processes on one PostgreSQL schema and one Redis, each with its own data dir
//! (search index, instance id) and its own listeners, driven at once: the multi-instance
//! contract of the store (unique claims, versioned writes, the outbox tailed by every
//! instance) and of the shared cache, shown on real processes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use userorg::auth::{LocalSigner, MintClaims};

use crate::durability::{Server, admin_token};
use crate::helpers::{copy_dir, unique_email};

/// The most a block on one instance may take to be enforced on another: the access-deciding
/// cache entries' time to live the pair runs with (`cache.access_ttl_seconds`), which bounds an
/// entry whose invalidation was lost.
const ACCESS_TTL_SECONDS: u64 = 2;

struct Pair {
    a: Option<Server>,
    b: Server,
    data_a: PathBuf,
    admin: String,
    postgres: String,
    schema: String,
    /// Redis, and the stream both instances publish domain events to (competing for it).
    redis: String,
    stream: String,
    /// The environment both instances run with.
    env: Vec<(String, String)>,
    /// The real SMTP server both instances' dispatchers deliver to (competing for the
    /// notification stream).
    smtp: crate::mail::SmtpSink,
    _dir: tempfile::TempDir,
}

fn random_key() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

impl Pair {
    /// Both instances started at once on a new schema (so their first-start seeding races
    /// too), sharing the key material every instance of one store must share.
    async fn start() -> Option<Pair> {
        let postgres = userorg::test_tiers::postgres()?;
        let redis = userorg::test_tiers::redis()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let smtp = crate::mail::SmtpSink::start(&dir.path().join("mailbox"))?;
        let smtp_env = smtp.env();
        let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
        LocalSigner::ensure(&data_a, Some(&data_a.join("keys").join("public")))
            .expect("signing key");
        copy_dir(&data_a.join("keys"), &data_b.join("keys"));
        let schema = format!("multi_{}", uuid::Uuid::new_v4().simple());
        let prefix = format!("userorg-multi:{}:", uuid::Uuid::new_v4().simple());
        let stream = format!("{prefix}events");
        let ttl = ACCESS_TTL_SECONDS.to_string();
        let (pii, blind, service) = (random_key(), random_key(), random_key());
        let mut env: Vec<(&str, &str)> = vec![
            ("USERORG__STORE__ENGINE", "postgres"),
            ("USERORG__STORE__POSTGRES__URL", &postgres),
            ("USERORG__STORE__POSTGRES__SCHEMA", &schema),
            ("USERORG__STORE__POSTGRES__POOL_SIZE", "8"),
            ("USERORG__STORE__LEASE_TTL_MS", "2000"),
            ("USERORG__CACHE__ENGINE", "redis"),
            ("USERORG__CACHE__REDIS_URL", &redis),
            ("USERORG__CACHE__REDIS_KEY_PREFIX", &prefix),
            ("USERORG__CACHE__ACCESS_TTL_SECONDS", &ttl),
            ("USERORG__EVENTS__REDIS_STREAM", &stream),
            ("USERORG__SECURITY__PII_ENCRYPTION_KEY", &pii),
            ("USERORG__SECURITY__BLIND_INDEX_KEY", &blind),
            ("USERORG__SECURITY__SERVICE_CREDENTIAL", &service),
        ];
        env.extend(smtp_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // The logs stay behind a failed test (the temporary dir does not), to read why.
        let logs = [log_of(&schema, "a"), log_of(&schema, "b")];
        let (a, b) = tokio::join!(
            Server::start_with(&data_a, Some(&logs[0]), &env),
            Server::start_with(&data_b, Some(&logs[1]), &env)
        );
        let admin_a = userorg::seed::read_bootstrap_admin(&data_a).expect("admin of a");
        let admin_b = userorg::seed::read_bootstrap_admin(&data_b).expect("admin of b");
        assert_eq!(
            admin_a, admin_b,
            "one bootstrap administrator for the store"
        );
        let env = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Some(Pair {
            a: Some(a),
            b,
            admin: admin_token(&data_a),
            data_a,
            postgres,
            schema,
            redis,
            stream,
            env,
            smtp,
            _dir: dir,
        })
    }

    fn a(&self) -> &Server {
        self.a.as_ref().expect("instance a runs")
    }

    fn token_for(&self, user_id: &str) -> String {
        let signer =
            LocalSigner::ensure(&self.data_a, Some(&self.data_a.join("keys").join("public")))
                .expect("signer");
        signer
            .mint(MintClaims::new(
                user_id,
                "http://localhost:9000/auth/realms/sunbird",
                3600,
            ))
            .expect("token")
    }

    /// Stops both instances and drops the schema (a failed test keeps it, to look at). The
    /// instances logged at debug level: the PostgreSQL driver's statement lines, which carry
    /// whole rows (password hashes, session tokens), are not among what they wrote.
    async fn finish(mut self) {
        if let Some(a) = self.a.take() {
            a.kill_hard();
        }
        // Both stopped before the schema goes: a running instance's statements would deadlock
        // with the DROP.
        let _ = self.b.child.kill();
        let _ = self.b.child.wait();
        for instance in ["a", "b"] {
            let log = std::fs::read_to_string(log_of(&self.schema, instance)).expect("log");
            assert!(
                log.contains("DEBUG"),
                "instance {instance} logged at debug level"
            );
            assert!(
                !log.contains("executing statement"),
                "instance {instance} logged the driver's statements and their parameters"
            );
        }
        drop_schema(&self.postgres, &self.schema).await;
        for instance in ["a", "b"] {
            let _ = std::fs::remove_file(log_of(&self.schema, instance));
        }
    }
}

/// The instance id holding the event publisher's lease, if any.
async fn publication_holder(pair: &Pair) -> Option<String> {
    lease_holder(pair, "event-publisher").await
}

/// The instance id holding a competing consumer's lease, if any.
async fn lease_holder(pair: &Pair, consumer: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(&pair.postgres, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let query = format!(
        "SELECT holder FROM \"{}\".outbox_lease WHERE consumer = $1",
        pair.schema
    );
    client
        .query_opt(&query, &[&consumer])
        .await
        .expect("lease")
        .map(|row| row.get::<_, String>(0))
}

fn log_of(schema: &str, instance: &str) -> PathBuf {
    std::env::temp_dir().join(format!("userorg-{schema}-{instance}.log"))
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for cleanup");
    tokio::spawn(connection);
    // The killed instances' sessions may hold locks until the server notices they are gone.
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let mut attempts = 0;
    while let Err(error) = client.batch_execute(&drop).await {
        attempts += 1;
        assert!(attempts < 20, "drop the test schema: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    request: Option<Value>,
) -> (u16, Value) {
    let mut builder = client
        .request(method, url)
        .header("x-authenticated-user-token", token);
    if let Some(request) = request {
        builder = builder.json(&json!({ "request": request }));
    }
    let reply = builder.send().await.expect("sent");
    let status = reply.status().as_u16();
    (status, reply.json().await.expect("json"))
}

async fn create(client: &reqwest::Client, base: &str, token: &str, request: Value) -> (u16, Value) {
    send(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/user/create"),
        token,
        Some(request),
    )
    .await
}

async fn read(client: &reqwest::Client, base: &str, token: &str, id: &str) -> (u16, Value) {
    send(
        client,
        reqwest::Method::GET,
        format!("{base}/v1/user/read/{id}"),
        token,
        None,
    )
    .await
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["params"]["err"].as_str().unwrap_or_default(),
        body["params"]["errmsg"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn racing_creates_and_updates_through_two_instances_keep_one_owner_and_every_update() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    let bases = [pair.a().base.clone(), pair.b.base.clone()];

    // 64 creates of one email, alternating between the instances, all in flight at once.
    let email = unique_email();
    let racers: Vec<_> = (0..64)
        .map(|n| {
            let (client, base, token) = (client.clone(), bases[n % 2].clone(), pair.admin.clone());
            let request = json!({"firstName": format!("Racer{n}"), "email": email});
            tokio::spawn(async move { create(&client, &base, &token, request).await })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (status, body) = racer.await.expect("racer");
        if status == 200 {
            winners.push(body["result"]["userId"].as_str().expect("id").to_string());
        } else {
            assert_eq!(
                (status, error_of(&body)),
                (400, ("UOS_USRCRT0002", "email already exists")),
                "{body}"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create of the email succeeds");
    let mut seen = Vec::new();
    for base in &bases {
        let (status, body) = read(&client, base, &pair.admin, &winners[0]).await;
        assert_eq!(status, 200, "{body}");
        seen.push(body["result"]["response"]["firstName"].clone());
    }
    assert_eq!(seen[0], seen[1], "both instances show the one winner");
    // The email's lookup names the winner on both instances.
    for base in &bases {
        let (status, body) = send(
            &client,
            reqwest::Method::GET,
            format!("{base}/v1/user/exists/email/{email}"),
            &pair.admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["exists"], true, "{body}");
    }

    // 16 updates of one user at once, alternating: each adds its own external id to the one
    // list in the user's row, read and written back whole (versions checked). A lost update
    // would drop an acknowledged id.
    let (status, body) = create(
        &client,
        &bases[0],
        &pair.admin,
        json!({"firstName": "Contended", "email": unique_email()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["userId"].as_str().expect("id").to_string();
    let updates: Vec<_> = (0..16)
        .map(|n| {
            let (client, base, token) = (client.clone(), bases[n % 2].clone(), pair.admin.clone());
            let request = json!({"userId": id, "externalIds": [
                {"id": format!("EXT-{n}"), "idType": format!("staff{n}"), "provider": "sunbird", "operation": "add"}
            ]});
            tokio::spawn(async move {
                let url = format!("{base}/v1/user/update");
                send(&client, reqwest::Method::PATCH, url, &token, Some(request)).await
            })
        })
        .collect();
    // Each answer is either the update applied or Sunbird's 503 of an entity changed too often
    // meanwhile (a writer that lost every round), which must then have left nothing behind.
    let mut acknowledged: Vec<String> = Vec::new();
    for (n, update) in updates.into_iter().enumerate() {
        let (status, body) = update.await.expect("update");
        if status == 200 {
            acknowledged.push(format!("EXT-{n}"));
        } else {
            assert_eq!(
                (status, error_of(&body)),
                (503, ("UOS_USRUPD0064", "SERVICE UNAVAILABLE")),
                "{body} (server logs: {})",
                log_of(&pair.schema, "*").display()
            );
        }
    }
    assert!(
        acknowledged.len() >= 12,
        "most concurrent updates get through: {acknowledged:?}"
    );
    acknowledged.sort();
    // The owner's own read shows the ids in clear.
    let own = pair.token_for(&id);
    for base in &bases {
        let (status, body) = read(&client, base, &own, &id).await;
        assert_eq!(status, 200, "{body}");
        let mut held: Vec<String> = body["result"]["response"]["externalIds"]
            .as_array()
            .expect("externalIds")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_uppercase())
            .collect();
        held.sort();
        assert_eq!(
            held, acknowledged,
            "every acknowledged update is there, and no refused one"
        );
    }
    pair.finish().await;
}

#[tokio::test]
async fn a_block_on_one_instance_is_enforced_on_the_other_within_the_bound() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    let (a, b) = (pair.a().base.clone(), pair.b.base.clone());
    let (status, body) = create(
        &client,
        &a,
        &pair.admin,
        json!({"firstName": "Blocked", "email": unique_email()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["userId"].as_str().expect("id").to_string();
    let token = pair.token_for(&id);
    // The user's row and roles are read (and cached) on both instances first.
    for base in [&a, &b, &a, &b] {
        let (status, body) = read(&client, base, &token, &id).await;
        assert_eq!(status, 200, "{body}");
    }

    for (action, on, other, refused) in [("block", &a, &b, true), ("unblock", &b, &a, false)] {
        let (status, body) = send(
            &client,
            reqwest::Method::POST,
            format!("{on}/v1/user/{action}"),
            &pair.admin,
            Some(json!({"userId": id})),
        )
        .await;
        assert_eq!(status, 200, "{action}: {body}");
        let changed = Instant::now();
        loop {
            let (status, body) = read(&client, other, &token, &id).await;
            let now_refused = status == 401;
            if now_refused {
                assert_eq!(
                    error_of(&body),
                    ("UOS_0070", "You are not authorized."),
                    "{body}"
                );
            } else {
                assert_eq!(status, 200, "{body}");
            }
            if now_refused == refused {
                break;
            }
            assert!(
                changed.elapsed()
                    < Duration::from_secs(ACCESS_TTL_SECONDS) + Duration::from_millis(500),
                "the {action} on one instance is not enforced on the other within {ACCESS_TTL_SECONDS} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And it stays so: no instance serves the old state again.
        for base in [&a, &b] {
            let (status, _) = read(&client, base, &token, &id).await;
            assert_eq!(status == 401, refused, "{action} seen on {base}");
        }
    }
    pair.finish().await;
}

#[tokio::test]
async fn killing_one_instance_mid_load_loses_no_acknowledged_write_and_the_other_indexes_it_all() {
    let Some(mut pair) = Pair::start().await else {
        return;
    };
    let client = reqwest::Client::new();
    let a = pair.a().base.clone();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mailed: Arc<Mutex<Vec<String>>> = Arc::default();
    // Eight writers keep creating users on instance a until it dies under them; every fourth
    // create is followed by an email to the new user.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, a, token) = (client.clone(), a.clone(), pair.admin.clone());
            let acknowledged = Arc::clone(&acknowledged);
            let mailed = Arc::clone(&mailed);
            tokio::spawn(async move {
                for n in 0.. {
                    let email = unique_email();
                    let request = json!({"firstName": format!("Load{w}x{n}"), "email": email});
                    let sent = client
                        .post(format!("{a}/v1/user/create"))
                        .header("x-authenticated-user-token", &token)
                        .json(&json!({ "request": request }))
                        .send()
                        .await;
                    // Once the instance is gone, the writer stops; an answer that never
                    // came was never acknowledged.
                    let Ok(reply) = sent else { break };
                    let Ok(body) = reply.json::<Value>().await else {
                        break;
                    };
                    if let Some(id) = body["result"]["userId"].as_str() {
                        acknowledged
                            .lock()
                            .expect("lock")
                            .push((id.to_string(), email.clone()));
                    }
                    if n % 4 != 0 {
                        continue;
                    }
                    let request = json!({"subject": "Welcome", "body": "Hello",
                                         "recipientEmails": [email]});
                    let sent = client
                        .post(format!("{a}/v1/notification/email"))
                        .header("x-authenticated-user-token", &token)
                        .json(&json!({ "request": request }))
                        .send()
                        .await;
                    let Ok(reply) = sent else { break };
                    if reply.status() == 200 {
                        mailed.lock().expect("lock").push(email);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().expect("lock").len() < 80 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the load does not progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let holder = publication_holder(&pair).await;
    let a_id = std::fs::read_to_string(pair.data_a.join("instance-id")).ok();
    let a_held = holder == a_id;
    let a_dispatched = lease_holder(&pair, "notification-dispatcher").await == a_id;
    println!(
        "the notification lease was held by instance {} when a was killed",
        if a_dispatched {
            "a (b must take it over)"
        } else {
            "b"
        }
    );
    println!(
        "the event publication lease was held by instance {} when a was killed",
        if a_held {
            "a (b must take it over)"
        } else {
            "b"
        }
    );
    pair.a.take().expect("a runs").kill_hard();
    for writer in writers {
        writer.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 80);

    // Every acknowledged create is there through b, and b's own index (tailing the outbox with
    // its own cursor) gets to every one of them.
    let b = pair.b.base.clone();
    for (id, _) in &acknowledged {
        let (status, body) = read(&client, &b, &pair.admin, id).await;
        assert_eq!(status, 200, "acknowledged {id} lost: {body}");
    }
    let started = Instant::now();
    for (id, email) in &acknowledged {
        loop {
            let (_, found) = send(
                &client,
                reqwest::Method::POST,
                format!("{b}/v3/user/search"),
                &pair.admin,
                Some(json!({"filters": {"email": email}})),
            )
            .await;
            if found["result"]["response"]["count"] == 1 {
                assert_eq!(found["result"]["response"]["content"][0]["id"], id.as_str());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{id} never reached the index of the surviving instance: {found}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The event publisher is a competing consumer: whichever instance held it, b finishes the
    // stream (after the dead one's lease ran out), so every acknowledged create is published.
    let started = Instant::now();
    loop {
        let published = crate::events::published_ids(&pair.redis, &pair.stream).await;
        let missing: Vec<&String> = acknowledged
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !published.contains(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} acknowledged creates never reached the event stream, e.g. {}",
            missing.len(),
            missing[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And each once, even when the stream changed hands in the middle of a batch.
    let entries = crate::events::entries(&pair.redis, &pair.stream).await;
    for (id, _) in &acknowledged {
        let created = entries
            .iter()
            .filter(|entry| {
                crate::events::field(entry, "id") == id
                    && crate::events::field(entry, "version") == "1"
            })
            .count();
        assert_eq!(created, 1, "the create of {id} is in the stream once");
    }
    // The notification dispatcher is a competing consumer too: every email a acknowledged
    // reaches the SMTP server, delivered by whichever instance holds the stream.
    let mailed = mailed.lock().expect("lock").clone();
    assert!(!mailed.is_empty(), "emails were queued before the kill");
    let started = Instant::now();
    loop {
        let received: std::collections::HashSet<String> = pair
            .smtp
            .received()
            .into_iter()
            .map(|mail| mail.to)
            .collect();
        let missing: Vec<&String> = mailed.iter().filter(|to| !received.contains(*to)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} acknowledged emails never arrived, e.g. {}",
            missing.len(),
            missing[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And b keeps taking writes.
    let (status, body) = create(
        &client,
        &b,
        &pair.admin,
        json!({"firstName": "After", "email": unique_email()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    pair.finish().await;
}

/// A third instance on the same store with a signing key of its own (and not the others'
/// public key) would answer 401 to their tokens and they to its: it is refused at start.
#[tokio::test]
async fn an_instance_signing_with_another_key_is_refused_at_start() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data_c = dir.path().join("c");
    LocalSigner::ensure(&data_c, Some(&data_c.join("keys").join("public"))).expect("own key");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_userorg"))
        .arg("serve")
        .env("USERORG__DATA_DIR", &data_c)
        .env("USERORG__HTTP__LISTEN", "127.0.0.1:0")
        .env("USERORG__HTTP__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(pair.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("an instance with another signing key started");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = child.wait_with_output().expect("output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!status.success(), "{printed}");
    assert!(
        printed.contains("the other instances of this store sign tokens with key `"),
        "{printed}"
    );
    pair.finish().await;
}
