//! The S3-compatible blob engine (AWS S3, MinIO, Ceph, ...), on the `object_store` crate: one
//! bucket, a blob at `<container>/<key>` with its content type as the object's. The address
//! answered is `<public base URL>/<container>/<key>` (by default the endpoint and bucket,
//! path-style).

use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};

use super::{Blob, BlobError, BlobStore, check_container, check_key};

/// How to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `https://s3.<region>.amazonaws.com`, or the server of another S3-compatible store.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Where clients fetch blobs; empty means `<endpoint>/<bucket>`.
    pub public_base_url: String,
}

pub struct S3Blobs {
    store: AmazonS3,
    public_base_url: String,
}

fn failed(error: object_store::Error) -> BlobError {
    match error {
        object_store::Error::Generic { source, .. } => BlobError::Unreachable(source.to_string()),
        other => BlobError::Failed(other.to_string()),
    }
}

impl S3Blobs {
    pub fn new(settings: &S3Settings) -> Result<Self, BlobError> {
        let store = AmazonS3Builder::new()
            .with_endpoint(settings.endpoint.trim_end_matches('/'))
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_allow_http(settings.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .build()
            .map_err(|error| BlobError::Failed(error.to_string()))?;
        let public_base_url = if settings.public_base_url.trim().is_empty() {
            format!(
                "{}/{}",
                settings.endpoint.trim_end_matches('/'),
                settings.bucket
            )
        } else {
            settings.public_base_url.trim_end_matches('/').to_string()
        };
        Ok(S3Blobs {
            store,
            public_base_url,
        })
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, container: &str, key: &str, blob: Blob) -> Result<String, BlobError> {
        check_container(container)?;
        check_key(key)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, blob.content_type.into());
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &Path::from(format!("{container}/{key}")),
                PutPayload::from(blob.bytes),
                options,
            )
            .await
            .map_err(failed)?;
        Ok(format!("{}/{container}/{key}", self.public_base_url))
    }

    async fn get(&self, container: &str, key: &str) -> Result<Option<Blob>, BlobError> {
        check_container(container)?;
        check_key(key)?;
        let result = match self
            .store
            .get(&Path::from(format!("{container}/{key}")))
            .await
        {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(failed(error)),
        };
        let content_type = result
            .attributes
            .get(&Attribute::ContentType)
            .map(|value| value.to_string())
            .unwrap_or_else(|| "application/octet-stream".to_string());
        let bytes = result.bytes().await.map_err(failed)?;
        Ok(Some(Blob {
            bytes: bytes.to_vec(),
            content_type,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a real S3-compatible server (the `s3` test tier), the whole contract.
    #[tokio::test]
    async fn the_s3_engine_meets_the_contract() {
        let Some(server) = crate::test_tiers::s3() else {
            return;
        };
        let blobs = S3Blobs::new(&S3Settings {
            endpoint: server.endpoint.clone(),
            bucket: server.bucket.clone(),
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            public_base_url: String::new(),
        })
        .expect("builds");
        super::super::conformance::run(&blobs).await;
    }
}
