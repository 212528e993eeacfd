//! Password reset without Keycloak: the link of `/private/user/v1/password/reset`, the page it
//! opens and its form (single use, expiry, a changed link, cross-site submissions, the password
//! policy), sessions ended after the reset, and the housekeeping that sweeps what expired.

use serde_json::json;

use crate::helpers::{TestApp, unique_email};
use crate::signin::{PASSWORD, password_grant, refresh};

const NEW_PASSWORD: &str = "N3w!password";

/// A page of the reset: status, the CSRF cookie it set, the form's CSRF value, the text.
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) cookie: Option<String>,
    pub(crate) csrf: Option<String>,
    pub(crate) text: String,
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    let text = response.text().await.expect("body");
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string);
    Page {
        status,
        cookie,
        csrf,
        text,
    }
}

async fn open(app: &TestApp, link: &str) -> Page {
    page(app.client.get(link).send().await.expect("sent")).await
}

async fn submit(
    app: &TestApp,
    link: &str,
    cookie: Option<&str>,
    csrf: &str,
    password: &str,
) -> Page {
    let mut request = app
        .client
        .post(link)
        .form(&[("csrf", csrf), ("password", password)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    page(request.send().await.expect("sent")).await
}

/// A user with a password who signed in once: id, email, the session's refresh token.
async fn signed_in_user(app: &TestApp) -> (String, String, String) {
    let email = unique_email();
    let id = app
        .create_user(json!({"firstName": "Reset", "email": email, "password": PASSWORD}))
        .await;
    let answer = password_grant(app, &email, PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let tokens: serde_json::Value = serde_json::from_str(&answer.text).expect("json");
    let refresh_token = tokens["refresh_token"].as_str().expect("rt").to_string();
    (id, email, refresh_token)
}

/// The link of a reset made through the private route, with the page's address on this app.
async fn reset_link(app: &TestApp, request: serde_json::Value) -> String {
    let reply = app
        .post_internal("/private/user/v1/password/reset", request)
        .await;
    let result = reply.assert_ok();
    assert_eq!(result["response"], "SUCCESS");
    let link = result["link"].as_str().expect("link").to_string();
    let path = link
        .split_once("/password/reset/")
        .map(|(_, token)| format!("/password/reset/{token}"))
        .expect("a reset address");
    assert!(
        link.starts_with("http://localhost:9000/password/reset/"),
        "{link}"
    );
    format!("{}{path}", app.public)
}

#[tokio::test]
async fn a_link_sets_the_password_once_and_ends_the_sessions() {
    let app = TestApp::spawn().await;
    let (id, email, refresh_token) = signed_in_user(&app).await;
    let link = reset_link(&app, json!({"userId": id, "type": "email"})).await;
    // The link was also emailed to the user.
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    let token = link.rsplit('/').next().expect("token");
    assert!(mails[0].body.contains(token), "{}", mails[0].body);

    let form = open(&app, &link).await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(
        form.text
            .contains("Password must contain a minimum of 8 characters")
    );
    let cookie = form.cookie.expect("a CSRF cookie");
    let csrf = form.csrf.expect("a CSRF value");
    assert!(cookie.ends_with(&csrf));

    let weak = submit(&app, &link, Some(&cookie), &csrf, "short").await;
    assert_eq!(weak.status, 400);
    assert!(
        weak.text
            .contains("This password does not meet the policy below.")
    );
    let weak_cookie = weak.cookie.expect("a fresh cookie");
    let weak_csrf = weak.csrf.expect("a fresh value");
    let done = submit(&app, &link, Some(&weak_cookie), &weak_csrf, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("Your password is set."));

    // Single use.
    assert_eq!(open(&app, &link).await.status, 400);
    let again = submit(&app, &link, Some(&weak_cookie), &weak_csrf, NEW_PASSWORD).await;
    assert_eq!(again.status, 400);
    assert!(again.text.contains("This link is not valid"));
    // The old session is over; the new password signs in, the old one does not.
    let refused = refresh(&app, &refresh_token).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("Session not active"),
        "{}",
        refused.text
    );
    assert_eq!(password_grant(&app, &email, NEW_PASSWORD).await.status, 200);
    assert_eq!(password_grant(&app, &email, PASSWORD).await.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn changed_expired_and_cross_site_submissions_are_refused() {
    let app = TestApp::spawn().await;
    let (id, email, _) = signed_in_user(&app).await;
    let link = reset_link(&app, json!({"userId": id})).await;
    assert!(
        app.mails_to(&email).await.is_empty(),
        "without type nothing is sent"
    );
    let form = open(&app, &link).await;
    let (cookie, csrf) = (form.cookie.expect("cookie"), form.csrf.expect("csrf"));

    // A changed expiry (to make the link last longer) breaks its MAC.
    let token = link.rsplit('/').next().expect("token");
    let parts: Vec<&str> = token.split('.').collect();
    let later: i64 = parts[1].parse::<i64>().expect("expiry") + 86_400_000;
    let stretched = link.replace(token, &format!("{}.{later}.{}", parts[0], parts[2]));
    assert_eq!(open(&app, &stretched).await.status, 400);
    // The MAC's last digit changed (to one it is not: a fixed "0" would leave one MAC in
    // sixteen unchanged).
    let last = if parts[2].ends_with('0') { '1' } else { '0' };
    let tampered = link.replace(
        token,
        &format!(
            "{}.{}.{}{last}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 1]
        ),
    );
    assert_eq!(
        submit(&app, &tampered, Some(&cookie), &csrf, NEW_PASSWORD)
            .await
            .status,
        400
    );

    // A form posted from elsewhere carries no cookie (SameSite=Strict), or not the right one.
    let forged = submit(&app, &link, None, &csrf, NEW_PASSWORD).await;
    assert_eq!(forged.status, 403);
    assert!(forged.text.contains("Form expired"));
    let mismatched = submit(
        &app,
        &link,
        Some("userorg_reset_csrf=00"),
        &csrf,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(mismatched.status, 403);

    // A day later the link has expired.
    app.clock.advance(chrono::Duration::seconds(86_401));
    assert_eq!(open(&app, &link).await.status, 400);
    assert_eq!(
        submit(&app, &link, Some(&cookie), &csrf, NEW_PASSWORD)
            .await
            .status,
        400
    );
    assert_eq!(
        password_grant(&app, &email, PASSWORD).await.status,
        200,
        "nothing changed"
    );

    // The private route's rules.
    let cases = [
        (
            json!({}),
            400,
            "UOS_PASSRST0030",
            "Mandatory parameter userId is missing.",
        ),
        (
            json!({"userId": "nobody"}),
            404,
            "UOS_PASSRST0013",
            "Requested user resource not found",
        ),
        (
            json!({"userId": id, "type": "fax"}),
            400,
            "UOS_PASSRST0017",
            "Invalid value fax for parameter type. Please provide a valid value.",
        ),
        (
            json!({"userId": id, "type": "phone"}),
            400,
            "UOS_PASSRST0019",
            "Please provide valid phone.",
        ),
    ];
    for (request, status, err, message) in cases {
        app.post_internal("/private/user/v1/password/reset", request)
            .await
            .assert_error(status, err, message);
    }
    app.stop().await;
}

#[tokio::test]
async fn housekeeping_sweeps_expired_codes_links_and_sessions() {
    let app = TestApp::spawn().await;
    let (id, _, refresh_token) = signed_in_user(&app).await;
    let link = reset_link(&app, json!({"userId": id})).await;
    app.post(
        "/v2/otp/generate",
        json!({"key": unique_email(), "type": "email"}),
        None,
    )
    .await
    .assert_ok();
    let count = |table| {
        let store = app.stored();
        async move {
            store
                .scan(table, "", None, 1_000)
                .await
                .expect("scan")
                .len()
        }
    };
    use userorg::storage::Table;
    let before = app.scheduler().run_now().await.expect("a round");
    assert!(before.ran);
    assert_eq!(
        (before.otp_rows, before.sessions, before.reset_links),
        (0, 0, 0),
        "nothing expired yet"
    );
    assert_eq!(count(Table::ResetLink).await, 1);
    assert_eq!(count(Table::Otp).await, 2, "the code and its send count");
    // Past the session maximum (ten hours), the link's day and the code's day of sends.
    app.clock.advance(chrono::Duration::hours(25));
    let swept = app.scheduler().run_now().await.expect("a round");
    assert_eq!(
        (swept.otp_rows, swept.sessions, swept.reset_links),
        (2, 1, 1),
        "{swept:?}"
    );
    assert_eq!(count(Table::ResetLink).await, 0);
    assert_eq!(count(Table::Otp).await, 0);
    assert_eq!(count(Table::UserSession).await, 0);
    assert_eq!(open(&app, &link).await.status, 400);
    assert_eq!(refresh(&app, &refresh_token).await.status, 400);
    app.stop().await;
}
