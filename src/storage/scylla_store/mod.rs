//! The ScyllaDB / Cassandra store: the whole [`Store`] contract on a cluster shared by any
//! number of userorg instances, with no multi-partition transactions in the database.
//!
//! A CQL cluster makes one row conditional (a lightweight transaction, LWT: Paxos on one
//! partition) but not several. So a [`Transaction`] is made atomic here by a commit record, in
//! the manner of Percolator, and every row, claim and outbox slot it touches carries the id of
//! the transaction holding it (`txn`) until the transaction is applied:
//!
//! 1. **claims**, sorted: `INSERT ... IF NOT EXISTS` into `user_lookup`, pending (`txn` set);
//!    a claim given up is held too (`release_txn` set) until the transaction is decided;
//! 2. **rows**, sorted by table and key: each locked by an LWT that also checks its version
//!    expectation (`IF version = ? AND txn = null`; an absent row gets a version-0 placeholder
//!    by `IF NOT EXISTS`);
//! 3. **the outbox slot** (with events only): the next free sequence number, `IF NOT EXISTS`,
//!    pending;
//! 4. **the commit point**: `INSERT INTO userorg_txn ... 'committed', plan IF NOT EXISTS`. The
//!    plan is every effect of the transaction (new documents and versions, claims, releases,
//!    slot). Before this LWT nothing is visible; after it, the transaction has happened;
//! 5. **apply**: releases, the slot, claims and rows are settled (each conditional on still
//!    being held by the transaction), then the commit record is deleted.
//!
//! Whoever meets an item held by another transaction (a reader, a writer, an outbox reader)
//! looks its record up at LOCAL_SERIAL: *committed* -> it applies the plan itself (roll
//! forward; every step is conditional on `txn`, so two appliers do no harm); *aborted* -> it
//! clears the item; *absent* -> the transaction is in flight, and a reader reads past it (the
//! row as it was) while a writer waits. The record goes once everything is applied, so an
//! answer other than *committed* is checked against the item as it is now before it is acted
//! on (the item may have been read before it was settled). A transaction absent for longer than [`GRACE_MS`] is
//! fenced off its commit point with `INSERT ... 'aborted' IF NOT EXISTS`: exactly one of the
//! commit and the abort wins that LWT. So a crash at any step leaves either nothing visible
//! (before 4: items that the next visitor clears) or a committed transaction that the next
//! visitor finishes (after 4). The argument is written out in docs/ARCHITECTURE.md.
//!
//! # The outbox
//!
//! Slots are numbered densely (1, 2, 3...) in partitions of [`BUCKET`] slots. A writer reads the
//! last slot and inserts the next with `IF NOT EXISTS`; a lost race retries one further on, so
//! no number is skipped and slot `n+1` exists only after slot `n` does. A reader walks slots in
//! order and stops at a pending slot whose transaction is still in flight, so it never passes
//! an event that may still commit: delivery is exactly once, in order (an aborted slot is
//! skipped). The cursor is the slot number and the event's index in it (12 bytes, big-endian).
//!
//! Every statement is in [`cql`]; the [`Cql`] trait is how they are sent (the scylla driver in
//! production, a simulator with failure points in tests).

pub mod cql;
pub mod driver;
#[cfg(any(test, feature = "testing"))]
pub mod sim;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::watch;

use self::cql::{CqlRow, SINGLE_PARTITION, Stmt, Value, single_partition};
use super::{
    Acknowledgement, CONSUMER_RETENTION_MS, ChangeEvent, ClaimKind, CommitInfo, Expect,
    KEY_SEPARATOR, Lease, OutboxCursor, OutboxRecord, Row, Store, StoreError, Table, Transaction,
    Write,
};
use crate::clock::Clock;

/// Slots per outbox partition.
pub const BUCKET: i64 = 10_000;

/// How long a transaction may stay undecided before another instance may abort it.
pub const GRACE_MS: i64 = 10_000;

/// Waits for a transaction in flight before a writer gives up with a conflict (the caller's
/// retry starts over); the pauses grow from 1 ms to 64 ms, about a second in all.
const MAX_WAITS: u32 = 20;

/// How a statement failed, as the driver tells it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CqlError {
    /// Never sent (no connection to any node that could take it).
    #[error("{0}")]
    NotSent(String),
    /// Refused by the cluster (not enough replicas, overloaded); for an LWT this may come after
    /// its Paxos proposal was accepted.
    #[error("{0}")]
    Unavailable(String),
    /// Sent and not answered in time: a write may or may not have been applied.
    #[error("{0}")]
    Timeout(String),
    /// Refused by the server or the driver (a bug here, not an outage).
    #[error("{0}")]
    Invalid(String),
}

/// How statements reach the cluster.
#[async_trait]
pub trait Cql: Send + Sync + 'static {
    /// Sends one statement with its values bound in order; a scan is read page by page up to
    /// its LIMIT.
    async fn execute(&self, stmt: Stmt, values: Vec<Value>) -> Result<Vec<CqlRow>, CqlError>;
}

fn store_error(error: CqlError) -> StoreError {
    match error {
        CqlError::NotSent(what) | CqlError::Unavailable(what) => StoreError::Unavailable(what),
        CqlError::Timeout(what) => StoreError::Indeterminate(what),
        CqlError::Invalid(what) => StoreError::Internal(what),
    }
}

/// A writer waited for a transaction in flight (perhaps of an instance that died: it is aborted
/// after the grace period) and gave up: nothing of its own transaction was applied.
fn in_flight() -> StoreError {
    StoreError::Unavailable("a row or value is held by a transaction still in flight".into())
}

/// A clean-up LWT of a visitor that timed out: whatever it did is harmless either way, and the
/// visitor's own answer is "try again", not "outcome unknown".
fn settled_nothing(error: StoreError) -> StoreError {
    match error {
        StoreError::Indeterminate(what) => StoreError::Unavailable(what),
        other => other,
    }
}

fn internal(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(what.to_string())
}

fn text(value: impl Into<String>) -> Value {
    Value::Text(value.into())
}

fn limit(n: usize) -> Value {
    Value::Int(n.min(i32::MAX as usize) as i32)
}

