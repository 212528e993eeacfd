//! PII protection at rest: AES-256-GCM sealing with a random nonce per value, and a keyed
//! HMAC-SHA256 "blind index" that makes equality lookups possible without storing plaintext.
//!
//! Sunbird encrypts deterministically with AES/ECB and a key in the source code so that encrypted
//! values can be looked up; we keep lookups through the blind index instead, so the ciphertext can
//! be randomised and authenticated. Keys come from configuration or from files in the data dir,
//! created with a random value on first start.

use std::fs;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;

/// Decodes a base64 32-byte key from configuration.
pub fn decode_key(encoded: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| "must be base64".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "must decode to exactly 32 bytes".to_string())
}

/// Makes the data dir and key dir private again (0700) and every key file directly in the key
/// dir 0600, with a warning for each one someone loosened; creates the dirs when missing. Run at
/// every start, so a `chmod -R a+r` or a careless restore is corrected before a key is read.
/// Public keys (`keys/public`) are left readable.
pub fn tighten_key_material(data_dir: &Path, keys_dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tighten = |path: &Path, mode: u32| -> anyhow::Result<()> {
            let current = fs::metadata(path)?.permissions().mode() & 0o777;
            if current & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{current:o}"),
                    "key material was open to others, made private"
                );
                fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        };
        for dir in [data_dir, keys_dir] {
            fs::create_dir_all(dir)?;
            tighten(dir, 0o700)?;
        }
        for entry in fs::read_dir(keys_dir)? {
            let path = entry?.path();
            if path.is_file() {
                tighten(&path, 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    for dir in [data_dir, keys_dir] {
        fs::create_dir_all(dir)?;
    }
    Ok(())
}

/// Returns the configured key, or the key stored in `file`, creating the file with a fresh random
/// key (mode 0600) when it does not exist yet.
pub fn load_or_create_key(configured: &str, file: &Path) -> anyhow::Result<[u8; 32]> {
    if !configured.is_empty() {
        return decode_key(configured).map_err(|reason| anyhow::anyhow!("invalid key: {reason}"));
    }
    if file.exists() {
        let text = fs::read_to_string(file)?;
        return decode_key(&text)
            .map_err(|reason| anyhow::anyhow!("invalid key file {}: {reason}", file.display()));
    }
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent)?;
    }
    let key: [u8; 32] = rand::random();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut handle = options.open(file)?;
    handle.write_all(BASE64.encode(key).as_bytes())?;
    handle.sync_all()?;
    Ok(key)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication")]
    Authentication,
}

/// Seals and opens PII values. Cheap to clone (the cipher holds expanded round keys).
#[derive(Clone)]
pub struct PiiCipher {
    cipher: Aes256Gcm,
}

impl PiiCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        PiiCipher {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypts `plaintext` with a fresh random nonce: the same value sealed twice differs.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", BASE64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Malformed)?;
        let bytes = BASE64.decode(body).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let plaintext = self
            .cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| CryptoError::Authentication)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Malformed)
    }
}

impl std::fmt::Debug for PiiCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiCipher(..)")
    }
}

/// Keyed, deterministic token of a normalised value, used as the lookup key of encrypted fields.
#[derive(Clone)]
pub struct BlindIndex {
    key: [u8; 32],
}

impl BlindIndex {
    pub fn new(key: &[u8; 32]) -> Self {
        BlindIndex { key: *key }
    }

    /// The token of `value` in the namespace `kind` (email, phone, username, ...). The namespace
    /// keeps equal strings of different kinds apart.
    pub fn token(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("hmac accepts keys of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndex(..)")
    }
}

/// Both halves of PII handling behind one handle: sealing for storage, tokens for lookups.
#[derive(Clone, Debug)]
pub struct PiiVault {
    cipher: PiiCipher,
    index: BlindIndex,
}

impl PiiVault {
    pub fn new(cipher: PiiCipher, index: BlindIndex) -> Self {
        PiiVault { cipher, index }
    }

    /// Loads (or creates on first start) the two keys under `keys_dir`, unless configured
    /// (base64 of 32 bytes; an empty string means "use the key file").
    pub fn load(
        encryption_key: &str,
        blind_index_key: &str,
        keys_dir: &Path,
    ) -> anyhow::Result<PiiVault> {
        let encryption = load_or_create_key(encryption_key, &keys_dir.join("pii.key"))?;
        let blind = load_or_create_key(blind_index_key, &keys_dir.join("blind-index.key"))?;
        Ok(PiiVault::new(
            PiiCipher::new(&encryption),
            BlindIndex::new(&blind),
        ))
    }

    pub fn seal(&self, plaintext: &str) -> String {
        self.cipher.seal(plaintext)
    }

    pub fn open(&self, sealed: &str) -> Result<String, CryptoError> {
        self.cipher.open(sealed)
    }

    /// The lookup token of an already normalised value (lower-cased email, national phone
    /// digits, lower-cased username...).
    pub fn token(&self, kind: &str, normalised: &str) -> String {
        self.index.token(kind, normalised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_randomises() {
        let cipher = PiiCipher::new(&[7u8; 32]);
        let a = cipher.seal("asha.rao@example.org");
        let b = cipher.seal("asha.rao@example.org");
        assert_ne!(a, b, "a random nonce makes equal plaintexts differ");
        assert!(!a.contains("asha"));
        assert_eq!(cipher.open(&a).as_deref(), Ok("asha.rao@example.org"));
    }

    #[test]
    fn tampering_and_wrong_keys_are_detected() {
        let cipher = PiiCipher::new(&[7u8; 32]);
        let sealed = cipher.seal("9876543210");
        let mut bytes = sealed.into_bytes();
        // A character inside the ciphertext (not the last ones, which may carry padding bits).
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(cipher.open(&tampered), Err(CryptoError::Authentication));
        let other = PiiCipher::new(&[8u8; 32]);
        assert_eq!(
            other.open(&cipher.seal("x")),
            Err(CryptoError::Authentication)
        );
        assert_eq!(cipher.open("plain"), Err(CryptoError::Malformed));
    }

    #[test]
    fn blind_index_is_keyed_deterministic_and_namespaced() {
        let index = BlindIndex::new(&[1u8; 32]);
        assert_eq!(index.token("email", "a@b.c"), index.token("email", "a@b.c"));
        assert_ne!(index.token("email", "a@b.c"), index.token("phone", "a@b.c"));
        assert_ne!(
            index.token("email", "a@b.c"),
            BlindIndex::new(&[2u8; 32]).token("email", "a@b.c")
        );
        assert_eq!(index.token("email", "a@b.c").len(), 64);
    }

    #[test]
    fn keys_are_created_once_with_private_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys").join("pii.key");
        let first = load_or_create_key("", &file).expect("created");
        let second = load_or_create_key("", &file).expect("loaded");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let configured = BASE64.encode([9u8; 32]);
        assert_eq!(
            load_or_create_key(&configured, &file).expect("configured"),
            [9u8; 32]
        );
        assert!(decode_key("short").is_err());
    }
}
