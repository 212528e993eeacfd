//! The content engines against a local HTTP server standing in for the content service: what
//! they send, and how each kind of answer is taken.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use super::*;

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    user_id: Option<String>,
    body: String,
}

#[derive(Clone, Default)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<(u16, String)>>,
}

impl Server {
    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(server): State<Server>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    server.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: header("authorization"),
        user_id: header("user-id"),
        body,
    });
    let (status, body) = server.answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), body)
}

/// A server answering every request with what [`Server::answer`] set; its base URL.
async fn serve() -> (Server, String) {
    let server = Server::default();
    server.answer(200, r#"{"responseCode":"OK"}"#);
    let app = axum::Router::new()
        .fallback(record)
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (server, format!("http://{address}"))
}

fn options(base_url: &str) -> ContentOptions {
    ContentOptions {
        base_url: base_url.to_string(),
        api_key: "content-key".into(),
        timeout: Duration::from_secs(5),
    }
}

fn registration() -> ServiceCall {
    ServiceCall {
        id: "m1".into(),
        path: CHANNEL_CREATE_PATH.into(),
        body: json!({"request": {"channel": {"name": "tn", "code": "0135"}}}),
    }
}

#[tokio::test]
async fn a_call_posts_the_body_with_the_key_and_is_taken_on_ok() {
    let (server, base) = serve().await;
    let caller = HttpServiceCaller::new(&options(&format!("{base}/content/"))).unwrap();
    caller.call(&registration()).await.expect("taken");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/content/channel/v3/create");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer content-key"));
    assert_eq!(seen[0].user_id.as_deref(), Some(""));
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, registration().body);
}

#[tokio::test]
async fn each_answer_is_taken_as_sunbird_takes_it() {
    let (server, base) = serve().await;
    let caller = HttpServiceCaller::new(&options(&base)).unwrap();
    for (status, body, transient) in [
        (500, "{}", Some(true)),
        (503, "", Some(true)),
        (429, "", Some(true)),
        (400, r#"{"responseCode":"CLIENT_ERROR"}"#, Some(false)),
        (200, r#"{"responseCode":"FAILED"}"#, Some(false)),
        (201, r#"{"responseCode":"OK"}"#, None),
    ] {
        server.answer(status, body);
        let outcome = caller.call(&registration()).await;
        match (transient, outcome) {
            (None, Ok(())) => {}
            (Some(true), Err(SendError::Transient(_))) => {}
            (Some(false), Err(SendError::Permanent(_))) => {}
            (expected, outcome) => {
                panic!("{status} {body}: expected {expected:?}, got {outcome:?}")
            }
        }
    }
}

#[tokio::test]
async fn an_unreachable_service_is_tried_again_and_no_service_is_refused_for_good() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let caller = HttpServiceCaller::new(&options(&format!("http://{address}"))).unwrap();
    assert!(matches!(
        caller.call(&registration()).await,
        Err(SendError::Transient(_))
    ));
    assert!(matches!(
        NoServiceCaller.call(&registration()).await,
        Err(SendError::Permanent(_))
    ));
    assert!(HttpServiceCaller::new(&options("ftp://content")).is_err());
    assert!(HttpServiceCaller::new(&options("not a url")).is_err());
}

const NCF: &str = r#"{"id":"api.framework.read","responseCode":"OK","result":{"framework":{
    "identifier":"NCF","categories":[
        {"code":"board","terms":[{"identifier":"ncf_board_cbse","name":"CBSE"}]},
        {"code":"medium","terms":[{"name":"English"},{"name":"Hindi"}]}]}}}"#;

#[tokio::test]
async fn a_framework_is_read_by_its_id_and_an_unknown_one_is_none() {
    let (server, base) = serve().await;
    let frameworks = HttpFrameworks::new(&options(&base)).unwrap();
    server.answer(200, NCF);
    let found = frameworks.read("NCF").await.unwrap().expect("found");
    assert_eq!(
        found.categories.keys().collect::<Vec<_>>(),
        ["board", "medium"]
    );
    assert!(found.categories["medium"].contains("Hindi"));
    let seen = server.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/v1/framework/read/NCF");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer content-key"));

    // An id cannot reach another path.
    frameworks.read("../../admin").await.unwrap();
    assert_eq!(server.seen()[1].path, "/v1/framework/read/..%2F..%2Fadmin");

    server.answer(404, r#"{"responseCode":"RESOURCE_NOT_FOUND"}"#);
    assert!(frameworks.read("nope").await.unwrap().is_none());
    server.answer(200, r#"{"responseCode":"OK","result":{}}"#);
    assert!(frameworks.read("empty").await.unwrap().is_none());
    server.answer(502, "");
    assert!(matches!(
        frameworks.read("NCF").await,
        Err(ContentError::Unavailable(_))
    ));
    server.answer(200, "not json");
    assert!(matches!(
        frameworks.read("NCF").await,
        Err(ContentError::Unavailable(_))
    ));
}

#[tokio::test]
async fn the_cache_keeps_what_was_found_and_asks_again_for_what_was_not() {
    let (server, base) = serve().await;
    let frameworks = CachedFrameworks::new(
        HttpFrameworks::new(&options(&base)).unwrap(),
        Duration::from_secs(60),
    );
    server.answer(404, "");
    assert!(frameworks.read("NCF").await.unwrap().is_none());
    server.answer(200, NCF);
    assert!(frameworks.read("NCF").await.unwrap().is_some());
    // Found once: the service is not asked again, even when it is down.
    server.answer(503, "");
    assert!(frameworks.read("NCF").await.unwrap().is_some());
    assert_eq!(server.seen().len(), 2);
    assert!(frameworks.read("other").await.is_err());
    assert_eq!(server.seen().len(), 3);
}
