//! External test tiers: the engines whose tests need a server (Redis and PostgreSQL; ScyllaDB
//! and Elasticsearch only from their variables, as no server of theirs runs on these machines). Each tier finds its server from an
//! environment variable, else at its usual local address, else starts one when the server's
//! binary is on the machine; otherwise the tier's tests skip with a reason printed on stderr, so
//! `cargo test` passes on a fresh machine. `.ci/run` lists the tiers it requires in
//! `USERORG_TEST_REQUIRE_TIERS` (comma separated), and a required tier that cannot be had fails
//! instead of skipping.
//!
//! | tier | variable | local default |
//! |---|---|---|
//! | redis | `USERORG_TEST_REDIS` | `redis://127.0.0.1:6379/`, started with `redis-server` |
//! | elasticsearch | `USERORG_TEST_ELASTICSEARCH` | none (no server can be had on these machines) |
//! | postgres | `USERORG_TEST_POSTGRES` | `postgres://postgres@127.0.0.1:5432/test`, started with `pg_ctlcluster` |
//! | chromium | `USERORG_TEST_CHROMIUM` | Debian's `chromium`, run headless by the browser tests |
//! | smtp | `USERORG_TEST_SMTP_PYTHON` | a Python 3 with aiosmtpd (Debian `python3-aiosmtpd`), which tests start a real SMTP server with |
//! | s3 | `USERORG_TEST_S3` (endpoint) and `USERORG_TEST_S3_BUCKET` | `moto_server` (PyPI `moto[server]`, `USERORG_TEST_MOTO` or on the PATH), started on a free port per test |

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Prints past the test harness's output capture, so a skip is visible in a normal run.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn required(tier: &str) -> bool {
    std::env::var("USERORG_TEST_REQUIRE_TIERS")
        .map(|tiers| tiers.split(',').any(|t| t.trim() == tier))
        .unwrap_or(false)
}

/// `None` after printing why the tier is skipped, or panics when the tier is required.
fn skip(tier: &str, reason: &str) -> Option<String> {
    if required(tier) {
        panic!("test tier `{tier}` is required but unavailable: {reason}");
    }
    say(&format!(
        "skipped: test tier `{tier}` unavailable: {reason}"
    ));
    None
}

