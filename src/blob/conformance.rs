//! The [`BlobStore`] contract, run against every engine.

use super::{Blob, BlobStore};

fn blob(bytes: &[u8], content_type: &str) -> Blob {
    Blob {
        bytes: bytes.to_vec(),
        content_type: content_type.to_string(),
    }
}

/// Put and get back, replace, absent names, and names that would leave the container.
pub async fn run(store: &dyn BlobStore) {
    let key = format!("c-{}.bin", uuid::Uuid::new_v4().simple());
    assert_eq!(store.get("conformance", &key).await.expect("get"), None);
    let first = blob(&[0, 1, 2, 255], "application/octet-stream");
    let url = store
        .put("conformance", &key, first.clone())
        .await
        .expect("put");
    assert!(url.ends_with(&format!("conformance/{key}")), "{url}");
    assert_eq!(
        store.get("conformance", &key).await.expect("get"),
        Some(first)
    );
    let second = blob(b"replaced", "text/plain");
    store
        .put("conformance", &key, second.clone())
        .await
        .expect("put again");
    assert_eq!(
        store.get("conformance", &key).await.expect("get"),
        Some(second)
    );
    // The same key in another container is another blob.
    assert_eq!(
        store.get("conformance-other", &key).await.expect("get"),
        None
    );
    for bad in ["../escape", "a/b", ".hidden"] {
        assert!(
            store
                .put("conformance", bad, blob(b"x", "text/plain"))
                .await
                .is_err(),
            "{bad} accepted"
        );
        assert!(store.get("conformance", bad).await.is_err(), "{bad} read");
    }
    assert!(
        store
            .put("Bad_Container", "a.txt", blob(b"x", "text/plain"))
            .await
            .is_err()
    );
}
