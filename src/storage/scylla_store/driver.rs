//! The statements of [`super::cql`] sent with the scylla driver: token-aware routing to the
//! local datacenter only, every statement prepared once at start, scans read page by page
//! (never unpaged), LWTs with LOCAL_SERIAL for their Paxos phase.
//!
//! Not run against a server on the machines this was written on (none can be installed
//! there): the conformance suite runs here when `USERORG_TEST_SCYLLA` names a cluster.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use super::cql::{CqlRow, Mode, Stmt, Value, schema_statements, valid_keyspace};
use super::{Cql, CqlError, ScyllaOptions};
use crate::storage::StoreError;

/// Rows per page of a scan.
const PAGE_SIZE: i32 = 500;

pub struct DriverCql {
    session: Arc<Session>,
    prepared: HashMap<Stmt, PreparedStatement>,
}

/// The consistency named in `[store.scylla] consistency`.
pub fn consistency_of(name: &str) -> Result<Consistency, String> {
    Ok(match name {
        "local_quorum" => Consistency::LocalQuorum,
        "quorum" => Consistency::Quorum,
        "each_quorum" => Consistency::EachQuorum,
        "all" => Consistency::All,
        // The protocol reads what an LWT settled at the local quorum: a single replica may not
        // have it yet.
        "one" | "local_one" => {
            return Err(format!(
                "consistency `{name}` is too weak for this store (a read must see what a \
                 conditional write settled): use local_quorum, quorum, each_quorum or all"
            ));
        }
        other => return Err(format!("unknown consistency `{other}`")),
    })
}

