//! The embedded store on redb.
//!
//! redb allows one write transaction at a time, which is what makes claims exact: a claim is
//! checked and written inside the same serialised transaction. To keep throughput, writes go to a
//! single writer thread that drains every pending [`Transaction`] into one redb write transaction
//! and one durable commit (group commit); each pending transaction is validated against the state
//! left by the ones before it and applied only if all its checks pass, so a failing transaction
//! leaves no trace while its neighbours still commit. Clients are answered after the commit.
//! Reads use redb's MVCC read transactions on the blocking thread pool.
//!
//! The outbox is a table keyed by a gap-free sequence number; its [`OutboxCursor`] is that
//! number as 8 big-endian bytes (so byte order is numeric order). Consumer cursors and leases
//! are rows of their own tables, changed by the writer thread like any commit.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use serde::{Deserialize, Serialize};

use super::{
    Acknowledgement, CONSUMER_RETENTION_MS, ChangeEvent, ClaimKind, CommitInfo, Expect, Lease,
    OutboxCursor, OutboxRecord, Row, Store, StoreError, Table, Transaction, Write, compose_key,
};

const LOOKUP: TableDefinition<&str, &str> = TableDefinition::new("lookup");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CONSUMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_consumers");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_leases");
const OUTBOX_NEXT: &str = "outbox_next";

/// A consumer row: the last sequence it applied and when it was last seen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ConsumerRow {
    sequence: u64,
    seen_ms: i64,
}

fn cursor_of(sequence: u64) -> OutboxCursor {
    if sequence == 0 {
        OutboxCursor::start()
    } else {
        OutboxCursor::from_bytes(sequence.to_be_bytes().to_vec())
    }
}

fn sequence_of(cursor: &OutboxCursor) -> Result<u64, StoreError> {
    match cursor.as_bytes() {
        [] => Ok(0),
        bytes => bytes
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| internal("not a cursor of this store")),
    }
}

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

/// Work on consumer or lease rows, run by the writer inside a group's write transaction (`None`:
/// not run, the group failed first). It returns how to answer its caller once the group's
/// commit succeeded or failed.
type MetaWork = Box<dyn FnOnce(Option<&redb::WriteTransaction>) -> MetaDone + Send>;

