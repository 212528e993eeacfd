//! The Scylla store's protocol on the simulated cluster: the store conformance suite, what it
//! sends for one commit, and a crash or a timeout at each step of a commit. Against a real
//! cluster, the conformance suite runs when `USERORG_TEST_SCYLLA` is set.

use std::sync::Arc;

use chrono::TimeZone;
use serde_json::json;

use super::cql::{Stmt, Value};
use super::sim::SimCql;
use super::*;
use crate::clock::{ManualClock, SystemClock};
use crate::storage::conformance::run_store_conformance;
use crate::storage::{Claim, Topic};

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

async fn store_on(cql: &SimCql, clock: Arc<dyn Clock>) -> ScyllaStore {
    ScyllaStore::over(Arc::new(cql.clone()), clock)
        .await
        .expect("open")
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(
        chrono::Local
            .with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
            .single()
            .expect("time"),
    ))
}

/// Two instances on one simulated cluster: `a` on a session the test can make die.
struct Instances {
    cluster: SimCql,
    clock: Arc<ManualClock>,
    dying: SimCql,
    a: ScyllaStore,
    b: ScyllaStore,
}

async fn instances() -> Instances {
    let cluster = SimCql::new();
    let clock = manual_clock();
    let dying = cluster.session();
    let a = store_on(&dying, clock.clone()).await;
    let b = store_on(&cluster.session(), clock.clone()).await;
    Instances {
        cluster,
        clock,
        dying,
        a,
        b,
    }
}

/// A new user with an email claim and an event.
fn new_user(id: &str, email: &str) -> Transaction {
    let mut transaction = Transaction::default();
    transaction.claim(ClaimKind::Email, email, id);
    transaction.put(Table::User, id, json!({"firstName": id}), Expect::Absent);
    transaction.event(Topic::User, id, 1);
    transaction
}

#[tokio::test]
async fn scylla_store_passes_the_conformance_suite_on_the_simulated_cluster() {
    let cluster = SimCql::new();
    run_store_conformance(&|| {
        let session = cluster.session();
        Box::pin(async move {
            Arc::new(store_on(&session, Arc::new(SystemClock)).await) as Arc<dyn Store>
        })
    })
    .await;
    assert_eq!(
        cluster.held(),
        (0, 0, 0, 0),
        "every transaction of the suite let go of what it held"
    );
}

#[tokio::test]
async fn scylla_store_passes_the_conformance_suite_on_a_real_cluster() {
    let Some(nodes) = crate::test_tiers::scylla() else {
        return;
    };
    let datacenter =
        std::env::var("USERORG_TEST_SCYLLA_DC").unwrap_or_else(|_| "datacenter1".to_string());
    let options = ScyllaOptions {
        nodes: nodes.split(',').map(str::to_string).collect(),
        keyspace: format!("userorg_test_{}", std::process::id()),
        replication: format!("{{'class': 'NetworkTopologyStrategy', '{datacenter}': 1}}"),
        local_datacenter: datacenter,
        consistency: "local_quorum".to_string(),
        username: None,
        password: None,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
    };
    ScyllaStore::apply_schema(&options)
        .await
        .expect("schema apply");
    run_store_conformance(&|| {
        let options = options.clone();
        Box::pin(async move {
            Arc::new(
                ScyllaStore::open(&options, Arc::new(SystemClock))
                    .await
                    .expect("open the Scylla store"),
            ) as Arc<dyn Store>
        })
    })
    .await;
}

