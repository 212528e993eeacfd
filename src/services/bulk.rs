//! Bulk user uploads (reference §8.12): `POST /v1/user/upload` checks the whole CSV and writes
//! the process and every row in one commit, answering its `processId` at once; the bulk upload
//! runner (`actors::bulk`) then runs each row through [`UserRows`] — the same create and update
//! a single request gets, as the uploader — and `GET /v1/upload/status/{processId}` shows the
//! progress and, once done, every row's outcome.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::actors::bulk::{BulkRows, RowOutcome};
use crate::clock::{Clock, sunbird_timestamp};
use crate::crypto::PiiVault;
use crate::domain::bulk::{
    Columns, ObjectType, ProcessRecord, STATUS_COMPLETED, STATUS_FAILED, STATUS_NEW, TaskRecord,
    cell_list, escape_formulas, missing_field, parse_csv, status_text, task_key,
};
use crate::domain::contact::{Email, Phone, mask_email, mask_phone};
use crate::domain::notification::Channel;
use crate::domain::org::{ORG_ACTIVE, ORG_INACTIVE};
use crate::domain::role::PUBLIC;
use crate::domain::rules::{new_timestamp_id, new_user_id};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller, Principal};
use crate::services::organisations::OrgService;
use crate::services::reset::{LinkFor, ResetService};
use crate::services::users::UserService;
use crate::services::users::input::{CreateRoute, UpdateRoute};
use crate::storage::records::{external_id_claim, get_org, get_record, json_setting};
use crate::storage::{ClaimKind, Expect, Store, Table, Topic, Transaction, Versioned, key_prefix};

/// The kind a task's row is sealed under (bound to the task's key).
const DATA_KIND: &str = "bulk.data";
/// The kind a task's outcome is sealed under.
const RESULT_KIND: &str = "bulk.result";

/// The limits of `[bulk]`.
#[derive(Debug, Clone, Copy)]
pub struct BulkLimits {
    pub max_bytes: usize,
    pub user_rows: usize,
    pub org_rows: usize,
}

/// An uploaded file as the handler read it: its bytes, cut at one byte past the limit.
pub struct Upload {
    pub bytes: Option<Vec<u8>>,
}

#[derive(Clone)]
pub struct BulkService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    limits: BulkLimits,
}

/// The columns of a load: the `csv` object of the `userProfileConfig` / `orgProfileConfig`
/// system setting, or Sunbird's built-in list.
async fn columns_of(store: &Arc<dyn Store>, object_type: ObjectType) -> DomainResult<Columns> {
    let (setting, from): (&str, fn(Option<&Value>) -> Columns) = match object_type {
        ObjectType::Organisation => ("orgProfileConfig", Columns::for_orgs),
        _ => ("userProfileConfig", Columns::for_users),
    };
    let config = json_setting(store, setting).await?;
    Ok(from(config.as_ref().and_then(|c| c.get("csv"))))
}

fn seal(vault: &PiiVault, key: &str, kind: &str, value: &Value) -> DomainResult<String> {
    vault
        .seal(key, kind, &value.to_string())
        .map_err(|e| DomainError::internal(anyhow::anyhow!("cannot seal a bulk row: {e}")))
}

fn open(vault: &PiiVault, key: &str, kind: &str, sealed: &str) -> DomainResult<Value> {
    let plain = vault
        .open(key, kind, sealed)
        .map_err(|e| DomainError::internal(anyhow::anyhow!("cannot open bulk row {key}: {e}")))?;
    serde_json::from_str(&plain).map_err(DomainError::internal)
}

impl BulkService {
    pub fn new(
        store: Arc<dyn Store>,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        limits: BulkLimits,
    ) -> Self {
        BulkService {
            inner: Arc::new(Inner {
                store,
                vault,
                clock,
                limits,
            }),
        }
    }

    /// The largest file taken.
    pub fn max_bytes(&self) -> usize {
        self.inner.limits.max_bytes
    }

