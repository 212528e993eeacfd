//! The content service integration (`[content]`): a new tenant's channel registration queued
//! in the outbox and delivered by the dispatcher, through a content service that is down and
//! then up; users' framework values checked against the framework read API, and against the
//! `frameworks` system setting when no API is configured.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use userorg::actors::dispatcher;
use userorg::domain::notification::{DeliveryState, Medium, NotificationRecord};

use crate::helpers::{TestApp, unique_email};

/// A registration as received: its `Authorization` header and its body.
type Registration = (Option<String>, Value);

/// A stand-in content service: takes channel registrations and answers framework reads for
/// the one framework it has (`NCF`).
#[derive(Clone, Default)]
struct ContentService {
    registrations: Arc<Mutex<Vec<Registration>>>,
    framework_reads: Arc<Mutex<Vec<String>>>,
}

async fn register(
    State(service): State<ContentService>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    service
        .registrations
        .lock()
        .unwrap()
        .push((authorization, body));
    axum::Json(json!({"id": "api.channel.create", "responseCode": "OK", "result": {}}))
}

async fn read_framework(
    State(service): State<ContentService>,
    Path(id): Path<String>,
) -> (StatusCode, axum::Json<Value>) {
    service.framework_reads.lock().unwrap().push(id.clone());
    if id != "NCF" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"responseCode": "RESOURCE_NOT_FOUND"})),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!({"responseCode": "OK", "result": {"framework": {
            "identifier": "NCF",
            "categories": [
                {"code": "board", "terms": [{"identifier": "b1", "name": "CBSE"}, {"identifier": "b2", "name": "ICSE"}]},
                {"code": "medium", "terms": [{"identifier": "m1", "name": "English"}]},
                {"code": "gradeLevel", "terms": [{"identifier": "g1", "name": "Class 1"}]}
            ]
        }}})),
    )
}

impl ContentService {
    /// Serves on `address` from now on.
    async fn start(&self, address: SocketAddr) {
        let app = axum::Router::new()
            .route("/channel/v3/create", axum::routing::post(register))
            .route(
                "/v1/framework/read/{id}",
                axum::routing::get(read_framework),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("the reserved port");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
    }

    fn registrations(&self) -> Vec<Registration> {
        self.registrations.lock().unwrap().clone()
    }
}

/// A loopback address nothing listens on (yet).
async fn free_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("address")
}

/// The channel registrations of the notification table.
async fn queued_registrations(app: &TestApp) -> Vec<NotificationRecord> {
    dispatcher::list(&app.stored(), None)
        .await
        .expect("list")
        .into_iter()
        .filter(|record| record.source == "channel-registration")
        .collect()
}

#[tokio::test]
async fn a_tenant_created_while_the_content_service_is_down_is_registered_once_it_is_up() {
    let address = free_address().await;
    let base = format!("http://{address}");
    let app = TestApp::spawn_with(&[
        ("USERORG__CONTENT__BASE_URL", base.as_str()),
        ("USERORG__CONTENT__API_KEY", "content-secret"),
    ])
    .await;
    let channel = format!("cs{}", uuid::Uuid::new_v4().simple());
    // The service is down: the create is not held back.
    let tenant = app
        .create_org(
            json!({"orgName": "State", "isTenant": true, "channel": channel,
            "organisationType": "board", "description": "The state board",
            "license": "CC BY 4.0"}),
        )
        .await;
    // A school is no tenant: it registers nothing.
    app.create_org(
        json!({"orgName": "School", "isTenant": false, "channel": channel,
        "organisationType": "school"}),
    )
    .await;
    app.deliver().await;
    let queued = queued_registrations(&app).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].channel, Medium::Call);
    assert_eq!(queued[0].state, DeliveryState::Retrying, "{queued:?}");
    assert_eq!(queued[0].attempts, 1);
    assert!(
        queued[0].last_error.contains("content service unreachable"),
        "{queued:?}"
    );

    // The service comes up; the retry is due after the backoff.
    let service = ContentService::default();
    service.start(address).await;
    app.deliver().await;
    assert!(service.registrations().is_empty(), "not due yet");
    app.clock.advance(chrono::Duration::minutes(11));
    app.deliver().await;
    let registrations = service.registrations();
    assert_eq!(registrations.len(), 1, "{registrations:?}");
    assert_eq!(registrations[0].0.as_deref(), Some("Bearer content-secret"));
    assert_eq!(
        registrations[0].1,
        json!({"request": {"channel": {"name": channel, "description": "The state board",
            "code": tenant, "defaultLicense": "CC BY 4.0"}}})
    );
    let queued = queued_registrations(&app).await;
    assert_eq!(queued[0].state, DeliveryState::Delivered, "{queued:?}");
    assert_eq!(queued[0].attempts, 2);

    // Delivered is final: later rounds do not register it again.
    app.clock.advance(chrono::Duration::hours(1));
    app.deliver().await;
    assert_eq!(service.registrations().len(), 1);
}

#[tokio::test]
async fn without_a_content_service_or_with_registration_off_nothing_is_queued() {
    let address = free_address().await;
    let base = format!("http://{address}");
    for env in [
        vec![],
        vec![
            ("USERORG__CONTENT__BASE_URL", base.as_str()),
            ("USERORG__CONTENT__REGISTER_CHANNELS", "false"),
        ],
    ] {
        let app = TestApp::spawn_with(&env).await;
        let channel = format!("cs{}", uuid::Uuid::new_v4().simple());
        app.create_org(
            json!({"orgName": "State", "isTenant": true, "channel": channel,
            "organisationType": "board"}),
        )
        .await;
        app.deliver().await;
        assert!(queued_registrations(&app).await.is_empty(), "{env:?}");
    }
}