#[tokio::test]
async fn a_commit_takes_claims_then_rows_then_the_slot_then_decides_then_applies() {
    let cluster = SimCql::new();
    let store = store_on(&cluster, manual_clock()).await;
    cluster.clear_log();
    store.commit(new_user("u1", "e1")).await.expect("commit");
    assert_eq!(
        cluster.sent(),
        [
            Stmt::ClaimInsert,
            Stmt::RowInsertLock(Table::User),
            Stmt::OutboxLast,
            Stmt::OutboxAppend,
            Stmt::TxnCommit,
            Stmt::OutboxSettle,
            Stmt::ClaimConfirm,
            Stmt::RowApplyPut(Table::User),
            Stmt::TxnDone,
        ]
    );
    assert_eq!(cluster.held(), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_crash_after_the_commit_point_is_finished_by_the_next_reader() {
    let Instances {
        cluster,
        clock: _,
        dying,
        a,
        b,
    } = instances().await;
    dying.die_after_sending(Stmt::TxnCommit);
    let info = a
        .commit(new_user("u1", "e1@x"))
        .await
        .expect("committed: the commit point was reached");
    assert_eq!(info.versions, vec![1]);
    assert_eq!(cluster.held(), (1, 1, 1, 1), "left half applied");
    // Instance B sees the transaction as done, and finishes it on the way.
    let row = b.get(Table::User, "u1").await.expect("get").expect("row");
    assert_eq!(
        (row.version, row.doc["firstName"].as_str()),
        (1, Some("u1"))
    );
    assert_eq!(cluster.held(), (0, 0, 0, 0), "the reader finished it");
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "e1@x")
            .await
            .expect("owner"),
        Some("u1".to_string())
    );
    let events = b
        .read_outbox(&OutboxCursor::start(), 10)
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(Some(events[0].cursor.clone()), info.cursor);
}

#[tokio::test]
async fn a_crash_after_the_commit_point_is_delivered_by_the_outbox_reader_alone() {
    let Instances {
        cluster,
        clock: _,
        dying,
        a,
        b,
    } = instances().await;
    dying.die_after_sending(Stmt::TxnCommit);
    a.commit(new_user("u1", "e1@x")).await.expect("committed");
    let events = b
        .read_outbox(&OutboxCursor::start(), 10)
        .await
        .expect("read");
    assert_eq!(
        events
            .iter()
            .map(|r| r.event.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["u1"]
    );
    assert_eq!(
        cluster.held(),
        (0, 0, 0, 0),
        "the outbox reader finished it"
    );
}

#[tokio::test]
async fn a_crash_before_the_commit_point_leaves_nothing_visible_and_is_cleared_after_the_grace_period()
 {
    let Instances {
        cluster,
        clock,
        dying,
        a,
        b,
    } = instances().await;
    dying.die_after_sending(Stmt::OutboxAppend);
    assert!(matches!(
        a.commit(new_user("u1", "e1@x")).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(
        cluster.held(),
        (1, 1, 1, 0),
        "its items stay behind, undecided"
    );
    assert_eq!(b.get(Table::User, "u1").await.expect("get"), None);
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "e1@x")
            .await
            .expect("owner"),
        None
    );
    assert!(
        b.read_outbox(&OutboxCursor::start(), 10)
            .await
            .expect("read")
            .is_empty()
    );
    // Within the grace period another writer waits for it, then gives up: unavailable, with
    // nothing of its own applied.
    match b.commit(new_user("u2", "e1@x")).await {
        Err(StoreError::Unavailable(why)) => assert_eq!(
            why,
            "a row or value is held by a transaction still in flight"
        ),
        other => panic!("a writer meeting a transaction in flight must wait, got {other:?}"),
    }
    clock.advance(chrono::Duration::milliseconds(GRACE_MS));
    b.commit(new_user("u2", "e1@x"))
        .await
        .expect("after the grace period the stale transaction is aborted");
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "e1@x")
            .await
            .expect("owner"),
        Some("u2".to_string())
    );
    let events = b
        .read_outbox(&OutboxCursor::start(), 10)
        .await
        .expect("read");
    assert_eq!(
        events
            .iter()
            .map(|r| r.event.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["u2"],
        "the aborted slot is skipped, and nothing after it is lost"
    );
    let mut again = Transaction::default();
    again.put(Table::User, "u1", json!({}), Expect::Absent);
    b.commit(again)
        .await
        .expect("the placeholder of the aborted transaction is taken over");
    assert_eq!(cluster.held(), (0, 0, 0, 0));
}

