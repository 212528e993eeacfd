//! The access matrix: every route of the router, called as every kind of caller, each time on
//! a fresh target (user, organisation, location, preference), with a request that succeeds for
//! the callers the policy table (`userorg::http::policy`) allows. A caller it does not allow
//! must be refused (401 or 403) and a caller it allows must succeed, so both a hole and a wrong
//! table entry fail the test.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use userorg::http::policy::{Audience, audience_of};
use userorg::http::{Access, routes};

use crate::helpers::{Reply, TestApp, unique_email};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Persona {
    /// No token.
    Anonymous,
    /// A plain user of another tenant.
    Stranger,
    /// A plain user of the target's tenant (the custodian organisation).
    Peer,
    /// An ORG_ADMIN of another tenant.
    ForeignAdmin,
    /// An ORG_ADMIN of the target's tenant.
    TenantAdmin,
    /// The target user themself.
    Itself,
    /// An ADMIN.
    Admin,
    /// Another service: the internal listener with the service credential, no user token.
    Service,
}

use Persona::*;

const PERSONAS: [Persona; 8] = [
    Anonymous,
    Stranger,
    Peer,
    ForeignAdmin,
    TenantAdmin,
    Itself,
    Admin,
    Service,
];

fn allowed(audience: Audience) -> &'static [Persona] {
    match audience {
        Audience::Anyone => &PERSONAS,
        Audience::Authenticated => &[
            Stranger,
            Peer,
            ForeignAdmin,
            TenantAdmin,
            Itself,
            Admin,
            Service,
        ],
        Audience::Related => &[Itself, TenantAdmin, Admin, Service],
        Audience::SelfOrAdmin => &[Itself, Admin, Service],
        Audience::Own => &[Itself, Service],
        Audience::TenantAdmin => &[TenantAdmin, Admin, Service],
        Audience::Administrators => &[ForeignAdmin, TenantAdmin, Admin],
        Audience::Admin => &[Admin, Service],
        Audience::Service => &[Service],
        Audience::BothAccounts => &[],
    }
}

