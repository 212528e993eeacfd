//! A cluster in memory for the Scylla store's tests: each [`Stmt`] does what its CQL text does
//! on a server, one statement at a time (every statement is linearisable here, which a real
//! cluster guarantees for LWTs and LOCAL_SERIAL reads only). Several sessions share one
//! cluster, and each has failure points: a session can be made to fail every statement from
//! its n-th on (an instance that died mid-commit), or to time out one kind of statement after
//! (or before) applying it.
//!
//! It is how the commit protocol is tested here without a ScyllaDB server; it is not evidence
//! that a server accepts the statements (the conformance suite against `USERORG_TEST_SCYLLA`
//! is).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::cql::{CqlRow, Stmt, Value};
use super::{Cql, CqlError};

#[derive(Debug, Clone, Default)]
struct SimRow {
    version: i64,
    doc: Option<String>,
    txn: Option<String>,
}

#[derive(Debug, Clone)]
struct SimClaim {
    userid: String,
    txn: Option<String>,
    release_txn: Option<String>,
}

fn claim_columns(claim: &SimClaim) -> Vec<(String, Value)> {
    vec![
        ("userid".into(), Value::Text(claim.userid.clone())),
        ("txn".into(), opt(claim.txn.clone(), Value::Text)),
        (
            "release_txn".into(),
            opt(claim.release_txn.clone(), Value::Text),
        ),
    ]
}

#[derive(Debug, Clone)]
struct SimSlot {
    txn: String,
    state: String,
    count: i32,
    events: String,
}

#[derive(Debug, Clone, Default)]
struct SimConsumer {
    position: Option<Vec<u8>>,
    seen_ms: Option<i64>,
    holder: Option<String>,
    token: Option<i64>,
    expires_at_ms: Option<i64>,
}

#[derive(Default)]
struct Cluster {
    rows: BTreeMap<(&'static str, String, String), SimRow>,
    claims: BTreeMap<(String, String), SimClaim>,
    txns: HashMap<String, (String, Option<String>)>,
    outbox: BTreeMap<(i64, i64), SimSlot>,
    trimmed: Option<Vec<u8>>,
    epoch: i64,
    consumers: BTreeMap<String, SimConsumer>,
}

/// When a session's statements fail.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Statements this session still sends before it dies (`None`: it never does).
    dies_after: Option<usize>,
    /// The next statement of this kind times out, after being applied when the flag is set.
    timeout: Option<(Stmt, bool)>,
    /// The session dies right after this statement is applied.
    dies_after_sending: Option<Stmt>,
}

/// A statement as a session sent it.
type Sent = (Stmt, Vec<Value>);

#[derive(Clone, Default)]
pub struct SimCql {
    cluster: Arc<Mutex<Cluster>>,
    faults: Arc<Mutex<Faults>>,
    log: Arc<Mutex<Vec<Sent>>>,
}

fn t(values: &[Value], i: usize) -> String {
    values[i].text().unwrap_or_default().to_string()
}

fn opt_t(values: &[Value], i: usize) -> Option<String> {
    values[i].text().map(str::to_string)
}

fn n(values: &[Value], i: usize) -> i64 {
    match &values[i] {
        Value::BigInt(n) => *n,
        Value::Int(n) => *n as i64,
        _ => 0,
    }
}

fn b(values: &[Value], i: usize) -> Option<Vec<u8>> {
    values[i].blob().map(<[u8]>::to_vec)
}

fn opt<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

fn applied(yes: bool, mut existing: Vec<(String, Value)>) -> Vec<CqlRow> {
    let mut columns = vec![("[applied]".to_string(), Value::Bool(yes))];
    if !yes {
        columns.append(&mut existing);
    }
    vec![CqlRow(columns)]
}

fn row_columns(key: &str, row: &SimRow) -> Vec<(String, Value)> {
    vec![
        ("key".into(), Value::Text(key.to_string())),
        ("version".into(), Value::BigInt(row.version)),
        ("doc".into(), opt(row.doc.clone(), Value::Text)),
        ("txn".into(), opt(row.txn.clone(), Value::Text)),
    ]
}

/// The partitioner's order (a stand-in for Murmur3: any fixed hash gives a token order that is
/// not key order, which is what callers must cope with).
fn token(id: &str) -> [u8; 8] {
    let digest = Sha256::digest(id.as_bytes());
    digest[..8].try_into().expect("8 bytes")
}

