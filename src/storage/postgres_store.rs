//! The PostgreSQL store: the whole [`Store`] contract on one database, shared by any number of
//! userorg instances (the engine the multi-instance behaviour is proven on).
//!
//! # How the contract is kept
//!
//! One [`Transaction`] is one PostgreSQL transaction at READ COMMITTED:
//! 1. every row key the transaction writes or checks is locked with a transaction-scoped
//!    advisory lock (ids sorted, so two commits never wait on each other in a cycle). Only
//!    commits write rows, so the lock makes "check the version, then write" exact, for absent
//!    rows too (a row lock cannot lock a row that does not exist yet);
//! 2. claims, sorted, are `INSERT ... ON CONFLICT DO NOTHING` into `user_lookup`: of 64 racing
//!    inserts of one value the primary key lets exactly one through; the others find the
//!    winner's row and fail with [`StoreError::ClaimTaken`];
//! 3. every version expectation is checked against the rows as they were before this
//!    transaction, then releases, writes and outbox rows are applied, then `COMMIT`.
//!
//! A deadlock or serialisation failure is retried from the start (it left nothing behind). An
//! error before `COMMIT` was sent is a transaction PostgreSQL rolls back:
//! [`StoreError::Unavailable`] when the connection went away, [`StoreError::Internal`]
//! otherwise. A connection lost while `COMMIT` was in flight is
//! [`StoreError::Indeterminate`].
//!
//! # The outbox
//!
//! An outbox row is `(seq, event)`. A sequence alone is not a cursor: sequence values are
//! handed out when rows are inserted, transactions commit in another order, and a reader that
//! kept "the highest seq seen" would skip an event committed late below it. So a commit appends
//! its outbox rows last, holding the schema's outbox lock (a transaction-scoped advisory lock)
//! from before its first sequence value until it has committed: appending transactions commit in
//! sequence order, one at a time. A transaction becomes visible before its locks are released,
//! so when a reader sees row `n` committed, every row below `n` was committed before `n` was
//! even handed out. The cursor is `seq` as 8 big-endian bytes. Only the append (insert, notify,
//! commit) is serialised, not the rest of the transaction, and only among commits of one schema
//! that carry events; nothing outside the schema (a long transaction elsewhere on the server,
//! a dump) holds delivery back.
//!
//! Commits with events `NOTIFY` a channel of the schema; each store listens on it, so the
//! consumers of every instance wake at once ([`Store::commit_signal`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{
    Acknowledgement, CONSUMER_RETENTION_MS, ChangeEvent, ClaimKind, CommitInfo, Expect, Lease,
    OutboxCursor, OutboxRecord, Row, Store, StoreError, Table, Transaction, Write,
};

/// The schema's revision, recorded in `schema_migrations` by [`PostgresStore::apply_schema`].
pub const SCHEMA_VERSION: i32 = 1;

/// Retries of a commit that met a deadlock or a serialisation failure.
const MAX_RETRIES: usize = 16;

