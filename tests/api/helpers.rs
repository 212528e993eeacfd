//! `TestApp`: the real application on random ports with a fresh data dir, and typed helpers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use userorg::app::Application;
use userorg::auth::{LocalSigner, MintClaims};
use userorg::config::Settings;

/// One signing key pair for the whole test binary: RSA generation is slow, and every app only
/// needs to find a key in its data dir.
fn template_keys() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("userorg-test-keys-{}", std::process::id()));
        let public = dir.join("keys").join("public");
        LocalSigner::ensure(&dir, &public).expect("template signing key");
        dir
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

pub struct TestApp {
    pub public: String,
    pub internal: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub signer: LocalSigner,
    pub issuer: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn err(&self) -> &str {
        self.body["params"]["err"].as_str().unwrap_or("")
    }

    pub fn errmsg(&self) -> &str {
        self.body["params"]["errmsg"].as_str().unwrap_or("")
    }

    /// Asserts a Sunbird failure: status, `params.err`, `params.errmsg`, and the rest of the
    /// envelope.
    pub fn assert_error(&self, status: u16, err: &str, errmsg: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.body);
        assert_eq!(self.err(), err, "err of {}", self.body);
        assert_eq!(self.errmsg(), errmsg, "errmsg of {}", self.body);
        assert_eq!(self.body["params"]["status"], "FAILED", "{}", self.body);
        assert_eq!(self.body["result"], json!({}), "{}", self.body);
        assert_envelope_shape(&self.body);
    }

    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status.as_u16(), 200, "{}", self.body);
        assert_eq!(self.body["params"]["status"], "SUCCESS", "{}", self.body);
        assert_eq!(self.body["params"]["err"], Value::Null);
        assert_eq!(self.body["params"]["errmsg"], Value::Null);
        assert_eq!(self.body["responseCode"], "OK");
        assert_envelope_shape(&self.body);
        &self.body["result"]
    }
}

/// Every Sunbird envelope has exactly these keys, a `ts` like `2024-07-01 12:47:05:123+0530`
/// and `msgid == resmsgid`.
pub fn assert_envelope_shape(body: &Value) {
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["id", "ver", "ts", "params", "responseCode", "result"],
        "{body}"
    );
    let params: Vec<&str> = body["params"]
        .as_object()
        .expect("params")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        params,
        ["resmsgid", "msgid", "err", "status", "errmsg"],
        "{body}"
    );
    assert_eq!(body["params"]["msgid"], body["params"]["resmsgid"]);
    let ts = body["ts"].as_str().expect("ts");
    let pattern =
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}:\d{3}[+-]\d{4}$").expect("re");
    assert!(pattern.is_match(ts), "ts {ts}");
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra_env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(template_keys(), &dir.path().join("data"));
        Self::start_in(dir, extra_env).await
    }

    /// Stops the server and starts a new one on the same data dir.
    pub async fn restart(mut self) -> TestApp {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, &[]).await
    }

    async fn start_in(dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> TestApp {
        let data_dir = dir.path().join("data");
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("USERORG__DATA_DIR".into(), data_dir.display().to_string());
        env.insert("USERORG__HTTP__LISTEN".into(), "127.0.0.1:0".into());
        env.insert(
            "USERORG__HTTP__INTERNAL_LISTEN".into(),
            "127.0.0.1:0".into(),
        );
        env.insert("USERORG__ACTORS__USER_OWNER_WORKERS".into(), "8".into());
        for (key, value) in extra_env {
            env.insert(key.to_string(), value.to_string());
        }
        let settings = Settings::load(None, &env).expect("test settings");
        let issuer = settings.auth.issuer.clone();
        // After a restart the previous instance may still be letting go of its files.
        let mut attempts = 0;
        let app = loop {
            match Application::build(settings.clone()).await {
                Ok(app) => break app,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("app builds: {error:#}"),
            }
        };
        let public = format!("http://{}", app.public_addr());
        let internal = format!("http://{}", app.internal_addr());
        let signer = app.signer().clone();
        let admin_id = app.admin_user_id().to_string();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        let mut test_app = TestApp {
            public,
            internal,
            client: reqwest::Client::new(),
            admin_token: String::new(),
            signer,
            issuer,
            shutdown: Some(shutdown),
            handle: Some(handle),
            _dir: dir,
        };
        test_app.admin_token = test_app.token_for(&admin_id);
        test_app
    }

    /// Stops the server and waits for it (actors included).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    pub fn token_for(&self, user_id: &str) -> String {
        self.signer
            .mint(MintClaims::new(user_id, self.issuer.clone(), 3600))
            .expect("mint")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.header("x-authenticated-user-token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        Reply { status, body }
    }

    pub async fn post(&self, path: &str, request: Value, token: Option<&str>) -> Reply {
        self.send(
            reqwest::Method::POST,
            format!("{}{}", self.public, path),
            Some(json!({ "request": request })),
            token,
        )
        .await
    }

    pub async fn patch(&self, path: &str, request: Value, token: Option<&str>) -> Reply {
        self.send(
            reqwest::Method::PATCH,
            format!("{}{}", self.public, path),
            Some(json!({ "request": request })),
            token,
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(
            reqwest::Method::GET,
            format!("{}{}", self.public, path),
            None,
            token,
        )
        .await
    }

    pub async fn post_internal(&self, path: &str, request: Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            format!("{}{}", self.internal, path),
            Some(json!({ "request": request })),
            None,
        )
        .await
    }

    pub async fn get_internal(&self, path: &str) -> Reply {
        self.send(
            reqwest::Method::GET,
            format!("{}{}", self.internal, path),
            None,
            None,
        )
        .await
    }

    /// Creates a user as the admin and returns its id.
    pub async fn create_user(&self, request: Value) -> String {
        let reply = self
            .post("/v1/user/create", request, Some(&self.admin_token))
            .await;
        let result = reply.assert_ok();
        result["userId"].as_str().expect("userId").to_string()
    }

    /// Searches (v3, as admin) until `check` holds or `within` passes; returns the last reply.
    pub async fn search_until(
        &self,
        request: Value,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Reply {
        let started = Instant::now();
        loop {
            let reply = self
                .post("/v3/user/search", request.clone(), Some(&self.admin_token))
                .await;
            if check(&reply.body) || started.elapsed() > within {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A unique email for a test user (canary style, so data dirs can be grepped for it).
pub fn unique_email() -> String {
    format!("canary{}@example.test", uuid::Uuid::new_v4().simple())
}

/// A unique valid Indian mobile number.
pub fn unique_phone() -> String {
    let n: u32 = rand_digits();
    format!("9{:09}", n % 1_000_000_000)
}

fn rand_digits() -> u32 {
    let bytes = uuid::Uuid::new_v4();
    let b = bytes.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
