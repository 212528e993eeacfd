//! Every CQL statement the Scylla store sends, as data: the schema, and one [`Stmt`] per
//! statement it prepares, with its text, the values it binds (in order) and how it is sent.
//! The golden tests below pin each text; the simulator in `sim.rs` gives each the meaning the
//! text has on a server.

use crate::storage::Table;

/// A bound or returned CQL value (the few types the schema uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    BigInt(i64),
    Int(i32),
    Blob(Vec<u8>),
    Bool(bool),
}

impl Value {
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn bigint(&self) -> Option<i64> {
        match self {
            Value::BigInt(n) => Some(*n),
            _ => None,
        }
    }

    pub fn blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// A result row, its columns by name (an LWT answers `[applied]` and, when not applied, the
/// columns of the row as it is; engines differ in which and in what order, so callers read by
/// name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CqlRow(pub Vec<(String, Value)>);

impl CqlRow {
    pub fn get(&self, column: &str) -> &Value {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, value)| value)
            .unwrap_or(&Value::Null)
    }

    pub fn applied(&self) -> bool {
        matches!(self.get("[applied]"), Value::Bool(true))
    }
}

/// How a statement is sent: reads at the local quorum, settling reads at LOCAL_SERIAL (they
/// also finish any Paxos round left in flight), conditional writes (LWT) with the serial
/// consistency for their Paxos phase, plain writes at the local quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Read,
    SerialRead,
    Lwt,
    Write,
}

/// Every statement of the store. Row statements are per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// (id, key) -> key, version, doc, txn
    RowGet(Table),
    /// (id, key >=, key <, limit)
    RowScanFrom(Table),
    /// (id, key >, key <, limit)
    RowScanAfter(Table),
    /// (limit): the first page of a whole partitioned table, in token order
    RowScanTokenStart(Table),
    /// (id, limit): the partitions after `id`'s, in token order
    RowScanTokenAfter(Table),
    /// (id, key, txn): a placeholder row (version 0, no document) locked by `txn`
    RowInsertLock(Table),
    /// (txn, id, key, version): locks the row at exactly that version
    RowLock(Table),
    /// (version, doc, id, key, txn): the transaction's new row, unlocked
    RowApplyPut(Table),
    /// (id, key, txn): the transaction's delete (or the removal of its placeholder)
    RowApplyDelete(Table),
    /// (id, key, txn)
    RowUnlock(Table),
    /// (type, value) -> userid, txn, release_txn
    ClaimGet,
    /// (type, value, userid, txn)
    ClaimInsert,
    /// (type, value, txn): the claim's transaction committed
    ClaimConfirm,
    /// (type, value, txn): the claim's transaction did not commit
    ClaimDrop,
    /// (release_txn, type, value, userid): a committed claim its owner gives up, held by the
    /// releasing transaction until it is decided
    ClaimLockRelease,
    /// (type, value, release_txn): the release committed
    ClaimApplyRelease,
    /// (type, value, release_txn): the release did not commit
    ClaimUnlockRelease,
    /// (id) -> state, plan
    TxnGet,
    /// (id, plan): the commit point
    TxnCommit,
    /// (id): fences a stalled transaction off its commit point
    TxnAbort,
    /// (id): a coordinator gives its own transaction up (it never sends the commit point
    /// afterwards, so the record may expire)
    TxnAbortOwn,
    /// (id): a committed transaction fully applied
    TxnDone,
    /// (bucket) -> seq, count
    OutboxLast,
    /// (bucket, seq, txn, count, events)
    OutboxAppend,
    /// (bucket, seq >=, limit) -> seq, txn, state, count, events
    OutboxRead,
    /// (bucket, seq <=, limit) -> seq, txn, state, count, events, newest first
    OutboxReadBack,
    /// (state, bucket, seq, txn)
    OutboxSettle,
    /// (bucket): a whole bucket trimmed
    OutboxDropBucket,
    /// (bucket, seq <=): the trimmed start of a bucket
    OutboxDropBelow,
    /// () -> trimmed (a cursor), epoch (counts consumer registrations)
    StateGet,
    /// (trimmed): the start of a new outbox
    StateInit,
    /// (trimmed, trimmed before, epoch before): the position everything up to which is
    /// trimmed, unless a consumer registered since the trim was worked out
    StateTrim,
    /// (epoch, epoch before): a consumer registered (a trim worked out before it is refused)
    StateRegister,
    /// (name) -> position, seen_ms, holder, lease_token, expires_at_ms
    ConsumerGet,
    /// (limit) -> name, position, seen_ms
    ConsumerList,
    /// (name, position, seen_ms)
    ConsumerInit,
    /// (position, seen_ms, name): a consumer first known by its lease
    ConsumerStart,
    /// (position, seen_ms, name, position before, lease_token)
    ConsumerAck,
    /// (name): a lease row for a consumer not registered yet
    LeaseInit,
    /// (holder, lease_token, expires_at_ms, name, lease_token before)
    LeaseTake,
}