enum Payload {
    Empty,
    Json(Value),
    /// The encryption-key upload: a PEM for an organisation.
    Pem {
        organisation: String,
    },
    /// A form-encoded body (the sign-in's endpoints).
    Form(Vec<(&'static str, String)>),
    /// A file upload: one small text file.
    File,
}

struct Call {
    method: Method,
    path: String,
    payload: Payload,
}

fn call(method: Method, path: impl Into<String>, payload: Payload) -> Call {
    Call {
        method,
        path: path.into(),
        payload,
    }
}

fn body(request: Value) -> Payload {
    Payload::Json(json!({ "request": request }))
}

struct World {
    app: TestApp,
    custodian: String,
    channel: String,
    tokens: HashMap<Persona, String>,
}

/// A fresh plain user of the custodian organisation: id, email, user name.
struct Target {
    id: String,
    email: String,
    user_name: String,
}

impl World {
    async fn new() -> World {
        let app = TestApp::spawn().await;
        let settings = |field: &'static str| {
            let app = &app;
            async move {
                app.get(&format!("/v1/system/settings/get/{field}"), None)
                    .await
                    .assert_ok()["response"]["value"]
                    .as_str()
                    .expect("setting")
                    .to_string()
            }
        };
        let custodian = settings("custodianOrgId").await;
        let channel = settings("custodianOrgChannel").await;
        let foreign = format!("matrix{}", uuid::Uuid::new_v4().simple());
        app.post(
            "/v1/org/create",
            json!({"orgName": "Foreign", "isTenant": true, "channel": foreign,
                   "organisationType": "board"}),
            Some(&app.admin_token),
        )
        .await
        .assert_ok();
        let mut tokens = HashMap::new();
        for (persona, request) in [
            (
                Stranger,
                json!({"firstName": "Stranger", "email": unique_email(), "channel": foreign}),
            ),
            (Peer, json!({"firstName": "Peer", "email": unique_email()})),
            (
                ForeignAdmin,
                json!({"firstName": "Foreign", "email": unique_email(), "channel": foreign,
                       "roles": ["ORG_ADMIN"]}),
            ),
            (
                TenantAdmin,
                json!({"firstName": "Tenant", "email": unique_email(), "roles": ["ORG_ADMIN"]}),
            ),
        ] {
            let id = app.create_user(request).await;
            tokens.insert(persona, app.token_for(&id));
        }
        tokens.insert(Admin, app.admin_token.clone());
        World {
            app,
            custodian,
            channel,
            tokens,
        }
    }

    fn admin(&self) -> Option<&str> {
        Some(&self.app.admin_token)
    }

    async fn target(&self) -> Target {
        let email = unique_email();
        let user_name = format!("m{}", uuid::Uuid::new_v4().simple());
        let id = self
            .app
            .create_user(json!({"firstName": "Target", "email": email, "userName": user_name}))
            .await;
        Target {
            id,
            email,
            user_name,
        }
    }

    /// A new user with a password: its email and password.
    async fn password_user(&self) -> (String, String) {
        let email = unique_email();
        let password = "S3cret!pass".to_string();
        self.app
            .create_user(json!({"firstName": "Signs", "email": email, "password": password}))
            .await;
        (email, password)
    }

    /// The token answer of a password grant for a new user.
    async fn signed_in(&self) -> Value {
        let (email, password) = self.password_user().await;
        let response = self
            .app
            .client
            .post(format!(
                "{}/auth/realms/sunbird/protocol/openid-connect/token",
                self.app.public
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "portal"),
                ("username", email.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    async fn organisation(&self) -> String {
        let reply = self
            .app
            .post(
                "/v1/org/create",
                json!({"orgName": "School", "isTenant": false, "channel": self.channel,
                       "organisationType": "school"}),
                self.admin(),
            )
            .await;
        reply.assert_ok()["organisationId"]
            .as_str()
            .expect("organisationId")
            .to_string()
    }

    async fn location(&self) -> String {
        let reply = self
            .app
            .post(
                "/v1/location/create",
                json!({"name": "Place", "code": unique_code(), "type": "state"}),
                self.admin(),
            )
            .await;
        reply.assert_ok()["id"].as_str().expect("id").to_string()
    }

    async fn preference(&self) -> String {
        let key = unique_code();
        self.app
            .post(
                "/v2/org/preferences/create",
                json!({"orgId": self.custodian, "key": key, "data": {"a": 1}}),
                self.admin(),
            )
            .await
            .assert_ok();
        key
    }

    /// The request for `route`, on fresh targets; the target user is returned for the
    /// `Itself` persona.
    async fn prepare(&self, route: &str) -> (Call, Target) {
        use Method as M;
        let target = self.target().await;
        let t = target.id.clone();
        let plain_user = || json!({"firstName": "Made", "email": unique_email()});
        let call = match route {
            "/{service}/health" => call(M::GET, "/es/health".to_string(), Payload::Empty),
            "/health" | "/service/health" | "/v1/role/read" | "/v1/system/settings/list" => {
                call(M::GET, route, Payload::Empty)
            }
            "/v1/user/create" | "/v2/user/create" | "/v3/user/create" | "/v1/ssouser/create"
            | "/v1/user/signup" | "/v2/user/signup" => call(M::POST, route, body(plain_user())),
            "/v4/user/create" | "/v1/manageduser/create" | "/v2/manageduser/create" => call(
                M::POST,
                route,
                body(json!({"firstName": "Kid", "managedBy": t})),
            ),
            "/v1/user/managed/{id}" => call(M::GET, route.replace("{id}", &t), Payload::Empty),
            "/v1/user/consent/update" => {
                let consumer = self.organisation().await;
                call(
                    M::POST,
                    route,
                    body(json!({"consent": {"userId": t, "consumerId": consumer,
                        "objectId": consumer, "objectType": "Organisation", "status": "ACTIVE"}})),
                )
            }
            "/v1/user/consent/read" | "/v2/user/consent/read" => {
                let consumer = self.organisation().await;
                self.app
                    .post(
                        "/v1/user/consent/update",
                        json!({"consent": {"userId": t, "consumerId": consumer,
                            "objectId": consumer, "objectType": "Organisation",
                            "status": "ACTIVE"}}),
                        Some(&self.app.token_for(&t)),
                    )
                    .await
                    .assert_ok();
                call(
                    M::POST,
                    route,
                    body(
                        json!({"consent": {"filters": {"userId": t, "consumerId": consumer,
                        "objectId": consumer}}}),
                    ),
                )
            }
            "/v1/file/upload" => call(M::POST, route, Payload::File),
            "/v1/user/upload" => call(
                M::POST,
                route,
                body(json!({"data": format!(
                    "NAME,EMAIL,USER_TYPE,ROLES\nMatrix,{},teacher,PUBLIC\n",
                    crate::helpers::unique_email()
                )})),
            ),
            "/v1/org/upload" => call(
                M::POST,
                route,
                body(
                    json!({"data": "SCHOOL NAME,BLOCK CODE,STATUS,ORGANISATION TYPE\nM,B,active,school\n"}),
                ),
            ),
            "/v1/upload/status/{pid}" => {
                let uploaded = self
                    .app
                    .post(
                        "/v1/user/upload",
                        json!({"data": "NAME,USER_TYPE,ROLES\nMatrix,teacher,PUBLIC\n"}),
                        Some(&self.app.admin_token),
                    )
                    .await;
                let id = uploaded.assert_ok()["processId"]
                    .as_str()
                    .expect("processId")
                    .to_string();
                call(M::GET, route.replace("{pid}", &id), Payload::Empty)
            }
            "/files/{container}/{key}" => {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"served".to_vec())
                        .file_name("served.txt")
                        .mime_str("text/plain")
                        .expect("mime"),
                );
                let uploaded: Value = self
                    .app
                    .client
                    .post(format!("{}/v1/file/upload", self.app.public))
                    .header("x-authenticated-user-token", &self.app.admin_token)
                    .multipart(form)
                    .send()
                    .await
                    .expect("uploaded")
                    .json()
                    .await
                    .expect("json");
                let url = uploaded["result"]["url"].as_str().expect("url").to_string();
                let path = url
                    .split_once("/files/")
                    .map(|(_, rest)| format!("/files/{rest}"))
                    .expect("a served address");
                call(M::GET, path, Payload::Empty)
            }
            "/v1/note/create" => call(
                M::POST,
                route,
                body(json!({"userId": t, "title": "T", "note": "N", "courseId": "c1"})),
            ),
            "/v1/note/search" => call(M::POST, route, body(json!({"filters": {}}))),
            "/v1/note/read/{noteId}" | "/v1/note/update/{noteId}" | "/v1/note/delete/{noteId}" => {
                let note = self
                    .app
                    .post(
                        "/v1/note/create",
                        json!({"userId": t, "title": "T", "note": "N", "courseId": "c1"}),
                        Some(&self.app.token_for(&t)),
                    )
                    .await;
                let id = note.assert_ok()["id"].as_str().expect("id").to_string();
                let path = route.replace("{noteId}", &id);
                match route {
                    "/v1/note/read/{noteId}" => call(M::GET, path, Payload::Empty),
                    "/v1/note/update/{noteId}" => {
                        call(M::PATCH, path, body(json!({"title": "Renamed"})))
                    }
                    _ => call(M::DELETE, path, Payload::Empty),
                }
            }
            "/v1/user/ownership/transfer" => {
                let admin = self
                    .app
                    .create_user(json!({"firstName": "Owner", "email": unique_email(),
                                        "roles": ["ORG_ADMIN"]}))
                    .await;
                let heir = self
                    .app
                    .create_user(json!({"firstName": "Heir", "email": unique_email()}))
                    .await;
                call(
                    M::POST,
                    route,
                    body(json!({"organisationId": self.custodian,
                        "actionBy": {"userId": admin},
                        "fromUser": {"userId": t, "roles": ["CONTENT_CREATOR"]},
                        "toUser": {"userId": heir, "roles": ["CONTENT_CREATOR"]}})),
                )
            }
            "/private/user/v1/migrate" => call(
                M::PATCH,
                route,
                body(json!({"userId": t, "channel": self.channel, "notifyMigration": false})),
            ),
            "/private/user/v1/identifier/freeup" => call(
                M::POST,
                route,
                body(json!({"id": t, "identifier": ["email", "phone"]})),
            ),
            "/v1/user/declarations" => {
                let org = self.organisation().await;
                call(
                    M::PATCH,
                    route,
                    body(json!({"declarations": [{"operation": "add", "userId": t,
                        "orgId": org, "persona": "teacher",
                        "info": {"declared-school-name": "Matrix School"}}]})),
                )
            }
            "/v1/user/tnc/accept" => {
                call(M::POST, route, body(json!({"version": "v1", "userId": t})))
            }
            "/v1/user/read/{uid}"
            | "/v2/user/read/{uid}"
            | "/v3/user/read/{uid}"
            | "/v4/user/read/{uid}"
            | "/v5/user/read/{uid}"
            | "/private/user/v1/read/{uid}"
            | "/v1/user/role/read/{uid}" => {
                call(M::GET, route.replace("{uid}", &t), Payload::Empty)
            }
            "/v1/user/update"
            | "/v2/user/update"
            | "/v3/user/update"
            | "/private/user/v1/update" => call(
                M::PATCH,
                route,
                body(json!({"userId": t, "firstName": "Renamed"})),
            ),
            "/v1/user/search"
            | "/v2/user/search"
            | "/v3/user/search"
            | "/private/user/v1/search"
            | "/v1/org/search"
            | "/v2/org/search"
            | "/private/v2/org/search"
            | "/v1/location/search" => call(M::POST, route, body(json!({"filters": {}}))),
            "/v1/user/block" | "/v1/user/delete" => {
                call(M::POST, route, body(json!({"userId": t})))
            }
            "/v1/user/unblock" => {
                self.app
                    .post("/v1/user/block", json!({"userId": t}), self.admin())
                    .await
                    .assert_ok();
                call(M::POST, route, body(json!({"userId": t})))
            }
            "/private/user/v1/lookup" => call(
                M::POST,
                route,
                body(json!({"key": "email", "value": target.email})),
            ),
            "/v1/user/exists/{key}/{value}"
            | "/v2/user/exists/{key}/{value}"
            | "/v1/user/get/{key}/{value}"
            | "/v2/user/get/{key}/{value}" => call(
                M::GET,
                route
                    .replace("{key}", "email")
                    .replace("{value}", &target.email),
                Payload::Empty,
            ),
            "/v1/user/getuser" => call(M::POST, route, body(json!({"loginId": target.user_name}))),
            "/v1/org/create" => call(
                M::POST,
                route,
                body(
                    json!({"orgName": "Made", "isTenant": false, "channel": self.channel,
                            "organisationType": "school"}),
                ),
            ),
            "/v1/org/update" => {
                let org = self.organisation().await;
                call(
                    M::PATCH,
                    route,
                    body(json!({"organisationId": org, "orgName": "Renamed"})),
                )
            }
            "/v1/org/status/update" => {
                let org = self.organisation().await;
                call(
                    M::PATCH,
                    route,
                    body(json!({"organisationId": org, "status": 0})),
                )
            }
            "/v1/org/read" => {
                let org = self.organisation().await;
                call(M::POST, route, body(json!({"organisationId": org})))
            }
            "/v1/org/assign/key" => call(
                M::PATCH,
                route,
                body(json!({"id": self.custodian, "signKeys": ["s1"], "encKeys": ["e1"]})),
            ),
            "/v1/org/update/encryptionkey" => call(
                M::PATCH,
                route,
                Payload::Pem {
                    organisation: self.custodian.clone(),
                },
            ),
            "/v1/user/assign/role" | "/private/user/v1/assign/role" => call(
                M::POST,
                route,
                body(json!({"userId": t, "organisationId": self.custodian,
                            "roles": ["CONTENT_CREATOR"]})),
            ),
            "/v2/user/assign/role" | "/private/user/v2/assign/role" => call(
                M::POST,
                route,
                body(json!({"userId": t, "roles": [{"role": "CONTENT_CREATOR",
                    "operation": "add", "scope": [{"organisationId": self.custodian}]}]})),
            ),
            "/v1/location/create" => call(
                M::POST,
                route,
                body(json!({"name": "Made", "code": unique_code(), "type": "state"})),
            ),
            "/v1/location/update" => {
                let location = self.location().await;
                call(
                    M::PATCH,
                    route,
                    body(json!({"id": location, "name": "Renamed"})),
                )
            }
            "/v1/location/delete/{locationId}" => {
                let location = self.location().await;
                call(
                    M::DELETE,
                    route.replace("{locationId}", &location),
                    Payload::Empty,
                )
            }
            "/v2/org/preferences/create" => call(
                M::POST,
                route,
                body(json!({"orgId": self.custodian, "key": unique_code(), "data": {"a": 1}})),
            ),
            "/v2/org/preferences/update" => {
                let key = self.preference().await;
                call(
                    M::PATCH,
                    route,
                    body(json!({"orgId": self.custodian, "key": key, "data": {"a": 2}})),
                )
            }
            "/v2/org/preferences/read" | "/private/v2/org/preferences/read" => {
                let key = self.preference().await;
                call(
                    M::POST,
                    route,
                    body(json!({"orgId": self.custodian, "key": key})),
                )
            }
            "/v1/system/settings/get/{field}" => call(
                M::GET,
                route.replace("{field}", "custodianOrgId"),
                Payload::Empty,
            ),
            "/v1/system/settings/set" => call(
                M::POST,
                route,
                body(json!({"id": "matrixProbe", "field": "matrixProbe", "value": "1"})),
            ),
            "/v1/data/sync" => call(
                M::POST,
                route,
                body(json!({"objectType": "user", "objectIds": [t],
                            "operationType": "sync"})),
            ),
            "/auth/realms/{realm}/protocol/openid-connect/token" => {
                let (email, password) = self.password_user().await;
                call(
                    M::POST,
                    route.replace("{realm}", "sunbird"),
                    Payload::Form(vec![
                        ("grant_type", "password".into()),
                        ("client_id", "portal".into()),
                        ("username", email),
                        ("password", password),
                    ]),
                )
            }
            "/auth/realms/{realm}/protocol/openid-connect/certs"
            | "/auth/realms/{realm}/.well-known/openid-configuration" => {
                call(M::GET, route.replace("{realm}", "sunbird"), Payload::Empty)
            }
            "/auth/realms/{realm}/protocol/openid-connect/logout" => {
                let tokens = self.signed_in().await;
                call(
                    M::POST,
                    route.replace("{realm}", "sunbird"),
                    Payload::Form(vec![
                        ("client_id", "portal".into()),
                        (
                            "refresh_token",
                            tokens["refresh_token"].as_str().expect("rt").into(),
                        ),
                    ]),
                )
            }
            "/auth/realms/{realm}/protocol/openid-connect/userinfo" => {
                let tokens = self.signed_in().await;
                call(
                    M::POST,
                    route.replace("{realm}", "sunbird"),
                    Payload::Form(vec![(
                        "access_token",
                        tokens["access_token"].as_str().expect("at").into(),
                    )]),
                )
            }
            "/auth/admin/realms/{realm}/attack-detection/brute-force/users/{user_id}" => call(
                M::GET,
                route.replace("{realm}", "sunbird").replace("{user_id}", &t),
                Payload::Empty,
            ),
            "/v1/notification/email" | "/private/user/v1/notification/email" => call(
                M::POST,
                route,
                body(json!({"subject": "Matrix", "body": "Hello", "recipientUserIds": [t]})),
            ),
            "/v2/notification" => call(
                M::POST,
                route,
                body(
                    json!({"notifications": [{"mode": "email", "ids": [target.email],
                    "template": {"data": "Hello"}}]}),
                ),
            ),
            "/v1/otp/generate" | "/v2/otp/generate" => call(
                M::POST,
                route,
                body(json!({"key": unique_email(), "type": "email"})),
            ),
            "/v1/otp/verify" | "/v2/otp/verify" => {
                let email = unique_email();
                self.app
                    .post(
                        "/v2/otp/generate",
                        json!({"key": email, "type": "email"}),
                        None,
                    )
                    .await
                    .assert_ok();
                let otp = self.app.otp_mailed_to(&email).await;
                call(
                    M::POST,
                    route,
                    body(json!({"key": email, "type": "email", "otp": otp})),
                )
            }
            "/private/user/v1/password/reset" => call(M::POST, route, body(json!({"userId": t}))),
            "/v1/user/feed/{userId}" => call(M::GET, route.replace("{userId}", &t), Payload::Empty),
            "/v1/user/feed/create" | "/private/user/feed/v1/create" => call(
                M::POST,
                route,
                body(json!({"userId": t, "category": "Notification", "priority": 1})),
            ),
            "/v1/user/feed/delete" | "/v1/user/feed/update" => {
                let created = self
                    .app
                    .post_internal(
                        "/private/user/feed/v1/create",
                        json!({"userId": t, "category": "Notification", "priority": 1}),
                    )
                    .await;
                let feed = created.assert_ok()["id"].as_str().expect("id").to_string();
                let method = if route.ends_with("update") {
                    M::PATCH
                } else {
                    M::POST
                };
                call(
                    method,
                    route,
                    body(json!({"userId": t, "feedId": feed, "status": "read"})),
                )
            }
            "/private/user/v1/account/merge" => call(
                M::PATCH,
                route,
                body(json!({"fromAccountId": t, "toAccountId": self.custodian})),
            ),
            "/password/reset/{token}" => {
                let reply = self
                    .app
                    .post_internal("/private/user/v1/password/reset", json!({"userId": t}))
                    .await;
                let link = reply.assert_ok()["link"]
                    .as_str()
                    .expect("link")
                    .to_string();
                let token = link.rsplit('/').next().expect("token").to_string();
                call(M::GET, route.replace("{token}", &token), Payload::Empty)
            }
            "/auth/v1/refresh/token" => {
                let tokens = self.signed_in().await;
                call(
                    M::POST,
                    route,
                    Payload::Form(vec![(
                        "refresh_token",
                        tokens["refresh_token"].as_str().expect("rt").into(),
                    )]),
                )
            }
            other => panic!("the matrix has no request for {other}: add one"),
        };
        (call, target)
    }

    /// Sends `call` as `persona`: private routes go to the internal listener, with the service
    /// credential only for the service persona.
    async fn send(&self, persona: Persona, private: bool, target: &Target, call: &Call) -> Reply {
        let app = &self.app;
        let on_internal = private || persona == Service;
        let base = if on_internal {
            &app.internal
        } else {
            &app.public
        };
        let mut request = app
            .client
            .request(call.method.clone(), format!("{base}{}", call.path));
        if persona == Service {
            request = request.bearer_auth(&app.service_credential);
        }
        let token = match persona {
            Anonymous | Service => None,
            Itself => Some(app.token_for(&target.id)),
            other => Some(self.tokens[&other].clone()),
        };
        if let Some(token) = token {
            request = request.header("x-authenticated-user-token", token);
        }
        request = match &call.payload {
            Payload::Empty => request,
            Payload::Json(value) => request.json(value),
            Payload::Form(fields) => request.form(fields),
            Payload::File => request.multipart(
                reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(b"matrix".to_vec())
                        .file_name("matrix.txt")
                        .mime_str("text/plain")
                        .expect("mime"),
                ),
            ),
            Payload::Pem { organisation } => {
                let pem = app.signer.public_key_pem().to_string();
                let form = reqwest::multipart::Form::new()
                    .text("organisationId", organisation.clone())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(pem.into_bytes()).file_name("public.pem"),
                    );
                request.multipart(form)
            }
        };
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        Reply { status, body }
    }
}

