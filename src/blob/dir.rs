//! The data-dir blob engine: `<dir>/<container>/<key>` plus `<key>.type` holding the content
//! type. A put writes a temporary file, syncs it and renames it into place, so a crash never
//! leaves half a file under the name. Files are served back by this service
//! (`GET /files/<container>/<key>`), so the address is `<public base URL>/files/...`.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{Blob, BlobError, BlobStore, check_container, check_key};

pub struct DirBlobs {
    root: PathBuf,
    public_base_url: String,
}

impl DirBlobs {
    pub fn new(root: PathBuf, public_base_url: &str) -> Self {
        DirBlobs {
            root,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
        }
    }
}

fn failed(error: std::io::Error) -> BlobError {
    BlobError::Failed(error.to_string())
}

#[async_trait]
impl BlobStore for DirBlobs {
    async fn put(&self, container: &str, key: &str, blob: Blob) -> Result<String, BlobError> {
        check_container(container)?;
        check_key(key)?;
        let dir = self.root.join(container);
        let url = format!("{}/files/{container}/{key}", self.public_base_url);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), BlobError> {
            use std::io::Write;
            std::fs::create_dir_all(&dir).map_err(failed)?;
            let write = |name: &str, bytes: &[u8]| -> Result<(), BlobError> {
                let temporary = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
                let mut file = std::fs::File::create(&temporary).map_err(failed)?;
                file.write_all(bytes).map_err(failed)?;
                file.sync_all().map_err(failed)?;
                std::fs::rename(&temporary, dir.join(name)).map_err(failed)
            };
            write(&format!("{key}.type"), blob.content_type.as_bytes())?;
            write(&key, &blob.bytes)
        })
        .await
        .map_err(|error| BlobError::Failed(error.to_string()))??;
        Ok(url)
    }

    async fn get(&self, container: &str, key: &str) -> Result<Option<Blob>, BlobError> {
        check_container(container)?;
        check_key(key)?;
        let path = self.root.join(container).join(key);
        let type_path = self.root.join(container).join(format!("{key}.type"));
        tokio::task::spawn_blocking(move || -> Result<Option<Blob>, BlobError> {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(failed(error)),
            };
            let content_type = std::fs::read_to_string(&type_path)
                .unwrap_or_else(|_| "application/octet-stream".to_string());
            Ok(Some(Blob {
                bytes,
                content_type,
            }))
        })
        .await
        .map_err(|error| BlobError::Failed(error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_data_dir_engine_meets_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = DirBlobs::new(dir.path().to_path_buf(), "http://localhost:9000/");
        super::super::conformance::run(&blobs).await;
        let url = blobs
            .put(
                "user",
                "a.txt",
                Blob {
                    bytes: b"x".to_vec(),
                    content_type: "text/plain".into(),
                },
            )
            .await
            .expect("put");
        assert_eq!(url, "http://localhost:9000/files/user/a.txt");
    }
}
