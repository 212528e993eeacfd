//! `PATCH /private/user/v1/account/merge` (reference §8.9): Sunbird's two-token rule and
//! checks, then the merge coordinator (`actors::merge`) runs the saga. The request's commit
//! records the saga and locks both accounts: a second merge touching either account while one
//! runs, or of a mergee already merged, is refused.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::actors::merge::{MergeClient, lock_key, saga_key};
use crate::clock::Clock;
use crate::domain::merge::{MergeSaga, MergeStep};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Caller, CallerResolver};
use crate::services::json::{Body, required_str, success};
use crate::storage::records::{custodian, user};
use crate::storage::{Expect, Store, StoreError, Table, Transaction};

#[derive(Clone)]
pub struct MergeService {
    store: Arc<dyn Store>,
    callers: CallerResolver,
    merges: MergeClient,
    clock: Arc<dyn Clock>,
}

/// Sunbird's answer for a mergee that cannot be merged (already merged or deleted, or in a
/// merge running now).
fn not_mergeable() -> DomainError {
    DomainError::unfilled(ErrorCode::invalidIdentifier)
}

impl MergeService {
    pub fn new(
        store: Arc<dyn Store>,
        callers: CallerResolver,
        merges: MergeClient,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MergeService {
            store,
            callers,
            merges,
            clock,
        }
    }

    /// `{fromAccountId, toAccountId}`; the caller's token must be the merger's
    /// (`toAccountId`) and `x-source-user-token` the mergee's.
    pub async fn merge(
        &self,
        caller: &Caller,
        source_token: Option<&str>,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let from = required_str(body, "fromAccountId")?;
        let to = required_str(body, "toAccountId")?;
        if caller.user_id() != Some(to.as_str()) {
            return Err(DomainError::unauthorized());
        }
        let source = self.callers.user_of(source_token).await?;
        if source.as_ref().map(|principal| principal.id.as_str()) != Some(from.as_str()) {
            return Err(DomainError::unauthorized());
        }
        if from == to {
            return Err(DomainError::rule(
                ErrorCode::parameterMismatch,
                &["fromAccountId and toAccountId are the same account"],
            ));
        }
        let mergee = user(&self.store, &from)
            .await?
            .ok_or_else(|| DomainError::not_found("user"))?
            .record;
        if mergee.is_deleted() {
            return Err(not_mergeable());
        }
        let merger = user(&self.store, &to)
            .await?
            .ok_or_else(|| DomainError::not_found("user"))?
            .record;
        let (custodian_id, _) = custodian(&self.store).await?;
        if mergee.root_org_id != custodian_id || merger.root_org_id == custodian_id {
            return Err(DomainError::rule(
                ErrorCode::parameterMismatch,
                &["merger and mergee rootOrgId"],
            ));
        }
        let now_ms = self.clock.now().timestamp_millis();
        let saga = MergeSaga {
            from_account_id: from.clone(),
            to_account_id: to.clone(),
            step: MergeStep::Locked,
            created_ms: now_ms,
            updated_ms: now_ms,
            requested_by: to.clone(),
        };
        let mut transaction = Transaction::default();
        transaction.put_record(Table::Merge, saga_key(&from), &saga, Expect::Absent)?;
        for account in [&from, &to] {
            transaction.put(
                Table::Merge,
                lock_key(account),
                serde_json::json!({"fromAccountId": from}),
                Expect::Absent,
            );
        }
        match self.store.commit(transaction).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Err(not_mergeable()),
            Err(error) => return Err(error.into()),
        }
        self.merges.run(&from).await?;
        Ok(success())
    }
}