/// The partition a row key lives in: the first part of the key, or the one partition of a
/// small table.
fn partition(table: Table, key: &str) -> &str {
    if single_partition(table) {
        SINGLE_PARTITION
    } else {
        key.split(KEY_SEPARATOR).next().unwrap_or(key)
    }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
}

fn bucket(seq: i64) -> i64 {
    seq / BUCKET
}

fn cursor_of(seq: i64, index: u32) -> OutboxCursor {
    let mut bytes = (seq as u64).to_be_bytes().to_vec();
    bytes.extend(index.to_be_bytes());
    OutboxCursor::from_bytes(bytes)
}

/// (slot, index) of a cursor; `None` for the start.
fn position_of(cursor: &OutboxCursor) -> Result<Option<(i64, u32)>, StoreError> {
    match cursor.as_bytes() {
        [] => Ok(None),
        bytes if bytes.len() == 12 => {
            let seq = u64::from_be_bytes(bytes[..8].try_into().map_err(internal)?) as i64;
            let index = u32::from_be_bytes(bytes[8..].try_into().map_err(internal)?);
            Ok(Some((seq, index)))
        }
        _ => Err(internal("not a cursor of this store")),
    }
}

/// A transaction id: its start time (hex milliseconds, so ids sort by age) and a random part.
fn new_txn_id(now_ms: i64) -> String {
    format!("{:012x}-{}", now_ms.max(0), uuid::Uuid::new_v4().simple())
}

fn started_ms(txn: &str) -> Option<i64> {
    i64::from_str_radix(txn.split('-').next()?, 16).ok()
}

/// One effect of a committed transaction on a row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Effect {
    /// The row becomes `doc` at `version`.
    Put { version: u64, doc: Json },
    /// The row goes (a delete, or a check of a row that was absent: its placeholder goes).
    Remove,
    /// The row stays as it was; only its lock goes.
    Unlock,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlannedRow {
    table: Table,
    key: String,
    effect: Effect,
}

/// Everything a committed transaction does, kept in its commit record so any instance can
/// finish it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Plan {
    rows: Vec<PlannedRow>,
    /// (kind, value) of the claims it took.
    claims: Vec<(ClaimKind, String)>,
    /// (kind, value) of the claims it gives up (held by it until it is decided).
    releases: Vec<(ClaimKind, String)>,
    slot: Option<i64>,
}

/// What a transaction holds while it is prepared, to be let go if it does not commit.
#[derive(Default)]
struct Held {
    claims: Vec<(ClaimKind, String)>,
    releases: Vec<(ClaimKind, String)>,
    /// (table, key, placeholder): a placeholder row was created by this transaction.
    rows: Vec<(Table, String, bool)>,
    slot: Option<i64>,
}

/// What the commit record of a transaction says.
enum Status {
    Committed(Plan),
    Aborted,
    /// In flight: neither committed nor, yet, old enough to abort.
    Undecided,
}