#[tokio::test]
async fn an_outbox_reader_stops_at_a_slot_in_flight_so_it_never_skips_an_event() {
    let Instances {
        cluster: _,
        clock,
        dying,
        a,
        b,
    } = instances().await;
    b.commit(new_user("u0", "e0")).await.expect("first");
    dying.die_after_sending(Stmt::OutboxAppend);
    a.commit(new_user("u1", "e1")).await.expect_err("dies");
    b.commit(new_user("u2", "e2")).await.expect("third");
    let seen = |records: Vec<OutboxRecord>| {
        records
            .into_iter()
            .map(|r| r.event.entity_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen(
            b.read_outbox(&OutboxCursor::start(), 10)
                .await
                .expect("read")
        ),
        ["u0"],
        "the reader waits at the undecided slot"
    );
    clock.advance(chrono::Duration::milliseconds(GRACE_MS));
    assert_eq!(
        seen(
            b.read_outbox(&OutboxCursor::start(), 10)
                .await
                .expect("read")
        ),
        ["u0", "u2"]
    );
}

#[tokio::test]
async fn a_commit_point_that_timed_out_is_settled_by_a_serial_read() {
    let cluster = SimCql::new();
    let store = store_on(&cluster, manual_clock()).await;
    cluster.time_out(Stmt::TxnCommit, true);
    store
        .commit(new_user("u1", "e1"))
        .await
        .expect("the timed-out commit point had landed: committed");
    assert!(store.get(Table::User, "u1").await.expect("get").is_some());

    cluster.time_out(Stmt::TxnCommit, false);
    match store.commit(new_user("u2", "e2")).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("a commit point that did not land is aborted and reported, got {other:?}"),
    }
    assert_eq!(store.get(Table::User, "u2").await.expect("get"), None);
    assert_eq!(
        store
            .claim_owner(ClaimKind::Email, "e2")
            .await
            .expect("owner"),
        None
    );
    assert_eq!(cluster.held(), (0, 0, 0, 0), "nothing of it is left");
}

#[tokio::test]
async fn a_lost_version_race_leaves_no_trace() {
    let cluster = SimCql::new();
    let store = store_on(&cluster, manual_clock()).await;
    store.commit(new_user("u1", "e1")).await.expect("create");
    let mut stale = Transaction::default();
    stale.claims.push(Claim {
        kind: ClaimKind::Phone,
        value: "p1".into(),
        owner: "u1".into(),
    });
    stale.put(Table::User, "u1", json!({"a": 1}), Expect::Version(7));
    stale.event(Topic::User, "u1", 8);
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(cluster.held(), (0, 0, 0, 0));
    assert_eq!(
        store
            .claim_owner(ClaimKind::Phone, "p1")
            .await
            .expect("owner"),
        None
    );
}

#[tokio::test]
async fn whole_table_scans_page_through_every_partition_once() {
    let cluster = SimCql::new();
    let store = store_on(&cluster, manual_clock()).await;
    let mut transaction = Transaction::default();
    for n in 0..25 {
        transaction.put(
            Table::User,
            format!("user-{n:02}"),
            json!({"n": n}),
            Expect::Absent,
        );
    }
    store.commit(transaction).await.expect("users");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan(Table::User, "", after.as_deref(), 4)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        seen.extend(page.into_iter().map(|row| row.key));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "every row once: {seen:?}");
    assert_eq!(seen.len(), 25);
    assert!(
        matches!(
            store.scan(Table::User, "user", None, 10).await,
            Err(StoreError::Internal(_))
        ),
        "a partial partition key cannot be scanned"
    );
}

#[tokio::test]
async fn a_row_read_before_its_transaction_finished_reads_as_it_is_now() {
    let Instances {
        cluster,
        clock,
        dying,
        a,
        b,
    } = instances().await;
    dying.die_after_sending(Stmt::TxnCommit);
    a.commit(new_user("u1", "e1")).await.expect("committed");
    // A reader took the row while it was still held...
    let stale = cluster
        .apply(Stmt::RowGet(Table::User), &[text("u1"), text("u1")])
        .expect("read")
        .remove(0);
    assert!(stale.get("txn").text().is_some());
    // ...the transaction is finished (and its record deleted) by someone else...
    b.get(Table::User, "u1").await.expect("get").expect("row");
    assert_eq!(cluster.held(), (0, 0, 0, 0));
    // ...and even past the grace period, the reader does not take it for aborted.
    clock.advance(chrono::Duration::milliseconds(GRACE_MS));
    let row = b
        .visible(Table::User, &stale)
        .await
        .expect("visible")
        .expect("the committed row, not the placeholder it read");
    assert_eq!(row.version, 1);
}