/// Tables small enough to keep in one partition (`id` is always [`SINGLE_PARTITION`]), so a
/// scan of the whole table is one partition read in key order. The others are partitioned by
/// the first part of the key (a user's id for a user and their memberships).
pub fn single_partition(table: Table) -> bool {
    matches!(
        table,
        Table::Role
            | Table::RoleGroup
            | Table::SystemSettings
            | Table::TenantPreference
            | Table::ApiConsumer
            | Table::ApiCredential
            | Table::Meta
    )
}

/// The partition key of the rows of a single-partition table.
pub const SINGLE_PARTITION: &str = "all";

impl Stmt {
    pub fn mode(self) -> Mode {
        use Stmt::*;
        match self {
            RowGet(_) | RowScanFrom(_) | RowScanAfter(_) | RowScanTokenStart(_)
            | RowScanTokenAfter(_) | ClaimGet | OutboxLast | OutboxRead | OutboxReadBack
            | StateGet | ConsumerGet | ConsumerList => Mode::Read,
            TxnGet => Mode::SerialRead,
            OutboxDropBucket | OutboxDropBelow => Mode::Write,
            _ => Mode::Lwt,
        }
    }

    /// The statement's text in keyspace `ks` (a validated identifier).
    pub fn text(self, ks: &str) -> String {
        use Stmt::*;
        let row_columns = "key, version, doc, txn";
        match self {
            RowGet(t) => format!(
                "SELECT {row_columns} FROM {ks}.{} WHERE id = ? AND key = ?",
                t.name()
            ),
            RowScanFrom(t) => format!(
                "SELECT {row_columns} FROM {ks}.{} WHERE id = ? AND key >= ? AND key < ? LIMIT ?",
                t.name()
            ),
            RowScanAfter(t) => format!(
                "SELECT {row_columns} FROM {ks}.{} WHERE id = ? AND key > ? AND key < ? LIMIT ?",
                t.name()
            ),
            RowScanTokenStart(t) => {
                format!("SELECT id, {row_columns} FROM {ks}.{} LIMIT ?", t.name())
            }
            RowScanTokenAfter(t) => format!(
                "SELECT id, {row_columns} FROM {ks}.{} WHERE token(id) > token(?) LIMIT ?",
                t.name()
            ),
            RowInsertLock(t) => format!(
                "INSERT INTO {ks}.{} (id, key, version, txn) VALUES (?, ?, 0, ?) IF NOT EXISTS",
                t.name()
            ),
            RowLock(t) => format!(
                "UPDATE {ks}.{} SET txn = ? WHERE id = ? AND key = ? IF version = ? AND txn = null",
                t.name()
            ),
            RowApplyPut(t) => format!(
                "UPDATE {ks}.{} SET version = ?, doc = ?, txn = null WHERE id = ? AND key = ? IF txn = ?",
                t.name()
            ),
            RowApplyDelete(t) => format!(
                "DELETE FROM {ks}.{} WHERE id = ? AND key = ? IF txn = ?",
                t.name()
            ),
            RowUnlock(t) => format!(
                "UPDATE {ks}.{} SET txn = null WHERE id = ? AND key = ? IF txn = ?",
                t.name()
            ),
            ClaimGet => format!(
                "SELECT userid, txn, release_txn FROM {ks}.user_lookup WHERE type = ? AND value = ?"
            ),
            ClaimInsert => format!(
                "INSERT INTO {ks}.user_lookup (type, value, userid, txn) VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ),
            ClaimConfirm => format!(
                "UPDATE {ks}.user_lookup SET txn = null WHERE type = ? AND value = ? IF txn = ?"
            ),
            ClaimDrop => {
                format!("DELETE FROM {ks}.user_lookup WHERE type = ? AND value = ? IF txn = ?")
            }
            ClaimLockRelease => format!(
                "UPDATE {ks}.user_lookup SET release_txn = ? WHERE type = ? AND value = ? IF userid = ? AND txn = null AND release_txn = null"
            ),
            ClaimApplyRelease => format!(
                "DELETE FROM {ks}.user_lookup WHERE type = ? AND value = ? IF release_txn = ?"
            ),
            ClaimUnlockRelease => format!(
                "UPDATE {ks}.user_lookup SET release_txn = null WHERE type = ? AND value = ? IF release_txn = ?"
            ),
            TxnGet => format!("SELECT state, plan FROM {ks}.userorg_txn WHERE id = ?"),
            TxnCommit => format!(
                "INSERT INTO {ks}.userorg_txn (id, state, plan) VALUES (?, 'committed', ?) IF NOT EXISTS"
            ),
            TxnAbort => format!(
                "INSERT INTO {ks}.userorg_txn (id, state) VALUES (?, 'aborted') IF NOT EXISTS"
            ),
            TxnAbortOwn => format!(
                "INSERT INTO {ks}.userorg_txn (id, state) VALUES (?, 'aborted') IF NOT EXISTS USING TTL 86400"
            ),
            TxnDone => format!("DELETE FROM {ks}.userorg_txn WHERE id = ? IF state = 'committed'"),
            OutboxLast => format!(
                "SELECT seq, count FROM {ks}.userorg_outbox WHERE bucket = ? ORDER BY seq DESC LIMIT 1"
            ),
            OutboxAppend => format!(
                "INSERT INTO {ks}.userorg_outbox (bucket, seq, txn, state, count, events) VALUES (?, ?, ?, 'pending', ?, ?) IF NOT EXISTS"
            ),
            OutboxRead => format!(
                "SELECT seq, txn, state, count, events FROM {ks}.userorg_outbox WHERE bucket = ? AND seq >= ? LIMIT ?"
            ),
            OutboxReadBack => format!(
                "SELECT seq, txn, state, count, events FROM {ks}.userorg_outbox WHERE bucket = ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
            ),
            OutboxSettle => format!(
                "UPDATE {ks}.userorg_outbox SET state = ? WHERE bucket = ? AND seq = ? IF txn = ? AND state = 'pending'"
            ),
            OutboxDropBucket => format!("DELETE FROM {ks}.userorg_outbox WHERE bucket = ?"),
            OutboxDropBelow => {
                format!("DELETE FROM {ks}.userorg_outbox WHERE bucket = ? AND seq <= ?")
            }
            StateGet => {
                format!("SELECT trimmed, epoch FROM {ks}.userorg_outbox_state WHERE id = 0")
            }
            StateInit => format!(
                "INSERT INTO {ks}.userorg_outbox_state (id, trimmed, epoch) VALUES (0, ?, 0) IF NOT EXISTS"
            ),
            StateTrim => format!(
                "UPDATE {ks}.userorg_outbox_state SET trimmed = ? WHERE id = 0 IF trimmed = ? AND epoch = ?"
            ),
            StateRegister => {
                format!("UPDATE {ks}.userorg_outbox_state SET epoch = ? WHERE id = 0 IF epoch = ?")
            }
            ConsumerGet => format!(
                "SELECT position, seen_ms, holder, lease_token, expires_at_ms FROM {ks}.userorg_consumer WHERE name = ?"
            ),
            ConsumerList => {
                format!("SELECT name, position, seen_ms FROM {ks}.userorg_consumer LIMIT ?")
            }
            ConsumerInit => format!(
                "INSERT INTO {ks}.userorg_consumer (name, position, seen_ms, lease_token) VALUES (?, ?, ?, 0) IF NOT EXISTS"
            ),
            ConsumerStart => format!(
                "UPDATE {ks}.userorg_consumer SET position = ?, seen_ms = ? WHERE name = ? IF position = null"
            ),
            ConsumerAck => format!(
                "UPDATE {ks}.userorg_consumer SET position = ?, seen_ms = ? WHERE name = ? IF position = ? AND lease_token = ?"
            ),
            LeaseInit => format!(
                "INSERT INTO {ks}.userorg_consumer (name, lease_token) VALUES (?, 0) IF NOT EXISTS"
            ),
            LeaseTake => format!(
                "UPDATE {ks}.userorg_consumer SET holder = ?, lease_token = ?, expires_at_ms = ? WHERE name = ? IF lease_token = ?"
            ),
        }
    }

    /// Every statement the store prepares.
    pub fn all() -> Vec<Stmt> {
        use Stmt::*;
        let mut all = Vec::new();
        for table in Table::ALL {
            all.extend([
                RowGet(table),
                RowScanFrom(table),
                RowScanAfter(table),
                RowInsertLock(table),
                RowLock(table),
                RowApplyPut(table),
                RowApplyDelete(table),
                RowUnlock(table),
            ]);
            if !single_partition(table) {
                all.extend([RowScanTokenStart(table), RowScanTokenAfter(table)]);
            }
        }
        all.extend([
            ClaimGet,
            ClaimInsert,
            ClaimConfirm,
            ClaimDrop,
            ClaimLockRelease,
            ClaimApplyRelease,
            ClaimUnlockRelease,
            TxnGet,
            TxnCommit,
            TxnAbort,
            TxnAbortOwn,
            TxnDone,
            OutboxLast,
            OutboxAppend,
            OutboxRead,
            OutboxReadBack,
            OutboxSettle,
            OutboxDropBucket,
            OutboxDropBelow,
            StateGet,
            StateInit,
            StateTrim,
            StateRegister,
            ConsumerGet,
            ConsumerList,
            ConsumerInit,
            ConsumerStart,
            ConsumerAck,
            LeaseInit,
            LeaseTake,
        ]);
        all
    }
}

/// A keyspace name that needs no quoting: lower-case letters, digits and `_`, starting with a
/// letter, at most 48 bytes.
pub fn valid_keyspace(keyspace: &str) -> bool {
    !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace.as_bytes()[0].is_ascii_lowercase()
        && keyspace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The schema, in order; every statement is idempotent. `replication` is the keyspace's
/// replication map as CQL (`{'class': 'NetworkTopologyStrategy', 'dc1': 3}`).
pub fn schema_statements(ks: &str, replication: &str) -> Vec<String> {
    let mut statements = vec![format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"
    )];
    for table in Table::ALL {
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{} (id text, key text, version bigint, doc text, txn text, PRIMARY KEY (id, key))",
            table.name()
        ));
    }
    statements.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.user_lookup (type text, value text, userid text, txn text, release_txn text, PRIMARY KEY ((type, value)))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.userorg_txn (id text PRIMARY KEY, state text, plan text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.userorg_outbox (bucket bigint, seq bigint, txn text, state text, count int, events text, PRIMARY KEY (bucket, seq)) WITH CLUSTERING ORDER BY (seq ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.userorg_outbox_state (id int PRIMARY KEY, trimmed blob, epoch bigint)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.userorg_consumer (name text PRIMARY KEY, position blob, seen_ms bigint, holder text, lease_token bigint, expires_at_ms bigint)"
        ),
    ]);
    statements
}

