//! The binary itself: `kill -9` after acknowledged creates loses nothing, and no email or phone
//! of a test user is found in clear anywhere in the data dir.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use userorg::auth::{LocalSigner, MintClaims};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Server {
    child: Child,
    base: String,
}

/// Where a server's output goes: nowhere, or a log file that tests read afterwards.
fn log_target(log: Option<&Path>) -> (Stdio, Stdio) {
    match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("log file");
            (
                Stdio::from(file.try_clone().expect("clone log handle")),
                Stdio::from(file),
            )
        }
        None => (Stdio::null(), Stdio::null()),
    }
}

impl Server {
    async fn start(data_dir: &Path, port: u16, internal: u16) -> Server {
        Self::start_logging(data_dir, port, internal, None).await
    }

    /// Starts the binary; with a log path, everything it prints at debug level goes there.
    async fn start_logging(
        data_dir: &Path,
        port: u16,
        internal: u16,
        log: Option<&Path>,
    ) -> Server {
        let (stdout, stderr) = log_target(log);
        let child = Command::new(env!("CARGO_BIN_EXE_userorg"))
            .arg("serve")
            .env("USERORG__DATA_DIR", data_dir)
            .env("USERORG__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "USERORG__HTTP__INTERNAL_LISTEN",
                format!("127.0.0.1:{internal}"),
            )
            .env("RUST_LOG", if log.is_some() { "debug" } else { "warn" })
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("binary starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(reply) = client.get(format!("{}/health", server.base)).send().await
                && reply.status() == 200
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    fn kill_hard(mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

/// A token for the bootstrap admin of a data dir the binary has started on, signed with the
/// local key the binary created there (what `userorg token --admin` prints).
fn admin_token(data_dir: &Path) -> String {
    let signer =
        LocalSigner::ensure(data_dir, &data_dir.join("keys").join("public")).expect("signer");
    let admin_id = userorg::seed::read_bootstrap_admin(data_dir).expect("admin id");
    signer
        .mint(MintClaims::new(
            admin_id,
            "http://localhost:8080/auth/realms/sunbird",
            3600,
        ))
        .expect("token")
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
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
    let (port, internal) = (free_port(), free_port());
    let server = Server::start_logging(&data_dir, port, internal, Some(&log)).await;
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
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
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

    let server = Server::start_logging(&data_dir, port, internal, Some(&log)).await;
    for (id, email, _) in &created {
        let reply: Value = client
            .get(format!("{}/v1/user/read/{id}", server.base))
            .header("x-authenticated-user-token", &token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(reply["result"]["response"]["id"], id.as_str(), "{reply}");
        let started = Instant::now();
        loop {
            let found: Value = client
                .post(format!("{}/v3/user/search", server.base))
                .header("x-authenticated-user-token", &token)
                .json(&json!({"request": {"filters": {"email": email}}}))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
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
    let (port, internal) = (free_port(), free_port());
    let server = Server::start(&data_dir, port, internal).await;
    let token = admin_token(&data_dir);
    let client = reqwest::Client::new();
    let email = format!("reindex-{}@example.test", uuid::Uuid::new_v4().simple());
    let created: Value = client
        .post(format!("{}/v1/user/create", server.base))
        .header("x-authenticated-user-token", &token)
        .json(&json!({"request": {"firstName": "Re", "email": email}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let id = created["result"]["userId"]
        .as_str()
        .expect("id")
        .to_string();
    server.kill_hard();

    std::fs::remove_dir_all(data_dir.join("index")).expect("index removed");
    let output = Command::new(env!("CARGO_BIN_EXE_userorg"))
        .arg("reindex")
        .env("USERORG__DATA_DIR", &data_dir)
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

    let server = Server::start(&data_dir, port, internal).await;
    let found: Value = client
        .post(format!("{}/v3/user/search", server.base))
        .header("x-authenticated-user-token", &token)
        .json(&json!({"request": {"filters": {"email": email}}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        found["result"]["response"]["content"][0]["id"],
        id.as_str(),
        "{found}"
    );
    let orgs: Value = client
        .post(format!("{}/v2/org/search", server.base))
        .json(&json!({"request": {"filters": {"channel": "sunbird", "isTenant": true}}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(orgs["result"]["response"]["count"], 1, "{orgs}");
    server.kill_hard();
}