#[tokio::test]
async fn a_release_is_held_until_its_transaction_is_decided() {
    let Instances {
        cluster,
        clock: _,
        dying,
        a,
        b,
    } = instances().await;
    b.commit(new_user("u1", "old@x")).await.expect("u1");
    // u1 moves from old@x to new@x; its instance dies right after the commit point.
    let mut change = Transaction::default();
    change.release(ClaimKind::Email, "old@x", "u1");
    change.claim(ClaimKind::Email, "new@x", "u1");
    change.put(
        Table::User,
        "u1",
        json!({"email": "new"}),
        Expect::Version(1),
    );
    dying.die_after_sending(Stmt::TxnCommit);
    a.commit(change).await.expect("committed");
    // Another user claiming old@x finishes the move first, then gets it.
    b.commit(new_user("u2", "old@x"))
        .await
        .expect("the released value is free once its release is applied");
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "new@x")
            .await
            .expect("owner"),
        Some("u1".to_string())
    );
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "old@x")
            .await
            .expect("owner"),
        Some("u2".to_string())
    );
    assert_eq!(cluster.held(), (0, 0, 0, 0));

    // A release whose transaction fails (a version conflict) leaves the claim as it was.
    let mut stale = Transaction::default();
    stale.release(ClaimKind::Email, "new@x", "u1");
    stale.put(Table::User, "u1", json!({}), Expect::Version(1));
    assert!(matches!(
        b.commit(stale).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "new@x")
            .await
            .expect("owner"),
        Some("u1".to_string())
    );
    assert_eq!(cluster.held(), (0, 0, 0, 0));
}

#[tokio::test]
async fn the_head_is_the_last_delivered_event() {
    let Instances {
        cluster: _,
        clock,
        dying,
        a,
        b,
    } = instances().await;
    let first = b
        .commit(new_user("u1", "e1"))
        .await
        .expect("first")
        .cursor
        .expect("cursor");
    dying.die_after_sending(Stmt::OutboxAppend);
    a.commit(new_user("u2", "e2")).await.expect_err("dies");
    assert_eq!(
        b.outbox_head().await.expect("head"),
        first,
        "a slot in flight is not part of the head"
    );
    clock.advance(chrono::Duration::milliseconds(GRACE_MS));
    assert_eq!(
        b.outbox_head().await.expect("head"),
        first,
        "nor an aborted one: a reader at the first event is caught up"
    );
}

#[tokio::test]
async fn an_instance_idle_while_the_outbox_was_trimmed_appends_after_it() {
    let cluster = SimCql::new();
    let clock = manual_clock();
    let busy = store_on(&cluster.session(), clock.clone()).await;
    let idle = store_on(&cluster.session(), clock.clone()).await;
    idle.commit(new_user("u0", "e0")).await.expect("first");
    let now = clock.now().timestamp_millis();
    busy.register_consumer("indexer", now)
        .await
        .expect("register");
    let mut last = None;
    for n in 0..(BUCKET + 10) {
        let mut transaction = Transaction::default();
        transaction.event(Topic::User, format!("e{n}"), 1);
        last = busy.commit(transaction).await.expect("event").cursor;
    }
    let last = last.expect("cursor");
    busy.acknowledge(Acknowledgement {
        consumer: "indexer",
        cursor: &last,
        lease: None,
        now_ms: now,
    })
    .await
    .expect("ack");
    // The first bucket is gone; the idle instance's hint still points into it.
    let mut late = Transaction::default();
    late.event(Topic::User, "late", 1);
    idle.commit(late).await.expect("late event");
    let records = busy.read_outbox(&last, 10).await.expect("read");
    assert_eq!(
        records
            .iter()
            .map(|r| r.event.entity_id.as_str())
            .collect::<Vec<_>>(),
        ["late"],
        "the late event lands after the consumer's cursor"
    );
}

