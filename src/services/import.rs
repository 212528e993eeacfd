//! `userorg import users`: a large load of users from CSV (a header of field names, or of the
//! display names of `userProfileConfig.csv`) or JSON lines (one create body per line), written
//! straight into the store in large batches while the server is stopped.
//!
//! Every row gets the create route's checks (`/v1/user/create` as an ADMIN: the same parsing,
//! the same PII sealing and claims, the user built by the owner's own `build_create`); a row
//! that fails is written to `<input>.rejected.jsonl` with its line and reason. Each batch is one
//! commit together with the import's progress (the last line it covers, in `userorg_meta`), so
//! an import killed at any point and run again goes on after the last committed line, and no
//! row is written twice. The outbox is not fed (the caller rebuilds the search index at the end)
//! and no message is sent: passwords are not taken (rows with one are rejected); imported users
//! set theirs with a reset link.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::user_owner::build_user_create;
use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::bulk::{Columns, cell_list};
use crate::domain::rules::{PasswordPolicy, new_user_id, username_candidate};
use crate::domain::user::{ASSOCIATION_SYSTEM_UPLOAD, NewUser, STATE_VALIDATED_FLAG};
use crate::domain::{DomainError, DomainResult};
use crate::services::users::input::{CreateRoute, parse_create};
use crate::storage::records::{custodian, json_setting, tenant_by_channel};
use crate::storage::{ClaimKind, Expect, Store, StoreError, Table, Transaction, compose_key};

/// How an import runs.
pub struct ImportOptions {
    pub policy: PasswordPolicy,
    pub default_country_code: String,
    pub username_suffix_length: usize,
    /// Rows per commit.
    pub batch: usize,
    /// A failure point for tests (`USERORG_FAILPOINT=import:N`): the process aborts right after
    /// its N-th batch commit, as a kill would stop it.
    pub abort_after_batches: Option<u64>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Rows of the input read in this run (after the ones a previous run committed).
    pub read: u64,
    pub imported: u64,
    pub rejected: u64,
    /// Rows a previous run had already committed.
    pub skipped: u64,
    /// Rejections by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Where the rejected rows are.
    pub rejected_file: PathBuf,
}

/// One row of the input: its line (from 1, after the header) and its fields, or why it could
/// not be read.
type InputRow = (u64, Result<Map<String, Value>, String>);