    /// `POST /v1/user/upload` and `/v1/org/upload`: for an ADMIN or an ORG_ADMIN of their own
    /// root organisation, whose rights every row then runs with (organisations go to the
    /// uploader's channel).
    pub async fn upload(
        &self,
        caller: &Caller,
        upload: Upload,
        object_type: ObjectType,
    ) -> DomainResult<Map<String, Value>> {
        let inner = &self.inner;
        let authority = Authority::of(caller).await?;
        let Caller::User(uploader) = caller else {
            return Err(DomainError::unauthorized());
        };
        let root_org_id = uploader.user.root_org_id.clone();
        authority.require(authority.is_admin() || authority.administers(&root_org_id))?;
        let bytes = upload
            .bytes
            .ok_or_else(|| DomainError::rule(ErrorCode::missingFileAttachment, &[]))?;
        if bytes.len() > inner.limits.max_bytes {
            let megabytes = format!("{}MB", inner.limits.max_bytes / 1_000_000);
            return Err(DomainError::rule(ErrorCode::sizeLimitExceed, &[&megabytes]));
        }
        let columns = columns_of(&inner.store, object_type).await?;
        let max_rows = match object_type {
            ObjectType::Organisation => inner.limits.org_rows,
            _ => inner.limits.user_rows,
        };
        let rows = parse_csv(&bytes, &columns, max_rows)?;
        let id = new_timestamp_id();
        let now = sunbird_timestamp(inner.clock.now());
        let process = ProcessRecord {
            id: id.clone(),
            object_type,
            status: STATUS_NEW,
            uploaded_by: uploader.id.clone(),
            organisation_id: root_org_id,
            channel: uploader.user.channel.clone(),
            task_count: rows.len() as u64,
            success_count: 0,
            failure_count: 0,
            created_on: now.clone(),
            process_start_time: None,
            process_end_time: None,
        };
        let mut transaction = Transaction::default();
        for (index, row) in rows.into_iter().enumerate() {
            let sequence = index as u64 + 1;
            let key = task_key(&id, sequence);
            let task = TaskRecord {
                process_id: id.clone(),
                sequence_id: sequence,
                status: STATUS_NEW,
                data: seal(&inner.vault, &key, DATA_KIND, &Value::Object(row))?,
                result: String::new(),
                created_on: now.clone(),
                last_updated_on: None,
            };
            transaction.put_record(Table::BulkTask, &key, &task, Expect::Absent)?;
        }
        transaction.put_record(Table::BulkProcess, &id, &process, Expect::Absent)?;
        transaction.event(Topic::Bulk, &id, 1);
        inner.store.commit(transaction).await?;
        let mut result = Map::new();
        result.insert("processId".into(), json!(id));
        Ok(result)
    }

    /// `GET /v1/upload/status/{processId}`: for the uploader, an administrator of the
    /// uploader's root organisation, or an ADMIN.
    pub async fn status(&self, caller: &Caller, id: &str) -> DomainResult<Map<String, Value>> {
        let inner = &self.inner;
        let not_found = || DomainError::rule(ErrorCode::resourceNotFound, &[""]);
        let process = get_record::<ProcessRecord>(&inner.store, Table::BulkProcess, id)
            .await?
            .ok_or_else(not_found)?
            .record;
        let authority = Authority::of(caller).await?;
        authority.require(
            caller.user_id() == Some(process.uploaded_by.as_str())
                || authority.is_admin()
                || authority.administers(&process.organisation_id),
        )?;
        let (status, message) = status_text(process.status);
        let mut entry = Map::new();
        entry.insert("processId".into(), json!(process.id));
        entry.insert("status".into(), json!(status));
        entry.insert("message".into(), json!(message));
        entry.insert("objectType".into(), json!(process.object_type.name()));
        let (mut successes, mut failures) = (Vec::new(), Vec::new());
        let (mut done, mut failed) = (0u64, 0u64);
        let prefix = key_prefix(id);
        let mut after: Option<String> = None;
        loop {
            let page = inner
                .store
                .scan(Table::BulkTask, &prefix, after.as_deref(), 1_000)
                .await?;
            let Some(last) = page.last().map(|row| row.key.clone()) else {
                break;
            };
            for row in page {
                let task: TaskRecord =
                    serde_json::from_value(row.doc).map_err(DomainError::internal)?;
                let list = match task.status {
                    STATUS_COMPLETED => {
                        done += 1;
                        &mut successes
                    }
                    STATUS_FAILED => {
                        failed += 1;
                        &mut failures
                    }
                    _ => continue,
                };
                if process.status == STATUS_COMPLETED {
                    let mut result = open(&inner.vault, &row.key, RESULT_KIND, &task.result)?;
                    mask_contacts(&mut result);
                    escape_formulas(&mut result);
                    list.push(result);
                }
            }
            after = Some(last);
        }
        entry.insert("taskCount".into(), json!(process.task_count));
        entry.insert("successCount".into(), json!(done));
        entry.insert("failureCount".into(), json!(failed));
        if process.status == STATUS_COMPLETED {
            entry.insert("successResult".into(), json!(successes));
            entry.insert("failureResult".into(), json!(failures));
        }
        let mut result = Map::new();
        result.insert("response".into(), json!([entry]));
        Ok(result)
    }

