//! The system of record: a `Store` trait over tables of versioned JSON rows, uniqueness claims and
//! a change outbox, all written together in one atomic [`Transaction`].
//!
//! # The contract every engine keeps
//!
//! **One commit** is rows (each with a version expectation) + uniqueness claims and releases +
//! outbox events. Either all of it is applied or, when [`Store::commit`] answers a business
//! failure ([`StoreError::ClaimTaken`], [`StoreError::Conflict`]) or
//! [`StoreError::Unavailable`], none of it. [`StoreError::Indeterminate`] means the engine cannot
//! tell (a timeout): the caller must read before retrying. How each engine gives this:
//! - redb ([`redb_store::RedbStore`]): one serialised write transaction checks every claim and
//!   version expectation and then applies everything (several pending commits may share one
//!   durable group commit; a failing one leaves no trace in it);
//! - ScyllaDB / Cassandra ([`scylla_store::ScyllaStore`]): claims, row locks (each checking its
//!   version expectation) and an outbox slot are taken by one LWT each, then one commit record
//!   decides the transaction; whoever meets an item of a committed transaction finishes it,
//!   and one left undecided past a grace period is aborted;
//! - PostgreSQL: one transaction.
//!
//! **The outbox** is read with an opaque [`OutboxCursor`]: engine-defined bytes, ordered within
//! one store, meaning "everything up to here". There is no global counter in the contract.
//! Events carry the entity id and the version the entity reached, so a consumer that sees an
//! event twice, or late, applies it idempotently (the search index refuses older versions).
//! Every engine here delivers each committed event once, in cursor order, to every reader: no
//! reader passes a position a commit in flight may still take (PostgreSQL appends under a lock
//! held to COMMIT; Scylla readers stop at an undecided slot).
//!
//! **Consumers** keep their cursor in the store ([`Store::consumer_cursor`],
//! [`Store::acknowledge`]), in one of two [`ConsumerMode`]s:
//! - *competing*: one instance at a time applies the stream, holding a lease with an expiry
//!   ([`Store::acquire_lease`]); an acknowledgement carries the lease and is refused once
//!   another holder took it ([`StoreError::LeaseLost`]), so a stalled instance cannot move the
//!   cursor of its successor. For a shared Elasticsearch index, notifications, bulk jobs;
//! - *each-instance*: every instance tails the stream under its own consumer name (no lease),
//!   for an instance-local search index.
//!
//! The outbox is trimmed below the slowest consumer seen within [`CONSUMER_RETENTION_MS`], so an
//! instance that went away for good stops holding the outbox back. Times are passed in by the
//! caller (milliseconds since the epoch from its clock), so tests move time instead of sleeping.
//!
//! Rows are keyed by strings; composite keys are built with [`compose_key`] so a prefix scan over
//! the first part lists the rest (a user's memberships, for instance).

