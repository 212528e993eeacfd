//! Legacy user notes: create, read, update, search (only one's own) and the soft delete, with
//! Sunbird's request rules and answers.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, unique_email};

async fn user(app: &TestApp) -> (String, String) {
    let id = app
        .create_user(json!({"firstName": "Noter", "email": unique_email()}))
        .await;
    let token = app.token_for(&id);
    (id, token)
}

async fn create(app: &TestApp, token: &str, request: Value) -> Reply {
    app.post("/v1/note/create", request, Some(token)).await
}

async fn delete(app: &TestApp, token: &str, id: &str) -> Reply {
    app.send(
        Method::DELETE,
        format!("{}/v1/note/delete/{id}", app.public),
        None,
        Some(token),
    )
    .await
}

#[tokio::test]
async fn a_note_is_created_read_updated_searched_and_deleted() {
    let app = TestApp::spawn().await;
    let (id, token) = user(&app).await;
    let (other, other_token) = user(&app).await;
    let created = create(
        &app,
        &token,
        json!({"userId": id, "title": "Chapter 1", "note": "Read again",
               "courseId": "do_course", "tags": ["exam"]}),
    )
    .await;
    let note = created.assert_ok()["id"].as_str().expect("id").to_string();
    create(
        &app,
        &other_token,
        json!({"userId": other, "title": "Theirs", "note": "Private", "contentId": "do_c"}),
    )
    .await
    .assert_ok();

    let read = app
        .get(&format!("/v1/note/read/{note}"), Some(&token))
        .await;
    let result = read.assert_ok()["response"].clone();
    assert_eq!(result["count"], 1);
    assert_eq!(result["note"], result["content"]);
    let stored = &result["content"][0];
    assert_eq!(stored["title"], "Chapter 1");
    assert_eq!(stored["courseId"], "do_course");
    assert_eq!(stored["tags"], json!(["exam"]));
    assert!(stored.get("isDeleted").is_none(), "{stored}");

    // Another user neither reads nor changes it.
    app.get(&format!("/v1/note/read/{note}"), Some(&other_token))
        .await
        .assert_error(
            403,
            "UOS_NOTERED0071",
            "You are forbidden from accessing specified resource.",
        );
    app.patch(
        &format!("/v1/note/update/{note}"),
        json!({"title": "Hijacked"}),
        Some(&other_token),
    )
    .await
    .assert_error(
        403,
        "UOS_NOTEUPD0071",
        "You are forbidden from accessing specified resource.",
    );
    let update = app
        .patch(
            &format!("/v1/note/update/{note}"),
            json!({"title": "Chapter 1, again", "userId": other, "courseId": "moved"}),
            Some(&token),
        )
        .await;
    assert_eq!(update.assert_ok()["id"], note.as_str());
    let read = app
        .get(&format!("/v1/note/read/{note}"), Some(&token))
        .await;
    let stored = read.assert_ok()["response"]["content"][0].clone();
    assert_eq!(stored["title"], "Chapter 1, again");
    assert_eq!(stored["userId"], id.as_str(), "the owner does not change");
    assert_eq!(stored["courseId"], "do_course", "nor the course");

    // Search finds only the caller's own notes, whatever the filters say.
    app.wait_for_index().await;
    for filters in [json!({}), json!({"userId": other})] {
        let found = app
            .post("/v1/note/search", json!({"filters": filters}), Some(&token))
            .await;
        let result = found.assert_ok()["response"].clone();
        assert_eq!(result["count"], 1, "{result}");
        assert_eq!(result["content"][0]["id"], note.as_str());
    }
    let by_course = app
        .post(
            "/v1/note/search",
            json!({"filters": {"courseId": "elsewhere"}}),
            Some(&token),
        )
        .await;
    assert_eq!(by_course.assert_ok()["response"]["count"], 0);

    // The delete is soft: the note is gone from read and search.
    let deleted = delete(&app, &token, &note).await;
    assert_eq!(deleted.assert_ok(), &json!({}));
    app.get(&format!("/v1/note/read/{note}"), Some(&token))
        .await
        .assert_error(404, "UOS_NOTERED0013", "Requested note resource not found");
    app.wait_for_index().await;
    let found = app
        .post("/v1/note/search", json!({"filters": {}}), Some(&token))
        .await;
    assert_eq!(found.assert_ok()["response"]["count"], 0);
    delete(&app, &token, &note).await.assert_error(
        400,
        "UOS_NOTEDEL0019",
        "Please provide valid noteId.",
    );
}

#[tokio::test]
async fn note_requests_follow_sunbirds_rules() {
    let app = TestApp::spawn().await;
    let (id, token) = user(&app).await;
    let (other, _) = user(&app).await;
    let full = json!({"userId": id, "title": "T", "note": "N", "courseId": "c"});
    for field in ["userId", "title", "note"] {
        let mut request = full.clone();
        request.as_object_mut().expect("object").remove(field);
        create(&app, &token, request).await.assert_error(
            400,
            "UOS_NOTECRT0030",
            &format!("Mandatory parameter {field} is missing."),
        );
    }
    let mut request = full.clone();
    request.as_object_mut().expect("object").remove("courseId");
    create(&app, &token, request).await.assert_error(
        400,
        "UOS_NOTECRT0019",
        "Please provide valid contentId or courseId.",
    );
    for tags in [json!([]), json!("exam")] {
        let mut request = full.clone();
        request["tags"] = tags;
        create(&app, &token, request).await.assert_error(
            400,
            "UOS_NOTECRT0019",
            "Please provide valid tags.",
        );
    }
    let mut request = full.clone();
    request["userId"] = json!(other);
    create(&app, &token, request).await.assert_error(
        403,
        "UOS_NOTECRT0071",
        "You are forbidden from accessing specified resource.",
    );
    // An unknown note: Sunbird's template, unfilled, with 404.
    for reply in [
        app.get("/v1/note/read/nope", Some(&token)).await,
        app.patch("/v1/note/update/nope", json!({"title": "x"}), Some(&token))
            .await,
        delete(&app, &token, "nope").await,
    ] {
        assert_eq!(reply.status.as_u16(), 404, "{:?}", reply.body);
        assert_eq!(
            reply.errmsg(),
            "Invalid value {0} for parameter {1}. Please provide a valid value."
        );
    }
    app.post("/v1/note/search", json!({"filters": {}}), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
}