    /// The runner of the rows of every kind of upload.
    pub fn rows(&self, users: UserService, reset: ResetService, orgs: OrgService) -> Rows {
        Rows {
            users: UserRows {
                bulk: self.clone(),
                users,
                reset,
            },
            orgs: OrgRows {
                bulk: self.clone(),
                orgs,
            },
        }
    }

    /// The task's done mark with `result`, expecting the version the runner read.
    fn mark(
        &self,
        task: &Versioned<TaskRecord>,
        status: i64,
        result: &Value,
    ) -> DomainResult<Transaction> {
        let inner = &self.inner;
        let mut record = task.record.clone();
        record.status = status;
        record.result = seal(&inner.vault, &task.key, RESULT_KIND, result)?;
        record.last_updated_on = Some(sunbird_timestamp(inner.clock.now()));
        let mut transaction = Transaction::default();
        transaction.put_record(
            Table::BulkTask,
            &task.key,
            &record,
            Expect::Version(task.version),
        )?;
        Ok(transaction)
    }

    /// Commits the mark of a row whose effect is already written (an idempotent update); a
    /// mark written meanwhile by another holder stands.
    async fn commit_mark(&self, mark: Transaction) -> DomainResult<RowOutcome> {
        match self.inner.store.commit(mark).await {
            Ok(_) | Err(crate::storage::StoreError::Conflict { .. }) => Ok(RowOutcome::Done),
            Err(error) => Err(error.into()),
        }
    }

    /// A task's row, opened; the caller it runs as (`None`: the uploader is gone); the
    /// columns of its kind.
    async fn open_row(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
    ) -> DomainResult<(Map<String, Value>, Option<Caller>, Columns)> {
        let inner = &self.inner;
        let Value::Object(row) = open(&inner.vault, &task.key, DATA_KIND, &task.record.data)?
        else {
            return Err(DomainError::internal(anyhow::anyhow!(
                "a bulk row is no object"
            )));
        };
        let caller = Principal::active(&inner.store, &process.uploaded_by)
            .await?
            .map(Caller::User);
        let columns = columns_of(&inner.store, process.object_type).await?;
        Ok((row, caller, columns))
    }
}

/// A result's email and phone as Sunbird shows them in the status: masked.
fn mask_contacts(result: &mut Value) {
    if let Some(email) = result.get("email").and_then(Value::as_str) {
        result["email"] = json!(mask_email(email));
    }
    if let Some(phone) = result.get("phone").and_then(Value::as_str) {
        result["phone"] = json!(mask_phone(phone));
    }
}

/// Runs user rows: a row with `userId` is an update (`/v1/user/update`), any other a create
/// (`/v1/user/create`), each as the uploader.
pub struct UserRows {
    bulk: BulkService,
    users: UserService,
    reset: ResetService,
}

/// A row's outcome as recorded: the row, its `operation`, and `extra` (the new `id`, the
/// `err_msg`).
fn outcome_row(row: &Map<String, Value>, operation: &str, extra: Option<(&str, &str)>) -> Value {
    let mut result = row.clone();
    result.insert("operation".into(), json!(operation));
    if let Some((key, value)) = extra {
        result.insert(key.into(), json!(value));
    }
    Value::Object(result)
}

fn failure(row: &Map<String, Value>, operation: &str, message: &str) -> RowOutcome {
    RowOutcome::Failed(outcome_row(row, operation, Some(("err_msg", message))))
}

/// A refusal of the row's request becomes the row's failure; anything else (the store down,
/// a timeout) stops the process until the next round.
fn outcome_of(
    error: DomainError,
    row: &Map<String, Value>,
    operation: &str,
) -> DomainResult<RowOutcome> {
    match error {
        DomainError::Rule(rule) => Ok(failure(row, operation, &rule.message)),
        DomainError::Internal(error) => {
            tracing::error!(error = %format!("{error:#}"), "a bulk row failed");
            Ok(failure(
                row,
                operation,
                "Process failed,please try again later.",
            ))
        }
        other => Err(other),
    }
}

