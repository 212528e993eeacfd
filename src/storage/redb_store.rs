//! The embedded store on redb.
//!
//! redb allows one write transaction at a time, which is what makes claims exact: a claim is
//! checked and written inside the same serialised transaction. To keep throughput, writes go to a
//! single writer thread that drains every pending [`Transaction`] into one redb write transaction
//! and one durable commit (group commit); each pending transaction is validated against the state
//! left by the ones before it and applied only if all its checks pass, so a failing transaction
//! leaves no trace while its neighbours still commit. Clients are answered after the commit.
//! Reads use redb's MVCC read transactions on the blocking thread pool.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::{
    ChangeEvent, ClaimKind, CommitInfo, Expect, OUTBOX_CONSUMERS, OutboxRecord, Row, Store,
    StoreError, Table, Transaction, Write, compose_key,
};

const LOOKUP: TableDefinition<&str, &str> = TableDefinition::new("lookup");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const OUTBOX_NEXT: &str = "outbox_next";

/// Most transactions drained into one group commit.
const MAX_GROUP: usize = 512;

fn table_definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn internal(error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(error.to_string())
}

/// Rows are stored as the version (8 bytes, big endian) followed by the JSON document.
fn encode_row(version: u64, doc: &Value) -> Result<Vec<u8>, StoreError> {
    let mut bytes = version.to_be_bytes().to_vec();
    serde_json::to_writer(&mut bytes, doc).map_err(internal)?;
    Ok(bytes)
}

fn decode_row(key: &str, bytes: &[u8]) -> Result<Row, StoreError> {
    if bytes.len() < 8 {
        return Err(internal(format!("row {key} is truncated")));
    }
    let (version, doc) = bytes.split_at(8);
    let version = u64::from_be_bytes(version.try_into().map_err(internal)?);
    let doc = serde_json::from_slice(doc).map_err(internal)?;
    Ok(Row {
        key: key.to_string(),
        version,
        doc,
    })
}

fn lookup_key(kind: ClaimKind, value: &str) -> String {
    compose_key(&[kind.name(), value])
}

fn consumer_key(consumer: &str) -> String {
    format!("consumer:{consumer}")
}

enum Job {
    Commit(Transaction, oneshot::Sender<Result<CommitInfo, StoreError>>),
    Acknowledge(String, u64, oneshot::Sender<Result<(), StoreError>>),
}

/// The redb-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    outbox_head: watch::Receiver<u64>,
}

impl RedbStore {
    /// Opens (or creates) the database file and starts its writer thread.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(internal)?;
        }
        let db = Database::create(path).map_err(internal)?;
        let head = {
            let write = db.begin_write().map_err(internal)?;
            for table in Table::ALL {
                write
                    .open_table(table_definition(table))
                    .map_err(internal)?;
            }
            write.open_table(LOOKUP).map_err(internal)?;
            write.open_table(OUTBOX).map_err(internal)?;
            let head = {
                let meta = write.open_table(META).map_err(internal)?;
                meta.get(OUTBOX_NEXT)
                    .map_err(internal)?
                    .map(|v| v.value().saturating_sub(1))
                    .unwrap_or(0)
            };
            write.commit().map_err(internal)?;
            head
        };
        let db = Arc::new(db);
        let (jobs, receiver) = mpsc::channel();
        let (head_sender, outbox_head) = watch::channel(head);
        let writer_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer_loop(&writer_db, receiver, head_sender))
            .map_err(internal)?;
        Ok(RedbStore {
            db,
            jobs,
            outbox_head,
        })
    }

    /// Follows the newest outbox position, so consumers wake up as soon as something commits.
    pub fn outbox_head(&self) -> watch::Receiver<u64> {
        self.outbox_head.clone()
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(internal)?
    }
}

fn writer_loop(db: &Database, jobs: mpsc::Receiver<Job>, head: watch::Sender<u64>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_group(db, batch, &head);
    }
}