pub mod audit;
pub mod cached;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod consumer;
pub mod postgres_store;
pub mod records;
pub mod redb_store;
pub mod retry;
pub mod scylla_store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The tables, named as Sunbird's Cassandra tables where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Table {
    User,
    UserOrganisation,
    UserRoles,
    Organisation,
    Location,
    Role,
    RoleGroup,
    SystemSettings,
    TenantPreference,
    /// `parentId␟childId` rows, so a location's children are one prefix scan away.
    LocationChildren,
    /// Uploaded files (organisation encryption keys): the embedded stand-in for cloud storage.
    File,
    /// The audit trail: a hash chain of sensitive operations and its head.
    Audit,
    /// A user's password hash, by user id: apart from the user row so that it never enters the
    /// row cache (the cache is shared between instances, and may be a Redis server).
    UserCredential,
    /// Sign-in sessions, `userId␟sessionId`: a user's sessions are one prefix scan away, so a
    /// block, delete or password change ends them all. Never cached, like credentials.
    UserSession,
    /// API consumers of the gateway (Kong's consumers), by name: their ACL groups.
    ApiConsumer,
    /// Their credentials, by key (the `iss` or `kid` of a consumer token).
    ApiCredential,
    /// Facts about the store itself, such as which keys its values are sealed with.
    Meta,
    /// Outgoing email and SMS messages with their delivery state
    /// (`domain::notification::NotificationRecord`), by id.
    Notification,
    /// The messages waiting for a retry, by id: the dispatcher's work list, small however
    /// long the delivered history grows.
    NotificationDue,
    /// Email and SMS templates (Sunbird `email_template`), by name or `name␟tenantId`.
    MessageTemplate,
    /// One-time passwords (`code␟token`) and the sends per key (`sends␟token`).
    Otp,
    /// Set-password links not used yet, by link id (the user, the expiry).
    ResetLink,
    /// Account merges: the saga of a mergee (`saga␟fromAccountId`) and the lock of each
    /// account a merge in progress holds (`lock␟userId`).
    Merge,
    /// A user's feed (`userId␟feedId`), which Sunbird keeps in its notification service.
    UserFeed,
    /// A user's consents (`userId␟consumerId␟objectId`), Sunbird `user_consent`.
    UserConsent,
    /// Legacy user notes, by note id (Sunbird `user_notes`).
    UserNotes,
    /// A user's self-declarations (`userId␟orgId␟persona`, the info sealed), Sunbird
    /// `user_declarations`.
    UserDeclarations,
    /// Bulk uploads, by process id (Sunbird `bulk_upload_process`).
    BulkProcess,
    /// The rows of a bulk upload, `processId␟seq` (Sunbird `bulk_upload_process_task`), the
    /// row and its outcome sealed.
    BulkTask,
}

impl Table {
    pub const ALL: [Table; 29] = [
        Table::User,
        Table::UserOrganisation,
        Table::UserRoles,
        Table::Organisation,
        Table::Location,
        Table::Role,
        Table::RoleGroup,
        Table::SystemSettings,
        Table::TenantPreference,
        Table::LocationChildren,
        Table::File,
        Table::Audit,
        Table::UserCredential,
        Table::UserSession,
        Table::ApiConsumer,
        Table::ApiCredential,
        Table::Meta,
        Table::Notification,
        Table::NotificationDue,
        Table::MessageTemplate,
        Table::Otp,
        Table::ResetLink,
        Table::Merge,
        Table::UserFeed,
        Table::UserConsent,
        Table::UserDeclarations,
        Table::UserNotes,
        Table::BulkProcess,
        Table::BulkTask,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::User => "user",
            Table::UserOrganisation => "user_organisation",
            Table::UserRoles => "user_roles",
            Table::Organisation => "organisation",
            Table::Location => "location",
            Table::Role => "role",
            Table::RoleGroup => "role_group",
            Table::SystemSettings => "system_settings",
            Table::TenantPreference => "tenant_preference_v2",
            Table::LocationChildren => "location_children",
            Table::File => "file",
            Table::Audit => "audit",
            Table::UserCredential => "user_credential",
            Table::UserSession => "user_session",
            Table::ApiConsumer => "api_consumer",
            Table::ApiCredential => "api_credential",
            Table::Meta => "userorg_meta",
            Table::Notification => "notification",
            Table::NotificationDue => "notification_due",
            Table::MessageTemplate => "email_template",
            Table::Otp => "otp",
            Table::ResetLink => "reset_link",
            Table::Merge => "user_merge",
            Table::UserFeed => "user_feed",
            Table::UserConsent => "user_consent",
            Table::UserDeclarations => "user_declarations",
            Table::UserNotes => "user_notes",
            Table::BulkProcess => "bulk_upload_process",
            Table::BulkTask => "bulk_upload_process_task",
        }
    }
}

/// Separator of composite keys: a control character no id or value contains.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// `a␟b␟c`: a key whose prefix `a␟` lists every row of `a`.
pub fn compose_key(parts: &[&str]) -> String {
    parts.join(&KEY_SEPARATOR.to_string())
}