fn redis_answers(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// Finds or starts the local Redis once per test binary.
fn local_redis() -> Result<String, String> {
    let address: SocketAddr = ([127, 0, 0, 1], 6379).into();
    let url = "redis://127.0.0.1:6379/".to_string();
    if redis_answers(address) {
        return Ok(url);
    }
    // Started as the machine's service would be (and as .ci/run does): daemonised, no
    // persistence; it stays up for later runs.
    let started = std::process::Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .status();
    match started {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("redis-server exited with {status}")),
        Err(error) => {
            return Err(format!(
                "no Redis on 127.0.0.1:6379 and no redis-server: {error}"
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis_answers(address) {
            return Ok(url);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("redis-server started but does not answer on 127.0.0.1:6379".into())
}

/// The Redis URL of the `redis` tier, or `None` (skip) with the reason printed.
pub fn redis() -> Option<String> {
    if let Ok(url) = std::env::var("USERORG_TEST_REDIS") {
        return Some(url);
    }
    static LOCAL: OnceLock<Result<String, String>> = OnceLock::new();
    match LOCAL.get_or_init(local_redis) {
        Ok(url) => Some(url.clone()),
        Err(reason) => skip("redis", reason),
    }
}

fn port_answers(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// Finds or starts the local PostgreSQL cluster once per test binary.
fn local_postgres() -> Result<String, String> {
    let address: SocketAddr = ([127, 0, 0, 1], 5432).into();
    let url = "postgres://postgres@127.0.0.1:5432/test".to_string();
    if port_answers(address) {
        return Ok(url);
    }
    // Debian's cluster, started the way the machine's own start-up does.
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .ok_or("no PostgreSQL on 127.0.0.1:5432 and no cluster under /etc/postgresql")?;
    let started = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "start"])
        .status();
    match started {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("pg_ctlcluster exited with {status}")),
        Err(error) => return Err(format!("no PostgreSQL and no pg_ctlcluster: {error}")),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if port_answers(address) {
            return Ok(url);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("PostgreSQL started but does not answer on 127.0.0.1:5432".into())
}

/// The PostgreSQL URL of the `postgres` tier, or `None` (skip) with the reason printed. Tests
/// make their own schema in that database, so runs never see each other's rows.
pub fn postgres() -> Option<String> {
    if let Ok(url) = std::env::var("USERORG_TEST_POSTGRES") {
        return Some(url);
    }
    static LOCAL: OnceLock<Result<String, String>> = OnceLock::new();
    match LOCAL.get_or_init(local_postgres) {
        Ok(url) => Some(url.clone()),
        Err(reason) => skip("postgres", reason),
    }
}

/// The Elasticsearch URL of the `elasticsearch` tier, from `USERORG_TEST_ELASTICSEARCH` only, or
/// `None` (skip) with the reason printed: no Elasticsearch server can be installed on the
/// development and CI machines, so there is no local default to find or start.
pub fn elasticsearch() -> Option<String> {
    match std::env::var("USERORG_TEST_ELASTICSEARCH") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => skip(
            "elasticsearch",
            "USERORG_TEST_ELASTICSEARCH is not set (no Elasticsearch server runs on this machine)",
        ),
    }
}

/// The contact points of the `scylla` tier (`host:port`, comma separated), from
/// `USERORG_TEST_SCYLLA` only, or `None` (skip) with the reason printed: no ScyllaDB or
/// Cassandra server can be installed on the development and CI machines.
pub fn scylla() -> Option<String> {
    match std::env::var("USERORG_TEST_SCYLLA") {
        Ok(nodes) if !nodes.is_empty() => Some(nodes),
        _ => skip(
            "scylla",
            "USERORG_TEST_SCYLLA is not set (no ScyllaDB or Cassandra server runs on this machine)",
        ),
    }
}

/// The `redis-server` program, for tests that start a server of their own (TLS), or `None`
/// (skip) with the reason printed; required with the `redis` tier.
pub fn redis_server_program() -> Option<String> {
    match std::process::Command::new("redis-server")
        .arg("--version")
        .output()
    {
        Ok(output) if output.status.success() => Some("redis-server".to_string()),
        Ok(output) => skip(
            "redis",
            &format!("redis-server --version exited with {}", output.status),
        ),
        Err(error) => skip("redis", &format!("no redis-server program: {error}")),
    }
}

/// A Python 3 that has aiosmtpd, for tests that start a real SMTP server of their own
/// (`tests/support/smtp_sink.py`), or `None` (skip) with the reason printed.
pub fn smtp_python() -> Option<String> {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let mut candidates: Vec<String> = Vec::new();
        if let Ok(python) = std::env::var("USERORG_TEST_SMTP_PYTHON") {
            candidates.push(python);
        }
        // Debian's own interpreter first: a version manager's `python3` on the PATH does not
        // see Debian's packages.
        candidates.extend(["/usr/bin/python3".to_string(), "python3".to_string()]);
        for python in &candidates {
            let has_it = std::process::Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|output| output.status.success());
            if has_it {
                return Ok(python.clone());
            }
        }
        Err(format!(
            "no Python with aiosmtpd among {candidates:?} (install python3-aiosmtpd)"
        ))
    });
    match found {
        Ok(python) => Some(python.clone()),
        Err(reason) => skip("smtp", reason),
    }
}

/// A Chromium (or Chrome) program for the browser tests, or `None` (skip) with the reason
/// printed.
pub fn chromium() -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(program) = std::env::var("USERORG_TEST_CHROMIUM") {
        candidates.push(program);
    }
    candidates.extend(["chromium", "chromium-browser", "google-chrome"].map(String::from));
    for program in &candidates {
        let runs = std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if runs {
            return Some(program.clone());
        }
    }
    skip(
        "chromium",
        &format!("none of {candidates:?} runs (install chromium)"),
    )
}

/// An S3-compatible server for one test: its endpoint and a bucket that exists. A server the
/// tier started is stopped when this is dropped.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    child: Option<std::process::Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `s3` tier: `USERORG_TEST_S3`/`USERORG_TEST_S3_BUCKET`, else a `moto_server` started on a
/// free loopback port with a fresh bucket, or `None` (skip) with the reason printed.
pub fn s3() -> Option<S3Server> {
    if let (Ok(endpoint), Ok(bucket)) = (
        std::env::var("USERORG_TEST_S3"),
        std::env::var("USERORG_TEST_S3_BUCKET"),
    ) {
        return Some(S3Server {
            endpoint,
            bucket,
            child: None,
        });
    }
    match start_moto() {
        Ok(server) => Some(server),
        Err(reason) => {
            skip("s3", &reason);
            None
        }
    }
}

fn start_moto() -> Result<S3Server, String> {
    let program = std::env::var("USERORG_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("no free port: {error}"))?
        .port();
    let child = std::process::Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run {program} (pip install 'moto[server]'): {error}"))?;
    let mut server = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: "userorg-test".into(),
        child: Some(child),
    };
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_answers(address) {
        if Instant::now() > deadline {
            return Err(format!("{program} did not listen on {address}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // moto accepts an unsigned bucket creation.
    let mut stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    let request = format!(
        "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        server.bucket
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| error.to_string())?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    if !answer.starts_with("HTTP/1.1 200") {
        let first = answer.lines().next().unwrap_or_default().to_string();
        server.child.take().map(|mut c| c.kill());
        return Err(format!("cannot create the test bucket: {first}"));
    }
    Ok(server)
}
