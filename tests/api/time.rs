//! Time through the real router with the app's clock moved, never slept for.

use chrono::{Datelike, Duration};
use serde_json::json;

use userorg::clock::{Clock, sunbird_timestamp};

use crate::helpers::{TestApp, unique_email};

#[tokio::test]
async fn a_minor_comes_of_age_when_the_clock_passes_the_eighteenth_birthday() {
    let app = TestApp::spawn().await;
    let today = app.clock.today();
    // Eighteen years old tomorrow.
    let birthday = today + Duration::days(1);
    let dob = format!(
        "{:04}-{:02}-{:02}",
        birthday.year() - 18,
        birthday.month(),
        birthday.day()
    );
    let created_at = sunbird_timestamp(app.clock.now());
    let id = app
        .create_user(json!({"firstName": "Young", "email": unique_email(), "dob": dob}))
        .await;
    let path = format!("/v5/user/read/{id}");
    let user = app.get(&path, Some(&app.admin_token)).await.assert_ok()["response"].clone();
    assert_eq!(user["isMinor"], true);
    assert_eq!(
        user["createdDate"], created_at,
        "dates come from the app's clock"
    );
    app.clock.advance(Duration::days(2));
    let user = app.get(&path, Some(&app.admin_token)).await.assert_ok()["response"].clone();
    assert_eq!(user["isMinor"], false, "eighteen now");
    app.stop().await;
}