/// How the store is reached (`[store.scylla]`).
#[derive(Debug, Clone)]
pub struct ScyllaOptions {
    /// `host:port` of one or more nodes (the driver discovers the rest).
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The datacenter of this instance: requests go to its nodes only.
    pub local_datacenter: String,
    /// `local_quorum` (the default), `quorum`, `each_quorum`, `all`.
    pub consistency: String,
    /// The replication of a keyspace `schema apply` creates, as CQL.
    pub replication: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

pub struct ScyllaStore {
    cql: Arc<dyn Cql>,
    clock: Arc<dyn Clock>,
    /// A slot known to exist (or 0): where the search for the last slot starts.
    hint: AtomicI64,
    signal: watch::Sender<u64>,
}

impl ScyllaStore {
    /// Connects to the cluster (the keyspace must exist: `userorg schema apply`).
    pub async fn open(
        options: &ScyllaOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<ScyllaStore, StoreError> {
        let cql = driver::DriverCql::connect(options).await?;
        ScyllaStore::over(Arc::new(cql), clock).await
    }

    /// `userorg schema apply`: every statement of the schema, each idempotent.
    pub async fn apply_schema(options: &ScyllaOptions) -> Result<Vec<String>, StoreError> {
        driver::DriverCql::apply_schema(options).await
    }

    /// The store over any way of sending its statements.
    pub async fn over(cql: Arc<dyn Cql>, clock: Arc<dyn Clock>) -> Result<ScyllaStore, StoreError> {
        let store = ScyllaStore {
            cql,
            clock,
            hint: AtomicI64::new(0),
            signal: watch::channel(0).0,
        };
        store
            .run(Stmt::StateInit, vec![Value::Blob(Vec::new())])
            .await?;
        let trimmed = store.trimmed().await?;
        if let Some((seq, _)) = position_of(&trimmed)? {
            store.hint.store(seq, Ordering::Relaxed);
        }
        Ok(store)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    async fn run(&self, stmt: Stmt, values: Vec<Value>) -> Result<Vec<CqlRow>, StoreError> {
        self.cql
            .execute(stmt, values)
            .await
            .map_err(|error| match (error, stmt.mode()) {
                // A read that timed out changed nothing.
                (CqlError::Timeout(what), cql::Mode::Read | cql::Mode::SerialRead) => {
                    StoreError::Unavailable(what)
                }
                (error, _) => store_error(error),
            })
    }

    /// An LWT: whether it applied, and the row it found when it did not.
    async fn lwt(&self, stmt: Stmt, values: Vec<Value>) -> Result<(bool, CqlRow), StoreError> {
        let row = self.run(stmt, values).await?.into_iter().next();
        let row = row.unwrap_or_default();
        Ok((row.applied(), row))
    }

    async fn wait(&self, attempt: u32) {
        let pause = 1u64 << attempt.min(6);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }

    /// What became of transaction `txn`; a transaction in flight for longer than the grace
    /// period is aborted here.
    async fn status(&self, txn: &str) -> Result<Status, StoreError> {
        for _ in 0..2 {
            let record = self.run(Stmt::TxnGet, vec![text(txn)]).await?;
            if let Some(record) = record.first() {
                return match record.get("state").text() {
                    Some("committed") => {
                        let plan = record.get("plan").text().unwrap_or("{}");
                        Ok(Status::Committed(
                            serde_json::from_str(plan).map_err(internal)?,
                        ))
                    }
                    _ => Ok(Status::Aborted),
                };
            }
            let age = started_ms(txn).map_or(i64::MAX, |started| self.now_ms() - started);
            if age < GRACE_MS {
                return Ok(Status::Undecided);
            }
            // A visitor's abort that timed out decided nothing it relies on: unavailable.
            let (aborted, _) = self
                .lwt(Stmt::TxnAbort, vec![text(txn)])
                .await
                .map_err(settled_nothing)?;
            if aborted {
                tracing::info!(txn, "aborted a transaction left undecided");
                return Ok(Status::Aborted);
            }
            // It committed just before the abort: read its plan.
        }
        Err(internal("a transaction record changed twice"))
    }

    /// Applies a committed transaction's plan (its coordinator, or anyone who met one of its
    /// items). Every step is conditional on the item still being held by `txn`.
    async fn finish(&self, txn: &str, plan: &Plan) -> Result<(), StoreError> {
        for (kind, value) in &plan.releases {
            self.run(
                Stmt::ClaimApplyRelease,
                vec![text(kind.name()), text(value), text(txn)],
            )
            .await?;
        }
        if let Some(slot) = plan.slot {
            self.settle_slot(slot, txn, "committed").await?;
        }
        for (kind, value) in &plan.claims {
            self.run(
                Stmt::ClaimConfirm,
                vec![text(kind.name()), text(value), text(txn)],
            )
            .await?;
        }
        for row in &plan.rows {
            let (id, key) = (partition(row.table, &row.key), &row.key);
            match &row.effect {
                Effect::Put { version, doc } => {
                    self.run(
                        Stmt::RowApplyPut(row.table),
                        vec![
                            Value::BigInt(*version as i64),
                            text(doc.to_string()),
                            text(id),
                            text(key),
                            text(txn),
                        ],
                    )
                    .await?
                }
                Effect::Remove => {
                    self.run(
                        Stmt::RowApplyDelete(row.table),
                        vec![text(id), text(key), text(txn)],
                    )
                    .await?
                }
                Effect::Unlock => {
                    self.run(
                        Stmt::RowUnlock(row.table),
                        vec![text(id), text(key), text(txn)],
                    )
                    .await?
                }
            };
        }
        self.run(Stmt::TxnDone, vec![text(txn)]).await?;
        Ok(())
    }

    async fn settle_slot(&self, slot: i64, txn: &str, state: &str) -> Result<(), StoreError> {
        self.run(
            Stmt::OutboxSettle,
            vec![
                text(state),
                Value::BigInt(bucket(slot)),
                Value::BigInt(slot),
                text(txn),
            ],
        )
        .await
        .map(|_| ())
    }

    /// Lets go of what an uncommitted transaction holds (best effort: what stays behind is
    /// cleared by whoever meets it after the grace period).
    async fn undo(&self, txn: &str, held: &Held) {
        // Aborted first: an item whose LWT timed out but landed is not in `held`, and whoever
        // meets it then clears it at once instead of waiting out the grace period.
        let mut steps: Vec<(Stmt, Vec<Value>)> = vec![(Stmt::TxnAbortOwn, vec![text(txn)])];
        if let Some(slot) = held.slot {
            steps.push((
                Stmt::OutboxSettle,
                vec![
                    text("aborted"),
                    Value::BigInt(bucket(slot)),
                    Value::BigInt(slot),
                    text(txn),
                ],
            ));
        }
        for (table, key, placeholder) in &held.rows {
            let stmt = if *placeholder {
                Stmt::RowApplyDelete(*table)
            } else {
                Stmt::RowUnlock(*table)
            };
            steps.push((
                stmt,
                vec![text(partition(*table, key)), text(key), text(txn)],
            ));
        }
        for (kind, value) in &held.claims {
            steps.push((
                Stmt::ClaimDrop,
                vec![text(kind.name()), text(value), text(txn)],
            ));
        }
        for (kind, value) in &held.releases {
            steps.push((
                Stmt::ClaimUnlockRelease,
                vec![text(kind.name()), text(value), text(txn)],
            ));
        }
        for (stmt, values) in steps {
            if let Err(error) = self.run(stmt, values).await {
                tracing::warn!(txn, %error, "could not let go of an uncommitted transaction's item; it is cleared after the grace period");
                return;
            }
        }
    }

    /// Takes every claim of the transaction and holds every claim it releases, in one sorted
    /// order (with the rows after them: the order every transaction takes its items in).
    async fn take_claims(
        &self,
        txn: &str,
        transaction: &Transaction,
        held: &mut Held,
    ) -> Result<(), StoreError> {
        // (kind, value, owner, index of a claim; None for a release)
        let mut items: Vec<(ClaimKind, &str, &str, Option<usize>)> = transaction
            .claims
            .iter()
            .enumerate()
            .map(|(index, c)| (c.kind, c.value.as_str(), c.owner.as_str(), Some(index)))
            .chain(
                transaction
                    .releases
                    .iter()
                    .map(|c| (c.kind, c.value.as_str(), c.owner.as_str(), None)),
            )
            .collect();
        items.sort_by(|a, b| {
            (a.0.name(), a.1, a.3.is_none()).cmp(&(b.0.name(), b.1, b.3.is_none()))
        });
        let mut seen = HashSet::new();
        for (kind, value, owner, claim) in items {
            if !seen.insert((kind, value)) {
                continue;
            }
            let mut attempt = 0;
            loop {
                let (applied, found) = match claim {
                    Some(_) => {
                        let values = vec![text(kind.name()), text(value), text(owner), text(txn)];
                        self.lwt(Stmt::ClaimInsert, values).await?
                    }
                    None => {
                        let values = vec![text(txn), text(kind.name()), text(value), text(owner)];
                        self.lwt(Stmt::ClaimLockRelease, values).await?
                    }
                };
                if applied {
                    match claim {
                        Some(_) => held.claims.push((kind, value.to_string())),
                        None => held.releases.push((kind, value.to_string())),
                    }
                    break;
                }
                // A pending claim or release of another transaction is settled first.
                let pending = match (found.get("txn").text(), found.get("release_txn").text()) {
                    (Some(other), _) => Some((other.to_string(), Stmt::ClaimDrop)),
                    (None, Some(other)) => Some((other.to_string(), Stmt::ClaimUnlockRelease)),
                    (None, None) => None,
                };
                let found_owner = found.get("userid").text().map(str::to_string);
                if let Some((other, clear)) = pending {
                    if other == txn {
                        break;
                    }
                    // Another owner's value can never become this owner's to give up.
                    if claim.is_none() && found_owner.as_deref() != Some(owner) {
                        break;
                    }
                    match self.status(&other).await? {
                        Status::Committed(plan) => self.finish(&other, &plan).await?,
                        Status::Aborted => {
                            self.run(clear, vec![text(kind.name()), text(value), text(&other)])
                                .await?;
                        }
                        Status::Undecided => {
                            attempt += 1;
                            if attempt > MAX_WAITS {
                                return Err(in_flight());
                            }
                            self.wait(attempt).await;
                        }
                    }
                    continue;
                }
                match claim {
                    // A release of a value that is not (or no longer) the owner's: nothing to do.
                    None => break,
                    Some(_) if found_owner.as_deref() == Some(owner) => break,
                    Some(index) => {
                        return Err(self
                            .first_taken(transaction, index, found_owner.unwrap_or_default())
                            .await);
                    }
                }
            }
        }
        Ok(())
    }

    /// The taken claim to report: the first in the transaction's order (claims are taken in
    /// sorted order, so an earlier one may not have been tried yet).
    async fn first_taken(
        &self,
        transaction: &Transaction,
        index: usize,
        owner: String,
    ) -> StoreError {
        for claim in &transaction.claims[..index] {
            if let Ok(Some(found)) = self.claim_owner(claim.kind, &claim.value).await
                && found != claim.owner
            {
                return StoreError::ClaimTaken {
                    kind: claim.kind,
                    owner: found,
                };
            }
        }
        StoreError::ClaimTaken {
            kind: transaction.claims[index].kind,
            owner,
        }
    }

    /// Locks one row for `txn` if it meets `expect`; answers the version it had (0: absent) and
    /// whether a placeholder was made for it.
    async fn lock_row(
        &self,
        txn: &str,
        table: Table,
        key: &str,
        expect: Expect,
    ) -> Result<(u64, bool), StoreError> {
        let id = partition(table, key);
        let conflict = || StoreError::Conflict {
            table,
            key: key.to_string(),
        };
        let mut wanted = expect;
        let mut attempt = 0;
        for _ in 0..64 {
            let found = match wanted {
                Expect::Any => {
                    let row = self
                        .run(Stmt::RowGet(table), vec![text(id), text(key)])
                        .await?;
                    wanted = match row.first().and_then(|row| row.get("version").bigint()) {
                        Some(version) if version > 0 => Expect::Version(version as u64),
                        _ => Expect::Absent,
                    };
                    continue;
                }
                Expect::Absent => {
                    let (applied, found) = self
                        .lwt(
                            Stmt::RowInsertLock(table),
                            vec![text(id), text(key), text(txn)],
                        )
                        .await?;
                    if applied {
                        return Ok((0, true));
                    }
                    found
                }
                Expect::Version(version) => {
                    let (applied, found) = self
                        .lwt(
                            Stmt::RowLock(table),
                            vec![
                                text(txn),
                                text(id),
                                text(key),
                                Value::BigInt(version as i64),
                            ],
                        )
                        .await?;
                    if applied {
                        return Ok((version, version == 0));
                    }
                    found
                }
            };
            let version = found.get("version").bigint();
            match found.get("txn").text() {
                Some(other) if other == txn => {
                    return Err(internal("a transaction writes one row twice"));
                }
                Some(other) => {
                    let other = other.to_string();
                    match self.status(&other).await? {
                        Status::Committed(plan) => self.finish(&other, &plan).await?,
                        Status::Aborted => {
                            let stmt = if version == Some(0) {
                                Stmt::RowApplyDelete(table)
                            } else {
                                Stmt::RowUnlock(table)
                            };
                            self.run(stmt, vec![text(id), text(key), text(&other)])
                                .await?;
                        }
                        Status::Undecided => {
                            attempt += 1;
                            if attempt > MAX_WAITS {
                                // Contention on one row (children of one parent): the caller
                                // reads again and retries, as after any conflict.
                                return Err(conflict());
                            }
                            self.wait(attempt).await;
                        }
                    }
                }
                None => {
                    // Unlocked, and not as expected (or a placeholder left by an aborted one).
                    let now = match version {
                        None => Expect::Absent,
                        Some(0) => Expect::Version(0),
                        Some(version) => Expect::Version(version as u64),
                    };
                    let acceptable = match (expect, now) {
                        (Expect::Any, _) => true,
                        (Expect::Absent, Expect::Version(0)) => true,
                        (Expect::Version(v), Expect::Version(w)) => v == w,
                        _ => false,
                    };
                    if !acceptable {
                        return Err(conflict());
                    }
                    wanted = now;
                }
            }
        }
        Err(conflict())
    }

    /// The last slot of the outbox (0: none yet).
    async fn last_slot(&self) -> Result<i64, StoreError> {
        let mut last = self.hint.load(Ordering::Relaxed);
        let mut current = bucket(last.max(1));
        let mut refreshed = false;
        loop {
            let rows = self
                .run(Stmt::OutboxLast, vec![Value::BigInt(current)])
                .await?;
            match rows.first().and_then(|row| row.get("seq").bigint()) {
                Some(seq) => last = last.max(seq),
                // The hint's bucket is empty: it was trimmed while this instance was idle (the
                // slot the slowest consumer is at always stays). Start again from there.
                None if last > 0 && !refreshed => {
                    refreshed = true;
                    if let Some((kept, _)) = position_of(&self.trimmed().await?)?
                        && kept > last
                    {
                        last = kept;
                        current = bucket(kept);
                        continue;
                    }
                }
                None => {}
            }
            if last == (current + 1) * BUCKET - 1 {
                current += 1;
                continue;
            }
            self.hint.fetch_max(last, Ordering::Relaxed);
            return Ok(last);
        }
    }

    /// Puts the events in the next free slot, pending until the transaction commits.
    async fn append(&self, txn: &str, events: &[ChangeEvent]) -> Result<i64, StoreError> {
        let body = serde_json::to_string(events).map_err(internal)?;
        for _ in 0..1000 {
            let next = self.last_slot().await? + 1;
            let (applied, _) = self
                .lwt(
                    Stmt::OutboxAppend,
                    vec![
                        Value::BigInt(bucket(next)),
                        Value::BigInt(next),
                        text(txn),
                        Value::Int(events.len() as i32),
                        text(body.clone()),
                    ],
                )
                .await?;
            self.hint.fetch_max(next, Ordering::Relaxed);
            if applied {
                return Ok(next);
            }
        }
        Err(StoreError::Unavailable(
            "the outbox is contended: no free slot after 1000 tries".into(),
        ))
    }

    /// Everything up to this position is trimmed (the start of a new store), and how many
    /// consumers registered so far (the epoch a trim is checked against).
    async fn outbox_state(&self) -> Result<(OutboxCursor, i64), StoreError> {
        let rows = self.run(Stmt::StateGet, vec![]).await?;
        let row = rows.first();
        let bytes = row
            .and_then(|row| row.get("trimmed").blob())
            .unwrap_or_default();
        let epoch = row.and_then(|row| row.get("epoch").bigint()).unwrap_or(0);
        Ok((OutboxCursor::from_bytes(bytes.to_vec()), epoch))
    }

    async fn trimmed(&self) -> Result<OutboxCursor, StoreError> {
        Ok(self.outbox_state().await?.0)
    }

    /// A slot as it reads now, and whether its events are delivered: `None` while its
    /// transaction is in flight. A slot read before its transaction finished may be looked up
    /// after the record went, so an undecided or aborted answer is checked against the slot as
    /// it is now.
    async fn slot_delivered(&self, row: &CqlRow) -> Result<Option<bool>, StoreError> {
        let seq = row.get("seq").bigint().unwrap_or_default();
        let txn = row.get("txn").text().unwrap_or_default();
        let state = |row: &CqlRow| match row.get("state").text() {
            Some("committed") => Some(true),
            Some("aborted") => Some(false),
            _ => None,
        };
        if let Some(decided) = state(row) {
            return Ok(Some(decided));
        }
        match self.status(txn).await? {
            Status::Committed(plan) => {
                if let Err(error) = self.finish(txn, &plan).await {
                    tracing::warn!(txn, %error, "could not finish a committed transaction");
                }
                return Ok(Some(true));
            }
            Status::Aborted => self
                .settle_slot(seq, txn, "aborted")
                .await
                .map_err(settled_nothing)?,
            Status::Undecided => {}
        }
        let fresh = self
            .run(
                Stmt::OutboxRead,
                vec![Value::BigInt(bucket(seq)), Value::BigInt(seq), limit(1)],
            )
            .await?;
        Ok(fresh
            .first()
            .filter(|fresh| fresh.get("seq").bigint() == Some(seq))
            .map_or(Some(false), state))
    }

    async fn prepare(
        &self,
        txn: &str,
        transaction: &Transaction,
        held: &mut Held,
    ) -> Result<(Plan, Vec<u64>), StoreError> {
        self.take_claims(txn, transaction, held).await?;
        let target = |write: &Write| -> (Table, String, Expect) {
            match write {
                Write::Put {
                    table, key, expect, ..
                }
                | Write::Delete { table, key, expect }
                | Write::Check { table, key, expect } => (*table, key.clone(), *expect),
            }
        };
        let mut order: Vec<usize> = (0..transaction.writes.len()).collect();
        order.sort_by(|&a, &b| {
            let (ta, ka, _) = target(&transaction.writes[a]);
            let (tb, kb, _) = target(&transaction.writes[b]);
            (ta.name(), ka).cmp(&(tb.name(), kb))
        });
        let mut before = vec![0u64; transaction.writes.len()];
        for index in order {
            let (table, key, expect) = target(&transaction.writes[index]);
            let (version, placeholder) = self.lock_row(txn, table, &key, expect).await?;
            held.rows.push((table, key, placeholder));
            before[index] = version;
        }
        let mut plan = Plan::default();
        let mut versions = Vec::with_capacity(transaction.writes.len());
        for (write, version) in transaction.writes.iter().zip(before) {
            let (table, key, _) = target(write);
            let (effect, reached) = match write {
                Write::Put { doc, .. } => (
                    Effect::Put {
                        version: version + 1,
                        doc: doc.clone(),
                    },
                    version + 1,
                ),
                Write::Delete { .. } => (Effect::Remove, 0),
                Write::Check { .. } if version == 0 => (Effect::Remove, 0),
                Write::Check { .. } => (Effect::Unlock, version),
            };
            versions.push(reached);
            plan.rows.push(PlannedRow { table, key, effect });
        }
        plan.claims = held.claims.clone();
        plan.releases = held.releases.clone();
        if !transaction.events.is_empty() {
            let slot = self.append(txn, &transaction.events).await?;
            held.slot = Some(slot);
            plan.slot = Some(slot);
        }
        Ok((plan, versions))
    }

    /// The commit point. `Ok(true)`: committed; `Ok(false)`: fenced off by another instance.
    async fn decide(&self, txn: &str, plan: &Plan) -> Result<bool, StoreError> {
        let body = serde_json::to_string(plan).map_err(internal)?;
        let what = match self
            .cql
            .execute(Stmt::TxnCommit, vec![text(txn), text(body)])
            .await
        {
            Ok(rows) => return Ok(rows.first().is_some_and(CqlRow::applied)),
            Err(CqlError::NotSent(what)) => return Err(StoreError::Unavailable(what)),
            // Anything else (a timeout, an error raised after the Paxos proposal was accepted):
            // the record may exist now or later, so it is settled before answering.
            Err(error) => error.to_string(),
        };
        // A SERIAL read finishes the Paxos round the failed LWT may have left; then the abort
        // LWT decides for good if nothing landed. `None`: this instance rolled it back.
        let settled = async {
            for _ in 0..2 {
                match self.status(txn).await? {
                    Status::Committed(_) => return Ok(Some(true)),
                    Status::Aborted => return Ok(Some(false)),
                    Status::Undecided => {
                        let (aborted, _) = self.lwt(Stmt::TxnAbortOwn, vec![text(txn)]).await?;
                        if aborted {
                            return Ok(None);
                        }
                        // Someone decided it first (committed, or aborted it): read which.
                    }
                }
            }
            Err(internal("a transaction record changed twice"))
        };
        match settled.await {
            Ok(Some(committed)) => Ok(committed),
            Ok(None) => Err(StoreError::Unavailable(format!(
                "{what}; the transaction was rolled back"
            ))),
            Err::<_, StoreError>(_) => Err(StoreError::Indeterminate(what)),
        }
    }

    /// What a row reads as: as stored, or, held by a transaction, that transaction's effect
    /// once it committed and the row as it was while it is in flight or after it aborted. A
    /// row read before its transaction finished may be looked up after the record went (it is
    /// deleted once applied): so when the record does not say committed, the row is read
    /// again, and a row that moved on is taken as it is now.
    async fn visible(&self, table: Table, row: &CqlRow) -> Result<Option<Row>, StoreError> {
        let key = row.get("key").text().unwrap_or_default().to_string();
        let as_stored = |row: &CqlRow| -> Result<Option<Row>, StoreError> {
            let version = row.get("version").bigint().unwrap_or(0);
            if version <= 0 {
                return Ok(None);
            }
            let doc = row.get("doc").text().unwrap_or("null");
            Ok(Some(Row {
                key: key.clone(),
                version: version as u64,
                doc: serde_json::from_str(doc).map_err(internal)?,
            }))
        };
        let mut current = row.clone();
        for _ in 0..4 {
            let Some(txn) = current.get("txn").text().map(str::to_string) else {
                return as_stored(&current);
            };
            if let Status::Committed(plan) = self.status(&txn).await? {
                if let Err(error) = self.finish(&txn, &plan).await {
                    tracing::warn!(txn, %error, "could not finish a committed transaction");
                }
                let effect = plan
                    .rows
                    .iter()
                    .find(|planned| planned.table == table && planned.key == key)
                    .map(|planned| planned.effect.clone());
                return match effect {
                    Some(Effect::Put { version, doc }) => Ok(Some(Row { key, version, doc })),
                    Some(Effect::Remove) => Ok(None),
                    Some(Effect::Unlock) | None => as_stored(&current),
                };
            }
            let id = partition(table, &key);
            let fresh = self
                .run(Stmt::RowGet(table), vec![text(id), text(&key)])
                .await?
                .into_iter()
                .next();
            match fresh {
                Some(fresh) if fresh.get("txn").text() == Some(txn.as_str()) => {
                    return as_stored(&current);
                }
                Some(fresh) => current = fresh,
                None => return Ok(None),
            }
        }
        as_stored(&current)
    }

    async fn scan_rows(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CqlRow>, StoreError> {
        let upper = if prefix.is_empty() {
            char::MAX.to_string()
        } else {
            prefix_end(prefix)
        };
        if single_partition(table) || !prefix.is_empty() {
            if !single_partition(table) && !prefix.contains(KEY_SEPARATOR) {
                return Err(internal(
                    "a partitioned table is scanned by whole first key parts only",
                ));
            }
            let id = partition(table, prefix);
            return match start_after.filter(|after| *after >= prefix) {
                Some(after) => {
                    self.run(
                        Stmt::RowScanAfter(table),
                        vec![text(id), text(after), text(upper), limit_of(limit)],
                    )
                    .await
                }
                None => {
                    self.run(
                        Stmt::RowScanFrom(table),
                        vec![text(id), text(prefix), text(upper), limit_of(limit)],
                    )
                    .await
                }
            };
        }
        // A whole partitioned table, in token order: the rest of the partition of the last
        // key seen, then the partitions after it.
        let Some(after) = start_after else {
            return self
                .run(Stmt::RowScanTokenStart(table), vec![limit_of(limit)])
                .await;
        };
        let id = partition(table, after);
        let mut rows = self
            .run(
                Stmt::RowScanAfter(table),
                vec![text(id), text(after), text(upper), limit_of(limit)],
            )
            .await?;
        if rows.len() < limit {
            rows.extend(
                self.run(
                    Stmt::RowScanTokenAfter(table),
                    vec![text(id), limit_of(limit - rows.len())],
                )
                .await?,
            );
        }
        Ok(rows)
    }

    /// Trims the outbox below the slowest consumer seen within the retention period.
    async fn trim(&self, now_ms: i64) -> Result<(), StoreError> {
        // The state first, the consumers after: a consumer registering meanwhile moves the
        // epoch, and the trim below is refused (see `register_consumer`).
        let (trimmed, epoch) = self.outbox_state().await?;
        let consumers = self.run(Stmt::ConsumerList, vec![limit(100_000)]).await?;
        let slowest = consumers
            .iter()
            .filter(|row| {
                row.get("seen_ms")
                    .bigint()
                    .is_some_and(|seen| seen >= now_ms - CONSUMER_RETENTION_MS)
            })
            .filter_map(|row| row.get("position").blob().map(<[u8]>::to_vec))
            .min();
        let Some(slowest) = slowest.map(OutboxCursor::from_bytes) else {
            return Ok(());
        };
        if slowest <= trimmed {
            return Ok(());
        }
        let (applied, _) = self
            .lwt(
                Stmt::StateTrim,
                vec![
                    Value::Blob(slowest.as_bytes().to_vec()),
                    Value::Blob(trimmed.as_bytes().to_vec()),
                    Value::BigInt(epoch),
                ],
            )
            .await?;
        if !applied {
            return Ok(());
        }
        // The slot the slowest consumer is in stays (it is where the last slot is searched
        // from); everything below it goes.
        let Some((keep, _)) = position_of(&slowest)? else {
            return Ok(());
        };
        let from = position_of(&trimmed)?.map_or(0, |(seq, _)| bucket(seq));
        for whole in from..bucket(keep) {
            self.run(Stmt::OutboxDropBucket, vec![Value::BigInt(whole)])
                .await?;
        }
        self.run(
            Stmt::OutboxDropBelow,
            vec![Value::BigInt(bucket(keep)), Value::BigInt(keep - 1)],
        )
        .await?;
        Ok(())
    }
}

fn limit_of(n: usize) -> Value {
    limit(n.max(1))
}

#[async_trait]
impl Store for ScyllaStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        if transaction.claims.is_empty()
            && transaction.releases.is_empty()
            && transaction.writes.is_empty()
            && transaction.events.is_empty()
        {
            return Ok(CommitInfo::default());
        }
        let txn = new_txn_id(self.now_ms());
        let mut held = Held::default();
        let (plan, versions) = match self.prepare(&txn, &transaction, &mut held).await {
            Ok(prepared) => prepared,
            Err(error) => {
                self.undo(&txn, &held).await;
                return Err(match error {
                    // Nothing was decided: the transaction certainly did not happen.
                    StoreError::Indeterminate(what) => StoreError::Unavailable(what),
                    other => other,
                });
            }
        };
        match self.decide(&txn, &plan).await {
            Ok(true) => {}
            Ok(false) => {
                // Another instance took it for dead and fenced it off: nothing was applied.
                self.undo(&txn, &held).await;
                return Err(StoreError::Unavailable(
                    "the transaction stalled and was aborted by another instance".into(),
                ));
            }
            Err(StoreError::Indeterminate(what)) => return Err(StoreError::Indeterminate(what)),
            Err(other) => {
                self.undo(&txn, &held).await;
                return Err(other);
            }
        }
        if let Err(error) = self.finish(&txn, &plan).await {
            // Committed all the same: whoever meets one of its items finishes it.
            tracing::warn!(txn, %error, "a committed transaction is left for others to finish");
        }
        let cursor = plan.slot.map(|slot| {
            self.signal.send_modify(|n| *n += 1);
            cursor_of(slot, transaction.events.len() as u32 - 1)
        });
        Ok(CommitInfo { versions, cursor })
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        let rows = self
            .run(
                Stmt::RowGet(table),
                vec![text(partition(table, key)), text(key)],
            )
            .await?;
        match rows.first() {
            Some(row) => self.visible(table, row).await,
            None => Ok(None),
        }
    }

    async fn scan(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        let mut after = start_after.map(str::to_string);
        // Placeholders read as absent, so a page may come back short: read on until full.
        while out.len() < limit {
            let rows = self
                .scan_rows(table, prefix, after.as_deref(), limit - out.len())
                .await?;
            let Some(last) = rows.last() else { break };
            let full = rows.len() >= limit - out.len();
            after = last.get("key").text().map(str::to_string);
            for row in &rows {
                if let Some(row) = self.visible(table, row).await? {
                    out.push(row);
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut seen: Option<(Option<String>, Option<String>)> = None;
        let mut last = None;
        for _ in 0..4 {
            let rows = self
                .run(Stmt::ClaimGet, vec![text(kind.name()), text(value)])
                .await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let owner = row.get("userid").text().map(str::to_string);
            let holders = (
                row.get("txn").text().map(str::to_string),
                row.get("release_txn").text().map(str::to_string),
            );
            // Read again after a lookup that did not say committed, and nothing moved: the
            // holder is in flight (or aborted), so the value reads as it was before it.
            if seen.as_ref() == Some(&holders) {
                return Ok(if holders.0.is_some() { None } else { owner });
            }
            let pending = holders.0.as_ref().or(holders.1.as_ref()).cloned();
            let Some(txn) = pending else {
                return Ok(owner);
            };
            if let Status::Committed(plan) = self.status(&txn).await? {
                if let Err(error) = self.finish(&txn, &plan).await {
                    tracing::warn!(txn, %error, "could not finish a committed transaction");
                }
                // A committed new claim is its owner's; a committed release leaves it free.
                return Ok(if holders.0.is_some() { owner } else { None });
            }
            last = if holders.0.is_some() { None } else { owner };
            seen = Some(holders);
        }
        // Still moving after four reads: the value as the last read had it committed.
        Ok(last)
    }

    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let trimmed = self.trimmed().await?;
        let from = if *after < trimmed { &trimmed } else { after };
        let position = position_of(from)?;
        let (mut next, skip) = match position {
            None => (1, None),
            Some((seq, index)) => (seq, Some((seq, index))),
        };
        let mut out = Vec::new();
        let page = limit.clamp(1, 1000);
        loop {
            let rows = self
                .run(
                    Stmt::OutboxRead,
                    vec![
                        Value::BigInt(bucket(next)),
                        Value::BigInt(next),
                        limit_of(page),
                    ],
                )
                .await?;
            let Some(last) = rows.last().and_then(|row| row.get("seq").bigint()) else {
                return Ok(out);
            };
            for row in &rows {
                let seq = row.get("seq").bigint().unwrap_or_default();
                let deliver = match self.slot_delivered(row).await? {
                    Some(deliver) => deliver,
                    // Later slots may hold events that commit after this one: stop here.
                    None => return Ok(out),
                };
                if !deliver {
                    continue;
                }
                let events: Vec<ChangeEvent> =
                    serde_json::from_str(row.get("events").text().unwrap_or("[]"))
                        .map_err(internal)?;
                for (index, event) in events.into_iter().enumerate() {
                    let index = index as u32;
                    if skip.is_some_and(|(s, i)| seq == s && index <= i) {
                        continue;
                    }
                    out.push(OutboxRecord {
                        cursor: cursor_of(seq, index),
                        event,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            next = last + 1;
        }
    }

    /// The last event of the newest slot that is delivered: a consumer there is caught up
    /// (slots after it are in flight or aborted). Walked back from the last slot, newest first,
    /// as far as the trimmed position.
    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError> {
        let trimmed = self.trimmed().await?;
        let floor = position_of(&trimmed)?.map_or(1, |(seq, _)| seq.max(1));
        let mut upto = self.last_slot().await?;
        while upto >= floor {
            let rows = self
                .run(
                    Stmt::OutboxReadBack,
                    vec![Value::BigInt(bucket(upto)), Value::BigInt(upto), limit(100)],
                )
                .await?;
            let Some(oldest) = rows.last().and_then(|row| row.get("seq").bigint()) else {
                // Nothing at or below `upto` in its bucket: the bucket before.
                upto = bucket(upto) * BUCKET - 1;
                continue;
            };
            for row in &rows {
                if self.slot_delivered(row).await? == Some(true) {
                    let seq = row.get("seq").bigint().unwrap_or_default();
                    let count = match row.get("count") {
                        Value::Int(count) => (*count).max(1),
                        _ => 1,
                    };
                    return Ok(cursor_of(seq, (count - 1) as u32).max(trimmed));
                }
            }
            upto = oldest - 1;
        }
        Ok(trimmed)
    }

    /// Makes the consumer known, then moves the outbox's epoch: a trim worked out before it
    /// knew this consumer is refused, and one that got in first moves this consumer's start up
    /// to what it left (the oldest retained event when this returns).
    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError> {
        for _ in 0..16 {
            let (start, epoch) = self.outbox_state().await?;
            let start_bytes = Value::Blob(start.as_bytes().to_vec());
            let (applied, found) = self
                .lwt(
                    Stmt::ConsumerInit,
                    vec![text(consumer), start_bytes.clone(), Value::BigInt(now_ms)],
                )
                .await?;
            let known = if applied {
                true
            } else {
                match found.get("position").blob() {
                    None => {
                        self.lwt(
                            Stmt::ConsumerStart,
                            vec![start_bytes.clone(), Value::BigInt(now_ms), text(consumer)],
                        )
                        .await?
                        .0
                    }
                    Some(position) => {
                        let position = OutboxCursor::from_bytes(position.to_vec());
                        let seen = found.get("seen_ms").bigint().unwrap_or(0);
                        self.lwt(
                            Stmt::ConsumerAck,
                            vec![
                                Value::Blob(
                                    position.clone().max(start.clone()).as_bytes().to_vec(),
                                ),
                                Value::BigInt(now_ms.max(seen)),
                                text(consumer),
                                Value::Blob(position.as_bytes().to_vec()),
                                Value::BigInt(found.get("lease_token").bigint().unwrap_or(0)),
                            ],
                        )
                        .await?
                        .0
                    }
                }
            };
            if !known {
                continue;
            }
            let (fenced, _) = self
                .lwt(
                    Stmt::StateRegister,
                    vec![Value::BigInt(epoch + 1), Value::BigInt(epoch)],
                )
                .await?;
            if fenced {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "consumer {consumer} is contended"
        )))
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError> {
        let rows = self.run(Stmt::ConsumerGet, vec![text(consumer)]).await?;
        Ok(rows
            .first()
            .and_then(|row| row.get("position").blob())
            .map(|bytes| OutboxCursor::from_bytes(bytes.to_vec()))
            .unwrap_or_default())
    }

    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError> {
        let name = acknowledgement.consumer;
        let mut done = false;
        for _ in 0..16 {
            let rows = self.run(Stmt::ConsumerGet, vec![text(name)]).await?;
            let row = rows.into_iter().next();
            let Some(position) = row
                .as_ref()
                .and_then(|row| row.get("position").blob().map(<[u8]>::to_vec))
            else {
                self.register_consumer(name, acknowledgement.now_ms).await?;
                continue;
            };
            let row = row.unwrap_or_default();
            let token = row.get("lease_token").bigint().unwrap_or(0);
            if let Some(lease) = acknowledgement.lease
                && (row.get("holder").text() != Some(lease.holder.as_str())
                    || token != lease.token as i64)
            {
                return Err(StoreError::LeaseLost(name.to_string()));
            }
            let position = OutboxCursor::from_bytes(position);
            let new = position.clone().max(acknowledgement.cursor.clone());
            let (applied, _) = self
                .lwt(
                    Stmt::ConsumerAck,
                    vec![
                        Value::Blob(new.as_bytes().to_vec()),
                        Value::BigInt(acknowledgement.now_ms),
                        text(name),
                        Value::Blob(position.as_bytes().to_vec()),
                        Value::BigInt(token),
                    ],
                )
                .await?;
            if applied {
                done = true;
                break;
            }
        }
        if !done {
            return Err(StoreError::Unavailable(format!(
                "consumer {name} is contended"
            )));
        }
        // The acknowledgement is recorded: a trim that fails now is done by a later one.
        if let Err(error) = self.trim(acknowledgement.now_ms).await {
            tracing::warn!(%error, "outbox trim failed; a later acknowledgement trims");
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        for _ in 0..16 {
            let rows = self.run(Stmt::ConsumerGet, vec![text(consumer)]).await?;
            let Some(row) = rows.into_iter().next() else {
                self.lwt(Stmt::LeaseInit, vec![text(consumer)]).await?;
                continue;
            };
            let token = row.get("lease_token").bigint().unwrap_or(0);
            let current = row.get("holder").text();
            let expires = row.get("expires_at_ms").bigint().unwrap_or(0);
            let granted = match current {
                Some(current) if current == holder => token,
                Some(_) if expires > now_ms => return Ok(None),
                _ => token + 1,
            };
            let (applied, _) = self
                .lwt(
                    Stmt::LeaseTake,
                    vec![
                        text(holder),
                        Value::BigInt(granted),
                        Value::BigInt(now_ms + ttl_ms),
                        text(consumer),
                        Value::BigInt(token),
                    ],
                )
                .await?;
            if applied {
                return Ok(Some(Lease {
                    consumer: consumer.to_string(),
                    holder: holder.to_string(),
                    token: granted as u64,
                    expires_at_ms: now_ms + ttl_ms,
                }));
            }
        }
        Ok(None)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.lwt(
            Stmt::LeaseTake,
            vec![
                text(&lease.holder),
                Value::BigInt(lease.token as i64),
                Value::BigInt(0),
                text(&lease.consumer),
                Value::BigInt(lease.token as i64),
            ],
        )
        .await
        .map(|_| ())
    }

    fn commit_signal(&self) -> Option<watch::Receiver<u64>> {
        // Local commits only: consumers still poll for the other instances' commits.
        Some(self.signal.subscribe())
    }

    async fn healthy(&self) -> bool {
        self.run(Stmt::StateGet, vec![]).await.is_ok()
    }
}

#[cfg(test)]
mod tests;