impl SimCql {
    pub fn new() -> SimCql {
        SimCql::default()
    }

    /// Another session (instance) on the same cluster, with its own failure points.
    pub fn session(&self) -> SimCql {
        SimCql {
            cluster: Arc::clone(&self.cluster),
            faults: Arc::default(),
            log: Arc::default(),
        }
    }

    /// This session answers `Unavailable` to every statement after the next `n`.
    pub fn die_after(&self, n: usize) {
        self.faults.lock().expect("faults").dies_after = Some(n);
    }

    /// This session dies (answers `Unavailable` from then on) right after `stmt` is applied.
    pub fn die_after_sending(&self, stmt: Stmt) {
        self.faults.lock().expect("faults").dies_after_sending = Some(stmt);
    }

    /// The next `stmt` of this session times out; it is applied first when `applied`.
    pub fn time_out(&self, stmt: Stmt, applied: bool) {
        self.faults.lock().expect("faults").timeout = Some((stmt, applied));
    }

    /// The statements this session sent, in order.
    pub fn sent(&self) -> Vec<Stmt> {
        let log = self.log.lock().expect("log");
        log.iter().map(|(stmt, _)| *stmt).collect()
    }

    pub fn clear_log(&self) {
        self.log.lock().expect("log").clear();
    }

    /// Items still held by some transaction: (locked rows, pending claims, pending slots,
    /// commit records).
    pub fn held(&self) -> (usize, usize, usize, usize) {
        let cluster = self.cluster.lock().expect("cluster");
        (
            cluster.rows.values().filter(|r| r.txn.is_some()).count(),
            cluster
                .claims
                .values()
                .filter(|c| c.txn.is_some() || c.release_txn.is_some())
                .count(),
            cluster
                .outbox
                .values()
                .filter(|s| s.state == "pending")
                .count(),
            cluster
                .txns
                .values()
                .filter(|(state, _)| state == "committed")
                .count(),
        )
    }