impl UserRows {
    /// The organisation a row names (`orgId`, `orgExternalId` within the uploader's channel),
    /// or the uploader's root organisation; `Err` with the row's message when it names none
    /// that is usable.
    async fn organisation_of(
        &self,
        process: &ProcessRecord,
        row: &Map<String, Value>,
    ) -> DomainResult<Result<String, String>> {
        let store = &self.bulk.inner.store;
        let text = |field: &str| row.get(field).and_then(Value::as_str).map(str::to_string);
        let by_external = match text("orgExternalId") {
            Some(external) => {
                let owner = store
                    .claim_owner(
                        ClaimKind::OrgExternalId,
                        &external_id_claim(&process.channel, &external),
                    )
                    .await?;
                match owner {
                    Some(id) => Some(id),
                    None => return Ok(Err("Please provide valid organisationid.".into())),
                }
            }
            None => None,
        };
        let id = match (text("orgId"), by_external) {
            (Some(id), Some(external)) if id != external => {
                return Ok(Err(ErrorCode::errorConflictingValues.format(&[
                    "organisationId",
                    &id,
                    "orgExternalId",
                    &text("orgExternalId").unwrap_or_default(),
                ])));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => return Ok(Ok(process.organisation_id.clone())),
        };
        match get_org(store, &id).await? {
            Some(org) if org.is_active() => Ok(Ok(id)),
            Some(_) => Ok(Err("Please provide valid organisationstatus.".into())),
            None => Ok(Err("Please provide valid organisationid.".into())),
        }
    }

    async fn create(
        &self,
        caller: &Caller,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
        row: &Map<String, Value>,
        mut body: Map<String, Value>,
    ) -> DomainResult<RowOutcome> {
        let organisation = match self.organisation_of(process, row).await? {
            Ok(id) => id,
            Err(message) => return Ok(failure(row, "create", &message)),
        };
        body.insert("organisationId".into(), json!(organisation));
        let id = new_user_id();
        let done = outcome_row(row, "create", Some(("id", &id)));
        let mut also = self.bulk.mark(task, STATUS_COMPLETED, &done)?;
        // The welcome: a set-password link to the new user's email, else their phone, in the
        // create's own commit (no link for a create that does not happen, one for one that
        // does, however often the row is met).
        let text = |field: &str| body.get(field).and_then(Value::as_str);
        let address = match (text("email").and_then(Email::parse), text("phone")) {
            (Some(email), _) => Some((Channel::Email, email.as_str().to_string())),
            (None, Some(phone)) => Phone::parse(phone, text("countryCode"), "91")
                .ok()
                .map(|phone| (Channel::Sms, phone.index_form())),
            (None, None) => None,
        };
        if let Some((channel, address)) = address {
            self.reset
                .send_link_to(
                    &mut also,
                    LinkFor {
                        user_id: &id,
                        first_name: text("firstName").unwrap_or_default(),
                        root_org_id: &process.organisation_id,
                        welcome: true,
                    },
                    channel,
                    &address,
                    "welcome",
                )
                .await?;
        }
        match self
            .users
            .create_with(caller, CreateRoute::Admin, &body, id, also)
            .await
        {
            Ok(_) => Ok(RowOutcome::Done),
            Err(error) => outcome_of(error, row, "create"),
        }
    }

    async fn update(
        &self,
        caller: &Caller,
        task: &Versioned<TaskRecord>,
        row: &Map<String, Value>,
        body: Map<String, Value>,
    ) -> DomainResult<RowOutcome> {
        if body.contains_key("roles") {
            return Ok(failure(
                row,
                "update",
                "Roles are not changed by a bulk update; use /v1/user/assign/role.",
            ));
        }
        // An update sets the row's values: applied twice (a crash before its mark), it leaves
        // the user as once.
        if let Err(error) = self.users.update(caller, UpdateRoute::V1, &body).await {
            return outcome_of(error, row, "update");
        }
        let done = outcome_row(row, "update", None);
        let mark = self.bulk.mark(task, STATUS_COMPLETED, &done)?;
        self.bulk.commit_mark(mark).await
    }
}

/// The first refusal every row meets: a blank mandatory field, an uploader gone.
fn refusal(
    row: &Map<String, Value>,
    caller: Option<Caller>,
    columns: &Columns,
    operation: &str,
) -> Result<Caller, RowOutcome> {
    if let Some(field) = missing_field(row, columns) {
        return Err(failure(
            row,
            operation,
            &ErrorCode::mandatoryParamsMissing.format(&[field]),
        ));
    }
    caller.ok_or_else(|| failure(row, operation, &ErrorCode::unAuthorized.format(&[])))
}

impl UserRows {
    async fn run(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
    ) -> DomainResult<RowOutcome> {
        let (row, caller, columns) = self.bulk.open_row(process, task).await?;
        let operation = if row.contains_key("userId") {
            "update"
        } else {
            "create"
        };
        let caller = match refusal(&row, caller, &columns, operation) {
            Ok(caller) => caller,
            Err(outcome) => return Ok(outcome),
        };
        let mut body = row.clone();
        body.remove("orgId");
        body.remove("orgExternalId");
        if let Some(roles) = body.remove("roles") {
            let mut roles = cell_list(roles.as_str().unwrap_or_default());
            roles.retain(|role| role != PUBLIC);
            if !roles.is_empty() {
                body.insert("roles".into(), json!(roles));
            }
        }
        if operation == "update" {
            self.update(&caller, task, &row, body).await
        } else {
            self.create(&caller, process, task, &row, body).await
        }
    }
}

/// Runs organisation rows: a row with `organisationId` is an update (`/v1/org/update`), any
/// other a create (`/v1/org/create`) of a school of the uploader's channel; `status` is
/// `active` or `inactive`.
pub struct OrgRows {
    bulk: BulkService,
    orgs: OrgService,
}

impl OrgRows {
    async fn run(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
    ) -> DomainResult<RowOutcome> {
        let (row, caller, columns) = self.bulk.open_row(process, task).await?;
        let update = row.contains_key("organisationId");
        let operation = if update { "update" } else { "create" };
        let caller = match refusal(&row, caller, &columns, operation) {
            Ok(caller) => caller,
            Err(outcome) => return Ok(outcome),
        };
        let status = match row.get("status").and_then(Value::as_str) {
            None => None,
            Some(text) if text.eq_ignore_ascii_case("active") => Some(ORG_ACTIVE),
            Some(text) if text.eq_ignore_ascii_case("inactive") => Some(ORG_INACTIVE),
            Some(_) => {
                return Ok(failure(
                    &row,
                    operation,
                    "Please provide valid organisationstatus.",
                ));
            }
        };
        let mut body = row.clone();
        body.remove("status");
        if let Some(codes) = body.remove("locationCode") {
            body.insert(
                "locationCode".into(),
                json!(cell_list(codes.as_str().unwrap_or_default())),
            );
        }
        let id = if update {
            if let Err(error) = self.orgs.update(&caller, &body).await {
                return outcome_of(error, &row, operation);
            }
            row["organisationId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            body.insert("channel".into(), json!(process.channel));
            body.insert("isTenant".into(), json!(false));
            let id = new_timestamp_id();
            let done = outcome_row(&row, "create", Some(("organisationId", &id)));
            let mark = self.bulk.mark(task, STATUS_COMPLETED, &done)?;
            if let Err(error) = self
                .orgs
                .create_with(&caller, &body, id.clone(), mark)
                .await
            {
                return outcome_of(error, &row, operation);
            }
            id
        };
        // An organisation is created active; an inactive one, or a status on an update, is
        // set after (setting it twice leaves it as once).
        let wanted = status.filter(|status| update || *status != ORG_ACTIVE);
        if let Some(status) = wanted {
            let mut change = Map::new();
            change.insert("organisationId".into(), json!(id));
            change.insert("status".into(), json!(status));
            if let Err(error) = self.orgs.update_status(&caller, &change).await {
                return outcome_of(error, &row, operation);
            }
        }
        if !update {
            return Ok(RowOutcome::Done);
        }
        let done = outcome_row(&row, "update", None);
        let mark = self.bulk.mark(task, STATUS_COMPLETED, &done)?;
        self.bulk.commit_mark(mark).await
    }
}

/// The rows of every kind of upload, by the process's object type.
pub struct Rows {
    users: UserRows,
    orgs: OrgRows,
}

#[async_trait]
impl BulkRows for Rows {
    async fn run(
        &self,
        process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
    ) -> DomainResult<RowOutcome> {
        match process.object_type {
            ObjectType::Organisation => self.orgs.run(process, task).await,
            _ => self.users.run(process, task).await,
        }
    }

    fn failed(
        &self,
        _process: &ProcessRecord,
        task: &Versioned<TaskRecord>,
        failure: Value,
    ) -> DomainResult<Transaction> {
        self.users.bulk.mark(task, STATUS_FAILED, &failure)
    }
}