struct MetaDone {
    /// A failure that may have left a partial write: the whole group must abort.
    fatal: Option<String>,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

enum Job {
    Commit(Transaction, oneshot::Sender<Result<CommitInfo, StoreError>>),
    Meta(MetaWork),
}

/// A job for the writer whose answer is `work`'s value once the group committed. A
/// [`StoreError::LeaseLost`] from `work` is a business answer (found before it wrote anything);
/// any other error aborts the group.
fn meta_job<T, F>(work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Job::Meta(Box::new(move |write| match write.map(work) {
        None => MetaDone {
            fatal: None,
            answer: Box::new(move |outcome| {
                let error = outcome
                    .err()
                    .unwrap_or_else(|| internal("job skipped by a failed group"));
                let _ = reply.send(Err(error));
            }),
        },
        Some(Ok(value)) => MetaDone {
            fatal: None,
            answer: Box::new(move |committed| {
                let _ = reply.send(committed.map(|()| value));
            }),
        },
        Some(Err(error @ StoreError::LeaseLost(_))) => MetaDone {
            fatal: None,
            answer: Box::new(move |_| {
                let _ = reply.send(Err(error));
            }),
        },
        Some(Err(error)) => MetaDone {
            fatal: Some(error.to_string()),
            answer: Box::new(move |outcome| {
                let _ = reply.send(Err(outcome.err().unwrap_or(error)));
            }),
        },
    }));
    (job, answer)
}

/// What every clone shares. Dropping the last clone stops the writer thread and waits for it,
/// so the database file is closed when the store is gone (a restart can open it at once).
struct Shared {
    db: Arc<Database>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    outbox_head: watch::Receiver<u64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let jobs = match self.jobs.get_mut() {
            Ok(jobs) => jobs.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(jobs);
        let writer = match self.writer.get_mut() {
            Ok(writer) => writer.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// The redb-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
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
            write.open_table(CONSUMERS).map_err(internal)?;
            write.open_table(LEASES).map_err(internal)?;
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
        let writer = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer_loop(&writer_db, receiver, head_sender))
            .map_err(internal)?;
        Ok(RedbStore {
            shared: Arc::new(Shared {
                db,
                jobs: Mutex::new(Some(jobs)),
                writer: Mutex::new(Some(writer)),
                outbox_head,
            }),
        })
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        let guard = match self.shared.jobs.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store writer stopped".into()))?
            .send(job)
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))
    }

    async fn run_meta<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = meta_job(work);
        self.submit(job)?;
        answer
            .await
            .map_err(|_| StoreError::Indeterminate("store writer dropped the reply".into()))?
    }

    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.shared.db);
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
                match skipped(job) {
                    Answer::Commit(reply, _) => {
                        let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                    }
                    Answer::Meta(answer) => answer(Err(StoreError::Unavailable(message.clone()))),
                }
            }
            return;
        }
    };
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let mut fatal = None;
    let mut last_sequence = None;
    for job in batch {
        if fatal.is_some() {
            answers.push(skipped(job));
            continue;
        }
        match job {
            Job::Commit(transaction, reply) => match apply_transaction(&write, &transaction) {
                Ok((info, last)) => {
                    if last.is_some() {
                        last_sequence = last;
                    }
                    answers.push(Answer::Commit(reply, Ok(info)));
                }
                // A business failure (claim taken, version conflict) concerns one transaction
                // only: it was detected before that transaction wrote anything.
                Err(error @ (StoreError::ClaimTaken { .. } | StoreError::Conflict { .. })) => {
                    answers.push(Answer::Commit(reply, Err(error)))
                }
                // Anything else may have left a partial write in the group: abort it all.
                Err(error) => {
                    fatal.get_or_insert(error.to_string());
                    answers.push(Answer::Commit(reply, Err(error)));
                }
            },
            Job::Meta(work) => {
                let done = work(Some(&write));
                if let Some(message) = done.fatal {
                    fatal.get_or_insert(message);
                }
                answers.push(Answer::Meta(done.answer));
            }
        }
    }
    let committed = match fatal {
        Some(message) => {
            drop(write);
            Err(message)
        }
        None => write.commit().map_err(|error| error.to_string()),
    };
    if committed.is_ok()
        && let Some(sequence) = last_sequence
    {
        head.send_replace(sequence);
    }
    for answer in answers {
        match (answer, &committed) {
            (Answer::Commit(reply, outcome), Ok(())) => {
                let _ = reply.send(outcome);
            }
            (Answer::Commit(reply, _), Err(message)) => {
                let _ = reply.send(Err(StoreError::Internal(message.clone())));
            }
            (Answer::Meta(answer), Ok(())) => answer(Ok(())),
            (Answer::Meta(answer), Err(message)) => {
                answer(Err(StoreError::Internal(message.clone())))
            }
        }
    }
}

/// A job of a group that failed before it ran: answered with the group's failure.
fn skipped(job: Job) -> Answer {
    match job {
        Job::Commit(_, reply) => Answer::Commit(reply, Err(internal("skipped"))),
        Job::Meta(work) => Answer::Meta(work(None).answer),
    }
}

/// How one job of a group is answered once the group's fate is known.
enum Answer {
    Commit(
        oneshot::Sender<Result<CommitInfo, StoreError>>,
        Result<CommitInfo, StoreError>,
    ),
    Meta(Box<dyn FnOnce(Result<(), StoreError>) + Send>),
}

/// Checks every claim and expectation of `transaction` first, then writes; a failed check
/// returns before any write of this transaction. Answers the commit info and the outbox
/// sequence of its last event.
fn apply_transaction(
    write: &redb::WriteTransaction,
    transaction: &Transaction,
) -> Result<(CommitInfo, Option<u64>), StoreError> {
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
            Write::Delete { table, key, expect } | Write::Check { table, key, expect } => {
                (*table, key, *expect)
            }
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
    for (entry, checked) in transaction.writes.iter().zip(current_versions) {
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
            Write::Check { .. } => info.versions.push(checked.unwrap_or(0)),
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
            next += 1;
        }
        meta.insert(OUTBOX_NEXT, next).map_err(internal)?;
        let last = next - 1;
        info.cursor = Some(cursor_of(last));
        return Ok((info, Some(last)));
    }
    Ok((info, None))
}