/// The prefix listing every row whose key starts with `part`.
pub fn key_prefix(part: &str) -> String {
    format!("{part}{KEY_SEPARATOR}")
}

/// A stored row: its key, its version (1 on insert, +1 on each update) and its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub version: u64,
    pub doc: Value,
}

/// A typed record with the version of the row it was read from (for `Expect::Version`).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub key: String,
    pub version: u64,
    pub record: T,
}

/// What a write expects of the row before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The row must not exist (insert).
    Absent,
    /// The row must exist at exactly this version (compare-and-set update).
    Version(u64),
    /// No expectation (upsert of rows only one owner writes, seeds, memberships).
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Stores `doc` at `key`; the stored version becomes the previous version + 1 (or 1).
    Put {
        table: Table,
        key: String,
        doc: Value,
        expect: Expect,
    },
    Delete {
        table: Table,
        key: String,
        expect: Expect,
    },
    /// Writes nothing: the transaction applies only while the row meets `expect`. Unlike a
    /// write-back of the row unchanged, it leaves the version alone, so transactions that only
    /// depend on a row (children of one parent, say) do not conflict with each other.
    Check {
        table: Table,
        key: String,
        expect: Expect,
    },
}

/// The kinds of uniqueness claim (Sunbird `user_lookup` types, plus organisation ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClaimKind {
    Email,
    Phone,
    Username,
    ExternalId,
    OrgChannel,
    OrgSlug,
    OrgExternalId,
    LocationCode,
    /// One of a parent's managed-child slots (`<parent id>/<n>`, n below the limit): the
    /// per-parent limit holds under concurrent creates because each child claims a slot.
    ManagedSlot,
}

impl ClaimKind {
    pub fn name(self) -> &'static str {
        match self {
            ClaimKind::Email => "email",
            ClaimKind::Phone => "phone",
            ClaimKind::Username => "username",
            ClaimKind::ExternalId => "externalid",
            ClaimKind::OrgChannel => "orgchannel",
            ClaimKind::OrgSlug => "orgslug",
            ClaimKind::OrgExternalId => "orgexternalid",
            ClaimKind::LocationCode => "locationcode",
            ClaimKind::ManagedSlot => "managedslot",
        }
    }
}

/// "`value` of `kind` belongs to `owner`". Values are blind-index tokens for PII, plain
/// normalised strings otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    pub kind: ClaimKind,
    pub value: String,
    pub owner: String,
}

/// The streams of the change outbox: one per kind of entity whose derived views (search
/// documents) follow the store, and the notifications to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    User,
    Organisation,
    Location,
    /// A message recorded in `notification`, for the dispatcher.
    Notification,
    /// A legacy user note (`user_notes`).
    Note,
    /// A bulk upload to run (`bulk_upload_process`), for the bulk upload runner.
    Bulk,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::User,
        Topic::Organisation,
        Topic::Location,
        Topic::Notification,
        Topic::Note,
        Topic::Bulk,
    ];
    /// The topics whose entities have a search index.
    pub const INDEXED: [Topic; 4] = [
        Topic::User,
        Topic::Organisation,
        Topic::Location,
        Topic::Note,
    ];

    /// The name on the wire and in `/v1/data/sync`'s `objectType`.
    pub fn name(self) -> &'static str {
        match self {
            Topic::User => "user",
            Topic::Organisation => "organisation",
            Topic::Location => "location",
            Topic::Notification => "notification",
            Topic::Note => "note",
            Topic::Bulk => "bulk_upload",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }

    /// The table holding the entities of this topic.
    pub fn table(self) -> Table {
        match self {
            Topic::User => Table::User,
            Topic::Organisation => Table::Organisation,
            Topic::Location => Table::Location,
            Topic::Notification => Table::Notification,
            Topic::Note => Table::UserNotes,
            Topic::Bulk => Table::BulkProcess,
        }
    }
}