fn unique_code() -> String {
    format!("M{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn every_route_answers_exactly_the_callers_its_policy_allows() {
    let world = World::new().await;
    let mut wrong = Vec::new();
    let mut checked = 0;
    for spec in routes() {
        let audience = audience_of(spec.path).expect("every route has a policy entry");
        let private = spec.access == Access::Private;
        for persona in PERSONAS {
            let (call, target) = world.prepare(spec.path).await;
            let reply = world.send(persona, private, &target, &call).await;
            let status = reply.status.as_u16();
            let may = allowed(audience).contains(&persona);
            // The sign-in answers Keycloak's JSON (or Sunbird's refresh envelope), the reset
            // page HTML and a stored file its bytes, not the service's envelope.
            let enveloped = !spec.path.starts_with("/auth/")
                && !spec.path.starts_with("/password/")
                && !spec.path.starts_with("/files/");
            let fine = if may {
                reply.status.is_success()
                    && (!enveloped || reply.body["params"]["status"] == "SUCCESS")
            } else {
                status == 401 || status == 403
            };
            if !fine {
                wrong.push(format!(
                    "{persona:?} {} {} ({audience:?}) answered {status}: {}",
                    call.method, spec.path, reply.body
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * PERSONAS.len());
    assert!(
        wrong.is_empty(),
        "{} of {checked} calls broke the policy:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    world.app.stop().await;
}

/// The same routes, with requests that need more than the route's floor: placing a user with a
/// role, in another tenant or under another parent is for administrators of that tenant.
#[tokio::test]
async fn creating_users_with_roles_or_in_a_tenant_is_for_its_administrators() {
    let world = World::new().await;
    let mut wrong = Vec::new();
    for (request, audience) in [
        (
            json!({"firstName": "Role", "email": unique_email(), "roles": ["CONTENT_CREATOR"]}),
            Audience::TenantAdmin,
        ),
        (
            json!({"firstName": "Placed", "email": unique_email(),
                   "organisationId": "{organisation}"}),
            Audience::TenantAdmin,
        ),
        (
            json!({"firstName": "Admin", "email": unique_email(), "roles": ["ADMIN"]}),
            Audience::Admin,
        ),
    ] {
        for persona in PERSONAS {
            let (_, target) = world.prepare("/v1/user/create").await;
            let mut request = request.clone();
            request["email"] = json!(unique_email());
            if request["organisationId"] == "{organisation}" {
                request["organisationId"] = json!(world.organisation().await);
            }
            let call = call(Method::POST, "/v1/user/create", body(request.clone()));
            let reply = world.send(persona, false, &target, &call).await;
            let may = allowed(audience).contains(&persona);
            let status = reply.status.as_u16();
            let fine = if may {
                reply.status.is_success()
            } else {
                status == 401 || status == 403
            };
            if !fine {
                wrong.push(format!(
                    "{persona:?} {request} answered {status}: {}",
                    reply.body
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    world.app.stop().await;
}