/// The sequence of the newest event (0 when none was ever written).
fn head_sequence(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, StoreError> {
    Ok(meta
        .get(OUTBOX_NEXT)
        .map_err(internal)?
        .map(|v| v.value().saturating_sub(1))
        .unwrap_or(0))
}

fn read_json<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(internal)? {
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(internal),
        None => Ok(None),
    }
}

fn register_in(
    write: &redb::WriteTransaction,
    consumer: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut consumers = write.open_table(CONSUMERS).map_err(internal)?;
    let row = match read_json::<ConsumerRow>(&consumers, consumer)? {
        Some(row) => ConsumerRow {
            seen_ms: now_ms,
            ..row
        },
        None => {
            // A new consumer starts just before the oldest event still retained.
            let outbox = write.open_table(OUTBOX).map_err(internal)?;
            let oldest = outbox.first().map_err(internal)?.map(|(k, _)| k.value());
            let sequence = match oldest {
                Some(first) => first - 1,
                None => head_sequence(&write.open_table(META).map_err(internal)?)?,
            };
            ConsumerRow {
                sequence,
                seen_ms: now_ms,
            }
        }
    };
    let bytes = serde_json::to_vec(&row).map_err(internal)?;
    consumers
        .insert(consumer, bytes.as_slice())
        .map_err(internal)?;
    Ok(())
}

fn acknowledge_in(
    write: &redb::WriteTransaction,
    consumer: &str,
    sequence: u64,
    lease: Option<&Lease>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if let Some(lease) = lease {
        let leases = write.open_table(LEASES).map_err(internal)?;
        let current: Option<Lease> = read_json(&leases, consumer)?;
        let held = current.is_some_and(|c| c.holder == lease.holder && c.token == lease.token);
        if !held {
            return Err(StoreError::LeaseLost(consumer.to_string()));
        }
    }
    let mut consumers = write.open_table(CONSUMERS).map_err(internal)?;
    let previous = read_json::<ConsumerRow>(&consumers, consumer)?.map_or(0, |row| row.sequence);
    // Cursors only move forward: a late acknowledgement of an older batch changes nothing.
    let row = ConsumerRow {
        sequence: previous.max(sequence),
        seen_ms: now_ms,
    };
    let bytes = serde_json::to_vec(&row).map_err(internal)?;
    consumers
        .insert(consumer, bytes.as_slice())
        .map_err(internal)?;
    let mut slowest = u64::MAX;
    for entry in consumers.iter().map_err(internal)? {
        let (_, value) = entry.map_err(internal)?;
        let row: ConsumerRow = serde_json::from_slice(value.value()).map_err(internal)?;
        if row.seen_ms >= now_ms.saturating_sub(CONSUMER_RETENTION_MS) {
            slowest = slowest.min(row.sequence);
        }
    }
    drop(consumers);
    if slowest > 0 && slowest != u64::MAX {
        let mut outbox = write.open_table(OUTBOX).map_err(internal)?;
        outbox
            .retain_in(..=slowest, |_, _| false)
            .map_err(internal)?;
    }
    Ok(())
}

