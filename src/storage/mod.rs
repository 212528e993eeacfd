//! The system of record: a `Store` trait over tables of versioned JSON rows, uniqueness claims and
//! a change outbox, all written together in one atomic [`Transaction`].
//!
//! The shape follows what both engines can do atomically:
//! - embedded (redb, [`redb_store::RedbStore`]): one serialised write transaction checks every
//!   claim and version expectation, then applies everything, so concurrent creates of one email
//!   can never both win;
//! - Scylla (later): claims as `INSERT ... IF NOT EXISTS` on lookup rows, row writes guarded by
//!   `IF version = ?`, then a logged batch of rows and outbox.
//!
//! Rows are keyed by strings; composite keys are built with [`compose_key`] so a prefix scan over
//! the first part lists the rest (a user's memberships, for instance).

pub mod cached;
pub mod conformance;
pub mod records;
pub mod redb_store;

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
}

impl Table {
    pub const ALL: [Table; 11] = [
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

/// The streams of the change outbox, one per kind of entity whose derived views (search
/// documents) follow the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    User,
    Organisation,
    Location,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::User, Topic::Organisation, Topic::Location];

    /// The name on the wire and in `/v1/data/sync`'s `objectType`.
    pub fn name(self) -> &'static str {
        match self {
            Topic::User => "user",
            Topic::Organisation => "organisation",
            Topic::Location => "location",
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

/// One outbox record with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub sequence: u64,
    pub event: ChangeEvent,
}

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

    pub fn delete(&mut self, table: Table, key: impl Into<String>, expect: Expect) {
        self.writes.push(Write::Delete {
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
/// (0 for deletes), and the outbox positions of its events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitInfo {
    pub versions: Vec<u64>,
    pub sequences: Vec<u64>,
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

/// Which outbox consumers exist; the outbox is trimmed below the slowest of them.
pub const OUTBOX_CONSUMERS: &[&str] = &[INDEXER_CONSUMER];
pub const INDEXER_CONSUMER: &str = "indexer";

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the transaction atomically and durably, or not at all.
    async fn commit(&self, transaction: Transaction) -> Result<CommitInfo, StoreError>;
    async fn get(&self, table: Table, key: &str) -> Result<Option<Row>, StoreError>;
    /// Rows whose key starts with `prefix`, in key order, after `start_after` (exclusive).
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
    /// Outbox records after `after`, oldest first.
    async fn read_outbox(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StoreError>;
    /// The last outbox position `consumer` has processed (0 when it never ran).
    async fn consumer_position(&self, consumer: &str) -> Result<u64, StoreError>;
    /// Records that `consumer` processed everything up to `sequence`, and trims outbox records
    /// every registered consumer has processed.
    async fn acknowledge(&self, consumer: &str, sequence: u64) -> Result<(), StoreError>;
    async fn healthy(&self) -> bool;
}
