//! The behaviour every [`Store`] must have, run against each implementation (the embedded one
//! always; Scylla when `USERORG_TEST_SCYLLA` points at a cluster).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::{
    ClaimKind, Expect, INDEXER_CONSUMER, Store, StoreError, Table, Transaction, compose_key,
    key_prefix,
};

/// Runs every check; panics with a message naming the failed property. Uses keys with a random
/// prefix so it can run against a shared cluster.
pub async fn run_store_conformance(store: Arc<dyn Store>) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    insert_read_update_delete(&*store, &run).await;
    version_expectations_are_enforced(&*store, &run).await;
    claims_are_exclusive_and_released_by_owner_only(&*store, &run).await;
    failed_transactions_leave_no_trace(&*store, &run).await;
    prefix_scans_page_in_key_order(&*store, &run).await;
    outbox_is_ordered_and_trimmed_after_acknowledgement(&*store, &run).await;
    concurrent_claims_have_exactly_one_winner(store.clone(), &run).await;
    assert!(store.healthy().await, "store reports healthy");
}

async fn insert_read_update_delete(store: &dyn Store, run: &str) {
    let key = format!("{run}-crud");
    assert!(store.get(Table::User, &key).await.expect("get").is_none());
    let mut insert = Transaction::default();
    insert.put(
        Table::User,
        &key,
        json!({"firstName": "Asha"}),
        Expect::Absent,
    );
    let info = store.commit(insert).await.expect("insert");
    assert_eq!(info.versions, vec![1], "an insert reaches version 1");
    let row = store
        .get(Table::User, &key)
        .await
        .expect("get")
        .expect("row exists");
    assert_eq!(row.version, 1);
    assert_eq!(row.doc["firstName"], "Asha");

    let mut update = Transaction::default();
    update.put(
        Table::User,
        &key,
        json!({"firstName": "Asha R"}),
        Expect::Version(1),
    );
    assert_eq!(
        store.commit(update).await.expect("update").versions,
        vec![2]
    );
    let row = store
        .get(Table::User, &key)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.version, row.doc["firstName"].as_str()),
        (2, Some("Asha R"))
    );

    let mut delete = Transaction::default();
    delete.delete(Table::User, &key, Expect::Version(2));
    store.commit(delete).await.expect("delete");
    assert!(store.get(Table::User, &key).await.expect("get").is_none());
}

async fn version_expectations_are_enforced(store: &dyn Store, run: &str) {
    let key = format!("{run}-cas");
    let mut insert = Transaction::default();
    insert.put(Table::Organisation, &key, json!({"v": 1}), Expect::Absent);
    store.commit(insert).await.expect("insert");

    let mut again = Transaction::default();
    again.put(Table::Organisation, &key, json!({"v": 2}), Expect::Absent);
    assert!(
        matches!(store.commit(again).await, Err(StoreError::Conflict { .. })),
        "inserting an existing row conflicts"
    );
    let mut stale = Transaction::default();
    stale.put(
        Table::Organisation,
        &key,
        json!({"v": 3}),
        Expect::Version(7),
    );
    assert!(
        matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })),
        "a stale version conflicts"
    );
    let mut missing = Transaction::default();
    missing.put(
        Table::Organisation,
        format!("{key}-none"),
        json!({}),
        Expect::Version(1),
    );
    assert!(
        matches!(
            store.commit(missing).await,
            Err(StoreError::Conflict { .. })
        ),
        "updating a missing row conflicts"
    );
    let mut upsert = Transaction::default();
    upsert.put(Table::Organisation, &key, json!({"v": 4}), Expect::Any);
    assert_eq!(
        store.commit(upsert).await.expect("upsert").versions,
        vec![2]
    );
    let row = store
        .get(Table::Organisation, &key)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.doc["v"], 4, "only the successful writes applied");
}

