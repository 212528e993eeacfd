//! The credential other services present on the internal listener. Sunbird trusts whatever
//! reaches its private routes; here a caller must send `Authorization: Bearer <credential>`,
//! where the credential is configured (`security.service_credential`, base64 of 32 bytes) or,
//! on an embedded install, generated once in `<data_dir>/keys/service-credential` (mode 0600)
//! and printed by `userorg token --service`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::crypto::load_or_create_key;

/// The accepted service credential, kept as a digest so comparisons take constant time.
#[derive(Clone)]
pub struct ServiceCredential {
    digest: [u8; 32],
    text: String,
}

impl std::fmt::Debug for ServiceCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCredential(..)")
    }
}

impl ServiceCredential {
    /// The configured credential, else the one in `file`, created on first use.
    pub fn load(configured: &str, file: &Path) -> anyhow::Result<ServiceCredential> {
        let key = load_or_create_key(configured, file)?;
        Ok(ServiceCredential::from_text(BASE64.encode(key)))
    }

    fn from_text(text: String) -> ServiceCredential {
        ServiceCredential {
            digest: Sha256::digest(text.as_bytes()).into(),
            text,
        }
    }

    /// True when `presented` is the credential. Compares digests in constant time, so the
    /// answer time says nothing about how much of a guess was right.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// The credential itself, for `userorg token --service` and tests.
    pub fn reveal(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_credential_is_kept_private_and_accepted_only_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys").join("service-credential");
        let first = ServiceCredential::load("", &file).expect("created");
        let second = ServiceCredential::load("", &file).expect("loaded");
        assert_eq!(first.reveal(), second.reveal(), "created once");
        assert!(first.accepts(first.reveal()));
        assert!(first.accepts(&format!(" {} ", first.reveal())));
        assert!(!first.accepts(""));
        assert!(!first.accepts(&first.reveal()[1..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(
            format!("{first:?}"),
            "ServiceCredential(..)",
            "never printed"
        );
    }
}