/// A change for the outbox consumers (indexer, notifications): the entity that changed and the
/// version it reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub topic: Topic,
    pub entity_id: String,
    pub version: u64,
    #[serde(default)]
    pub payload: Value,
}

/// A position in the outbox: engine-defined bytes, ordered within one store (a later position
/// compares greater). Consumers only keep, compare and hand it back; the empty cursor is the
/// start of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OutboxCursor(Vec<u8>);

impl OutboxCursor {
    /// Before the first event.
    pub fn start() -> Self {
        OutboxCursor(Vec::new())
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        OutboxCursor(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }
}

/// One outbox record: its event and the cursor that resumes after it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub cursor: OutboxCursor,
    pub event: ChangeEvent,
}

/// How a consumer shares its stream with the other instances (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerMode {
    /// One instance at a time, under a lease.
    Competing,
    /// Every instance, each with its own cursor.
    EachInstance,
}

/// A competing consumer's right to apply its stream until `expires_at_ms`. `token` grows each
/// time the lease changes hands, and fences acknowledgements of an earlier holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub consumer: String,
    pub holder: String,
    pub token: u64,
    pub expires_at_ms: i64,
}

/// A consumer's acknowledgement: everything up to `cursor` is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledgement<'a> {
    pub consumer: &'a str,
    pub cursor: &'a OutboxCursor,
    /// The lease of a competing consumer; `None` for an each-instance consumer.
    pub lease: Option<&'a Lease>,
    pub now_ms: i64,
}

/// A consumer not seen for this long (a week) no longer holds the outbox back.
pub const CONSUMER_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Everything one command writes, applied all or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transaction {
    /// Claimed first: a value owned by someone else fails the whole transaction with
    /// [`StoreError::ClaimTaken`]; a value already owned by the same owner is fine.
    pub claims: Vec<Claim>,
    /// Removed when owned by the given owner; ignored otherwise.
    pub releases: Vec<Claim>,
    pub writes: Vec<Write>,
    pub events: Vec<ChangeEvent>,
}

impl Transaction {
    pub fn put(&mut self, table: Table, key: impl Into<String>, doc: Value, expect: Expect) {
        self.writes.push(Write::Put {
            table,
            key: key.into(),
            doc,
            expect,
        });
    }

    /// Stores a typed record as its JSON document.
    pub fn put_record<R: crate::domain::Record>(
        &mut self,
        table: Table,
        key: impl Into<String>,
        record: &R,
        expect: Expect,
    ) -> Result<(), StoreError> {
        let doc = record.to_doc();
        if !doc.is_object() {
            return Err(StoreError::Internal("record not serialisable".into()));
        }
        self.put(table, key, doc, expect);
        Ok(())
    }

    pub fn delete(&mut self, table: Table, key: impl Into<String>, expect: Expect) {
        self.writes.push(Write::Delete {
            table,
            key: key.into(),
            expect,
        });
    }

    /// The transaction applies only while the row at `key` meets `expect`; nothing is written.
    pub fn check(&mut self, table: Table, key: impl Into<String>, expect: Expect) {
        self.writes.push(Write::Check {
            table,
            key: key.into(),
            expect,
        });
    }

    pub fn claim(&mut self, kind: ClaimKind, value: impl Into<String>, owner: impl Into<String>) {
        self.claims.push(Claim {
            kind,
            value: value.into(),
            owner: owner.into(),
        });
    }

    pub fn release(&mut self, kind: ClaimKind, value: impl Into<String>, owner: impl Into<String>) {
        self.releases.push(Claim {
            kind,
            value: value.into(),
            owner: owner.into(),
        });
    }

    /// Adds everything `other` claims, releases, writes and emits to this transaction.
    pub fn append(&mut self, other: Transaction) {
        self.claims.extend(other.claims);
        self.releases.extend(other.releases);
        self.writes.extend(other.writes);
        self.events.extend(other.events);
    }

    pub fn event(&mut self, topic: Topic, entity_id: impl Into<String>, version: u64) {
        self.events.push(ChangeEvent {
            topic,
            entity_id: entity_id.into(),
            version,
            payload: Value::Null,
        });
    }
}

