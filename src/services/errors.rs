//! How engine errors become domain errors, in one place: an unreachable engine is 503, an
//! outcome-unknown write is 504, anything else is an internal error logged at the edge.

use crate::domain::{DomainError, ErrorCode};
use crate::search::SearchError;
use crate::search::dsl::DslError;
use crate::storage::StoreError;

pub fn store_error(error: StoreError) -> DomainError {
    match error {
        StoreError::Unavailable(what) => DomainError::Unavailable(what),
        StoreError::Indeterminate(what) => DomainError::Timeout(what),
        other => DomainError::internal(other),
    }
}

pub fn search_error(error: SearchError) -> DomainError {
    match error {
        SearchError::Unavailable(what) => DomainError::Unavailable(what),
        SearchError::Internal(what) => DomainError::internal(anyhow::anyhow!(what)),
    }
}

/// A refused search request, with Sunbird's codes.
pub fn dsl_error(error: DslError) -> DomainError {
    match error {
        DslError::MissingParameter(field) => DomainError::mandatory_missing(&field),
        DslError::DataType { field, expected } => DomainError::data_type(&field, expected),
        DslError::InvalidFilterValue(field) => {
            DomainError::rule(ErrorCode::invalidParameterValue, &["null", &field])
        }
    }
}