async fn claims_are_exclusive_and_released_by_owner_only(store: &dyn Store, run: &str) {
    let value = format!("{run}-token");
    let mut first = Transaction::default();
    first.claim(ClaimKind::Email, &value, "owner-a");
    store.commit(first).await.expect("first claim");
    assert_eq!(
        store
            .claim_owner(ClaimKind::Email, &value)
            .await
            .expect("owner")
            .as_deref(),
        Some("owner-a")
    );
    assert!(
        store
            .claim_owner(ClaimKind::Phone, &value)
            .await
            .expect("owner")
            .is_none(),
        "claims of different kinds are independent"
    );

    let mut same_owner = Transaction::default();
    same_owner.claim(ClaimKind::Email, &value, "owner-a");
    store
        .commit(same_owner)
        .await
        .expect("re-claiming one's own value is fine");

    let mut other = Transaction::default();
    other.claim(ClaimKind::Email, &value, "owner-b");
    match store.commit(other).await {
        Err(StoreError::ClaimTaken { kind, owner }) => {
            assert_eq!((kind, owner.as_str()), (ClaimKind::Email, "owner-a"))
        }
        other => panic!("expected ClaimTaken, got {other:?}"),
    }

    let mut wrong_release = Transaction::default();
    wrong_release.release(ClaimKind::Email, &value, "owner-b");
    store
        .commit(wrong_release)
        .await
        .expect("a foreign release is ignored");
    assert!(
        store
            .claim_owner(ClaimKind::Email, &value)
            .await
            .expect("owner")
            .is_some()
    );

    let mut release = Transaction::default();
    release.release(ClaimKind::Email, &value, "owner-a");
    store.commit(release).await.expect("release");
    assert!(
        store
            .claim_owner(ClaimKind::Email, &value)
            .await
            .expect("owner")
            .is_none()
    );

    let mut reclaim = Transaction::default();
    reclaim.claim(ClaimKind::Email, &value, "owner-b");
    store
        .commit(reclaim)
        .await
        .expect("a released value can be claimed again");

    // Moving a claim in one transaction: release the old value and claim a new one.
    let new_value = format!("{run}-token-2");
    let mut moving = Transaction::default();
    moving.release(ClaimKind::Email, &value, "owner-b");
    moving.claim(ClaimKind::Email, &new_value, "owner-b");
    store.commit(moving).await.expect("move");
    assert!(
        store
            .claim_owner(ClaimKind::Email, &value)
            .await
            .expect("owner")
            .is_none()
    );
    assert_eq!(
        store
            .claim_owner(ClaimKind::Email, &new_value)
            .await
            .expect("owner")
            .as_deref(),
        Some("owner-b")
    );
}

async fn failed_transactions_leave_no_trace(store: &dyn Store, run: &str) {
    let taken = format!("{run}-taken");
    let mut setup = Transaction::default();
    setup.claim(ClaimKind::Username, &taken, "someone");
    store.commit(setup).await.expect("setup");

    let key = format!("{run}-atomic");
    let free = format!("{run}-free");
    let mut doomed = Transaction::default();
    doomed.claim(ClaimKind::Phone, &free, "me");
    doomed.claim(ClaimKind::Username, &taken, "me");
    doomed.put(Table::User, &key, json!({}), Expect::Absent);
    doomed.event(super::Topic::User, &key, 1);
    let head_before = store
        .read_outbox(0, usize::MAX)
        .await
        .expect("outbox")
        .len();
    assert!(store.commit(doomed).await.is_err());
    assert!(
        store.get(Table::User, &key).await.expect("get").is_none(),
        "no row"
    );
    assert!(
        store
            .claim_owner(ClaimKind::Phone, &free)
            .await
            .expect("owner")
            .is_none(),
        "no partial claim"
    );
    assert_eq!(
        store
            .read_outbox(0, usize::MAX)
            .await
            .expect("outbox")
            .len(),
        head_before,
        "no event"
    );

    let mut conflicting = Transaction::default();
    conflicting.claim(ClaimKind::Phone, &free, "me");
    conflicting.put(
        Table::User,
        format!("{key}-missing"),
        json!({}),
        Expect::Version(3),
    );
    assert!(store.commit(conflicting).await.is_err());
    assert!(
        store
            .claim_owner(ClaimKind::Phone, &free)
            .await
            .expect("owner")
            .is_none(),
        "a version conflict also drops the claims"
    );
}

