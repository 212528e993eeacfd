//! The behaviour every [`Store`] must have, run against each implementation (the embedded one
//! always; PostgreSQL and Scylla when their test tier points at a server).
//!
//! Keys and consumer names carry a random prefix, and consumers use times in January 1970 (so
//! they look long gone to a real deployment's consumers), so the suite can run against a shared
//! cluster. The trimming check assumes no other consumer of the store lags behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;

use super::consumer::OutboxConsumer;
use super::{
    Acknowledgement, CONSUMER_RETENTION_MS, ClaimKind, ConsumerMode, Expect, OutboxCursor, Store,
    StoreError, Table, Topic, Transaction, compose_key, key_prefix,
};

/// Opens the store under test; called again to check what survives a restart (the suite drops
/// every handle of the previous store first).
pub type OpenStore<'a> = &'a (dyn Fn() -> BoxFuture<'static, Arc<dyn Store>> + Sync);

/// Times of the suite's consumers: each check gets its own era, more than a retention period
/// after the previous one, so consumers of earlier checks never hold back a later one's outbox.
fn era(n: i64) -> i64 {
    1_000_000 + n * 2 * CONSUMER_RETENTION_MS
}

/// Runs every check; panics with a message naming the failed property.
pub async fn run_store_conformance(open: OpenStore<'_>) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let store = open().await;
    insert_read_update_delete(&*store, &run).await;
    version_expectations_are_enforced(&*store, &run).await;
    checks_guard_a_transaction_without_writing(&*store, &run).await;
    claims_are_exclusive_and_released_by_owner_only(&*store, &run).await;
    failed_transactions_leave_no_trace(&*store, &run).await;
    prefix_scans_page_in_key_order(&*store, &run).await;
    commits_report_their_cursor_and_events_their_versions(&*store, &run).await;
    leases_are_exclusive_until_they_expire(&*store, &run).await;
    competing_consumers_apply_each_event_once_and_hand_over(store.clone(), &run).await;
    each_instance_consumers_all_see_every_event(store.clone(), &run).await;
    outbox_is_ordered_and_trimmed_after_acknowledgement(&*store, &run).await;
    concurrent_claims_have_exactly_one_winner(store.clone(), &run).await;
    a_tailing_reader_sees_every_concurrent_commit_once(store.clone(), &run).await;
    assert!(store.healthy().await, "store reports healthy");
    let consumer = format!("{run}-restart");
    store
        .register_consumer(&consumer, era(6))
        .await
        .expect("register");
    let mut transaction = Transaction::default();
    transaction.event(Topic::User, format!("{run}-restart"), 1);
    let cursor = store
        .commit(transaction)
        .await
        .expect("event")
        .cursor
        .expect("cursor");
    store
        .acknowledge(Acknowledgement {
            consumer: &consumer,
            cursor: &cursor,
            lease: None,
            now_ms: era(6),
        })
        .await
        .expect("ack");
    drop(store);
    cursors_and_rows_survive_a_restart(open().await, &run, &consumer, &cursor).await;
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

async fn checks_guard_a_transaction_without_writing(store: &dyn Store, run: &str) {
    let parent = format!("{run}-check-parent");
    let mut insert = Transaction::default();
    insert.put(Table::Location, &parent, json!({"n": 1}), Expect::Absent);
    store.commit(insert).await.expect("insert");

    // Two children that each only check the parent: neither conflicts with the other.
    for child in ["a", "b"] {
        let mut create = Transaction::default();
        create.check(Table::Location, &parent, Expect::Version(1));
        create.put(
            Table::Location,
            format!("{parent}-{child}"),
            json!({}),
            Expect::Absent,
        );
        assert_eq!(
            store.commit(create).await.expect("checked create").versions,
            vec![1, 1],
            "a check reports the version it found"
        );
    }
    let row = store
        .get(Table::Location, &parent)
        .await
        .expect("get")
        .expect("parent");
    assert_eq!(row.version, 1, "a check writes nothing");

    let mut change = Transaction::default();
    change.put(
        Table::Location,
        &parent,
        json!({"n": 2}),
        Expect::Version(1),
    );
    store.commit(change).await.expect("change");
    let mut stale = Transaction::default();
    stale.check(Table::Location, &parent, Expect::Version(1));
    stale.put(
        Table::Location,
        format!("{parent}-c"),
        json!({}),
        Expect::Absent,
    );
    assert!(
        matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })),
        "a failed check fails the transaction"
    );
    assert!(
        store
            .get(Table::Location, &format!("{parent}-c"))
            .await
            .expect("get")
            .is_none(),
        "nothing of a failed check's transaction applied"
    );
    let mut gone = Transaction::default();
    gone.check(
        Table::Location,
        format!("{parent}-none"),
        Expect::Version(1),
    );
    assert!(
        matches!(store.commit(gone).await, Err(StoreError::Conflict { .. })),
        "checking a missing row for a version conflicts"
    );
    let mut absent = Transaction::default();
    absent.check(Table::Location, format!("{parent}-none"), Expect::Absent);
    store
        .commit(absent)
        .await
        .expect("an absent row checks as absent");
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

    // Of several taken values, the first in the transaction's order is the one reported (the
    // API answers "phone already exists" before "email already exists", as Sunbird checks).
    let phone = format!("{run}-phone");
    let mut taken_phone = Transaction::default();
    taken_phone.claim(ClaimKind::Phone, &phone, "owner-c");
    store.commit(taken_phone).await.expect("phone claim");
    for (first, expected) in [
        (ClaimKind::Phone, ("owner-c", ClaimKind::Phone)),
        (ClaimKind::Email, ("owner-a", ClaimKind::Email)),
    ] {
        let mut both = Transaction::default();
        let ordered = if first == ClaimKind::Phone {
            [(ClaimKind::Phone, &phone), (ClaimKind::Email, &value)]
        } else {
            [(ClaimKind::Email, &value), (ClaimKind::Phone, &phone)]
        };
        for (kind, claimed) in ordered {
            both.claim(kind, claimed, "owner-d");
        }
        match store.commit(both).await {
            Err(StoreError::ClaimTaken { kind, owner }) => {
                assert_eq!(
                    (owner.as_str(), kind),
                    expected,
                    "the first taken claim is reported"
                )
            }
            other => panic!("expected ClaimTaken, got {other:?}"),
        }
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
    let head_before = store.outbox_head().await.expect("head");
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
    assert!(
        store
            .read_outbox(&head_before, usize::MAX)
            .await
            .expect("outbox")
            .iter()
            .all(|r| r.event.entity_id != key),
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

async fn commits_report_their_cursor_and_events_their_versions(store: &dyn Store, run: &str) {
    let before = store.outbox_head().await.expect("head");
    let mut quiet = Transaction::default();
    quiet.put(
        Table::User,
        format!("{run}-quiet"),
        json!({}),
        Expect::Absent,
    );
    assert_eq!(
        store.commit(quiet).await.expect("commit").cursor,
        None,
        "a commit without events has no cursor"
    );
    let mut transaction = Transaction::default();
    transaction.put(Table::User, format!("{run}-v"), json!({}), Expect::Absent);
    transaction.event(Topic::User, format!("{run}-v"), 1);
    transaction.event(Topic::Organisation, format!("{run}-o"), 7);
    let cursor = store
        .commit(transaction)
        .await
        .expect("commit")
        .cursor
        .expect("a commit with events reports where they end");
    assert!(cursor > before, "the cursor moves forward");
    assert!(store.outbox_head().await.expect("head") >= cursor);
    let records = store.read_outbox(&before, 10_000).await.expect("read");
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.event.entity_id.starts_with(run))
        .map(|r| (r.event.topic, r.event.entity_id.clone(), r.event.version))
        .collect();
    assert_eq!(
        mine,
        vec![
            (Topic::User, format!("{run}-v"), 1),
            (Topic::Organisation, format!("{run}-o"), 7)
        ],
        "events keep their topic, entity and version, in commit order"
    );
    let last = records
        .iter()
        .rfind(|r| r.event.entity_id.starts_with(run))
        .expect("mine");
    assert_eq!(
        last.cursor, cursor,
        "the last event's cursor is the commit's"
    );
    assert!(
        store
            .read_outbox(&cursor, 10_000)
            .await
            .expect("read")
            .iter()
            .all(|r| r.cursor > cursor),
        "reading after a cursor starts after it"
    );
}

async fn leases_are_exclusive_until_they_expire(store: &dyn Store, run: &str) {
    let consumer = format!("{run}-leased");
    let t = era(1);
    let first = store
        .acquire_lease(&consumer, "a", t, 1_000)
        .await
        .expect("acquire")
        .expect("a free lease is granted");
    assert_eq!(
        (first.holder.as_str(), first.expires_at_ms),
        ("a", t + 1_000)
    );
    assert_eq!(
        store
            .acquire_lease(&consumer, "b", t + 999, 1_000)
            .await
            .expect("acquire"),
        None,
        "a held lease is refused to others until it expires"
    );
    let renewed = store
        .acquire_lease(&consumer, "a", t + 500, 1_000)
        .await
        .expect("renew")
        .expect("the holder renews");
    assert_eq!(
        (renewed.token, renewed.expires_at_ms),
        (first.token, t + 1_500),
        "a renewal keeps the token and moves the expiry"
    );
    let taken = store
        .acquire_lease(&consumer, "b", t + 1_500, 1_000)
        .await
        .expect("acquire")
        .expect("an expired lease passes to another holder");
    assert!(
        taken.token > first.token,
        "a new holder gets a larger token"
    );
    store
        .register_consumer(&consumer, t)
        .await
        .expect("register");
    let cursor = store.outbox_head().await.expect("head");
    match store
        .acknowledge(Acknowledgement {
            consumer: &consumer,
            cursor: &cursor,
            lease: Some(&renewed),
            now_ms: t + 1_600,
        })
        .await
    {
        Err(StoreError::LeaseLost(name)) => assert_eq!(name, consumer),
        other => panic!("an earlier holder's acknowledgement must be refused, got {other:?}"),
    }
    store
        .acknowledge(Acknowledgement {
            consumer: &consumer,
            cursor: &cursor,
            lease: Some(&taken),
            now_ms: t + 1_600,
        })
        .await
        .expect("the holder acknowledges");
    store.release_lease(&taken).await.expect("release");
    let after_release = store
        .acquire_lease(&consumer, "a", t + 1_601, 1_000)
        .await
        .expect("acquire")
        .expect("a released lease is free at once");
    assert!(after_release.token > taken.token);
}

/// Writes `count` events of this run and returns their entity ids.
async fn write_events(store: &dyn Store, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in 0..count.div_ceil(10) {
        let mut transaction = Transaction::default();
        for n in chunk * 10..((chunk + 1) * 10).min(count) {
            let id = format!("{prefix}-{n:04}");
            transaction.event(Topic::User, id.clone(), 1);
            ids.push(id);
        }
        store.commit(transaction).await.expect("events");
    }
    ids
}

/// Applies one batch of `consumer` (the events of this run only) into `applied`.
async fn consume_once(
    consumer: &mut OutboxConsumer,
    prefix: &str,
    applied: &Mutex<Vec<(String, String)>>,
    who: &str,
    now_ms: i64,
) -> bool {
    let Some(batch) = consumer.next_batch(7, now_ms).await.expect("batch") else {
        return false;
    };
    {
        let mut applied = applied.lock().expect("lock");
        for record in &batch {
            if record.event.entity_id.starts_with(prefix) {
                applied.push((who.to_string(), record.event.entity_id.clone()));
            }
        }
    }
    let last = batch.last().expect("non-empty").cursor.clone();
    consumer.acknowledge(&last, now_ms).await.expect("ack");
    true
}

async fn competing_consumers_apply_each_event_once_and_hand_over(store: Arc<dyn Store>, run: &str) {
    let name = format!("{run}-competing");
    let prefix = format!("{run}-competed");
    let t = era(2);
    let ttl = 10_000;
    // A consumer that never moves keeps the outbox from being trimmed, so a successor that did
    // not resume from the holder's cursor would see the holder's events again.
    store
        .register_consumer(&format!("{name}-laggard"), t)
        .await
        .expect("laggard");
    let mut a = OutboxConsumer::start(store.clone(), &name, ConsumerMode::Competing, "a", ttl, t)
        .await
        .expect("a");
    let mut b = OutboxConsumer::start(store.clone(), &name, ConsumerMode::Competing, "b", ttl, t)
        .await
        .expect("b");
    let ids = write_events(&*store, &prefix, 40).await;
    let applied = Mutex::new(Vec::new());
    // Both poll in turn; only the lease holder gets batches. `a` stops after three of them.
    let mut a_batches = 0;
    for step in 0..6 {
        let now = t + step;
        if a_batches < 3 && consume_once(&mut a, &prefix, &applied, "a", now).await {
            a_batches += 1;
        }
        assert!(
            !consume_once(&mut b, &prefix, &applied, "b", now).await,
            "b gets nothing while a holds the lease"
        );
    }
    assert_eq!(a_batches, 3, "a applied three batches");
    drop(a); // stopped mid-stream, without releasing its lease
    assert!(
        !consume_once(&mut b, &prefix, &applied, "b", t + ttl - 1).await,
        "the lease of a stopped holder still counts until it expires"
    );
    let mut now = t + 6 + ttl;
    while consume_once(&mut b, &prefix, &applied, "b", now).await {
        now += 1;
    }
    let applied = applied.into_inner().expect("lock");
    let seen: Vec<&String> = applied.iter().map(|(_, id)| id).collect();
    let distinct: HashSet<&String> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "no event applied twice");
    assert_eq!(distinct.len(), ids.len(), "every event applied");
    assert!(applied.iter().any(|(who, _)| who == "a"));
    assert!(
        applied.iter().any(|(who, _)| who == "b"),
        "b finished the stream after the lease expired"
    );
    assert_eq!(
        store.consumer_cursor(&name).await.expect("cursor"),
        *b.cursor()
    );
    b.stop().await.expect("stop");
}

