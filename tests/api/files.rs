//! File upload: stored and served back (data-dir engine) or put in an S3-compatible bucket,
//! and the refusals: a name that could leave the store, an oversized file, a content type off
//! the allow-list, no file, no token.

use reqwest::multipart::{Form, Part};

use crate::helpers::{Reply, TestApp};

fn form(name: &str, mime: &str, bytes: Vec<u8>, container: Option<&str>) -> Form {
    let mut form = Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str(mime)
            .expect("mime"),
    );
    if let Some(container) = container {
        form = form.text("container", container.to_string());
    }
    form
}

async fn upload(app: &TestApp, form: Form, token: Option<&str>) -> Reply {
    app.post_multipart("/v1/file/upload", form, token).await
}

#[tokio::test]
async fn an_uploaded_file_is_served_back_at_its_url() {
    let app = TestApp::spawn().await;
    let png = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    let reply = upload(
        &app,
        form("My Avatar.png", "image/png", png.clone(), Some("avatars")),
        Some(&app.admin_token),
    )
    .await;
    let url = reply.assert_ok()["url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with("http://localhost:9000/files/avatars/") && url.ends_with("-My_Avatar.png"),
        "{url}"
    );
    let path = url.split_once("/files/").map(|(_, p)| p).expect("path");
    let served = app
        .client
        .get(format!("{}/files/{path}", app.public))
        .send()
        .await
        .expect("sent");
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        served.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(served.bytes().await.expect("bytes").to_vec(), png);
    // No container given: the default one.
    let reply = upload(
        &app,
        form("a.txt", "text/plain", b"x".to_vec(), None),
        Some(&app.admin_token),
    )
    .await;
    assert!(
        reply.assert_ok()["url"]
            .as_str()
            .expect("url")
            .contains("/files/user/")
    );
    // An unknown file is 404 in the envelope.
    let missing = app.get("/files/user/nothing-here.txt", None).await;
    missing.assert_error(404, "UOS_STRGSER0013", "Requested file resource not found");
}

#[tokio::test]
async fn uploads_that_could_harm_are_refused() {
    let app = TestApp::spawn_with(&[("USERORG__FILES__MAX_BYTES", "1024")]).await;
    let token = app.admin_token.clone();
    for name in ["../../etc/passwd.png", "a/b.png", "..x.png"] {
        upload(
            &app,
            form(name, "image/png", b"x".to_vec(), None),
            Some(&token),
        )
        .await
        .assert_error(
            400,
            "UOS_STRGSER0017",
            &format!("Invalid value {name} for parameter fileName. Please provide a valid value."),
        );
    }
    upload(
        &app,
        form("big.png", "image/png", vec![7; 2048], None),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_STRGSER0007",
        "Maximum upload data size should be 1024 bytes",
    );
    upload(
        &app,
        form("page.html", "text/html", b"<script>".to_vec(), None),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_STRGSER0077",
        "Please provide a valid file. File expected of format: image/png, image/jpeg, image/gif, image/webp, application/pdf, text/csv, text/plain",
    );
    upload(
        &app,
        form("a.png", "image/png", b"x".to_vec(), Some("Not_Valid")),
        Some(&token),
    )
    .await
    .assert_error(
        400,
        "UOS_STRGSER0017",
        "Invalid value Not_Valid for parameter container. Please provide a valid value.",
    );
    upload(&app, Form::new().text("container", "user"), Some(&token))
        .await
        .assert_error(
            400,
            "UOS_STRGSER0028",
            "Requested data for this operation is not valid.",
        );
    upload(&app, form("a.png", "image/png", b"x".to_vec(), None), None)
        .await
        .assert_error(401, "UOS_0070", "You are not authorized.");
    // Nothing refused was written.
    let files = app.data_dir().join("files");
    let written: Vec<_> = walk(&files);
    assert!(written.is_empty(), "{written:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn the_s3_engine_stores_uploads_in_the_bucket() {
    let Some(server) = userorg::test_tiers::s3() else {
        return;
    };
    let app = TestApp::spawn_with(&[
        ("USERORG__FILES__ENGINE", "s3"),
        ("USERORG__FILES__S3__ENDPOINT", &server.endpoint),
        ("USERORG__FILES__S3__BUCKET", &server.bucket),
        ("USERORG__FILES__S3__ACCESS_KEY_ID", "testing"),
        ("USERORG__FILES__S3__SECRET_ACCESS_KEY", "testing"),
    ])
    .await;
    let reply = upload(
        &app,
        form(
            "report.pdf",
            "application/pdf",
            b"%PDF-1.4".to_vec(),
            Some("reports"),
        ),
        Some(&app.admin_token),
    )
    .await;
    let url = reply.assert_ok()["url"].as_str().expect("url").to_string();
    let prefix = format!("{}/{}/reports/", server.endpoint, server.bucket);
    assert!(url.starts_with(&prefix), "{url}");
    // The object is in the bucket, with its content type (read with the bucket's credentials:
    // the bucket decides who else may read it).
    let key = url.strip_prefix(&prefix).expect("key");
    let bucket = userorg::blob::s3::S3Blobs::new(&userorg::blob::s3::S3Settings {
        endpoint: server.endpoint.clone(),
        bucket: server.bucket.clone(),
        region: "us-east-1".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        public_base_url: String::new(),
    })
    .expect("client");
    use userorg::blob::BlobStore;
    let stored = bucket
        .get("reports", key)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.content_type, "application/pdf");
    assert_eq!(stored.bytes, b"%PDF-1.4");
}