/// The rows of `input`: JSON lines (`.jsonl`, `.ndjson`, `.json`) or CSV.
fn rows_of(
    input: &Path,
    columns: &Columns,
) -> anyhow::Result<Box<dyn Iterator<Item = InputRow> + Send>> {
    let file = std::fs::File::open(input)?;
    let extension = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if matches!(extension.as_str(), "jsonl" | "ndjson" | "json") {
        let lines = std::io::BufReader::new(file).lines();
        return Ok(Box::new(
            lines
                .enumerate()
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(|(index, line)| {
                    let row = line
                        .map_err(|e| format!("cannot read the line: {e}"))
                        .and_then(|line| match serde_json::from_str::<Value>(&line) {
                            Ok(Value::Object(map)) => Ok(map),
                            Ok(_) => Err("the line is not a JSON object".to_string()),
                            Err(e) => Err(format!("the line is not JSON: {e}")),
                        });
                    (index as u64 + 1, row)
                }),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader.headers()?.clone();
    let mut fields = Vec::with_capacity(headers.len());
    for header in &headers {
        let field = columns
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(header))
            .map(|(_, field)| field.clone())
            .ok_or_else(|| anyhow::anyhow!("unknown column `{header}`"))?;
        fields.push(field);
    }
    Ok(Box::new(reader.into_records().enumerate().map(
        move |(index, record)| {
            let row = record
                .map_err(|e| format!("cannot read the row: {e}"))
                .map(|record| {
                    let mut row = Map::new();
                    for (field, value) in fields.iter().zip(record.iter()) {
                        if !value.is_empty() {
                            let value = if field == "roles" {
                                json!(cell_list(value))
                            } else {
                                json!(value)
                            };
                            row.insert(field.clone(), value);
                        }
                    }
                    row
                });
            (index as u64 + 1, row)
        },
    )))
}

/// The progress row of an import of `input`: keyed by its file name and size, so a changed
/// file starts again.
fn progress_key(input: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(input)?.len();
    let name = input
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    Ok(compose_key(&["import", "users", name, &size.to_string()]))
}

struct Importer<'a> {
    store: &'a Arc<dyn Store>,
    vault: &'a PiiVault,
    options: &'a ImportOptions,
    now: String,
    custodian: (String, String),
    tenants: HashMap<String, Option<(String, String)>>,
    progress: String,
    rejected: std::io::BufWriter<std::fs::File>,
    report: ImportReport,
}

/// A batch being committed.
struct Pending {
    commit: tokio::task::JoinHandle<Result<(), StoreError>>,
    batch: Vec<Built>,
    last_line: u64,
}

/// One row made ready to write.
struct Built {
    line: u64,
    claims: Vec<(ClaimKind, String)>,
    transaction: Transaction,
}

impl Importer<'_> {
    fn reject(&mut self, line: u64, reason: &str) -> anyhow::Result<()> {
        self.report.rejected += 1;
        *self.report.reasons.entry(reason.to_string()).or_default() += 1;
        writeln!(self.rejected, "{}", json!({"line": line, "reason": reason}))?;
        Ok(())
    }

    /// `(rootOrgId, channel)` of a row: its tenant's by `channel`, else the custodian's.
    async fn root_of(&mut self, channel: Option<&str>) -> DomainResult<Option<(String, String)>> {
        let Some(channel) = channel.filter(|c| !c.is_empty()) else {
            return Ok(Some(self.custodian.clone()));
        };
        if let Some(found) = self.tenants.get(channel) {
            return Ok(found.clone());
        }
        let found = tenant_by_channel(self.store, channel)
            .await?
            .filter(|org| org.is_active())
            .map(|org| (org.id, org.channel));
        self.tenants.insert(channel.to_string(), found.clone());
        Ok(found)
    }

    /// A row's user, or the reason it is refused.
    async fn build(
        &mut self,
        line: u64,
        body: Map<String, Value>,
    ) -> anyhow::Result<Result<Built, String>> {
        if body.contains_key("password") {
            return Ok(Err(
                "passwords are not imported; the user sets one with a reset link".into(),
            ));
        }
        let request = match parse_create(
            &body,
            CreateRoute::Admin,
            &self.options.policy,
            &self.options.default_country_code,
        ) {
            Ok(request) => request,
            Err(DomainError::Rule(rule)) => return Ok(Err(rule.message)),
            Err(other) => return Err(other.into()),
        };
        let Some((root_org_id, channel)) = self.root_of(request.channel.as_deref()).await? else {
            return Ok(Err("Please provide valid channel.".into()));
        };
        if request.organisation_id.is_some() {
            return Ok(Err(
                "organisationId is not imported; users go to their channel's tenant".into(),
            ));
        }
        let username = request.username.clone().unwrap_or_else(|| {
            username_candidate(
                &request.username_base(),
                self.options.username_suffix_length,
            )
        });
        let flags_value = if root_org_id != self.custodian.0 {
            STATE_VALIDATED_FLAG
        } else {
            0
        };
        let user = NewUser {
            id: new_user_id(),
            request,
            password_hash: None,
            root_org_id,
            channel,
            association_type: ASSOCIATION_SYSTEM_UPLOAD,
            created_by: None,
            flags_value,
        };
        let mut transaction = match build_user_create(self.vault, &self.now, &user, &username, None)
        {
            Ok(transaction) => transaction,
            Err(DomainError::Rule(rule)) => return Ok(Err(rule.message)),
            Err(other) => return Err(other.into()),
        };
        transaction.events.clear();
        let claims = transaction
            .claims
            .iter()
            .map(|claim| (claim.kind, claim.value.clone()))
            .collect();
        Ok(Ok(Built {
            line,
            claims,
            transaction,
        }))
    }

    fn progress_write(&self, transaction: &mut Transaction, line: u64) {
        transaction.put(
            Table::Meta,
            &self.progress,
            json!({
                "line": line,
                "imported": self.report.imported,
                "rejected": self.report.rejected,
            }),
            Expect::Any,
        );
    }

    /// Commits a batch with the progress up to `last_line`; when a value is taken in the
    /// store, one row at a time, each with its progress, so the taken ones are told apart.
    /// Starts the commit of a batch with the progress up to `last_line`, in the background:
    /// the next batch is built while the store writes this one.
    fn start_commit(&mut self, batch: Vec<Built>, last_line: u64) -> Pending {
        let mut transaction = Transaction::default();
        for built in &batch {
            transaction.append(built.transaction.clone());
        }
        self.report.imported += batch.len() as u64;
        self.progress_write(&mut transaction, last_line);
        let store = Arc::clone(self.store);
        Pending {
            commit: tokio::spawn(async move { store.commit(transaction).await.map(|_| ()) }),
            batch,
            last_line,
        }
    }

    /// Waits for a batch's commit; when a value of it was taken in the store, writes it again
    /// one row at a time, each with its progress, so the taken ones are told apart.
    async fn finish_commit(&mut self, pending: Pending) -> anyhow::Result<()> {
        let Pending {
            commit,
            batch,
            last_line,
        } = pending;
        match commit.await? {
            Ok(()) => return Ok(()),
            Err(StoreError::ClaimTaken { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.report.imported -= batch.len() as u64;
        for built in batch {
            let mut transaction = built.transaction;
            self.report.imported += 1;
            self.progress_write(&mut transaction, built.line);
            match self.store.commit(transaction).await {
                Ok(_) => {}
                Err(StoreError::ClaimTaken { kind, .. }) => {
                    self.report.imported -= 1;
                    self.reject(built.line, &format!("{} already exists", kind.name()))?;
                    let mut progress = Transaction::default();
                    self.progress_write(&mut progress, built.line);
                    self.store.commit(progress).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let mut progress = Transaction::default();
        self.progress_write(&mut progress, last_line);
        self.store.commit(progress).await?;
        Ok(())
    }
}

/// Imports the users of `input`; `progress` is told the line reached after every batch.
pub async fn import_users(
    store: &Arc<dyn Store>,
    vault: &PiiVault,
    clock: &dyn Clock,
    options: &ImportOptions,
    input: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<ImportReport> {
    let config = json_setting(store, "userProfileConfig").await?;
    let columns = Columns::for_users(config.as_ref().and_then(|c| c.get("csv")));
    let key = progress_key(input)?;
    let done = store
        .get(Table::Meta, &key)
        .await?
        .map(|row| row.doc)
        .unwrap_or_default();
    let done_line = done.get("line").and_then(Value::as_u64).unwrap_or(0);
    let mut rejected_file = input.as_os_str().to_owned();
    rejected_file.push(".rejected.jsonl");
    let rejected_file = PathBuf::from(rejected_file);
    let rejected = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&rejected_file)?;
    let mut importer = Importer {
        store,
        vault,
        options,
        now: sunbird_timestamp(clock.now()),
        custodian: custodian(store).await?,
        tenants: HashMap::new(),
        progress: key,
        rejected: std::io::BufWriter::new(rejected),
        report: ImportReport {
            imported: done.get("imported").and_then(Value::as_u64).unwrap_or(0),
            rejected: done.get("rejected").and_then(Value::as_u64).unwrap_or(0),
            rejected_file,
            ..ImportReport::default()
        },
    };
    let mut batch: Vec<Built> = Vec::with_capacity(options.batch);
    let mut claimed: HashSet<(ClaimKind, String)> = HashSet::new();
    let mut last_line = done_line;
    let mut batches = 0u64;
    let mut pending: Option<Pending> = None;
    for (line, row) in rows_of(input, &columns)? {
        if line <= done_line {
            importer.report.skipped += 1;
            continue;
        }
        importer.report.read += 1;
        last_line = line;
        let built = match row {
            Ok(body) => importer.build(line, body).await?,
            Err(reason) => Err(reason),
        };
        match built {
            Ok(built) => {
                if let Some((kind, _)) = built.claims.iter().find(|c| claimed.contains(*c)) {
                    let reason = format!("{} already exists", kind.name());
                    importer.reject(line, &reason)?;
                } else {
                    claimed.extend(built.claims.iter().cloned());
                    batch.push(built);
                }
            }
            Err(reason) => importer.reject(line, &reason)?,
        }
        if batch.len() >= options.batch {
            importer.rejected.flush()?;
            if let Some(previous) = pending.take() {
                importer.finish_commit(previous).await?;
                batches += 1;
                if options.abort_after_batches == Some(batches) {
                    std::process::abort();
                }
            }
            pending = Some(importer.start_commit(std::mem::take(&mut batch), line));
            claimed.clear();
            progress(line);
        }
    }
    importer.rejected.flush()?;
    if let Some(previous) = pending.take() {
        importer.finish_commit(previous).await?;
    }
    let last = importer.start_commit(batch, last_line);
    importer.finish_commit(last).await?;
    progress(last_line);
    Ok(importer.report)
}