async fn each_instance_consumers_all_see_every_event(store: Arc<dyn Store>, run: &str) {
    let name = format!("{run}-tail");
    let prefix = format!("{run}-tailed");
    let t = era(3);
    let mut consumers = Vec::new();
    for instance in ["one", "two"] {
        consumers.push(
            OutboxConsumer::start(
                store.clone(),
                &name,
                ConsumerMode::EachInstance,
                instance,
                1_000,
                t,
            )
            .await
            .expect("start"),
        );
    }
    assert_ne!(consumers[0].name(), consumers[1].name());
    let ids = write_events(&*store, &prefix, 25).await;
    let applied = Mutex::new(Vec::new());
    for (consumer, who) in consumers.iter_mut().zip(["one", "two"]) {
        while consume_once(consumer, &prefix, &applied, who, t).await {}
    }
    let applied = applied.into_inner().expect("lock");
    let mut by_instance: HashMap<&str, Vec<&String>> = HashMap::new();
    for (who, id) in &applied {
        by_instance.entry(who.as_str()).or_default().push(id);
    }
    let expected: Vec<&String> = ids.iter().collect();
    assert_eq!(
        by_instance.get("one"),
        Some(&expected),
        "instance one saw all, in order"
    );
    assert_eq!(
        by_instance.get("two"),
        Some(&expected),
        "instance two saw all, in order"
    );
}