/// A serial consistency to go with it: LOCAL_SERIAL unless the whole cluster is asked.
fn serial_of(consistency: Consistency) -> SerialConsistency {
    match consistency {
        Consistency::Quorum | Consistency::EachQuorum | Consistency::All => {
            SerialConsistency::Serial
        }
        _ => SerialConsistency::LocalSerial,
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

async fn session(options: &ScyllaOptions) -> Result<Session, StoreError> {
    if !valid_keyspace(&options.keyspace) {
        return Err(StoreError::Internal(format!(
            "`{}` is not a keyspace name this store uses (lower-case letters, digits, _)",
            options.keyspace
        )));
    }
    let consistency = consistency_of(&options.consistency).map_err(StoreError::Internal)?;
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(options.local_datacenter.clone())
        .token_aware(true)
        .permit_dc_failover(false)
        .build();
    let profile = ExecutionProfile::builder()
        .consistency(consistency)
        .serial_consistency(Some(serial_of(consistency)))
        .request_timeout(Some(options.request_timeout))
        .load_balancing_policy(policy)
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&options.nodes)
        .connection_timeout(options.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(user), Some(password)) = (&options.username, &options.password) {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(unavailable)
}

impl DriverCql {
    pub async fn connect(options: &ScyllaOptions) -> Result<DriverCql, StoreError> {
        let session = session(options).await?;
        let consistency = consistency_of(&options.consistency).map_err(StoreError::Internal)?;
        let mut prepared = HashMap::new();
        for stmt in Stmt::all() {
            let mut statement = session
                .prepare(stmt.text(&options.keyspace))
                .await
                .map_err(|error| {
                    StoreError::Unavailable(format!("cannot prepare {stmt:?}: {error}"))
                })?;
            match stmt.mode() {
                Mode::SerialRead => statement.set_consistency(match serial_of(consistency) {
                    SerialConsistency::Serial => Consistency::Serial,
                    _ => Consistency::LocalSerial,
                }),
                Mode::Read => statement.set_page_size(PAGE_SIZE),
                Mode::Lwt => statement.set_serial_consistency(Some(serial_of(consistency))),
                Mode::Write => {}
            }
            // Only LWTs are retried by the server's Paxos itself; nothing here is idempotent
            // at the driver's level except reads.
            statement.set_is_idempotent(matches!(stmt.mode(), Mode::Read | Mode::SerialRead));
            prepared.insert(stmt, statement);
        }
        Ok(DriverCql {
            session: Arc::new(session),
            prepared,
        })
    }

    pub async fn apply_schema(options: &ScyllaOptions) -> Result<Vec<String>, StoreError> {
        let session = session(options).await?;
        let statements = schema_statements(&options.keyspace, &options.replication);
        for statement in &statements {
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(|error| match error_of(error) {
                    CqlError::NotSent(what)
                    | CqlError::Unavailable(what)
                    | CqlError::Timeout(what) => StoreError::Unavailable(what),
                    CqlError::Invalid(what) => StoreError::Internal(what),
                })?;
        }
        Ok(statements)
    }
}

fn error_of(error: ExecutionError) -> CqlError {
    let what = error.to_string();
    match &error {
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => {
            CqlError::NotSent(what)
        }
        ExecutionError::RequestTimeout(_) => CqlError::Timeout(what),
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::DbError(db, _) => match db {
                DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::RateLimitReached { .. } => CqlError::Unavailable(what),
                // Replicas that timed out or failed may still have applied a write.
                DbError::WriteTimeout { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteFailure { .. }
                | DbError::ReadFailure { .. } => CqlError::Timeout(what),
                _ => CqlError::Invalid(what),
            },
            RequestAttemptError::UnableToAllocStreamId => CqlError::NotSent(what),
            RequestAttemptError::BrokenConnectionError(_) => CqlError::Timeout(what),
            _ => CqlError::Invalid(what),
        },
        _ => CqlError::Invalid(what),
    }
}

fn to_cql(value: Value) -> Option<CqlValue> {
    match value {
        Value::Null => None,
        Value::Text(text) => Some(CqlValue::Text(text)),
        Value::BigInt(n) => Some(CqlValue::BigInt(n)),
        Value::Int(n) => Some(CqlValue::Int(n)),
        Value::Blob(bytes) => Some(CqlValue::Blob(bytes)),
        Value::Bool(flag) => Some(CqlValue::Boolean(flag)),
    }
}

fn from_cql(value: Option<CqlValue>) -> Value {
    match value {
        Some(CqlValue::Text(text)) | Some(CqlValue::Ascii(text)) => Value::Text(text),
        Some(CqlValue::BigInt(n)) => Value::BigInt(n),
        Some(CqlValue::Int(n)) => Value::Int(n),
        Some(CqlValue::Blob(bytes)) => Value::Blob(bytes),
        Some(CqlValue::Boolean(flag)) => Value::Bool(flag),
        _ => Value::Null,
    }
}

#[async_trait]
impl Cql for DriverCql {
    async fn execute(&self, stmt: Stmt, values: Vec<Value>) -> Result<Vec<CqlRow>, CqlError> {
        let prepared = self
            .prepared
            .get(&stmt)
            .ok_or_else(|| CqlError::Invalid(format!("{stmt:?} was not prepared")))?;
        let values: Vec<Option<CqlValue>> = values.into_iter().map(to_cql).collect();
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(prepared, &values, paging)
                .await
                .map_err(error_of)?;
            if result.is_rows() {
                let rows = result
                    .into_rows_result()
                    .map_err(|error| CqlError::Invalid(error.to_string()))?;
                let names: Vec<String> = rows
                    .column_specs()
                    .as_slice()
                    .iter()
                    .map(|spec| spec.name().to_string())
                    .collect();
                for row in rows
                    .rows::<Row>()
                    .map_err(|error| CqlError::Invalid(error.to_string()))?
                {
                    let row = row.map_err(|error| CqlError::Invalid(error.to_string()))?;
                    out.push(CqlRow(
                        names
                            .iter()
                            .cloned()
                            .zip(row.columns.into_iter().map(from_cql))
                            .collect(),
                    ));
                }
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_are_the_documented_ones() {
        assert_eq!(consistency_of("local_quorum"), Ok(Consistency::LocalQuorum));
        assert_eq!(
            serial_of(Consistency::LocalQuorum),
            SerialConsistency::LocalSerial
        );
        assert_eq!(serial_of(Consistency::Quorum), SerialConsistency::Serial);
        assert_eq!(
            consistency_of("LOCAL_QUORUM"),
            Err("unknown consistency `LOCAL_QUORUM`".to_string())
        );
        assert_eq!(
            consistency_of("local_one"),
            Err(
                "consistency `local_one` is too weak for this store (a read must see what a \
                 conditional write settled): use local_quorum, quorum, each_quorum or all"
                    .to_string()
            )
        );
    }
}