/// Two instances on one cluster, driven at once: racing creates of one email leave one user,
/// and concurrent read-modify-write updates of one row through both lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_cluster_keep_claims_exclusive_and_lose_no_update() {
    let cluster = SimCql::new();
    let stores: Vec<Arc<ScyllaStore>> = vec![
        Arc::new(store_on(&cluster.session(), Arc::new(SystemClock)).await),
        Arc::new(store_on(&cluster.session(), Arc::new(SystemClock)).await),
    ];
    let racers: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&stores[n % 2]);
            tokio::spawn(
                async move { store.commit(new_user(&format!("racer-{n}"), "one@x")).await },
            )
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::ClaimTaken { .. }) => {}
            Err(StoreError::Unavailable(why)) => {
                assert_eq!(
                    why,
                    "a row or value is held by a transaction still in flight"
                )
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one create of the email succeeds");

    let mut counter = Transaction::default();
    counter.put(Table::User, "counter", json!({"n": 0}), Expect::Absent);
    stores[0].commit(counter).await.expect("counter");
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&stores[n % 2]);
            tokio::spawn(async move {
                for _ in 0..100 {
                    let row = store
                        .get(Table::User, "counter")
                        .await
                        .expect("get")
                        .expect("row");
                    let mut update = Transaction::default();
                    let next = row.doc["n"].as_u64().expect("n") + 1;
                    update.put(
                        Table::User,
                        "counter",
                        json!({"n": next}),
                        Expect::Version(row.version),
                    );
                    match store.commit(update).await {
                        Ok(_) => return 1u64,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(other) => panic!("unexpected: {other}"),
                    }
                }
                0
            })
        })
        .collect();
    let mut acknowledged = 0;
    for writer in writers {
        acknowledged += writer.await.expect("task");
    }
    let row = stores[1]
        .get(Table::User, "counter")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        row.doc["n"].as_u64(),
        Some(acknowledged),
        "every acknowledged increment is in the row"
    );
    assert_eq!(row.version, acknowledged + 1);
    assert_eq!(cluster.held(), (0, 0, 0, 0));
}

#[tokio::test]
async fn the_head_walks_back_past_any_number_of_aborted_slots() {
    let cluster = SimCql::new();
    let store = store_on(&cluster, manual_clock()).await;
    let first = store
        .commit(new_user("u0", "e0"))
        .await
        .expect("first")
        .cursor
        .expect("cursor");
    for n in 0..150 {
        cluster.time_out(Stmt::TxnCommit, false);
        assert!(matches!(
            store
                .commit(new_user(&format!("u{}", n + 1), &format!("e{}", n + 1)))
                .await,
            Err(StoreError::Unavailable(_))
        ));
    }
    assert_eq!(store.outbox_head().await.expect("head"), first);
    assert_eq!(cluster.held(), (0, 0, 0, 0));
}

#[tokio::test]
async fn an_item_whose_lwt_timed_out_after_landing_is_cleared_at_once() {
    let cluster = SimCql::new();
    let clock = manual_clock();
    let a = store_on(&cluster.session(), clock.clone()).await;
    let b = store_on(&cluster.session(), clock.clone()).await;
    let failing = cluster.session();
    let c = store_on(&failing, clock.clone()).await;
    failing.time_out(Stmt::ClaimInsert, true);
    assert!(matches!(
        c.commit(new_user("u1", "e1")).await,
        Err(StoreError::Unavailable(_))
    ));
    // The claim landed but its transaction gave itself up: no wait for the grace period.
    a.commit(new_user("u2", "e1"))
        .await
        .expect("the value is free at once");
    assert_eq!(
        b.claim_owner(ClaimKind::Email, "e1").await.expect("owner"),
        Some("u2".to_string())
    );
}

#[tokio::test]
async fn a_release_does_not_wait_for_another_owners_claim_in_flight() {
    let Instances {
        cluster: _,
        clock: _,
        dying,
        a,
        b,
    } = instances().await;
    b.commit(new_user("u1", "mine@x")).await.expect("u1");
    dying.die_after_sending(Stmt::ClaimInsert);
    a.commit(new_user("u2", "theirs@x"))
        .await
        .expect_err("dies");
    let mut change = Transaction::default();
    change.release(ClaimKind::Email, "theirs@x", "u1");
    change.put(Table::User, "u1", json!({}), Expect::Version(1));
    b.commit(change)
        .await
        .expect("a value held for another owner is not u1's to give up: nothing to wait for");
}