async fn outbox_is_ordered_and_trimmed_after_acknowledgement(store: &dyn Store, run: &str) {
    let consumer = format!("{run}-trimmer");
    let t = era(4);
    store
        .register_consumer(&consumer, t)
        .await
        .expect("register");
    let start = store.consumer_cursor(&consumer).await.expect("cursor");
    let mut transaction = Transaction::default();
    for n in 0..3u64 {
        transaction.event(Topic::User, format!("{run}-event-{n}"), n + 1);
    }
    let last = store
        .commit(transaction)
        .await
        .expect("events")
        .cursor
        .expect("cursor");
    let records = store.read_outbox(&start, 1000).await.expect("read");
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.event.entity_id.starts_with(run))
        .collect();
    assert_eq!(mine.len(), 3);
    assert!(mine.windows(2).all(|w| w[0].cursor < w[1].cursor));
    store
        .acknowledge(Acknowledgement {
            consumer: &consumer,
            cursor: &last,
            lease: None,
            now_ms: t,
        })
        .await
        .expect("ack");
    assert_eq!(
        store.consumer_cursor(&consumer).await.expect("cursor"),
        last
    );
    assert!(
        store
            .read_outbox(&OutboxCursor::start(), 1000)
            .await
            .expect("read")
            .iter()
            .all(|r| r.cursor > last),
        "acknowledged records are trimmed"
    );
    store
        .acknowledge(Acknowledgement {
            consumer: &consumer,
            cursor: &start,
            lease: None,
            now_ms: t,
        })
        .await
        .expect("old ack");
    assert_eq!(
        store.consumer_cursor(&consumer).await.expect("cursor"),
        last,
        "cursors never move back"
    );
}

