//! `TestApp`: the real application on random ports with a fresh data dir, and typed helpers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use userorg::actors::dispatcher::DispatcherClient;
use userorg::actors::indexer::IndexerClient;
use userorg::actors::scheduler::SchedulerClient;
use userorg::app::Application;
use userorg::auth::{LocalSigner, MintClaims};
use userorg::clock::ManualClock;
use userorg::config::Settings;
use userorg::engines::{self, Engines};
use userorg::search::SearchIndex;
use userorg::search::testing::{FaultySearch, SearchFaults};
use userorg::storage::Store;
use userorg::storage::scylla_store::ScyllaStore;
use userorg::storage::scylla_store::sim::SimCql;
use userorg::storage::testing::{FaultyStore, StoreFaults};

/// One signing key pair for the whole test binary: RSA generation is slow, and every app only
/// needs to find a key in its data dir.
fn template_keys() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("userorg-test-keys-{}", std::process::id()));
        let public = dir.join("keys").join("public");
        LocalSigner::ensure(&dir, Some(&public)).expect("template signing key");
        dir
    })
}

/// The store engine of the API tests: redb, or with `USERORG_TEST_STORE=postgres` the
/// `postgres` tier's database, one schema per test's data dir (so a restart, and the tools a test
/// runs on a stopped app's data dir, find the same rows). `.ci/run` runs the suite both ways.
pub fn engine_env(data_dir: &Path) -> Vec<(String, String)> {
    if std::env::var("USERORG_TEST_STORE").as_deref() != Ok("postgres") {
        return Vec::new();
    }
    let url = postgres_url();
    let file = data_dir
        .parent()
        .expect("data dirs are <tempdir>/data")
        .join("postgres-schema");
    let schema = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        let schema = format!(
            "apitest_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(&file, &schema).expect("schema file");
        schema
    });
    vec![
        ("USERORG__STORE__ENGINE".into(), "postgres".into()),
        ("USERORG__STORE__POSTGRES__URL".into(), url.clone()),
        ("USERORG__STORE__POSTGRES__SCHEMA".into(), schema),
        ("USERORG__STORE__POSTGRES__POOL_SIZE".into(), "4".into()),
    ]
}

/// The tier's URL, once per test binary, after dropping the schemas of earlier test processes
/// that are gone (a run's own schemas stay until the next run, for a look after a failure).
fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = userorg::test_tiers::postgres()
            .expect("USERORG_TEST_STORE=postgres needs the postgres test tier");
        let cleanup = url.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(drop_stale_schemas(&cleanup))
        })
        .join()
        .expect("cleanup thread");
        url
    })
    .clone()
}

async fn drop_stale_schemas(url: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the postgres tier");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'apitest\\_%'",
            &[],
        )
        .await
        .expect("list schemas");
    for row in rows {
        let schema: String = row.get(0);
        let pid = schema.split('_').nth(1).unwrap_or_default();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .expect("drop a stale schema");
        }
    }
}

/// With `USERORG_TEST_STORE=scylla-sim`, the API tests run on the Scylla store over a
/// simulated cluster, one per test's data dir (kept for the test binary's life, so a restart
/// and the tools a test runs on a stopped app find the same rows).
fn simulated_cluster(data_dir: &Path) -> Option<SimCql> {
    if std::env::var("USERORG_TEST_STORE").as_deref() != Ok("scylla-sim") {
        return None;
    }
    static CLUSTERS: OnceLock<Mutex<HashMap<PathBuf, SimCql>>> = OnceLock::new();
    let clusters = CLUSTERS.get_or_init(Mutex::default);
    let mut clusters = clusters.lock().expect("clusters");
    Some(
        clusters
            .entry(data_dir.to_path_buf())
            .or_default()
            .session(),
    )
}