/// A user with `framework`, created on `/v1/user/create`: the reply.
async fn create_with(app: &TestApp, framework: Value) -> crate::helpers::Reply {
    app.post(
        "/v1/user/create",
        json!({"firstName": "Learner", "email": unique_email(), "framework": framework}),
        Some(&app.admin_token),
    )
    .await
}

/// The refusals every framework source gives, on create and on update.
async fn assert_framework_rules(app: &TestApp) {
    let refused = [
        (
            json!({"id": "NCF", "board": ["CBSE", "NIOS"]}),
            400,
            "0017",
            "Invalid value NIOS for parameter framework.board. Please provide a valid value.",
        ),
        (
            json!({"id": "NCF", "subject": ["Maths"]}),
            400,
            "0051",
            "Unsupported field framework.subject.",
        ),
        (
            json!({"id": "NOPE", "board": ["CBSE"]}),
            404,
            "0032",
            "No framework found.",
        ),
        (
            json!({"board": ["CBSE"]}),
            400,
            "0030",
            "Mandatory parameter framework.id is missing.",
        ),
        (
            json!({"id": ["NCF", "X"]}),
            400,
            "0058",
            "Parameter framework.id is of invalid size (expected: 1, actual: 2).",
        ),
        (
            json!({"id": "NCF", "board": [7]}),
            400,
            "0003",
            "Data type of board should be List.",
        ),
    ];
    for (framework, status, code, message) in &refused {
        create_with(app, framework.clone()).await.assert_error(
            *status,
            &format!("UOS_USRCRT{code}"),
            message,
        );
    }
    // Known values pass; a single string is a one-value list; the id is stored as a list.
    let user = app
        .create_user(json!({"firstName": "Learner", "email": unique_email(),
            "framework": {"id": "NCF", "board": "CBSE", "medium": ["English"]}}))
        .await;
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&app.admin_token))
        .await;
    assert_eq!(
        read.assert_ok()["response"]["framework"],
        json!({"id": ["NCF"], "board": ["CBSE"], "medium": ["English"]})
    );
    for (framework, status, code, message) in &refused {
        app.patch(
            "/v1/user/update",
            json!({"userId": user, "framework": framework}),
            Some(&app.admin_token),
        )
        .await
        .assert_error(*status, &format!("UOS_USRUPD{code}"), message);
    }
    app.patch(
        "/v1/user/update",
        json!({"userId": user, "framework": {"id": "NCF", "gradeLevel": ["Class 1"]}}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&app.admin_token))
        .await;
    assert_eq!(
        read.assert_ok()["response"]["framework"],
        json!({"id": ["NCF"], "gradeLevel": ["Class 1"]})
    );
}

#[tokio::test]
async fn framework_values_are_checked_against_the_framework_read_api() {
    let address = free_address().await;
    let service = ContentService::default();
    service.start(address).await;
    let base = format!("http://{address}");
    let app = TestApp::spawn_with(&[("USERORG__CONTENT__FRAMEWORK_BASE_URL", base.as_str())]).await;
    assert_framework_rules(&app).await;
    // The framework found is cached: NCF was read once for all those checks.
    let reads = service.framework_reads.lock().unwrap().clone();
    assert_eq!(
        reads.iter().filter(|id| *id == "NCF").count(),
        1,
        "{reads:?}"
    );

    // A child's framework that does not pass is left out, and the child is created.
    let parent = app
        .create_user(json!({"firstName": "Parent", "email": unique_email()}))
        .await;
    let child = app
        .post(
            "/v1/manageduser/create",
            json!({"firstName": "Child", "managedBy": parent,
                "framework": {"id": "NCF", "board": ["NIOS"]}}),
            Some(&app.token_for(&parent)),
        )
        .await;
    let child = child.assert_ok()["userId"]
        .as_str()
        .expect("userId")
        .to_string();
    let read = app
        .get(&format!("/v5/user/read/{child}"), Some(&app.admin_token))
        .await;
    let profile = &read.assert_ok()["response"];
    assert!(
        profile
            .get("framework")
            .is_none_or(|f| f.is_null() || f == &json!({})),
        "{profile}"
    );
}

#[tokio::test]
async fn an_unreachable_framework_api_answers_503() {
    let address = free_address().await;
    let base = format!("http://{address}");
    let app = TestApp::spawn_with(&[("USERORG__CONTENT__FRAMEWORK_BASE_URL", base.as_str())]).await;
    let reply = create_with(&app, json!({"id": "NCF", "board": ["CBSE"]})).await;
    reply.assert_error(503, "UOS_USRCRT0064", "SERVICE UNAVAILABLE");
    assert_eq!(reply.body["responseCode"], "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn without_an_api_frameworks_are_checked_against_the_frameworks_setting() {
    let app = TestApp::spawn().await;
    // No API and no setting: stored as given.
    let user = app
        .create_user(json!({"firstName": "Learner", "email": unique_email(),
            "framework": {"board": ["Anything"]}}))
        .await;
    let read = app
        .get(&format!("/v5/user/read/{user}"), Some(&app.admin_token))
        .await;
    assert_eq!(
        read.assert_ok()["response"]["framework"],
        json!({"board": ["Anything"]})
    );
    let list = json!({"NCF": {"board": ["CBSE", "ICSE"], "medium": ["English"],
        "gradeLevel": ["Class 1"]}});
    app.post(
        "/v1/system/settings/set",
        json!({"id": "frameworks", "field": "frameworks", "value": list.to_string()}),
        Some(&app.admin_token),
    )
    .await
    .assert_ok();
    assert_framework_rules(&app).await;
}
