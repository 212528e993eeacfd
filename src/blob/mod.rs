//! Uploaded files (`/v1/file/upload`), behind the [`BlobStore`] trait: the data-dir engine
//! ([`dir::DirBlobs`], the default) and an S3-compatible engine ([`s3::S3Blobs`], on the
//! `object_store` crate). A blob lives at `<container>/<key>`; both parts are checked by
//! [`check_container`] and [`check_key`] before an engine sees them, so a name can never leave
//! its container or the store.

pub mod conformance;
pub mod dir;
pub mod s3;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob name: {0}")]
    InvalidName(String),
    #[error("blob store unreachable: {0}")]
    Unreachable(String),
    #[error("blob store failed: {0}")]
    Failed(String),
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// Where uploaded files are kept.
///
/// Contract: `put` stores the bytes under `container/key` durably before it returns (a second
/// `put` of the same name replaces them) and answers the address clients fetch the file at;
/// `get` answers exactly the bytes and content type last put, or `None`.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, container: &str, key: &str, blob: Blob) -> Result<String, BlobError>;

    async fn get(&self, container: &str, key: &str) -> Result<Option<Blob>, BlobError>;
}

/// Lower-case letters, digits and dashes, 1 to 63 long, not starting or ending with a dash
/// (S3's bucket-name rules, which every engine can hold).
pub fn check_container(container: &str) -> Result<(), BlobError> {
    let ok = (1..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidName(container.to_string()))
    }
}

/// One path segment of letters, digits, `.`, `_` and `-`, 1 to 200 long, not starting with a
/// dot: no separator, no `..`, nothing a file system or an object store reads as a path.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = (1..=200).contains(&key.len())
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidName(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_store_are_refused() {
        for bad in ["../etc", "a/b", "", ".hidden", "a\\b", "é.png", "a b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        for good in ["photo.png", "0147-report_2.pdf"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["Users", "-x", "x-", "a_b", "", &"x".repeat(64)] {
            assert!(check_container(bad).is_err(), "{bad}");
        }
        assert!(check_container("user-files").is_ok());
    }
}