/// Applies a group of jobs in one redb transaction and answers each after the commit.
fn run_group(db: &Database, batch: Vec<Job>, head: &watch::Sender<u64>) {
    let write = match db.begin_write() {
        Ok(write) => write,
        Err(error) => {
            let message = error.to_string();
            for job in batch {
                answer_failure(job, StoreError::Unavailable(message.clone()));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut fatal = None;
    let mut last_sequence = None;
    for job in &batch {
        let outcome = match job {
            Job::Commit(transaction, _) => apply_transaction(&write, transaction).map(|info| {
                if let Some(last) = info.sequences.last() {
                    last_sequence = Some(*last);
                }
                JobOutcome::Committed(info)
            }),
            Job::Acknowledge(consumer, sequence, _) => {
                acknowledge_in(&write, consumer, *sequence).map(|()| JobOutcome::Acknowledged)
            }
        };
        match outcome {
            Ok(done) => outcomes.push(Ok(done)),
            // A business failure (claim taken, version conflict) concerns one transaction only:
            // it was detected before that transaction wrote anything.
            Err(error @ (StoreError::ClaimTaken { .. } | StoreError::Conflict { .. })) => {
                outcomes.push(Err(error))
            }
            // Anything else may have left a partial write in the group: abort it all.
            Err(error) => {
                fatal = Some(error.to_string());
                break;
            }
        }
    }
    if let Some(message) = fatal {
        drop(write);
        for job in batch {
            answer_failure(job, StoreError::Internal(message.clone()));
        }
        return;
    }
    if let Err(error) = write.commit() {
        let message = error.to_string();
        for job in batch {
            answer_failure(job, StoreError::Internal(message.clone()));
        }
        return;
    }
    if let Some(sequence) = last_sequence {
        head.send_replace(sequence);
    }
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        match (job, outcome) {
            (Job::Commit(_, reply), Ok(JobOutcome::Committed(info))) => {
                let _ = reply.send(Ok(info));
            }
            (Job::Acknowledge(_, _, reply), Ok(_)) => {
                let _ = reply.send(Ok(()));
            }
            (job, Err(error)) => answer_failure(job, error),
            (job, Ok(_)) => answer_failure(job, internal("mismatched job outcome")),
        }
    }
}

enum JobOutcome {
    Committed(CommitInfo),
    Acknowledged,
}

fn answer_failure(job: Job, error: StoreError) {
    match job {
        Job::Commit(_, reply) => {
            let _ = reply.send(Err(error));
        }
        Job::Acknowledge(_, _, reply) => {
            let _ = reply.send(Err(error));
        }
    }
}

/// Checks every claim and expectation of `transaction` first, then writes; a failed check
/// returns before any write of this transaction.
fn apply_transaction(
    write: &redb::WriteTransaction,
    transaction: &Transaction,
) -> Result<CommitInfo, StoreError> {
    let mut lookup = write.open_table(LOOKUP).map_err(internal)?;
    for claim in &transaction.claims {
        let key = lookup_key(claim.kind, &claim.value);
        if let Some(owner) = lookup.get(key.as_str()).map_err(internal)? {
            let owner = owner.value();
            if owner != claim.owner {
                return Err(StoreError::ClaimTaken {
                    kind: claim.kind,
                    owner: owner.to_string(),
                });
            }
        }
    }
    let mut current_versions = Vec::with_capacity(transaction.writes.len());
    for entry in &transaction.writes {
        let (table, key, expect) = match entry {
            Write::Put {
                table, key, expect, ..
            } => (*table, key, *expect),
            Write::Delete { table, key, expect } => (*table, key, *expect),
        };
        let rows = write
            .open_table(table_definition(table))
            .map_err(internal)?;
        let current = match rows.get(key.as_str()).map_err(internal)? {
            Some(bytes) => Some(decode_row(key, bytes.value())?.version),
            None => None,
        };
        let holds = match (expect, current) {
            (Expect::Any, _) => true,
            (Expect::Absent, None) => true,
            (Expect::Absent, Some(_)) => false,
            (Expect::Version(expected), Some(actual)) => expected == actual,
            (Expect::Version(_), None) => false,
        };
        if !holds {
            return Err(StoreError::Conflict {
                table,
                key: key.clone(),
            });
        }
        current_versions.push(current);
    }

    for claim in &transaction.releases {
        let key = lookup_key(claim.kind, &claim.value);
        let owned_by_releaser = lookup
            .get(key.as_str())
            .map_err(internal)?
            .is_some_and(|owner| owner.value() == claim.owner);
        if owned_by_releaser {
            lookup.remove(key.as_str()).map_err(internal)?;
        }
    }
    for claim in &transaction.claims {
        let key = lookup_key(claim.kind, &claim.value);
        lookup
            .insert(key.as_str(), claim.owner.as_str())
            .map_err(internal)?;
    }

    let mut info = CommitInfo::default();
    // Versions are recomputed from the live row: two writes of one key in one transaction
    // advance it twice.
    for (entry, _checked) in transaction.writes.iter().zip(current_versions) {
        match entry {
            Write::Put {
                table, key, doc, ..
            } => {
                let mut rows = write
                    .open_table(table_definition(*table))
                    .map_err(internal)?;
                let previous = match rows.get(key.as_str()).map_err(internal)? {
                    Some(bytes) => decode_row(key, bytes.value())?.version,
                    None => 0,
                };
                let version = previous + 1;
                rows.insert(key.as_str(), encode_row(version, doc)?.as_slice())
                    .map_err(internal)?;
                info.versions.push(version);
            }
            Write::Delete { table, key, .. } => {
                let mut rows = write
                    .open_table(table_definition(*table))
                    .map_err(internal)?;
                rows.remove(key.as_str()).map_err(internal)?;
                info.versions.push(0);
            }
        }
    }

    if !transaction.events.is_empty() {
        let mut meta = write.open_table(META).map_err(internal)?;
        let mut outbox = write.open_table(OUTBOX).map_err(internal)?;
        let mut next = meta
            .get(OUTBOX_NEXT)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(1);
        for event in &transaction.events {
            let bytes = serde_json::to_vec(event).map_err(internal)?;
            outbox.insert(next, bytes.as_slice()).map_err(internal)?;
            info.sequences.push(next);
            next += 1;
        }
        meta.insert(OUTBOX_NEXT, next).map_err(internal)?;
    }
    Ok(info)
}

fn acknowledge_in(
    write: &redb::WriteTransaction,
    consumer: &str,
    sequence: u64,
) -> Result<(), StoreError> {
    let mut meta = write.open_table(META).map_err(internal)?;
    let key = consumer_key(consumer);
    let previous = meta
        .get(key.as_str())
        .map_err(internal)?
        .map(|v| v.value())
        .unwrap_or(0);
    // Positions only move forward: a late acknowledgement of an older batch changes nothing.
    let position = previous.max(sequence);
    meta.insert(key.as_str(), position).map_err(internal)?;
    let mut slowest = u64::MAX;
    for registered in OUTBOX_CONSUMERS {
        let at = meta
            .get(consumer_key(registered).as_str())
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        slowest = slowest.min(at);
    }
    drop(meta);
    if slowest > 0 && slowest != u64::MAX {
        let mut outbox = write.open_table(OUTBOX).map_err(internal)?;
        outbox
            .retain_in(..=slowest, |_, _| false)
            .map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl Store for RedbStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Commit(transaction, reply))
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Indeterminate("store writer dropped the reply".into()))?
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        let key = key.to_string();
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let rows = read.open_table(table_definition(table)).map_err(internal)?;
            match rows.get(key.as_str()).map_err(internal)? {
                Some(bytes) => Ok(Some(decode_row(&key, bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn scan(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let rows = read.open_table(table_definition(table)).map_err(internal)?;
            let start = match &start_after {
                Some(after) if after.as_str() >= prefix.as_str() => after.clone(),
                _ => prefix.clone(),
            };
            let mut found = Vec::new();
            for entry in rows.range(start.as_str()..).map_err(internal)? {
                let (key, value) = entry.map_err(internal)?;
                let key = key.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                if start_after.as_deref() == Some(key) {
                    continue;
                }
                found.push(decode_row(key, value.value())?);
                if found.len() >= limit {
                    break;
                }
            }
            Ok(found)
        })
        .await
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = lookup_key(kind, value);
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let lookup = read.open_table(LOOKUP).map_err(internal)?;
            Ok(lookup
                .get(key.as_str())
                .map_err(internal)?
                .map(|owner| owner.value().to_string()))
        })
        .await
    }

    async fn read_outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let outbox = read.open_table(OUTBOX).map_err(internal)?;
            let mut records = Vec::new();
            for entry in outbox.range(after.saturating_add(1)..).map_err(internal)? {
                let (sequence, bytes) = entry.map_err(internal)?;
                let event: ChangeEvent = serde_json::from_slice(bytes.value()).map_err(internal)?;
                records.push(OutboxRecord {
                    sequence: sequence.value(),
                    event,
                });
                if records.len() >= limit {
                    break;
                }
            }
            Ok(records)
        })
        .await
    }

    async fn consumer_position(&self, consumer: &str) -> Result<u64, StoreError> {
        let key = consumer_key(consumer);
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let meta = read.open_table(META).map_err(internal)?;
            Ok(meta
                .get(key.as_str())
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0))
        })
        .await
    }

    async fn acknowledge(&self, consumer: &str, sequence: u64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Acknowledge(consumer.to_string(), sequence, reply))
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Indeterminate("store writer dropped the reply".into()))?
    }

    async fn healthy(&self) -> bool {
        self.read(|db| db.begin_read().map(|_| ()).map_err(internal))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("store.redb")).expect("open");
        super::super::conformance::run_store_conformance(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn committed_rows_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        {
            let store = RedbStore::open(&path).expect("open");
            let mut transaction = Transaction::default();
            transaction.put(
                Table::User,
                "u1",
                serde_json::json!({"a": 1}),
                Expect::Absent,
            );
            transaction.event(super::super::Topic::User, "u1", 1);
            store.commit(transaction).await.expect("commit");
        }
        // The writer thread holds the database until its channel closes; wait for it to let go.
        let mut attempts = 0;
        let store = loop {
            match RedbStore::open(&path) {
                Ok(store) => break store,
                Err(error) if attempts < 200 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(error) => panic!("cannot reopen: {error}"),
            }
        };
        let row = store
            .get(Table::User, "u1")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(row.version, 1);
        assert_eq!(*store.outbox_head().borrow(), 1);
        assert_eq!(store.read_outbox(0, 10).await.expect("outbox").len(), 1);
    }
}