/// How the store connects (`[store.postgres]`).
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database` (libpq URL or key=value form).
    pub url: String,
    /// The schema holding the tables: several installations (or test runs) can share a database.
    pub schema: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
}

/// The SQL texts of one table, built once.
struct TableSql {
    get: String,
    version: String,
    upsert: String,
    delete: String,
    /// Scans: (inclusive lower bound or exclusive) x (upper bound or none).
    scan_from: String,
    scan_from_to: String,
    scan_after: String,
    scan_after_to: String,
}

impl TableSql {
    fn new(table: Table) -> TableSql {
        let t = quote(table.name());
        let scan = |lower: &str, upper: bool| {
            let upper = if upper { " AND key < $2" } else { "" };
            let limit = if upper.is_empty() { "$2" } else { "$3" };
            format!(
                "SELECT key, version, doc FROM {t} WHERE key {lower} $1{upper} ORDER BY key LIMIT {limit}"
            )
        };
        TableSql {
            get: format!("SELECT version, doc FROM {t} WHERE key = $1"),
            version: format!("SELECT version FROM {t} WHERE key = $1"),
            upsert: format!(
                "INSERT INTO {t} (key, version, doc) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET version = {t}.version + 1, doc = EXCLUDED.doc \
                 RETURNING version"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            scan_from: scan(">=", false),
            scan_from_to: scan(">=", true),
            scan_after: scan(">", false),
            scan_after_to: scan(">", true),
        }
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

/// A schema name that needs no escaping: lower-case letters, digits and `_`, not starting with
/// a digit, at most 48 bytes (the notification channel adds a prefix within 63).
fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 48
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
}

/// Every statement of the schema, in order; each is idempotent.
pub fn schema_statements(schema: &str) -> Vec<String> {
    let s = quote(schema);
    let mut statements = vec![format!("CREATE SCHEMA IF NOT EXISTS {s}")];
    for table in Table::ALL {
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {s}.{} (key bytea PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
            quote(table.name())
        ));
    }
    statements.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.user_lookup (kind text NOT NULL, value bytea NOT NULL, owner text NOT NULL, PRIMARY KEY (kind, value))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.outbox (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event json NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.outbox_consumer (name text PRIMARY KEY, position bytea NOT NULL, seen_ms bigint NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.outbox_lease (consumer text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL, expires_at_ms bigint NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.outbox_trimmed (id smallint PRIMARY KEY CHECK (id = 1), position bytea NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {s}.userorg_lock_keys(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$ \
             DECLARE id bigint; BEGIN FOREACH id IN ARRAY ids LOOP PERFORM pg_advisory_xact_lock(id); END LOOP; END $$"
        ),
        format!(
            "INSERT INTO {s}.schema_migrations (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT DO NOTHING"
        ),
    ]);
    statements
}

/// Serialises concurrent schema applications (two instances starting at once).
const SCHEMA_LOCK: i64 = 0x7573_6572_6f72_6701;

/// The position of an outbox row as a cursor.
fn cursor_of(seq: i64) -> OutboxCursor {
    OutboxCursor::from_bytes((seq.max(0) as u64).to_be_bytes().to_vec())
}

/// The `seq` of a cursor; the start is 0, before every row.
fn position_of(cursor: &OutboxCursor) -> Result<i64, StoreError> {
    match cursor.as_bytes() {
        [] => Ok(0),
        bytes if bytes.len() == 8 => {
            Ok(u64::from_be_bytes(bytes.try_into().map_err(internal)?) as i64)
        }
        _ => Err(internal("not a cursor of this store")),
    }
}

/// The smallest byte string greater than every key starting with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn internal(error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(error.to_string())
}

/// The server's own words when it answered (`db error` alone names nothing), else the
/// connection's failure with its cause.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => crate::domain::error::with_causes(error),
    }
}

/// How a statement's failure ends one attempt.
enum Failure {
    /// Deadlock or serialisation failure: nothing was applied, try again.
    Retry(String),
    Fail(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Fail(error)
    }
}

/// The server going away rather than refusing the statement: connection exceptions (08),
/// operator intervention such as a shutdown or a terminated backend (57), insufficient
/// resources such as too many connections (53).
fn server_gone(code: &SqlState) -> bool {
    ["08", "57", "53"]
        .iter()
        .any(|class| code.code().starts_with(class))
}

/// A failure without a server answer that is the connection's (closed, I/O, connect), not the
/// client's own (a value that does not convert, a bad parameter): only those are an outage.
fn connection_failed(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A code-less failure: unavailable when the connection failed, a bug here otherwise.
fn codeless(error: &tokio_postgres::Error) -> StoreError {
    if connection_failed(error) {
        StoreError::Unavailable(describe(error))
    } else {
        StoreError::Internal(describe(error))
    }
}

/// A failure of a statement sent before `COMMIT`: PostgreSQL rolls the transaction back.
fn before_commit(error: tokio_postgres::Error) -> Failure {
    match error.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            Failure::Retry(describe(&error))
        }
        Some(code) if server_gone(code) => Failure::Fail(StoreError::Unavailable(describe(&error))),
        Some(_) => Failure::Fail(StoreError::Internal(describe(&error))),
        None => Failure::Fail(codeless(&error)),
    }
}

/// A failure of `COMMIT` itself: an error answer means it was rolled back; a lost connection
/// (or a server going away while committing) leaves the outcome unknown.
fn at_commit(error: tokio_postgres::Error) -> Failure {
    match error.code() {
        Some(code) if server_gone(code) => {
            Failure::Fail(StoreError::Indeterminate(describe(&error)))
        }
        Some(_) => before_commit(error),
        None => Failure::Fail(StoreError::Indeterminate(describe(&error))),
    }
}

/// The error with its causes ("error connecting to server: Connection refused ...").
fn unavailable(error: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(crate::domain::error::with_causes(&error))
}

fn read_failure(error: tokio_postgres::Error) -> StoreError {
    match error.code() {
        Some(code) if !server_gone(code) => StoreError::Internal(describe(&error)),
        Some(_) => StoreError::Unavailable(describe(&error)),
        None => codeless(&error),
    }
}

/// What every clone shares; dropping the last one stops the listener.
struct Shared {
    pool: Pool,
    schema: String,
    tables: Vec<(Table, TableSql)>,
    signal: watch::Receiver<u64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The PostgreSQL-backed [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

fn pg_config(options: &PostgresOptions) -> Result<tokio_postgres::Config, StoreError> {
    if !valid_schema(&options.schema) {
        return Err(internal(format!(
            "`store.postgres.schema` must be lower-case letters, digits and `_` (got `{}`)",
            options.schema
        )));
    }
    let mut config = tokio_postgres::Config::from_str(&options.url)
        .map_err(|e| internal(format!("`store.postgres.url` is not a PostgreSQL URL: {e}")))?;
    // The idempotent DDL's "already exists, skipping" notices are not news.
    config.options(format!(
        "-c search_path={} -c client_min_messages=warning",
        options.schema
    ));
    config.connect_timeout(options.connect_timeout);
    // Operators (and the tests) tell the stores of one server apart in pg_stat_activity.
    config.application_name(format!("userorg {}", options.schema));
    Ok(config)
}

fn channel_of(schema: &str) -> String {
    format!("userorg_outbox_{schema}")
}

impl PostgresStore {
    /// Connects, applies the schema (idempotent) and starts listening for other instances'
    /// commits.
    pub async fn open(options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let config = pg_config(options)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(internal)?;
        apply_schema_with(&pool, &options.schema).await?;
        let (sender, signal) = watch::channel(0u64);
        let listener = tokio::spawn(listen(config, channel_of(&options.schema), sender));
        Ok(PostgresStore {
            shared: Arc::new(Shared {
                pool,
                schema: options.schema.clone(),
                tables: Table::ALL
                    .into_iter()
                    .map(|t| (t, TableSql::new(t)))
                    .collect(),
                signal,
                listener,
            }),
        })
    }

    /// Applies the schema without starting a store (`userorg schema apply`): answers the
    /// statements it ran.
    pub async fn apply_schema(options: &PostgresOptions) -> Result<Vec<String>, StoreError> {
        let config = pg_config(options)?;
        let (mut client, connection) = config.connect(NoTls).await.map_err(unavailable)?;
        let driver = tokio::spawn(connection);
        let statements = schema_statements(&options.schema);
        let outcome = apply_statements(&mut client, &statements).await;
        drop(client);
        let _ = driver.await;
        outcome.map(|()| statements)
    }

    fn sql(&self, table: Table) -> &TableSql {
        &self
            .shared
            .tables
            .iter()
            .find(|(t, _)| *t == table)
            .expect("every table has its statements")
            .1
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.shared.pool.get().await.map_err(unavailable)
    }

    /// The advisory lock id of a row: schema, table and key hashed, so installations sharing a
    /// database do not contend.
    /// Serialises a new consumer's registration with the outbox trim.
    async fn lock_consumers(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), Failure> {
        let id = self.advisory_id(&[b"outbox consumers"]);
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&id])
            .await
            .map_err(before_commit)?;
        Ok(())
    }

    /// The schema's outbox lock, held by a commit from its first outbox row until it committed.
    fn outbox_lock_id(&self) -> i64 {
        self.advisory_id(&[b"outbox append"])
    }

    fn lock_id(&self, table: Table, key: &str) -> i64 {
        self.advisory_id(&[table.name().as_bytes(), key.as_bytes()])
    }

    /// An advisory lock id of this schema: the first 8 bytes of SHA-256 of the schema and
    /// `parts`, NUL separated (no table name or key holds a NUL).
    fn advisory_id(&self, parts: &[&[u8]]) -> i64 {
        let mut hash = Sha256::new();
        hash.update(self.shared.schema.as_bytes());
        for part in parts {
            hash.update([0]);
            hash.update(part);
        }
        let digest = hash.finalize();
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// Runs `attempt` in a transaction until it is not a deadlock or serialisation failure.
    async fn retrying<T, F>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: for<'t> AsyncAttempt<'t, T>,
    {
        let mut last = String::new();
        for _ in 0..MAX_RETRIES {
            let mut client = self.client().await?;
            let transaction = match client.transaction().await.map_err(before_commit) {
                Ok(transaction) => transaction,
                Err(Failure::Retry(message)) => {
                    last = message;
                    continue;
                }
                Err(Failure::Fail(error)) => return Err(error),
            };
            let outcome = match attempt.run(self, &transaction).await {
                Ok(value) => transaction
                    .commit()
                    .await
                    .map_err(at_commit)
                    .map(|()| value),
                Err(failure) => {
                    // Dropping the transaction rolls it back.
                    drop(transaction);
                    Err(failure)
                }
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Retry(message)) => last = message,
                Err(Failure::Fail(error)) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(format!(
            "gave up after {MAX_RETRIES} deadlocks or serialisation failures: {last}"
        )))
    }
}

/// One attempt of a transaction's work (a closure returning a future borrowing the
/// transaction cannot be written as a plain `Fn` bound).
trait AsyncAttempt<'t, T>: Send + Sync {
    fn run(
        &'t self,
        store: &'t PostgresStore,
        transaction: &'t deadpool_postgres::Transaction<'t>,
    ) -> futures::future::BoxFuture<'t, Result<T, Failure>>;
}

async fn apply_statements(
    client: &mut tokio_postgres::Client,
    statements: &[String],
) -> Result<(), StoreError> {
    let transaction = client.transaction().await.map_err(unavailable)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(read_failure)?;
    for statement in statements {
        transaction
            .batch_execute(statement)
            .await
            .map_err(read_failure)?;
    }
    transaction.commit().await.map_err(read_failure)
}

async fn apply_schema_with(pool: &Pool, schema: &str) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let statements = schema_statements(schema);
    apply_statements(&mut client, &statements).await
}

/// Keeps a `LISTEN` connection open and bumps `sender` on every notification (and once per
/// reconnection, in case one was missed while disconnected). Ends when the store is dropped.
async fn listen(config: tokio_postgres::Config, channel: String, sender: watch::Sender<u64>) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notified, mut notifications) = futures::channel::mpsc::unbounded();
            let driver = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(_) = message
                        && notified.unbounded_send(()).is_err()
                    {
                        break;
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {}", quote(&channel)))
                .await
                .is_ok()
            {
                sender.send_modify(|n| *n = n.wrapping_add(1));
                while notifications.next().await.is_some() {
                    sender.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            driver.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct CommitAttempt<'a> {
    transaction: &'a Transaction,
}

impl<'t> AsyncAttempt<'t, CommitInfo> for CommitAttempt<'_> {
    fn run(
        &'t self,
        store: &'t PostgresStore,
        tx: &'t deadpool_postgres::Transaction<'t>,
    ) -> futures::future::BoxFuture<'t, Result<CommitInfo, Failure>> {
        Box::pin(apply_transaction(store, tx, self.transaction))
    }
}

fn write_target(write: &Write) -> (Table, &str, Expect) {
    match write {
        Write::Put {
            table, key, expect, ..
        }
        | Write::Delete { table, key, expect }
        | Write::Check { table, key, expect } => (*table, key.as_str(), *expect),
    }
}

async fn apply_transaction(
    store: &PostgresStore,
    tx: &deadpool_postgres::Transaction<'_>,
    transaction: &Transaction,
) -> Result<CommitInfo, Failure> {
    let mut locks: Vec<i64> = transaction
        .writes
        .iter()
        .map(|w| {
            let (table, key, _) = write_target(w);
            store.lock_id(table, key)
        })
        .collect();
    locks.sort_unstable();
    locks.dedup();
    if !locks.is_empty() {
        let statement = tx
            .prepare_cached("SELECT userorg_lock_keys($1)")
            .await
            .map_err(before_commit)?;
        tx.execute(&statement, &[&locks])
            .await
            .map_err(before_commit)?;
    }

    // Inserted in sorted order (two commits never wait on each other's index entries in a
    // cycle); of the values found taken, the first in the transaction's order is reported.
    let mut claims: Vec<_> = transaction.claims.iter().enumerate().collect();
    claims.sort_by(|(_, a), (_, b)| (a.kind.name(), &a.value).cmp(&(b.kind.name(), &b.value)));
    claims.dedup_by(|(_, a), (_, b)| a.kind == b.kind && a.value == b.value && a.owner == b.owner);
    let mut first_taken: Option<(usize, StoreError)> = None;
    if !claims.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO user_lookup (kind, value, owner) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, value) DO NOTHING RETURNING owner",
            )
            .await
            .map_err(before_commit)?;
        let owner_of = tx
            .prepare_cached("SELECT owner FROM user_lookup WHERE kind = $1 AND value = $2")
            .await
            .map_err(before_commit)?;
        for (position, claim) in claims {
            let value = claim.value.as_bytes();
            let inserted = tx
                .query_opt(&insert, &[&claim.kind.name(), &value, &claim.owner])
                .await
                .map_err(before_commit)?;
            if inserted.is_some() {
                continue;
            }
            let owner: Option<String> = tx
                .query_opt(&owner_of, &[&claim.kind.name(), &value])
                .await
                .map_err(before_commit)?
                .map(|row| row.get(0));
            match owner {
                Some(owner) if owner == claim.owner => {}
                Some(owner) => {
                    if first_taken.as_ref().is_none_or(|(p, _)| position < *p) {
                        let taken = StoreError::ClaimTaken {
                            kind: claim.kind,
                            owner,
                        };
                        first_taken = Some((position, taken));
                    }
                }
                // Released by a commit that finished after our insert looked: start over.
                None => return Err(Failure::Retry("claim released meanwhile".into())),
            }
        }
    }
    if let Some((_, taken)) = first_taken {
        return Err(Failure::Fail(taken));
    }

    // Every expectation against the rows as they were before this transaction.
    let mut current_versions = Vec::with_capacity(transaction.writes.len());
    for write in &transaction.writes {
        let (table, key, expect) = write_target(write);
        let statement = tx
            .prepare_cached(&store.sql(table).version)
            .await
            .map_err(before_commit)?;
        let current: Option<u64> = tx
            .query_opt(&statement, &[&key.as_bytes()])
            .await
            .map_err(before_commit)?
            .map(|row| row.get::<_, i64>(0) as u64);
        let holds = match (expect, current) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Absent, Some(_)) | (Expect::Version(_), None) => false,
            (Expect::Version(expected), Some(actual)) => expected == actual,
        };
        if !holds {
            return Err(Failure::Fail(StoreError::Conflict {
                table,
                key: key.to_string(),
            }));
        }
        current_versions.push(current);
    }

    let releases: Vec<_> = transaction
        .releases
        .iter()
        .filter(|release| !transaction.claims.contains(release))
        .collect();
    if !releases.is_empty() {
        let release = tx
            .prepare_cached("DELETE FROM user_lookup WHERE kind = $1 AND value = $2 AND owner = $3")
            .await
            .map_err(before_commit)?;
        for claim in releases {
            tx.execute(
                &release,
                &[&claim.kind.name(), &claim.value.as_bytes(), &claim.owner],
            )
            .await
            .map_err(before_commit)?;
        }
    }

    let mut info = CommitInfo::default();
    for (write, checked) in transaction.writes.iter().zip(current_versions) {
        match write {
            Write::Put {
                table, key, doc, ..
            } => {
                let statement = tx
                    .prepare_cached(&store.sql(*table).upsert)
                    .await
                    .map_err(before_commit)?;
                let row = tx
                    .query_one(&statement, &[&key.as_bytes(), doc])
                    .await
                    .map_err(before_commit)?;
                info.versions.push(row.get::<_, i64>(0) as u64);
            }
            Write::Delete { table, key, .. } => {
                let statement = tx
                    .prepare_cached(&store.sql(*table).delete)
                    .await
                    .map_err(before_commit)?;
                tx.execute(&statement, &[&key.as_bytes()])
                    .await
                    .map_err(before_commit)?;
                info.versions.push(0);
            }
            Write::Check { .. } => info.versions.push(checked.unwrap_or(0)),
        }
    }

    if !transaction.events.is_empty() {
        // Last, and held until the commit: appends commit in sequence order (module docs).
        let append = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await
            .map_err(before_commit)?;
        tx.execute(&append, &[&store.outbox_lock_id()])
            .await
            .map_err(before_commit)?;
        let insert = tx
            .prepare_cached("INSERT INTO outbox (event) VALUES ($1) RETURNING seq")
            .await
            .map_err(before_commit)?;
        let mut last = None;
        for event in &transaction.events {
            let event = serde_json::to_value(event).map_err(internal)?;
            let row = tx
                .query_one(&insert, &[&event])
                .await
                .map_err(before_commit)?;
            last = Some(cursor_of(row.get(0)));
        }
        info.cursor = last;
        let notify = tx
            .prepare_cached("SELECT pg_notify($1, '')")
            .await
            .map_err(before_commit)?;
        tx.execute(&notify, &[&channel_of(&store.shared.schema)])
            .await
            .map_err(before_commit)?;
    }
    Ok(info)
}

fn row_of(key: Vec<u8>, version: i64, doc: Value) -> Result<Row, StoreError> {
    Ok(Row {
        key: String::from_utf8(key).map_err(internal)?,
        version: version as u64,
        doc,
    })
}

/// The start of a new consumer: before the oldest retained event, else where trimming left the
/// stream (everything before was applied by every consumer then known).
async fn start_position(tx: &deadpool_postgres::Transaction<'_>) -> Result<Vec<u8>, Failure> {
    let oldest: Option<i64> = tx
        .query_opt("SELECT seq FROM outbox ORDER BY seq LIMIT 1", &[])
        .await
        .map_err(before_commit)?
        .map(|row| row.get(0));
    if let Some(oldest) = oldest {
        return Ok(cursor_of(oldest - 1).as_bytes().to_vec());
    }
    let trimmed: Option<Vec<u8>> = tx
        .query_opt("SELECT position FROM outbox_trimmed WHERE id = 1", &[])
        .await
        .map_err(before_commit)?
        .map(|row| row.get(0));
    Ok(trimmed.unwrap_or_else(|| cursor_of(0).as_bytes().to_vec()))
}

struct RegisterAttempt<'a> {
    consumer: &'a str,
    now_ms: i64,
}

impl<'t> AsyncAttempt<'t, ()> for RegisterAttempt<'_> {
    fn run(
        &'t self,
        store: &'t PostgresStore,
        tx: &'t deadpool_postgres::Transaction<'t>,
    ) -> futures::future::BoxFuture<'t, Result<(), Failure>> {
        Box::pin(async move {
            let seen = tx
                .execute(
                    "UPDATE outbox_consumer SET seen_ms = $2 WHERE name = $1",
                    &[&self.consumer, &self.now_ms],
                )
                .await
                .map_err(before_commit)?;
            if seen == 0 {
                // Not while a trim runs: it could not see this consumer yet, and would delete
                // the events from which it starts.
                store.lock_consumers(tx).await?;
                let start = start_position(tx).await?;
                tx.execute(
                    "INSERT INTO outbox_consumer (name, position, seen_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET seen_ms = EXCLUDED.seen_ms",
                    &[&self.consumer, &start, &self.now_ms],
                )
                .await
                .map_err(before_commit)?;
            }
            Ok(())
        })
    }
}

struct AcknowledgeAttempt<'a> {
    consumer: &'a str,
    position: Vec<u8>,
    lease: Option<&'a Lease>,
    now_ms: i64,
}

impl<'t> AsyncAttempt<'t, ()> for AcknowledgeAttempt<'_> {
    fn run(
        &'t self,
        store: &'t PostgresStore,
        tx: &'t deadpool_postgres::Transaction<'t>,
    ) -> futures::future::BoxFuture<'t, Result<(), Failure>> {
        Box::pin(async move {
            if let Some(lease) = self.lease {
                let held = tx
                    .query_opt(
                        "SELECT 1 FROM outbox_lease WHERE consumer = $1 AND holder = $2 AND token = $3 FOR SHARE",
                        &[&self.consumer, &lease.holder, &(lease.token as i64)],
                    )
                    .await
                    .map_err(before_commit)?;
                if held.is_none() {
                    return Err(Failure::Fail(StoreError::LeaseLost(
                        self.consumer.to_string(),
                    )));
                }
            }
            // Cursors only move forward: a late acknowledgement of an older batch changes
            // nothing.
            tx.execute(
                "INSERT INTO outbox_consumer (name, position, seen_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET \
                 position = GREATEST(outbox_consumer.position, EXCLUDED.position), \
                 seen_ms = EXCLUDED.seen_ms",
                &[&self.consumer, &self.position, &self.now_ms],
            )
            .await
            .map_err(before_commit)?;
            // The trim sees every registered consumer: registration takes the same lock.
            store.lock_consumers(tx).await?;
            // (bytea has ordering but no min aggregate.)
            let slowest: Option<Vec<u8>> = tx
                .query_opt(
                    "SELECT position FROM outbox_consumer WHERE seen_ms >= $1 \
                     ORDER BY position LIMIT 1",
                    &[&self.now_ms.saturating_sub(CONSUMER_RETENTION_MS)],
                )
                .await
                .map_err(before_commit)?
                .map(|row| row.get(0));
            if let Some(slowest) = slowest.filter(|s| !s.is_empty()) {
                let seq = position_of(&OutboxCursor::from_bytes(slowest.clone()))?;
                tx.execute("DELETE FROM outbox WHERE seq <= $1", &[&seq])
                    .await
                    .map_err(before_commit)?;
                tx.execute(
                    "INSERT INTO outbox_trimmed (id, position) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET \
                     position = GREATEST(outbox_trimmed.position, EXCLUDED.position)",
                    &[&slowest],
                )
                .await
                .map_err(before_commit)?;
            }
            Ok(())
        })
    }
}

struct AcquireAttempt<'a> {
    consumer: &'a str,
    holder: &'a str,
    now_ms: i64,
    ttl_ms: i64,
}

impl<'t> AsyncAttempt<'t, Option<Lease>> for AcquireAttempt<'_> {
    fn run(
        &'t self,
        _store: &'t PostgresStore,
        tx: &'t deadpool_postgres::Transaction<'t>,
    ) -> futures::future::BoxFuture<'t, Result<Option<Lease>, Failure>> {
        Box::pin(async move {
            // A never-held lease is a row with token 0 that expired long ago.
            tx.execute(
                "INSERT INTO outbox_lease (consumer, holder, token, expires_at_ms) \
                 VALUES ($1, '', 0, $2) ON CONFLICT (consumer) DO NOTHING",
                &[&self.consumer, &i64::MIN],
            )
            .await
            .map_err(before_commit)?;
            let row = tx
                .query_one(
                    "SELECT holder, token, expires_at_ms FROM outbox_lease WHERE consumer = $1 FOR UPDATE",
                    &[&self.consumer],
                )
                .await
                .map_err(before_commit)?;
            let (holder, token, expires): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let token = if expires > self.now_ms {
                if holder != self.holder {
                    return Ok(None);
                }
                token
            } else {
                token + 1
            };
            let lease = Lease {
                consumer: self.consumer.to_string(),
                holder: self.holder.to_string(),
                token: token as u64,
                expires_at_ms: self.now_ms.saturating_add(self.ttl_ms),
            };
            tx.execute(
                "UPDATE outbox_lease SET holder = $2, token = $3, expires_at_ms = $4 WHERE consumer = $1",
                &[&self.consumer, &self.holder, &token, &lease.expires_at_ms],
            )
            .await
            .map_err(before_commit)?;
            Ok(Some(lease))
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError> {
        self.retrying(CommitAttempt {
            transaction: &transaction,
        })
        .await
    }

    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql(table).get)
            .await
            .map_err(read_failure)?;
        match client
            .query_opt(&statement, &[&key.as_bytes()])
            .await
            .map_err(read_failure)?
        {
            Some(row) => Ok(Some(row_of(
                key.as_bytes().to_vec(),
                row.get(0),
                row.get(1),
            )?)),
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
        let (lower, inclusive) = match start_after {
            Some(after) if after >= prefix => (after.as_bytes(), false),
            _ => (prefix.as_bytes(), true),
        };
        let upper = prefix_end(prefix.as_bytes());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = self.sql(table);
        let text = match (inclusive, upper.is_some()) {
            (true, false) => &sql.scan_from,
            (true, true) => &sql.scan_from_to,
            (false, false) => &sql.scan_after,
            (false, true) => &sql.scan_after_to,
        };
        let client = self.client().await?;
        let statement = client.prepare_cached(text).await.map_err(read_failure)?;
        let rows = match &upper {
            Some(upper) => {
                client
                    .query(&statement, &[&lower, &upper.as_slice(), &limit])
                    .await
            }
            None => client.query(&statement, &[&lower, &limit]).await,
        }
        .map_err(read_failure)?;
        rows.into_iter()
            .map(|row| row_of(row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    async fn claim_owner(
        &self,
        kind: ClaimKind,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT owner FROM user_lookup WHERE kind = $1 AND value = $2")
            .await
            .map_err(read_failure)?;
        Ok(client
            .query_opt(&statement, &[&kind.name(), &value.as_bytes()])
            .await
            .map_err(read_failure)?
            .map(|row| row.get(0)))
    }

    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let seq = position_of(after)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT seq, event FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2")
            .await
            .map_err(read_failure)?;
        let rows = client
            .query(&statement, &[&seq, &limit])
            .await
            .map_err(read_failure)?;
        rows.into_iter()
            .map(|row| {
                let event: ChangeEvent = serde_json::from_value(row.get(1)).map_err(internal)?;
                Ok(OutboxRecord {
                    cursor: cursor_of(row.get(0)),
                    event,
                })
            })
            .collect()
    }

    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError> {
        let client = self.client().await?;
        let newest = client
            .query_opt("SELECT seq FROM outbox ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(read_failure)?
            .map(|row| cursor_of(row.get(0)));
        let trimmed = client
            .query_opt("SELECT position FROM outbox_trimmed WHERE id = 1", &[])
            .await
            .map_err(read_failure)?
            .map(|row| OutboxCursor::from_bytes(row.get(0)));
        Ok(newest.max(trimmed).unwrap_or_default())
    }

    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError> {
        self.retrying(RegisterAttempt { consumer, now_ms }).await
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                "SELECT position FROM outbox_consumer WHERE name = $1",
                &[&consumer],
            )
            .await
            .map_err(read_failure)?
            .map(|row| OutboxCursor::from_bytes(row.get(0)))
            .unwrap_or_default())
    }

    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError> {
        position_of(acknowledgement.cursor)?;
        self.retrying(AcknowledgeAttempt {
            consumer: acknowledgement.consumer,
            position: acknowledgement.cursor.as_bytes().to_vec(),
            lease: acknowledgement.lease,
            now_ms: acknowledgement.now_ms,
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
        self.retrying(AcquireAttempt {
            consumer,
            holder,
            now_ms,
            ttl_ms,
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let client = self.client().await?;
        // Expired now; the token stays, so the next holder's is larger.
        client
            .execute(
                "UPDATE outbox_lease SET expires_at_ms = $4 WHERE consumer = $1 AND holder = $2 AND token = $3",
                &[&lease.consumer, &lease.holder, &(lease.token as i64), &i64::MIN],
            )
            .await
            .map_err(read_failure)?;
        Ok(())
    }

    fn commit_signal(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.signal.clone())
    }

    async fn healthy(&self) -> bool {
        match self.client().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_order_by_sequence() {
        assert!(cursor_of(9) < cursor_of(10));
        assert!(cursor_of(255) < cursor_of(256));
        assert!(OutboxCursor::start() < cursor_of(1));
        assert_eq!(position_of(&cursor_of(7)).expect("cursor"), 7);
        assert_eq!(position_of(&OutboxCursor::start()).expect("start"), 0);
        assert!(position_of(&OutboxCursor::from_bytes(vec![1; 16])).is_err());
    }

    #[test]
    fn prefix_ends_bound_exactly_the_keys_of_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
        let end = prefix_end("u1\u{1f}".as_bytes()).expect("bound");
        assert!("u1\u{1f}zzz".as_bytes() < end.as_slice());
        assert!("u1 ".as_bytes() >= end.as_slice());
    }

    #[test]
    fn schema_names_are_checked_before_they_reach_sql() {
        assert!(valid_schema("userorg"));
        assert!(valid_schema("t_1a"));
        for bad in ["", "1abc", "User", "a-b", "a\"; drop", &"x".repeat(49)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    fn tier_options(url: String, schema: &str) -> PostgresOptions {
        PostgresOptions {
            url,
            schema: schema.to_string(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Instances starting at once on a new schema all get it: the DDL runs under one lock.
    #[tokio::test]
    async fn stores_opening_at_once_on_a_new_schema_all_open() {
        let Some(url) = crate::test_tiers::postgres() else {
            return;
        };
        let schema = format!("racing_{}", uuid::Uuid::new_v4().simple());
        let options = tier_options(url.clone(), &schema);
        let opened = futures::future::join_all((0..4).map(|_| PostgresStore::open(&options))).await;
        for store in opened {
            store.expect("every store opens");
        }
        drop_schema(&url, &schema).await;
    }

    /// The server ends every connection of the store (a restart, a failover): calls fail with
    /// `Unavailable`, never `Internal`, and the store recovers on new connections by itself.
    #[tokio::test]
    async fn a_store_whose_connections_were_cut_recovers() {
        let Some(url) = crate::test_tiers::postgres() else {
            return;
        };
        let schema = format!("cut_{}", uuid::Uuid::new_v4().simple());
        let store = PostgresStore::open(&tier_options(url.clone(), &schema))
            .await
            .expect("open");
        let mut seed = Transaction::default();
        seed.put(
            Table::User,
            "u",
            serde_json::json!({"n": 1}),
            Expect::Absent,
        );
        store.commit(seed).await.expect("seed");
        let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.expect("admin");
        tokio::spawn(connection);
        let cut = admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("userorg {schema}")],
            )
            .await
            .expect("terminate");
        assert!(cut >= 1, "the store had connections to cut");
        let mut failures = 0;
        let row = loop {
            match store.get(Table::User, "u").await {
                Ok(row) => break row,
                Err(StoreError::Unavailable(_)) => {
                    failures += 1;
                    assert!(failures <= 2, "the pool keeps handing out dead connections");
                }
                Err(other) => panic!("a cut connection is unavailable, not {other:?}"),
            }
        };
        assert_eq!(row.expect("the row").doc["n"], 1);
        let mut update = Transaction::default();
        update.put(
            Table::User,
            "u",
            serde_json::json!({"n": 2}),
            Expect::Version(1),
        );
        store.commit(update).await.expect("commits again");
        drop(store);
        drop_schema(&url, &schema).await;
    }

    /// The URL's password appears in no error: not a refused connection's, not a bad URL's.
    /// Without a server answer, a failed connection is an outage (503) and anything else (a
    /// value that does not convert) is a bug here (500), not an outage.
    #[tokio::test]
    async fn code_less_errors_are_unavailable_only_when_the_connection_failed() {
        let Some(url) = crate::test_tiers::postgres() else {
            return;
        };
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT 1::int4", &[])
            .await
            .expect("query");
        let wrong_type = row
            .try_get::<_, String>(0)
            .expect_err("an int4 is not text");
        assert!(matches!(read_failure(wrong_type), StoreError::Internal(_)));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let refused =
            tokio_postgres::connect(&format!("postgres://postgres@127.0.0.1:{port}/test"), NoTls)
                .await
                .map(|_| ())
                .expect_err("nothing listens there");
        assert!(matches!(read_failure(refused), StoreError::Unavailable(_)));
    }

    #[tokio::test]
    async fn errors_never_carry_the_urls_password() {
        for url in [
            "postgres://userorg:Hunter2Secret@127.0.0.1:1/test",
            "postgres://userorg:Hunter2Secret@127.0.0.1:1/test?sslmode=nonsense",
        ] {
            let options = PostgresOptions {
                url: url.to_string(),
                schema: "userorg".to_string(),
                pool_size: 1,
                connect_timeout: Duration::from_millis(500),
            };
            let Err(error) = PostgresStore::open(&options).await else {
                panic!("nothing listens on port 1");
            };
            let text = error.to_string();
            assert!(!text.contains("Hunter2Secret"), "{text}");
            let Err(error) = PostgresStore::apply_schema(&options).await else {
                panic!("nothing listens on port 1");
            };
            let text = error.to_string();
            assert!(!text.contains("Hunter2Secret"), "{text}");
        }
    }

    #[tokio::test]
    async fn postgres_store_passes_the_conformance_suite() {
        let Some(url) = crate::test_tiers::postgres() else {
            return;
        };
        let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
        let (url_for_cleanup, schema_for_cleanup) = (url.clone(), schema.clone());
        let options = PostgresOptions {
            url,
            schema,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        };
        let open = move || {
            let options = options.clone();
            Box::pin(async move {
                Arc::new(PostgresStore::open(&options).await.expect("open")) as Arc<dyn Store>
            }) as futures::future::BoxFuture<'static, Arc<dyn Store>>
        };
        super::super::conformance::run_store_conformance(&open).await;
        drop_schema(&url_for_cleanup, &schema_for_cleanup).await;
    }

    /// Test schemas are dropped once their test passes (a failing run leaves its rows to look at).
    pub(crate) async fn drop_schema(url: &str, schema: &str) {
        assert!(valid_schema(schema));
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect for cleanup");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("drop the test schema");
    }
}