fn acquire_in(
    write: &redb::WriteTransaction,
    consumer: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Option<Lease>, StoreError> {
    let mut leases = write.open_table(LEASES).map_err(internal)?;
    let current: Option<Lease> = read_json(&leases, consumer)?;
    let token = match &current {
        Some(lease) if lease.holder == holder && lease.expires_at_ms > now_ms => lease.token,
        Some(lease) if lease.expires_at_ms > now_ms => return Ok(None),
        Some(lease) => lease.token + 1,
        None => 1,
    };
    let lease = Lease {
        consumer: consumer.to_string(),
        holder: holder.to_string(),
        token,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
    };
    let bytes = serde_json::to_vec(&lease).map_err(internal)?;
    leases
        .insert(consumer, bytes.as_slice())
        .map_err(internal)?;
    Ok(Some(lease))
}

fn release_in(write: &redb::WriteTransaction, lease: &Lease) -> Result<(), StoreError> {
    let mut leases = write.open_table(LEASES).map_err(internal)?;
    let current: Option<Lease> = read_json(&leases, &lease.consumer)?;
    if let Some(mut current) = current
        && current.holder == lease.holder
        && current.token == lease.token
    {
        // Expired now; the token stays, so the next holder's is larger.
        current.expires_at_ms = i64::MIN;
        let bytes = serde_json::to_vec(&current).map_err(internal)?;
        leases
            .insert(lease.consumer.as_str(), bytes.as_slice())
            .map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl Store for RedbStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Commit(transaction, reply))?;
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

    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let after = sequence_of(after)?;
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let outbox = read.open_table(OUTBOX).map_err(internal)?;
            let mut records = Vec::new();
            for entry in outbox.range(after.saturating_add(1)..).map_err(internal)? {
                let (sequence, bytes) = entry.map_err(internal)?;
                let event: ChangeEvent = serde_json::from_slice(bytes.value()).map_err(internal)?;
                records.push(OutboxRecord {
                    cursor: cursor_of(sequence.value()),
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

    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError> {
        self.read(|db| {
            let read = db.begin_read().map_err(internal)?;
            let meta = read.open_table(META).map_err(internal)?;
            Ok(cursor_of(head_sequence(&meta)?))
        })
        .await
    }

    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError> {
        let consumer = consumer.to_string();
        self.run_meta(move |write| register_in(write, &consumer, now_ms))
            .await
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError> {
        let consumer = consumer.to_string();
        self.read(move |db| {
            let read = db.begin_read().map_err(internal)?;
            let consumers = read.open_table(CONSUMERS).map_err(internal)?;
            let row: Option<ConsumerRow> = read_json(&consumers, &consumer)?;
            Ok(cursor_of(row.map_or(0, |row| row.sequence)))
        })
        .await
    }

    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError> {
        let consumer = acknowledgement.consumer.to_string();
        let sequence = sequence_of(acknowledgement.cursor)?;
        let lease = acknowledgement.lease.cloned();
        let now_ms = acknowledgement.now_ms;
        self.run_meta(move |write| {
            acknowledge_in(write, &consumer, sequence, lease.as_ref(), now_ms)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let (consumer, holder) = (consumer.to_string(), holder.to_string());
        self.run_meta(move |write| acquire_in(write, &consumer, &holder, now_ms, ttl_ms))
            .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run_meta(move |write| release_in(write, &lease)).await
    }

    fn commit_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.outbox_head.clone())
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

    fn opener(
        path: std::path::PathBuf,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Arc<dyn Store>> + Sync {
        move || {
            let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
            Box::pin(async move { store })
        }
    }

    #[tokio::test]
    async fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = opener(dir.path().join("store.redb"));
        super::super::conformance::run_store_conformance(&open).await;
    }

    #[tokio::test]
    async fn dropping_the_store_closes_the_file_so_it_reopens_at_once() {
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
        let store = RedbStore::open(&path).expect("the last handle's drop let the file go");
        let row = store
            .get(Table::User, "u1")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(row.version, 1);
        assert_eq!(
            store.outbox_head().await.expect("head"),
            cursor_of(1),
            "the outbox head survives"
        );
        assert_eq!(
            store
                .read_outbox(&OutboxCursor::start(), 10)
                .await
                .expect("outbox")
                .len(),
            1
        );
    }

    #[test]
    fn cursors_are_big_endian_sequences() {
        assert_eq!(sequence_of(&OutboxCursor::start()).expect("start"), 0);
        assert_eq!(sequence_of(&cursor_of(258)).expect("cursor"), 258);
        assert!(
            cursor_of(255) < cursor_of(256),
            "byte order is numeric order"
        );
        assert!(sequence_of(&OutboxCursor::from_bytes(vec![1, 2])).is_err());
    }
}