/// True (and says so) when the store lives in this test process only (the simulated Scylla
/// cluster): a test that runs a `userorg` command as another process on the app's store cannot
/// run then.
pub fn skip_with_an_in_process_store(what: &str) -> bool {
    let in_process = std::env::var("USERORG_TEST_STORE").as_deref() == Ok("scylla-sim");
    if in_process {
        println!("skipped on the simulated Scylla cluster: {what} as another process");
    }
    in_process
}

async fn simulated_store(cluster: SimCql) -> Arc<dyn Store> {
    Arc::new(
        ScyllaStore::over(Arc::new(cluster), Arc::new(userorg::clock::SystemClock))
            .await
            .expect("the simulated Scylla store opens"),
    )
}

/// The store of a stopped app's data dir, on the engine the tests run on.
pub async fn open_stored(data_dir: &Path) -> Arc<dyn Store> {
    if let Some(cluster) = simulated_cluster(data_dir) {
        return simulated_store(cluster).await;
    }
    let mut env: HashMap<String, String> = engine_env(data_dir).into_iter().collect();
    env.insert("USERORG__DATA_DIR".into(), data_dir.display().to_string());
    let settings = Settings::load(None, &env).expect("settings");
    engines::open_store(&settings)
        .await
        .expect("the store opens")
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
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
    /// Switches of the fault-injecting decorator every test app's store runs behind (all off
    /// unless a test turns one on).
    pub faults: Arc<StoreFaults>,
    /// Switches of the search index's fault-injecting decorator.
    pub search_faults: Arc<SearchFaults>,
    /// The index under the decorator, to read what it holds.
    pub index: Arc<dyn SearchIndex>,
    /// The app's clock: starts at the real time, moved by tests that need time to pass.
    pub clock: Arc<ManualClock>,
    pub admin_id: String,
    /// The service credential the internal listener asks for.
    pub service_credential: String,
    indexer: IndexerClient,
    dispatcher: DispatcherClient,
    bulk: userorg::actors::bulk::BulkClient,
    scheduler: SchedulerClient,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    /// The store under the app, to check that a stopped app let go of it.
    store: std::sync::Weak<dyn Store>,
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

    /// Asserts a Sunbird failure: status, `params.err`, `params.errmsg`, `responseCode`, and
    /// the rest of the envelope.
    pub fn assert_error(&self, status: u16, err: &str, errmsg: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.body);
        assert_eq!(self.err(), err, "err of {}", self.body);
        assert_eq!(self.errmsg(), errmsg, "errmsg of {}", self.body);
        assert_eq!(
            self.body["responseCode"],
            sunbird_response_code(status),
            "responseCode of {}",
            self.body
        );
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

/// Sunbird's `ResponseCode` name for a failure status, written out here so the envelope code
/// is checked against the table, not against itself.
fn sunbird_response_code(status: u16) -> &'static str {
    match status {
        400 | 405 | 413 | 415 => "CLIENT_ERROR",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "RESOURCE_NOT_FOUND",
        418 => "IM_A_TEAPOT",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        _ => "SERVER_ERROR",
    }
}