/// The replication `cql/schema.cql` is written with (one datacenter, three replicas).
pub const DEFAULT_REPLICATION: &str = "{'class': 'NetworkTopologyStrategy', 'dc1': 3}";

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements as the server receives them, pinned. A change here is a change of the
    /// data layout or of the protocol, and must be made on purpose (with the reasoning in
    /// docs/ARCHITECTURE.md kept true).
    #[test]
    fn every_prepared_statement_is_pinned() {
        let user: Vec<String> = [
            Stmt::RowGet(Table::User),
            Stmt::RowScanFrom(Table::User),
            Stmt::RowScanAfter(Table::User),
            Stmt::RowScanTokenStart(Table::User),
            Stmt::RowScanTokenAfter(Table::User),
            Stmt::RowInsertLock(Table::User),
            Stmt::RowLock(Table::User),
            Stmt::RowApplyPut(Table::User),
            Stmt::RowApplyDelete(Table::User),
            Stmt::RowUnlock(Table::User),
        ]
        .iter()
        .map(|s| s.text("sunbird"))
        .collect();
        assert_eq!(
            user,
            [
                "SELECT key, version, doc, txn FROM sunbird.user WHERE id = ? AND key = ?",
                "SELECT key, version, doc, txn FROM sunbird.user WHERE id = ? AND key >= ? AND key < ? LIMIT ?",
                "SELECT key, version, doc, txn FROM sunbird.user WHERE id = ? AND key > ? AND key < ? LIMIT ?",
                "SELECT id, key, version, doc, txn FROM sunbird.user LIMIT ?",
                "SELECT id, key, version, doc, txn FROM sunbird.user WHERE token(id) > token(?) LIMIT ?",
                "INSERT INTO sunbird.user (id, key, version, txn) VALUES (?, ?, 0, ?) IF NOT EXISTS",
                "UPDATE sunbird.user SET txn = ? WHERE id = ? AND key = ? IF version = ? AND txn = null",
                "UPDATE sunbird.user SET version = ?, doc = ?, txn = null WHERE id = ? AND key = ? IF txn = ?",
                "DELETE FROM sunbird.user WHERE id = ? AND key = ? IF txn = ?",
                "UPDATE sunbird.user SET txn = null WHERE id = ? AND key = ? IF txn = ?",
            ]
        );
        let rest: Vec<String> = Stmt::all()
            .into_iter()
            .filter(|s| !format!("{s:?}").starts_with("Row"))
            .map(|s| s.text("sunbird"))
            .collect();
        assert_eq!(
            rest,
            [
                "SELECT userid, txn, release_txn FROM sunbird.user_lookup WHERE type = ? AND value = ?",
                "INSERT INTO sunbird.user_lookup (type, value, userid, txn) VALUES (?, ?, ?, ?) IF NOT EXISTS",
                "UPDATE sunbird.user_lookup SET txn = null WHERE type = ? AND value = ? IF txn = ?",
                "DELETE FROM sunbird.user_lookup WHERE type = ? AND value = ? IF txn = ?",
                "UPDATE sunbird.user_lookup SET release_txn = ? WHERE type = ? AND value = ? IF userid = ? AND txn = null AND release_txn = null",
                "DELETE FROM sunbird.user_lookup WHERE type = ? AND value = ? IF release_txn = ?",
                "UPDATE sunbird.user_lookup SET release_txn = null WHERE type = ? AND value = ? IF release_txn = ?",
                "SELECT state, plan FROM sunbird.userorg_txn WHERE id = ?",
                "INSERT INTO sunbird.userorg_txn (id, state, plan) VALUES (?, 'committed', ?) IF NOT EXISTS",
                "INSERT INTO sunbird.userorg_txn (id, state) VALUES (?, 'aborted') IF NOT EXISTS",
                "INSERT INTO sunbird.userorg_txn (id, state) VALUES (?, 'aborted') IF NOT EXISTS USING TTL 86400",
                "DELETE FROM sunbird.userorg_txn WHERE id = ? IF state = 'committed'",
                "SELECT seq, count FROM sunbird.userorg_outbox WHERE bucket = ? ORDER BY seq DESC LIMIT 1",
                "INSERT INTO sunbird.userorg_outbox (bucket, seq, txn, state, count, events) VALUES (?, ?, ?, 'pending', ?, ?) IF NOT EXISTS",
                "SELECT seq, txn, state, count, events FROM sunbird.userorg_outbox WHERE bucket = ? AND seq >= ? LIMIT ?",
                "SELECT seq, txn, state, count, events FROM sunbird.userorg_outbox WHERE bucket = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
                "UPDATE sunbird.userorg_outbox SET state = ? WHERE bucket = ? AND seq = ? IF txn = ? AND state = 'pending'",
                "DELETE FROM sunbird.userorg_outbox WHERE bucket = ?",
                "DELETE FROM sunbird.userorg_outbox WHERE bucket = ? AND seq <= ?",
                "SELECT trimmed, epoch FROM sunbird.userorg_outbox_state WHERE id = 0",
                "INSERT INTO sunbird.userorg_outbox_state (id, trimmed, epoch) VALUES (0, ?, 0) IF NOT EXISTS",
                "UPDATE sunbird.userorg_outbox_state SET trimmed = ? WHERE id = 0 IF trimmed = ? AND epoch = ?",
                "UPDATE sunbird.userorg_outbox_state SET epoch = ? WHERE id = 0 IF epoch = ?",
                "SELECT position, seen_ms, holder, lease_token, expires_at_ms FROM sunbird.userorg_consumer WHERE name = ?",
                "SELECT name, position, seen_ms FROM sunbird.userorg_consumer LIMIT ?",
                "INSERT INTO sunbird.userorg_consumer (name, position, seen_ms, lease_token) VALUES (?, ?, ?, 0) IF NOT EXISTS",
                "UPDATE sunbird.userorg_consumer SET position = ?, seen_ms = ? WHERE name = ? IF position = null",
                "UPDATE sunbird.userorg_consumer SET position = ?, seen_ms = ? WHERE name = ? IF position = ? AND lease_token = ?",
                "INSERT INTO sunbird.userorg_consumer (name, lease_token) VALUES (?, 0) IF NOT EXISTS",
                "UPDATE sunbird.userorg_consumer SET holder = ?, lease_token = ?, expires_at_ms = ? WHERE name = ? IF lease_token = ?",
            ]
        );
        // Every table's statements differ only by the table name.
        for table in Table::ALL {
            assert_eq!(
                Stmt::RowLock(table).text("sunbird"),
                Stmt::RowLock(Table::User)
                    .text("sunbird")
                    .replace("sunbird.user ", &format!("sunbird.{} ", table.name()))
            );
        }
    }

    #[test]
    fn only_reads_and_trims_are_sent_without_paxos() {
        for stmt in Stmt::all() {
            let text = stmt.text("ks");
            let conditional = text.contains(" IF ");
            match stmt.mode() {
                Mode::Lwt => assert!(conditional, "{text}"),
                Mode::Read | Mode::SerialRead => assert!(text.starts_with("SELECT"), "{text}"),
                Mode::Write => assert!(text.starts_with("DELETE") && !conditional, "{text}"),
            }
            let point = matches!(
                stmt,
                Stmt::RowGet(_)
                    | Stmt::ClaimGet
                    | Stmt::TxnGet
                    | Stmt::StateGet
                    | Stmt::ConsumerGet
            );
            if text.starts_with("SELECT") && !point {
                assert!(text.contains(" LIMIT "), "a scan is always bounded: {text}");
            }
        }
    }

    #[test]
    fn the_schema_file_is_what_schema_apply_sends() {
        let expected: String = schema_statements("sunbird", DEFAULT_REPLICATION)
            .iter()
            .map(|s| format!("{s};\n"))
            .collect();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/cql/schema.cql");
        if std::env::var_os("USERORG_REGENERATE_CQL").is_some() {
            let header = "-- The ScyllaDB / Cassandra schema of userorg, as `userorg schema apply` sends it\n\
                -- (keyspace `sunbird`; the replication below is the default of `[store.scylla]\n\
                -- replication`). Generated: USERORG_REGENERATE_CQL=1 cargo test the_schema_file\n";
            std::fs::write(path, format!("{header}{expected}")).expect("write cql/schema.cql");
        }
        let file = std::fs::read_to_string(path).expect("cql/schema.cql");
        let statements: String = file
            .lines()
            .filter(|line| !line.starts_with("--") && !line.trim().is_empty())
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(statements, expected, "regenerate cql/schema.cql");
    }

    /// CQL's reserved words (Cassandra 4 and ScyllaDB) cannot name a table or a column.
    #[test]
    fn no_table_or_column_is_a_reserved_word() {
        const RESERVED: &[&str] = &[
            "add",
            "allow",
            "alter",
            "and",
            "apply",
            "asc",
            "authorize",
            "batch",
            "begin",
            "by",
            "columnfamily",
            "create",
            "delete",
            "desc",
            "describe",
            "drop",
            "entries",
            "execute",
            "from",
            "full",
            "grant",
            "if",
            "in",
            "index",
            "infinity",
            "insert",
            "into",
            "is",
            "keyspace",
            "limit",
            "materialized",
            "mbean",
            "mbeans",
            "modify",
            "nan",
            "norecursive",
            "not",
            "null",
            "of",
            "on",
            "or",
            "order",
            "primary",
            "rename",
            "replace",
            "revoke",
            "schema",
            "select",
            "set",
            "table",
            "to",
            "token",
            "truncate",
            "unlogged",
            "unset",
            "update",
            "use",
            "using",
            "view",
            "where",
            "with",
        ];
        for statement in schema_statements("sunbird", DEFAULT_REPLICATION)
            .iter()
            .skip(1)
        {
            let (_, columns) = statement.split_once(" (").expect("a column list");
            let name = statement
                .split_whitespace()
                .nth(5)
                .and_then(|table| table.strip_prefix("sunbird."))
                .expect("a table name");
            assert!(!RESERVED.contains(&name), "table {name}");
            for column in columns.split(", ") {
                let column = column.split_whitespace().next().unwrap_or_default();
                if column == "PRIMARY" {
                    break;
                }
                assert!(!RESERVED.contains(&column), "{name}.{column}");
            }
        }
    }

    #[test]
    fn keyspace_names_are_checked_before_they_reach_cql() {
        assert!(valid_keyspace("sunbird"));
        assert!(valid_keyspace("userorg_test_1"));
        for bad in ["", "1ks", "Sunbird", "ks;DROP", "ks.other", &"k".repeat(49)] {
            assert!(!valid_keyspace(bad), "{bad}");
        }
    }
}