    /// Runs one statement on the cluster directly (no failure point, not logged).
    pub fn apply(&self, stmt: Stmt, v: &[Value]) -> Result<Vec<CqlRow>, CqlError> {
        let mut c = self.cluster.lock().expect("cluster");
        let c = &mut *c;
        use Stmt::*;
        let rows = match stmt {
            RowGet(table) => {
                let key = (table.name(), t(v, 0), t(v, 1));
                c.rows
                    .get(&key)
                    .map(|row| vec![CqlRow(row_columns(&key.2, row))])
                    .unwrap_or_default()
            }
            RowScanFrom(table) | RowScanAfter(table) => {
                let (id, lower, upper, limit) = (t(v, 0), t(v, 1), t(v, 2), n(v, 3) as usize);
                let inclusive = matches!(stmt, RowScanFrom(_));
                c.rows
                    .range((table.name(), id.clone(), String::new())..)
                    .take_while(|((name, i, _), _)| *name == table.name() && *i == id)
                    .filter(|((_, _, key), _)| {
                        (if inclusive {
                            *key >= lower
                        } else {
                            *key > lower
                        }) && *key < upper
                    })
                    .take(limit)
                    .map(|((_, _, key), row)| CqlRow(row_columns(key, row)))
                    .collect()
            }
            RowScanTokenStart(table) | RowScanTokenAfter(table) => {
                let (after, limit) = match stmt {
                    RowScanTokenAfter(_) => (Some(token(&t(v, 0))), n(v, 1) as usize),
                    _ => (None, n(v, 0) as usize),
                };
                let mut all: Vec<_> = c
                    .rows
                    .iter()
                    .filter(|((name, id, _), _)| {
                        *name == table.name() && after.is_none_or(|after| token(id) > after)
                    })
                    .collect();
                all.sort_by(|a, b| (token(&a.0.1), &a.0.2).cmp(&(token(&b.0.1), &b.0.2)));
                all.into_iter()
                    .take(limit)
                    .map(|((_, id, key), row)| {
                        let mut columns = vec![("id".to_string(), Value::Text(id.clone()))];
                        columns.extend(row_columns(key, row));
                        CqlRow(columns)
                    })
                    .collect()
            }
            RowInsertLock(table) => {
                let key = (table.name(), t(v, 0), t(v, 1));
                match c.rows.get(&key) {
                    Some(row) => applied(false, row_columns(&key.2, row)),
                    None => {
                        c.rows.insert(
                            key,
                            SimRow {
                                version: 0,
                                doc: None,
                                txn: opt_t(v, 2),
                            },
                        );
                        applied(true, vec![])
                    }
                }
            }
            RowLock(table) => {
                let key = (table.name(), t(v, 1), t(v, 2));
                match c.rows.get_mut(&key) {
                    Some(row) if row.version == n(v, 3) && row.txn.is_none() => {
                        row.txn = opt_t(v, 0);
                        applied(true, vec![])
                    }
                    Some(row) => applied(false, row_columns(&key.2, row)),
                    None => applied(false, vec![]),
                }
            }
            RowApplyPut(table) => {
                let key = (table.name(), t(v, 2), t(v, 3));
                match c.rows.get_mut(&key) {
                    Some(row) if row.txn == opt_t(v, 4) => {
                        row.version = n(v, 0);
                        row.doc = opt_t(v, 1);
                        row.txn = None;
                        applied(true, vec![])
                    }
                    Some(row) => applied(false, row_columns(&key.2, row)),
                    None => applied(false, vec![]),
                }
            }
            RowApplyDelete(table) | RowUnlock(table) => {
                let key = (table.name(), t(v, 0), t(v, 1));
                let held = c.rows.get(&key).is_some_and(|row| row.txn == opt_t(v, 2));
                if held {
                    if matches!(stmt, RowApplyDelete(_)) {
                        c.rows.remove(&key);
                    } else if let Some(row) = c.rows.get_mut(&key) {
                        row.txn = None;
                    }
                }
                applied(held, vec![])
            }
            ClaimGet => c
                .claims
                .get(&(t(v, 0), t(v, 1)))
                .map(|claim| vec![CqlRow(claim_columns(claim))])
                .unwrap_or_default(),
            ClaimInsert => {
                let key = (t(v, 0), t(v, 1));
                match c.claims.get(&key) {
                    Some(claim) => applied(false, claim_columns(claim)),
                    None => {
                        c.claims.insert(
                            key,
                            SimClaim {
                                userid: t(v, 2),
                                txn: opt_t(v, 3),
                                release_txn: None,
                            },
                        );
                        applied(true, vec![])
                    }
                }
            }
            ClaimConfirm | ClaimDrop | ClaimApplyRelease | ClaimUnlockRelease => {
                let key = (t(v, 0), t(v, 1));
                let releasing = matches!(stmt, ClaimApplyRelease | ClaimUnlockRelease);
                let held = c.claims.get(&key).is_some_and(|claim| {
                    let holder = if releasing {
                        &claim.release_txn
                    } else {
                        &claim.txn
                    };
                    *holder == opt_t(v, 2)
                });
                if held {
                    if matches!(stmt, ClaimDrop | ClaimApplyRelease) {
                        c.claims.remove(&key);
                    } else if let Some(claim) = c.claims.get_mut(&key) {
                        if releasing {
                            claim.release_txn = None;
                        } else {
                            claim.txn = None;
                        }
                    }
                }
                applied(held, vec![])
            }
            ClaimLockRelease => {
                let key = (t(v, 1), t(v, 2));
                match c.claims.get_mut(&key) {
                    Some(claim)
                        if claim.userid == t(v, 3)
                            && claim.txn.is_none()
                            && claim.release_txn.is_none() =>
                    {
                        claim.release_txn = opt_t(v, 0);
                        applied(true, vec![])
                    }
                    Some(claim) => applied(false, claim_columns(claim)),
                    None => applied(false, vec![]),
                }
            }
            TxnGet => c
                .txns
                .get(&t(v, 0))
                .map(|(state, plan)| {
                    vec![CqlRow(vec![
                        ("state".into(), Value::Text(state.clone())),
                        ("plan".into(), opt(plan.clone(), Value::Text)),
                    ])]
                })
                .unwrap_or_default(),
            // (The simulated cluster keeps expiring records for ever.)
            TxnCommit | TxnAbort | TxnAbortOwn => {
                let id = t(v, 0);
                match c.txns.get(&id) {
                    Some((state, _)) => {
                        applied(false, vec![("state".into(), Value::Text(state.clone()))])
                    }
                    None => {
                        let record = if stmt == TxnCommit {
                            ("committed".to_string(), opt_t(v, 1))
                        } else {
                            ("aborted".to_string(), None)
                        };
                        c.txns.insert(id, record);
                        applied(true, vec![])
                    }
                }
            }
            TxnDone => {
                let id = t(v, 0);
                let committed = c
                    .txns
                    .get(&id)
                    .is_some_and(|(state, _)| state == "committed");
                if committed {
                    c.txns.remove(&id);
                }
                applied(committed, vec![])
            }
            OutboxLast => {
                let bucket = n(v, 0);
                c.outbox
                    .range((bucket, i64::MIN)..=(bucket, i64::MAX))
                    .next_back()
                    .map(|((_, seq), slot)| {
                        vec![CqlRow(vec![
                            ("seq".into(), Value::BigInt(*seq)),
                            ("count".into(), Value::Int(slot.count)),
                        ])]
                    })
                    .unwrap_or_default()
            }
            OutboxAppend => match c.outbox.entry((n(v, 0), n(v, 1))) {
                std::collections::btree_map::Entry::Occupied(_) => applied(false, vec![]),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(SimSlot {
                        txn: t(v, 2),
                        state: "pending".into(),
                        count: n(v, 3) as i32,
                        events: t(v, 4),
                    });
                    applied(true, vec![])
                }
            },
            OutboxRead => {
                let (bucket, from, limit) = (n(v, 0), n(v, 1), n(v, 2) as usize);
                c.outbox
                    .range((bucket, from)..=(bucket, i64::MAX))
                    .take(limit)
                    .map(|((_, seq), slot)| {
                        CqlRow(vec![
                            ("seq".into(), Value::BigInt(*seq)),
                            ("txn".into(), Value::Text(slot.txn.clone())),
                            ("state".into(), Value::Text(slot.state.clone())),
                            ("events".into(), Value::Text(slot.events.clone())),
                            ("count".into(), Value::Int(slot.count)),
                        ])
                    })
                    .collect()
            }
            OutboxReadBack => {
                let (bucket, upto, limit) = (n(v, 0), n(v, 1), n(v, 2) as usize);
                c.outbox
                    .range((bucket, i64::MIN)..=(bucket, upto))
                    .rev()
                    .take(limit)
                    .map(|((_, seq), slot)| {
                        CqlRow(vec![
                            ("seq".into(), Value::BigInt(*seq)),
                            ("txn".into(), Value::Text(slot.txn.clone())),
                            ("state".into(), Value::Text(slot.state.clone())),
                            ("count".into(), Value::Int(slot.count)),
                            ("events".into(), Value::Text(slot.events.clone())),
                        ])
                    })
                    .collect()
            }
            OutboxSettle => {
                let key = (n(v, 1), n(v, 2));
                let held = c
                    .outbox
                    .get(&key)
                    .is_some_and(|slot| slot.txn == t(v, 3) && slot.state == "pending");
                if let Some(slot) = c.outbox.get_mut(&key).filter(|_| held) {
                    slot.state = t(v, 0);
                }
                applied(held, vec![])
            }
            OutboxDropBucket => {
                let bucket = n(v, 0);
                c.outbox.retain(|(b, _), _| *b != bucket);
                vec![]
            }
            OutboxDropBelow => {
                let (bucket, upto) = (n(v, 0), n(v, 1));
                c.outbox.retain(|(b, seq), _| *b != bucket || *seq > upto);
                vec![]
            }
            StateGet => c
                .trimmed
                .as_ref()
                .map(|trimmed| {
                    vec![CqlRow(vec![
                        ("trimmed".into(), Value::Blob(trimmed.clone())),
                        ("epoch".into(), Value::BigInt(c.epoch)),
                    ])]
                })
                .unwrap_or_default(),
            StateInit => {
                let fresh = c.trimmed.is_none();
                if fresh {
                    c.trimmed = b(v, 0);
                }
                applied(fresh, vec![])
            }
            StateTrim => {
                let matches = c.trimmed == b(v, 1) && c.epoch == n(v, 2);
                if matches {
                    c.trimmed = b(v, 0);
                }
                applied(matches, vec![])
            }
            StateRegister => {
                let matches = c.epoch == n(v, 1);
                if matches {
                    c.epoch = n(v, 0);
                }
                applied(matches, vec![])
            }
            ConsumerGet => c
                .consumers
                .get(&t(v, 0))
                .map(|row| vec![consumer_row(row)])
                .unwrap_or_default(),
            ConsumerList => c
                .consumers
                .iter()
                .take(n(v, 0) as usize)
                .map(|(name, row)| {
                    let mut columns = consumer_row(row).0;
                    columns.push(("name".into(), Value::Text(name.clone())));
                    CqlRow(columns)
                })
                .collect(),
            ConsumerInit | LeaseInit => {
                let name = t(v, 0);
                match c.consumers.get(&name) {
                    Some(row) => applied(false, consumer_row(row).0),
                    None => {
                        let row = if stmt == ConsumerInit {
                            SimConsumer {
                                position: b(v, 1),
                                seen_ms: Some(n(v, 2)),
                                token: Some(0),
                                ..SimConsumer::default()
                            }
                        } else {
                            SimConsumer {
                                token: Some(0),
                                ..SimConsumer::default()
                            }
                        };
                        c.consumers.insert(name, row);
                        applied(true, vec![])
                    }
                }
            }
            ConsumerStart => match c.consumers.get_mut(&t(v, 2)) {
                Some(row) if row.position.is_none() => {
                    row.position = b(v, 0);
                    row.seen_ms = Some(n(v, 1));
                    applied(true, vec![])
                }
                Some(row) => applied(false, consumer_row(row).0),
                None => {
                    // `IF col = null` holds for a row that does not exist: the UPDATE makes it.
                    c.consumers.insert(
                        t(v, 2),
                        SimConsumer {
                            position: b(v, 0),
                            seen_ms: Some(n(v, 1)),
                            ..SimConsumer::default()
                        },
                    );
                    applied(true, vec![])
                }
            },
            ConsumerAck => match c.consumers.get_mut(&t(v, 2)) {
                Some(row) if row.position == b(v, 3) && row.token == Some(n(v, 4)) => {
                    row.position = b(v, 0);
                    row.seen_ms = Some(n(v, 1));
                    applied(true, vec![])
                }
                Some(row) => applied(false, consumer_row(row).0),
                None => applied(false, vec![]),
            },
            LeaseTake => match c.consumers.get_mut(&t(v, 3)) {
                Some(row) if row.token == Some(n(v, 4)) => {
                    row.holder = opt_t(v, 0);
                    row.token = Some(n(v, 1));
                    row.expires_at_ms = Some(n(v, 2));
                    applied(true, vec![])
                }
                Some(row) => applied(false, consumer_row(row).0),
                None => applied(false, vec![]),
            },
        };
        Ok(rows)
    }
}