/// What a committed transaction produced: the versions the written rows reached, in write order
/// (0 for deletes, the version found for checks), and the outbox cursor after its last event (`None` without events).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitInfo {
    pub versions: Vec<u64>,
    pub cursor: Option<OutboxCursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A claimed value belongs to another owner; nothing was applied.
    #[error("{kind:?} value already claimed by another owner")]
    ClaimTaken { kind: ClaimKind, owner: String },
    /// A write's expectation did not hold; nothing was applied.
    #[error("version conflict on {table:?} row")]
    Conflict { table: Table, key: String },
    /// The engine could not be reached; the transaction was certainly not applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The engine timed out: the transaction may or may not have been applied.
    #[error("store outcome unknown: {0}")]
    Indeterminate(String),
    /// The acknowledging consumer's lease was taken by another holder; nothing was recorded.
    #[error("lease of consumer {0} is held by another instance")]
    LeaseLost(String),
    #[error("store failure: {0}")]
    Internal(String),
}

/// How a store failure reaches a client: an unreachable engine is 503, an outcome-unknown write
/// is 504, anything else is an internal error logged at the edge. `?` does the mapping, so no
/// layer can map a store error by hand.
impl From<StoreError> for crate::domain::DomainError {
    fn from(error: StoreError) -> Self {
        use crate::domain::DomainError;
        match error {
            StoreError::Unavailable(what) => DomainError::Unavailable(what),
            StoreError::Indeterminate(what) => DomainError::Timeout(what),
            other => DomainError::internal(other),
        }
    }
}

impl StoreError {
    /// True when the transaction certainly left no trace (safe to retry as is).
    pub fn certainly_not_applied(&self) -> bool {
        !matches!(self, StoreError::Indeterminate(_) | StoreError::Internal(_))
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the transaction atomically and durably, or not at all.
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError>;
    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError>;
    /// Rows whose key starts with `prefix`, in key order, after `start_after` (exclusive). On a
    /// partitioned Scylla table the prefix is a whole first key part (`a␟`) or empty, and the
    /// whole table comes in token order (each row once, paged by the last key seen).
    async fn scan(
        &self,
        table: Table,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// The owner of a claimed value, if any.
    async fn claim_owner(&self, kind: ClaimKind, value: &str)
    -> Result<Option<String>, StoreError>;
    /// Outbox records after `after`, in cursor order.
    async fn read_outbox(
        &self,
        after: &OutboxCursor,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError>;
    /// The cursor after the newest committed event: a consumer at this cursor is caught up.
    async fn outbox_head(&self) -> Result<OutboxCursor, StoreError>;
    /// Makes `consumer` known at `now_ms` (a new one starts at the oldest retained event), so
    /// the outbox is kept for it from now on.
    async fn register_consumer(&self, consumer: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Where `consumer` resumes: everything up to this cursor is applied.
    async fn consumer_cursor(&self, consumer: &str) -> Result<OutboxCursor, StoreError>;
    /// Records that the consumer applied everything up to its cursor (a cursor never moves back)
    /// and trims what every consumer seen within [`CONSUMER_RETENTION_MS`] has applied. With a
    /// lease, only while that lease is still the consumer's current one
    /// ([`StoreError::LeaseLost`] otherwise, and nothing is recorded).
    async fn acknowledge(&self, acknowledgement: Acknowledgement<'_>) -> Result<(), StoreError>;
    /// Takes the lease of a competing consumer for `holder` until `now_ms + ttl_ms`, or renews
    /// it when `holder` already has it. `None` while another holder's lease has not expired.
    async fn acquire_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;
    /// Gives the lease up at once (a clean stop), so another instance need not wait for expiry.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;
    /// Changes after every local commit that added outbox events, so in-process consumers wake
    /// at once. `None` when the engine cannot tell (consumers poll).
    fn commit_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
    async fn healthy(&self) -> bool;
}
