//! The binary itself: `kill -9` after acknowledged creates loses nothing, and no email or phone
//! of a test user is found in clear anywhere in the data dir.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use userorg::auth::{LocalSigner, MintClaims};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) internal: String,
}

/// Where a server's output goes: the log file tests read afterwards, or one next to the data dir.
fn log_file(data_dir: &Path, log: Option<&Path>) -> std::path::PathBuf {
    log.map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.with_extension("log"))
}

/// The `public=` and `internal=` addresses of the last "userorg listening" line after `offset`.
fn listening_addresses(log: &Path, offset: usize) -> Option<(String, String)> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(offset..)?);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("userorg listening"))?;
    // A JSON log line, or a text one (`public=... internal=...`).
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
        return Some((field("public")?, field("internal")?));
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(str::to_string)
    };
    Some((field("public=")?, field("internal=")?))
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        Self::start_logging(data_dir, None).await
    }

    /// Starts the binary on ports the system picks, and learns them from its log: a port chosen
    /// beforehand could be taken by a parallel test's server in the meantime, and the health
    /// check would then be answered by that other server. With a log path, everything the binary
    /// prints at debug level goes there.
    async fn start_logging(data_dir: &Path, log: Option<&Path>) -> Server {
        Self::start_with(data_dir, log, &[]).await
    }

    /// [`Server::start_logging`] with more environment variables.
    pub(crate) async fn start_with(
        data_dir: &Path,
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Server {
        let path = log_file(data_dir, log);
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_userorg"))
            .arg("serve")
            .env("USERORG__DATA_DIR", data_dir)
            .envs(crate::helpers::engine_env(data_dir))
            .env("USERORG__HTTP__LISTEN", "127.0.0.1:0")
            .env("USERORG__HTTP__INTERNAL_LISTEN", "127.0.0.1:0")
            .env(
                "RUST_LOG",
                if log.is_some() {
                    "debug"
                } else {
                    "warn,userorg::app=info"
                },
            )
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("binary starts");
        let started = Instant::now();
        let (public, internal) = loop {
            if let Some(addresses) = listening_addresses(&path, offset) {
                break addresses;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited with {status}: {}",
                    std::fs::read_to_string(&path).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let server = Server {
            child,
            base: format!("http://{public}"),
            internal: format!("http://{internal}"),
        };
        let client = reqwest::Client::new();
        loop {
            if let Ok(reply) = client.get(format!("{}/health", server.base)).send().await
                && reply.status() == 200
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not answer its health check"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub(crate) fn kill_hard(mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

/// A test that fails midway leaves no server running behind it.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for the bootstrap admin of a data dir the binary has started on, signed with the
/// local key the binary created there (what `userorg token --admin` prints).
/// Sends a request and reads its JSON answer.
trait SendJson {
    async fn send_json(self) -> Value;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> Value {
        self.send().await.expect("sent").json().await.expect("json")
    }
}

pub(crate) fn admin_token(data_dir: &Path) -> String {
    let signer =
        LocalSigner::ensure(data_dir, Some(&data_dir.join("keys").join("public"))).expect("signer");
    let admin_id = userorg::seed::read_bootstrap_admin(data_dir).expect("admin id");
    signer
        .mint(MintClaims::new(
            admin_id,
            "http://localhost:9000/auth/realms/sunbird",
            3600,
        ))
        .expect("token")
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && contains_bytes(&bytes, needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn acknowledged_users_survive_kill_9_and_pii_is_never_stored_or_logged_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("server.log");
    let server = Server::start_logging(&data_dir, Some(&log)).await;
    let token = admin_token(&data_dir);
    let client = reqwest::Client::new();

    let mut created: Vec<(String, String, String)> = Vec::new();
    for n in 0..40u32 {
        let email = format!(
            "crashcanary{n}-{}@example.test",
            uuid::Uuid::new_v4().simple()
        );
        let phone = format!("97{:08}", (n * 7919 + 12345) % 100_000_000);
        let reply: Value = client
            .post(format!("{}/v1/user/create", server.base))
            .header("x-authenticated-user-token", &token)
            .json(&json!({"request": {"firstName": format!("Crash{n}"), "email": email, "phone": phone, "password": "S3cret!pass"}}))
            .send_json()
            .await;
        let id = reply["result"]["userId"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"))
            .to_string();
        created.push((id, email, phone));
    }
    // A bad token and a lookup by email on a public route: nothing of either may be logged.
    let _ = client
        .get(format!(
            "{}/v1/user/exists/email/{}",
            server.base, created[0].1
        ))
        .header("x-authenticated-user-token", format!("{token}x"))
        .send()
        .await;
    server.kill_hard();

    let server = Server::start_logging(&data_dir, Some(&log)).await;
    for (id, email, _) in &created {
        let reply: Value = client
            .get(format!("{}/v1/user/read/{id}", server.base))
            .header("x-authenticated-user-token", &token)
            .send_json()
            .await;
        assert_eq!(reply["result"]["response"]["id"], id.as_str(), "{reply}");
        let started = Instant::now();
        loop {
            let found: Value = client
                .post(format!("{}/v3/user/search", server.base))
                .header("x-authenticated-user-token", &token)
                .json(&json!({"request": {"filters": {"email": email}}}))
                .send_json()
                .await;
            if found["result"]["response"]["count"] == 1 {
                assert_eq!(found["result"]["response"]["content"][0]["id"], id.as_str());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{id} not searchable after restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.kill_hard();

    for (_, email, phone) in &created {
        assert_eq!(
            files_containing(&data_dir, email),
            Vec::<String>::new(),
            "{email} in clear"
        );
        assert_eq!(
            files_containing(&data_dir, phone),
            Vec::<String>::new(),
            "{phone} in clear"
        );
    }
    assert!(
        files_containing(&data_dir, "S3cret!pass").is_empty(),
        "password in clear"
    );

    // The server's own log, written at debug level by both runs: it holds the requests (so the
    // check below looks at a real log) and none of the canaries.
    let logged = std::fs::read_to_string(&log).expect("server log");
    assert!(logged.contains("DEBUG"), "the server logged at debug level");
    assert!(
        logged.matches("http.route").count() >= 80,
        "every request has an access line"
    );
    let signature = token.rsplit('.').next().expect("signature");
    let admin_id = userorg::seed::read_bootstrap_admin(&data_dir).expect("admin id");
    assert!(logged.contains(&admin_id), "the caller's id is logged");
    for (_, email, phone) in &created {
        assert!(!logged.contains(email.as_str()), "{email} in the log");
        assert!(!logged.contains(phone.as_str()), "{phone} in the log");
    }
    assert!(!logged.contains("S3cret!pass"), "password in the log");
    assert!(!logged.contains(signature), "token in the log");
}

#[tokio::test]
async fn reindex_rebuilds_a_lost_index_from_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir).await;
    let token = admin_token(&data_dir);
    let client = reqwest::Client::new();
    let email = format!("reindex-{}@example.test", uuid::Uuid::new_v4().simple());
    let created: Value = client
        .post(format!("{}/v1/user/create", server.base))
        .header("x-authenticated-user-token", &token)
        .json(&json!({"request": {"firstName": "Re", "email": email}}))
        .send_json()
        .await;
    let id = created["result"]["userId"]
        .as_str()
        .expect("id")
        .to_string();
    server.kill_hard();

    std::fs::remove_dir_all(data_dir.join("index")).expect("index removed");
    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .arg("reindex")
        .env("USERORG__DATA_DIR", &data_dir)
        .envs(crate::helpers::engine_env(&data_dir))
        .env("RUST_LOG", "warn")
        .output()
        .expect("reindex runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("reindexed "), "{printed}");

    let server = Server::start(&data_dir).await;
    let found: Value = client
        .post(format!("{}/v3/user/search", server.base))
        .header("x-authenticated-user-token", &token)
        .json(&json!({"request": {"filters": {"email": email}}}))
        .send_json()
        .await;
    assert_eq!(
        found["result"]["response"]["content"][0]["id"],
        id.as_str(),
        "{found}"
    );
    let orgs: Value = client
        .post(format!("{}/v2/org/search", server.base))
        .json(&json!({"request": {"filters": {"channel": "sunbird", "isTenant": true}}}))
        .send_json()
        .await;
    assert_eq!(orgs["result"]["response"]["count"], 1, "{orgs}");
    server.kill_hard();
}

#[tokio::test]
async fn keys_rotate_reseals_every_user_and_the_service_reads_them_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir).await;
    let token = admin_token(&data_dir);
    let client = reqwest::Client::new();
    let email = format!("rotate-{}@example.test", uuid::Uuid::new_v4().simple());
    let created: Value = client
        .post(format!("{}/v1/user/create", server.base))
        .header("x-authenticated-user-token", &token)
        .json(&json!({"request": {"firstName": "Ro", "email": email, "phone": "9876512345"}}))
        .send_json()
        .await;
    let id = created["result"]["userId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    server.kill_hard();
    let old_key = std::fs::read_to_string(data_dir.join("keys").join("pii.key")).expect("key");

    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .args(["keys", "rotate"])
        .env("USERORG__DATA_DIR", &data_dir)
        .envs(crate::helpers::engine_env(&data_dir))
        .env("RUST_LOG", "warn")
        .output()
        .expect("rotate runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_key = std::fs::read_to_string(data_dir.join("keys").join("pii.key")).expect("key");
    assert_ne!(old_key, new_key);
    assert!(printed.starts_with("new PII key "), "{printed}");
    // The admin and the new user, each with an email and a user name (and the user a phone).
    assert!(
        printed.contains("resealed 7 values in 2 of 2 users"),
        "{printed}"
    );
    let retired =
        std::fs::read_to_string(data_dir.join("keys").join("pii-retired.keys")).expect("retired");
    assert_eq!(retired.trim(), old_key.trim());

    // Nothing is left under the old key: with the retired key gone, every value still opens.
    std::fs::remove_file(data_dir.join("keys").join("pii-retired.keys")).expect("drop old key");
    let server = Server::start(&data_dir).await;
    let read: Value = client
        .get(format!("{}/v1/user/read/{id}", server.base))
        .header("x-authenticated-user-token", &token)
        .send_json()
        .await;
    let user = &read["result"]["response"];
    assert_eq!(user["maskedPhone"], "******2345", "{read}");
    assert_eq!(user["phone"], "******2345", "{read}");
    assert!(
        user["email"]
            .as_str()
            .is_some_and(|e| e.starts_with("ro") && e.ends_with("@example.test")),
        "{read}"
    );
    server.kill_hard();
}

/// The log canary: with the JSON log at debug level, a session touching every kind of secret
/// (emails, phones, passwords, user tokens, a bad token, the service credential, lookups by
/// email and phone) leaves one JSON access line per request and none of those values anywhere.
#[tokio::test]
async fn the_json_log_has_one_access_line_per_request_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("server.log");
    let server =
        Server::start_with(&data_dir, Some(&log), &[("USERORG__LOG__FORMAT", "json")]).await;
    let token = admin_token(&data_dir);
    let service = std::fs::read_to_string(data_dir.join("keys").join("service-credential"))
        .expect("service credential")
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("canary-{run}@example.test");
    let signup_email = format!("signup-{run}@example.test");
    let phone = "9876554321";
    let new_phone = "9876556789";
    let password = "Canary!Pass1";
    let mut requests = 0;
    let mut send = |builder: reqwest::RequestBuilder| {
        requests += 1;
        builder.header("user-agent", "canary-agent/1.0").send()
    };
    let created: Value = send(
        client
            .post(format!("{}/v1/user/create", server.base))
            .header("x-authenticated-user-token", &token)
            .json(&json!({"request": {"firstName": "Canary", "email": email, "phone": phone, "password": password}})),
    )
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    let id = created["result"]["userId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    send(client.post(format!("{}/v1/user/signup", server.base)).json(
        &json!({"request": {"firstName": "Signer", "email": signup_email, "password": password}}),
    ))
    .await
    .expect("sent");
    for path in [
        format!("/v1/user/exists/email/{email}"),
        format!("/v1/user/exists/phone/{phone}"),
        format!("/v1/user/get/email/{email}"),
        format!("/v1/user/read/{id}"),
    ] {
        send(
            client
                .get(format!("{}{path}", server.base))
                .header("x-authenticated-user-token", &token),
        )
        .await
        .expect("sent");
    }
    send(
        client
            .get(format!("{}/v1/user/read/{id}", server.base))
            .header("x-authenticated-user-token", format!("{token}x")),
    )
    .await
    .expect("sent");
    send(
        client
            .patch(format!("{}/v1/user/update", server.base))
            .header("x-authenticated-user-token", &token)
            .json(&json!({"request": {"userId": id, "phone": new_phone}})),
    )
    .await
    .expect("sent");
    send(
        client
            .post(format!("{}/v3/user/search", server.base))
            .header("x-authenticated-user-token", &token)
            .json(&json!({"request": {"filters": {"email": email}}})),
    )
    .await
    .expect("sent");
    send(
        client
            .get(format!("{}/private/user/v1/read/{id}", server.internal))
            .bearer_auth(&service),
    )
    .await
    .expect("sent");
    send(
        client
            .get(format!("{}/private/user/v1/read/{id}", server.internal))
            .bearer_auth(format!("{service}-wrong")),
    )
    .await
    .expect("sent");
    server.kill_hard();

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|line| line["log.kind"] == "access" && line["user_agent"] == "canary-agent/1.0")
        .collect();
    assert_eq!(access.len(), requests, "one access line per request");
    for line in &access {
        for field in [
            "timestamp",
            "request.id",
            "client.ip",
            "user.id",
            "http.method",
            "http.route",
            "http.status",
            "latency_ms",
        ] {
            assert!(
                line.get(field).is_some_and(|v| !v.is_null()),
                "{field} missing in {line}"
            );
        }
        let route = line["http.route"].as_str().expect("route");
        assert!(
            !route.contains(&id),
            "a route template, never a path: {route}"
        );
    }
    let admin_line = access
        .iter()
        .find(|line| line["http.route"] == "/v1/user/create")
        .expect("create logged");
    assert_eq!(admin_line["http.status"], 200);
    assert_ne!(admin_line["user.id"], "-");
    let signature = token.rsplit('.').next().expect("signature");
    for secret in [
        email.as_str(),
        signup_email.as_str(),
        phone,
        new_phone,
        password,
        token.as_str(),
        signature,
        service.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} appears in the log");
    }
}