async fn cursors_and_rows_survive_a_restart(
    store: Arc<dyn Store>,
    run: &str,
    consumer: &str,
    cursor: &OutboxCursor,
) {
    assert_eq!(
        store.consumer_cursor(consumer).await.expect("cursor"),
        *cursor,
        "a consumer resumes where it acknowledged"
    );
    assert!(
        store
            .get(Table::User, &format!("{run}-v"))
            .await
            .expect("get")
            .is_some(),
        "committed rows survive"
    );
    assert!(store.outbox_head().await.expect("head") >= *cursor);
}

/// Commits land from several writers at once while a reader tails the outbox by cursor: the
/// reader gets every event exactly once, in strictly increasing cursor order. (An engine whose
/// commits become visible out of cursor order must hold back what a later commit could still
/// land before; a reader that skipped past it would lose the event.)
async fn a_tailing_reader_sees_every_concurrent_commit_once(store: Arc<dyn Store>, run: &str) {
    const WRITERS: usize = 8;
    const COMMITS: usize = 25;
    let start = store.outbox_head().await.expect("head");
    let prefix = format!("{run}-tail-");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, prefix) = (Arc::clone(&store), prefix.clone());
            tokio::spawn(async move {
                for n in 0..COMMITS {
                    let id = format!("{prefix}{w}-{n}");
                    let mut transaction = Transaction::default();
                    transaction.put(Table::User, &id, json!({"w": w, "n": n}), Expect::Absent);
                    transaction.event(Topic::User, &id, 1);
                    store.commit(transaction).await.expect("writer commits");
                }
            })
        })
        .collect();
    let mut cursor = start;
    let mut seen = HashSet::new();
    let mut rounds = 0;
    let mut writers_done = false;
    let mut writers = writers;
    while seen.len() < WRITERS * COMMITS {
        rounds += 1;
        assert!(
            rounds < 100_000,
            "the reader never got every event: {}",
            seen.len()
        );
        let records = store.read_outbox(&cursor, 64).await.expect("read");
        for record in &records {
            assert!(record.cursor > cursor, "cursors only grow");
            cursor = record.cursor.clone();
            if record.event.entity_id.starts_with(&prefix) {
                assert!(
                    seen.insert(record.event.entity_id.clone()),
                    "{} delivered twice",
                    record.event.entity_id
                );
            }
        }
        if records.is_empty() {
            if writers_done {
                let head = store.outbox_head().await.expect("head");
                assert!(
                    cursor < head || seen.len() == WRITERS * COMMITS,
                    "caught up with the head yet {} of {} events seen: some were skipped",
                    seen.len(),
                    WRITERS * COMMITS
                );
            } else if writers.iter().all(|w| w.is_finished()) {
                for writer in writers.drain(..) {
                    writer.await.expect("writer");
                }
                writers_done = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    for writer in writers {
        writer.await.expect("writer");
    }
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