async fn prefix_scans_page_in_key_order(store: &dyn Store, run: &str) {
    let user = format!("{run}-member");
    let mut transaction = Transaction::default();
    for org in ["o3", "o1", "o2"] {
        transaction.put(
            Table::UserOrganisation,
            compose_key(&[&user, org]),
            json!({"organisationId": org}),
            Expect::Any,
        );
    }
    transaction.put(
        Table::UserOrganisation,
        compose_key(&[&format!("{user}x"), "o9"]),
        json!({"organisationId": "o9"}),
        Expect::Any,
    );
    store.commit(transaction).await.expect("memberships");
    let prefix = key_prefix(&user);
    let all = store
        .scan(Table::UserOrganisation, &prefix, None, 100)
        .await
        .expect("scan");
    let orgs: Vec<_> = all
        .iter()
        .map(|r| r.doc["organisationId"].clone())
        .collect();
    assert_eq!(
        orgs,
        vec![json!("o1"), json!("o2"), json!("o3")],
        "sorted, prefix only"
    );
    let first_page = store
        .scan(Table::UserOrganisation, &prefix, None, 2)
        .await
        .expect("page 1");
    assert_eq!(first_page.len(), 2);
    let rest = store
        .scan(
            Table::UserOrganisation,
            &prefix,
            Some(&first_page[1].key),
            2,
        )
        .await
        .expect("page 2");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].doc["organisationId"], "o3");
}

async fn outbox_is_ordered_and_trimmed_after_acknowledgement(store: &dyn Store, run: &str) {
    let start = store
        .consumer_position(INDEXER_CONSUMER)
        .await
        .expect("position");
    let mut transaction = Transaction::default();
    for n in 0..3u64 {
        transaction.event(super::Topic::User, format!("{run}-event-{n}"), n + 1);
    }
    let info = store.commit(transaction).await.expect("events");
    assert_eq!(info.sequences.len(), 3);
    assert!(
        info.sequences.windows(2).all(|w| w[0] < w[1]),
        "increasing positions"
    );
    let records = store.read_outbox(start, 1000).await.expect("read");
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.event.entity_id.starts_with(run))
        .collect();
    assert_eq!(mine.len(), 3);
    assert!(mine.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let last = *info.sequences.last().expect("last");
    store
        .acknowledge(INDEXER_CONSUMER, last)
        .await
        .expect("ack");
    assert_eq!(
        store
            .consumer_position(INDEXER_CONSUMER)
            .await
            .expect("position"),
        last
    );
    assert!(
        store
            .read_outbox(0, 1000)
            .await
            .expect("read")
            .iter()
            .all(|r| r.sequence > last),
        "acknowledged records are trimmed"
    );
    store
        .acknowledge(INDEXER_CONSUMER, 1)
        .await
        .expect("old ack");
    assert_eq!(
        store
            .consumer_position(INDEXER_CONSUMER)
            .await
            .expect("position"),
        last,
        "positions never move back"
    );
}

async fn concurrent_claims_have_exactly_one_winner(store: Arc<dyn Store>, run: &str) {
    let value = format!("{run}-race");
    let mut tasks = Vec::new();
    for n in 0..64 {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("racer-{n}");
            let mut transaction = Transaction::default();
            transaction.claim(ClaimKind::Email, &value, &owner);
            transaction.put(Table::User, &owner, json!({}), Expect::Any);
            store.commit(transaction).await.map(|_| owner)
        }));
    }
    let mut winners = HashSet::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(owner) => {
                winners.insert(owner);
            }
            Err(StoreError::ClaimTaken { .. }) => {}
            Err(other) => panic!("unexpected error in race: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent claim wins");
    let owner = store
        .claim_owner(ClaimKind::Email, &value)
        .await
        .expect("owner")
        .expect("claimed");
    assert!(winners.contains(&owner));
}