/// The keys of a JSON object, in order.
pub fn keys_of(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Every Sunbird envelope has exactly these keys, a `ts` like `2024-07-01 12:47:05:123+0530`
/// and `msgid == resmsgid`.
pub fn assert_envelope_shape(body: &Value) {
    let keys = keys_of(body);
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
    let msgid = body["params"]["msgid"].as_str().expect("msgid is set");
    assert!(!msgid.is_empty(), "{body}");
    assert_eq!(body["params"]["resmsgid"], msgid);
    let ts = body["ts"].as_str().expect("ts");
    static PATTERN: OnceLock<regex::Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}:\d{3}[+-]\d{4}$").expect("re")
    });
    assert!(pattern.is_match(ts), "ts {ts}");
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra_env: &[(&str, &str)]) -> TestApp {
        crate::canary::install();
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
        assert!(
            self.store.upgrade().is_none(),
            "a stopped app still holds its store"
        );
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        // The test's own handle of the index goes too, so the next start can open it.
        drop(self);
        Self::start_in(dir, &[]).await
    }

    /// Starts an app on a data dir an earlier one left ([`TestApp::stop_keeping_data`]).
    pub async fn start_again(dir: tempfile::TempDir, extra_env: &[(&str, &str)]) -> TestApp {
        Self::start_in(dir, extra_env).await
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
        env.extend(engine_env(&data_dir));
        for (key, value) in extra_env {
            env.insert(key.to_string(), value.to_string());
        }
        let settings = Settings::load(None, &env).expect("test settings");
        let issuer = settings.auth.issuer.clone();
        // The previous instance of a restart closed its files when it stopped: no retry here.
        let opened = match simulated_cluster(&data_dir) {
            Some(cluster) => engines::open_around(&settings, simulated_store(cluster).await)
                .await
                .expect("engines open"),
            None => engines::open(&settings).await.expect("engines open"),
        };
        let store = Arc::downgrade(&opened.uncached_store);
        let faults = Arc::new(StoreFaults::default());
        let faulty = |store: Arc<dyn Store>| -> Arc<dyn Store> {
            Arc::new(FaultyStore::with_faults(store, Arc::clone(&faults)))
        };
        let index = Arc::clone(&opened.search);
        let (search, search_faults) = FaultySearch::new(opened.search);
        let engines = Engines {
            store: faulty(opened.store),
            uncached_store: faulty(opened.uncached_store),
            search: Arc::new(search),
            rate_counter: opened.rate_counter,
            email: opened.email,
            sms: opened.sms,
            blobs: opened.blobs,
            calls: opened.calls,
            frameworks: opened.frameworks,
        };
        let clock = Arc::new(ManualClock::at(chrono::Local::now()));
        let app = Application::build_with(settings, engines, clock.clone())
            .await
            .unwrap_or_else(|error| panic!("app builds: {error:#}"));
        let public = format!("http://{}", app.public_addr());
        let internal = format!("http://{}", app.internal_addr());
        let signer = app.signer().expect("the local signer is on").clone();
        let admin_id = app.admin_user_id().expect("a bootstrap admin").to_string();
        let indexer = app.indexer();
        let dispatcher = app.dispatcher();
        let bulk = app.bulk_runner();
        let scheduler = app.scheduler();
        let service_credential = app.service_credential().reveal().to_string();
        crate::canary::remember_secret(&service_credential);
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
            faults,
            search_faults,
            index,
            clock,
            admin_id: admin_id.clone(),
            service_credential,
            indexer,
            dispatcher,
            bulk,
            scheduler,
            store,
            shutdown: Some(shutdown),
            handle: Some(handle),
            _dir: dir,
        };
        test_app.admin_token = test_app.token_for(&admin_id);
        test_app
    }

    /// The app's data dir.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// The app's scheduler (housekeeping rounds on demand).
    pub fn scheduler(&self) -> &SchedulerClient {
        &self.scheduler
    }

    /// A multipart `POST` of `form` to `path` on the public listener, with `token`.
    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
        token: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.public))
            .multipart(form);
        if let Some(token) = token {
            request = request.header("x-authenticated-user-token", token);
        }
        let response = request.send().await.expect("sent");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        Reply { status, body }
    }

    /// Runs every bulk upload waiting now and waits for them.
    pub async fn run_uploads(&self) {
        self.bulk.flush().await.expect("the bulk uploads run");
    }

    /// Runs a delivery round of the notification dispatcher now and waits for it.
    pub async fn deliver(&self) {
        self.dispatcher.flush().await.expect("a delivery round");
    }

    /// Every email the file engine wrote to `address`, decoded, oldest first.
    pub async fn mails_to(&self, address: &str) -> Vec<crate::mail::Mail> {
        self.deliver().await;
        crate::mail::read_dir(&self.data_dir().join("mail"))
            .into_iter()
            .filter(|mail| mail.to == address)
            .collect()
    }

    /// The newest code emailed to `address`.
    pub async fn otp_mailed_to(&self, address: &str) -> String {
        let mails = self.mails_to(address).await;
        let mail = mails
            .last()
            .unwrap_or_else(|| panic!("no mail to {address}"));
        crate::mail::code_in(&mail.body).unwrap_or_else(|| panic!("no code in {}", mail.body))
    }

    /// Every SMS the file engine wrote, as JSON objects, in order.
    pub async fn sms_sent(&self) -> Vec<Value> {
        self.deliver().await;
        std::fs::read_to_string(self.data_dir().join("sms/sent.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// Stops the server and hands over its data dir (`<dir>/data`), for tools run afterwards.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
        std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Stops the server and waits for it (actors included), then checks the log canary.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
        crate::canary::check();
    }

    /// The server's store itself (no cache, no faults), to look at what is at rest.
    pub fn stored(&self) -> Arc<dyn Store> {
        self.store.upgrade().expect("the server is running")
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
        self.send_with(method, url, body, token, &[]).await
    }

    /// [`TestApp::send`] with more headers (`x-authenticated-for`, ...).
    pub async fn send_with(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let internal = url.starts_with(&self.internal);
        let mut request = self.client.request(method, url);
        if internal {
            // The internal listener answers only the services holding its credential.
            request = request.bearer_auth(&self.service_credential);
        }
        if let Some(token) = token {
            request = request.header("x-authenticated-user-token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
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

    /// A request on the public listener with a user token and a managed token for one child.
    pub async fn acting_for(
        &self,
        method: reqwest::Method,
        path: &str,
        request: Option<Value>,
        token: Option<&str>,
        managed_token: &str,
    ) -> Reply {
        self.send_with(
            method,
            format!("{}{}", self.public, path),
            request.map(|request| json!({ "request": request })),
            token,
            &[("x-authenticated-for", managed_token)],
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

    /// A system setting's value (`custodianOrgId`, `custodianOrgChannel`, ...).
    pub async fn setting(&self, field: &str) -> String {
        self.get(&format!("/v1/system/settings/get/{field}"), None)
            .await
            .assert_ok()["response"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("setting {field}"))
            .to_string()
    }

    /// Creates an organisation as the admin and returns its id.
    pub async fn create_org(&self, request: Value) -> String {
        self.post("/v1/org/create", request, Some(&self.admin_token))
            .await
            .assert_ok()["organisationId"]
            .as_str()
            .expect("organisationId")
            .to_string()
    }

    /// A new school in the custodian organisation's channel (not a tenant).
    pub async fn custodian_school(&self) -> String {
        let channel = self.setting("custodianOrgChannel").await;
        self.create_org(
            json!({"orgName": "School", "isTenant": false, "channel": channel,
                               "organisationType": "school"}),
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

    /// Waits until the indexer has applied everything committed before this call; fails the
    /// test loudly when it does not within the indexer's call timeout.
    pub async fn wait_for_index(&self) {
        if let Err(error) = self.indexer.catch_up().await {
            panic!("the index did not catch up with the store: {error}");
        }
    }

    /// Searches (v3, as admin) once the index has caught up with every write before the call.
    pub async fn search_indexed(&self, request: Value) -> Reply {
        self.wait_for_index().await;
        self.post("/v3/user/search", request, Some(&self.admin_token))
            .await
    }
}

/// A unique email for a test user (canary style, so data dirs can be grepped for it).
pub fn unique_email() -> String {
    format!("canary{}@example.test", uuid::Uuid::new_v4().simple())
}

/// A unique valid Indian mobile number.
pub fn unique_phone() -> String {
    let n: u32 = rand_digits();
    let phone = format!("9{:09}", n % 1_000_000_000);
    crate::canary::remember_phone(&phone);
    phone
}

fn rand_digits() -> u32 {
    let bytes = uuid::Uuid::new_v4();
    let b = bytes.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
