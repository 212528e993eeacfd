//! The password reset page in a real browser: headless Chromium driven over its DevTools
//! protocol opens the link, submits a weak and then a good password, sees the policy error and
//! then the success, and the new password signs in.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, unique_email};
use crate::signin::{PASSWORD, password_grant};

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn start(program: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("stderr");
        let port = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.ok()?;
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().map(str::to_string);
                }
            }
            None
        })
        .await
        .expect("reader")
        .expect("chromium prints its DevTools address");
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("targets")
            .json()
            .await
            .expect("json");
        let page = targets
            .as_array()
            .and_then(|all| all.iter().find(|t| t["type"] == "page"))
            .expect("a page");
        let url = page["webSocketDebuggerUrl"].as_str().expect("ws url");
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        Browser {
            child,
            _profile: profile,
            socket,
            next_id: 0,
        }
    }

    /// Sends one command and waits for its answer (events in between are skipped).
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .await
            .expect("sent");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("an answer in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["id"] == id {
                    return value["result"].clone();
                }
            }
        }
    }

    async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page (after a navigation, say).
    async fn wait_for(&mut self, expression: &str) {
        let started = Instant::now();
        loop {
            if self.evaluate(expression).await == json!(true) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the page never showed: {expression}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_reset_page_works_in_a_real_browser() {
    let Some(program) = userorg::test_tiers::chromium() else {
        return;
    };
    let app = TestApp::spawn().await;
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Browser", "email": email, "password": PASSWORD}))
        .await;
    let reply = app
        .post_internal("/private/user/v1/password/reset", json!({"userId": id}))
        .await;
    let link = reply.assert_ok()["link"]
        .as_str()
        .expect("link")
        .to_string();
    let token = link.rsplit('/').next().expect("token").to_string();
    let link = format!("{}/password/reset/{token}", app.public);

    let mut browser = Browser::start(&program).await;
    browser.command("Page.navigate", json!({"url": link})).await;
    browser
        .wait_for("document.readyState === 'complete' && !!document.getElementById('password')")
        .await;
    let policy = browser
        .evaluate("document.getElementById('policy').textContent")
        .await;
    assert_eq!(
        policy,
        "Password must contain a minimum of 8 characters including numerals, lower and upper case alphabets and special characters"
    );
    let submit = |password: &str| {
        format!(
            "document.getElementById('password').value = {}; document.forms[0].requestSubmit(); true",
            json!(password)
        )
    };
    browser.evaluate(&submit("weakpass")).await;
    browser
        .wait_for("!!document.querySelector('.error') && document.readyState === 'complete'")
        .await;
    assert_eq!(
        browser
            .evaluate("document.querySelector('.error').textContent")
            .await,
        "This password does not meet the policy below."
    );
    browser.evaluate(&submit("Br0wser!pass")).await;
    browser.wait_for("!!document.getElementById('done')").await;
    assert_eq!(browser.evaluate("document.title").await, "Password set");
    drop(browser);

    assert_eq!(
        password_grant(&app, &email, "Br0wser!pass").await.status,
        200
    );
    assert_eq!(password_grant(&app, &email, PASSWORD).await.status, 401);
    app.stop().await;
}
