//! The behaviour every [`Cache`] must have (moka always; Redis when a server is reachable).

use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Fence, Lookup};

/// Panics naming the broken property. Keys carry a random prefix so a shared server works.
pub async fn run_cache_conformance(cache: Arc<dyn Cache>) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let key = |name: &str| format!("conformance:{run}:{name}");
    let long = Duration::from_secs(60);

    assert_eq!(
        cache.get(&key("missing")).await.expect("get"),
        None,
        "a missing key is a miss"
    );

    cache
        .set(&key("a"), b"one".to_vec(), long)
        .await
        .expect("set");
    assert_eq!(
        cache.get(&key("a")).await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    cache
        .set(&key("a"), b"two".to_vec(), long)
        .await
        .expect("overwrite");
    assert_eq!(
        cache.get(&key("a")).await.expect("get").as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        cache.get(&key("b")).await.expect("get"),
        None,
        "keys are independent"
    );

    cache.delete(&key("a")).await.expect("delete");
    assert_eq!(cache.get(&key("a")).await.expect("get"), None, "deleted");
    cache
        .delete(&key("never-set"))
        .await
        .expect("deleting a missing key is fine");

    // Fenced fills: a fill made with the fence of a miss lands unless the key was invalidated
    // in between; then only a fill from a later miss does.
    let fenced = key("fenced");
    let Lookup::Miss(first) = cache.lookup(&fenced).await.expect("lookup") else {
        panic!("a missing key is a miss");
    };
    assert!(
        cache
            .fill(&fenced, first, b"v1".to_vec(), long)
            .await
            .expect("fill"),
        "a fill right after its miss lands"
    );
    assert_eq!(
        cache.lookup(&fenced).await.expect("lookup"),
        Lookup::Hit(b"v1".to_vec())
    );
    assert_eq!(
        cache.get(&fenced).await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    cache.invalidate(&fenced, long).await.expect("invalidate");
    let Lookup::Miss(second) = cache.lookup(&fenced).await.expect("lookup") else {
        panic!("an invalidated key is a miss");
    };
    assert_ne!(second, first, "an invalidation moves the key's generation");
    assert!(
        !cache
            .fill(&fenced, first, b"stale".to_vec(), long)
            .await
            .expect("fill"),
        "a fill from before the invalidation is refused"
    );
    assert_eq!(cache.get(&fenced).await.expect("get"), None);
    // The race itself: a miss, then another writer's invalidation, then the fill.
    cache.invalidate(&fenced, long).await.expect("invalidate");
    assert!(
        !cache
            .fill(&fenced, second, b"stale".to_vec(), long)
            .await
            .expect("fill"),
        "a fill overtaken by an invalidation is refused"
    );
    let Lookup::Miss(third) = cache.lookup(&fenced).await.expect("lookup") else {
        panic!("still a miss");
    };
    assert!(
        cache
            .fill(&fenced, third, b"v3".to_vec(), long)
            .await
            .expect("fill")
    );
    assert_eq!(
        cache.lookup(&fenced).await.expect("lookup"),
        Lookup::Hit(b"v3".to_vec())
    );
    assert_eq!(
        cache.lookup(&key("fenced-other")).await.expect("lookup"),
        Lookup::Miss(Fence(0)),
        "a key never invalidated is at generation 0"
    );

    let big = vec![7u8; 256 * 1024];
    cache
        .set(&key("big"), big.clone(), long)
        .await
        .expect("set big");
    assert_eq!(
        cache.get(&key("big")).await.expect("get"),
        Some(big),
        "binary values round-trip"
    );

    cache
        .set(&key("short"), b"x".to_vec(), Duration::from_millis(300))
        .await
        .expect("set short");
    assert!(cache.get(&key("short")).await.expect("get").is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cache.get(&key("short")).await.expect("get"),
        None,
        "entries expire"
    );

    assert!(cache.healthy().await);
}

/// The behaviour every [`RateCounter`](super::rate::RateCounter) must have: a burst of exactly
/// the budget, a wait of about one interval after it, and independent keys and buckets.
pub async fn run_rate_counter_conformance(counter: Arc<dyn super::rate::RateCounter>) {
    use super::rate::Admission;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let five = std::num::NonZeroU32::new(5).expect("non-zero");
    let mut admitted = 0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        match counter
            .admit("conformance", &run, five)
            .await
            .expect("admit")
        {
            Admission::Admitted => admitted += 1,
            Admission::RetryAfter(wait) => waits.push(wait),
        }
    }
    assert_eq!(admitted, 5, "a burst of exactly the budget");
    for wait in &waits {
        // One interval is 12 s at five a minute; the counter's clock ran a little meanwhile.
        assert!(
            *wait > Duration::from_secs(10) && *wait <= Duration::from_secs(12),
            "wait {wait:?}"
        );
    }
    assert_eq!(
        counter
            .admit("conformance", &format!("{run}-other"), five)
            .await
            .expect("admit"),
        Admission::Admitted,
        "another key has its own budget"
    );
    assert_eq!(
        counter
            .admit("conformance-other", &run, five)
            .await
            .expect("admit"),
        Admission::Admitted,
        "another bucket has its own budget"
    );
}
