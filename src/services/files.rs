//! File upload (reference §1.10, `POST /v1/file/upload`): the first file part of a multipart
//! request goes to the blob store under `<container>/<id>-<name>` and the answer is its URL, as
//! Sunbird's upload to its cloud storage answers. The size is capped, the content type must be
//! on the allow-list, and a name that could address anything but one file in its container is
//! refused. The data-dir engine's files are served back by `GET /files/<container>/<key>`.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::blob::{Blob, BlobError, BlobStore, check_container, check_key};
use crate::domain::rules::new_timestamp_id;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::Caller;

/// The longest original name kept in a key (after the id).
const MAX_NAME: usize = 150;

#[derive(Debug, Clone)]
pub struct FileOptions {
    pub max_bytes: usize,
    /// Content types accepted, lower case, without parameters.
    pub allowed_types: Vec<String>,
    /// The container of an upload that names none.
    pub default_container: String,
}

/// What the multipart request carried.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub container: Option<String>,
    pub file_name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Clone)]
pub struct FileService {
    blobs: Arc<dyn BlobStore>,
    options: FileOptions,
}

impl From<BlobError> for DomainError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::InvalidName(name) => {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&name, "fileName"])
            }
            BlobError::Unreachable(what) => DomainError::Unavailable(what),
            BlobError::Failed(what) => DomainError::internal(anyhow::anyhow!(what)),
        }
    }
}

/// The file name as a key part: path separators, `..` and control characters are refused
/// (never "cleaned" into something else); other characters outside `[A-Za-z0-9._-]` become `_`.
fn safe_name(raw: &str) -> DomainResult<String> {
    let refused = || DomainError::rule(ErrorCode::invalidParameterValue, &[raw, "fileName"]);
    let name = raw.trim();
    if name.is_empty()
        || name.contains(['/', '\\'])
        || name.contains("..")
        || name.chars().any(char::is_control)
    {
        return Err(refused());
    }
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    let kept: String = cleaned
        .chars()
        .rev()
        .take(MAX_NAME)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if kept.is_empty() {
        return Err(refused());
    }
    Ok(kept)
}

fn size_text(bytes: usize) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

impl FileService {
    pub fn new(blobs: Arc<dyn BlobStore>, options: FileOptions) -> Self {
        FileService { blobs, options }
    }

    /// The most bytes a file may have.
    pub fn max_bytes(&self) -> usize {
        self.options.max_bytes
    }

    pub async fn upload(
        &self,
        caller: &Caller,
        upload: Option<FileUpload>,
    ) -> DomainResult<Map<String, Value>> {
        if matches!(caller, Caller::Anonymous) {
            return Err(DomainError::unauthorized());
        }
        let upload = upload.ok_or_else(|| DomainError::rule(ErrorCode::invalidRequestData, &[]))?;
        if upload.bytes.len() > self.options.max_bytes {
            return Err(DomainError::rule(
                ErrorCode::dataSizeError,
                &[&size_text(self.options.max_bytes)],
            ));
        }
        let content_type = upload
            .content_type
            .as_deref()
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !self.options.allowed_types.contains(&content_type) {
            return Err(DomainError::rule(
                ErrorCode::invalidFileExtension,
                &[&self.options.allowed_types.join(", ")],
            ));
        }
        let container = upload
            .container
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| self.options.default_container.clone());
        if check_container(&container).is_err() {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[&container, "container"],
            ));
        }
        let key = format!("{}-{}", new_timestamp_id(), safe_name(&upload.file_name)?);
        check_key(&key)?;
        let url = self
            .blobs
            .put(
                &container,
                &key,
                Blob {
                    bytes: upload.bytes,
                    content_type,
                },
            )
            .await?;
        let mut result = Map::new();
        result.insert("url".into(), json!(url));
        Ok(result)
    }

    /// A stored file, for `GET /files/<container>/<key>`; an unknown or invalid name is 404.
    pub async fn read(&self, container: &str, key: &str) -> DomainResult<Blob> {
        let missing = || DomainError::not_found("file");
        if check_container(container).is_err() || check_key(key).is_err() {
            return Err(missing());
        }
        self.blobs.get(container, key).await?.ok_or_else(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_safe_or_refused() {
        assert_eq!(
            safe_name("My Photo (1).png").expect("ok"),
            "My_Photo__1_.png"
        );
        assert_eq!(safe_name(".profile").expect("ok"), "profile");
        for bad in [
            "../../etc/passwd",
            "a/b.png",
            "c:\\\\x.png",
            "..",
            "",
            "a\u{0}b",
        ] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }
}