fn consumer_row(row: &SimConsumer) -> CqlRow {
    CqlRow(vec![
        ("position".into(), opt(row.position.clone(), Value::Blob)),
        ("seen_ms".into(), opt(row.seen_ms, Value::BigInt)),
        ("holder".into(), opt(row.holder.clone(), Value::Text)),
        ("lease_token".into(), opt(row.token, Value::BigInt)),
        (
            "expires_at_ms".into(),
            opt(row.expires_at_ms, Value::BigInt),
        ),
    ])
}

#[async_trait]
impl Cql for SimCql {
    async fn execute(&self, stmt: Stmt, values: Vec<Value>) -> Result<Vec<CqlRow>, CqlError> {
        {
            let mut faults = self.faults.lock().expect("faults");
            if let Some(left) = faults.dies_after.as_mut() {
                if *left == 0 {
                    return Err(CqlError::NotSent("the session is gone".into()));
                }
                *left -= 1;
            }
            if let Some((kind, applied)) = faults.timeout
                && kind == stmt
            {
                faults.timeout = None;
                drop(faults);
                if applied {
                    self.apply(stmt, &values)?;
                }
                return Err(CqlError::Timeout(format!("{stmt:?} timed out")));
            }
        }
        self.log.lock().expect("log").push((stmt, values.clone()));
        // Give other tasks a chance between statements, as a network round trip would.
        tokio::task::yield_now().await;
        let rows = self.apply(stmt, &values);
        let mut faults = self.faults.lock().expect("faults");
        if faults.dies_after_sending == Some(stmt) {
            faults.dies_after = Some(0);
        }
        rows
    }
}
