//! PII protection at rest: AES-256-GCM sealing with a random nonce per value, and a keyed
//! HMAC-SHA256 "blind index" that makes equality lookups possible without storing plaintext.
//!
//! Sunbird encrypts deterministically with AES/ECB and a key in the source code so that encrypted
//! values can be looked up; we keep lookups through the blind index instead, so the ciphertext can
//! be randomised and authenticated. Keys come from configuration or from files in the data dir,
//! created with a random value on first start.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SEALED_PREFIX: &str = "v1.";
const SEALED_V2: &str = "v2.";
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
    write_private(file, Write::CreateNew, BASE64.encode(key).as_bytes())?;
    Ok(key)
}

/// How [`write_private`] opens its file.
#[derive(Clone, Copy)]
enum Write {
    /// A new file (an existing one is an error).
    CreateNew,
    /// Appended to, created when missing.
    Append,
}

/// Writes `bytes` to a key file that is mode 0600 from its creation, and flushes it to disk.
fn write_private(path: &Path, how: Write, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    match how {
        Write::CreateNew => options.write(true).create_new(true),
        Write::Append => options.append(true).create(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut handle = options.open(path)?;
    handle.write_all(bytes)?;
    handle.sync_all()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication")]
    Authentication,
    #[error("sealed value names a key that is not configured")]
    UnknownKey,
    #[error("sealing failed")]
    Sealing,
}

/// The id a ciphertext names its key by: 8 hex digits of a hash of the key, so ids never reveal
/// the key and two keys practically never share one.
pub fn key_id(key: &[u8; 32]) -> String {
    use sha2::Digest;
    let digest = Sha256::new()
        .chain_update(b"userorg pii key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..4])
}

/// Seals and opens PII values. Cheap to clone (the ciphers hold expanded round keys).
///
/// A sealed value is `v2.<key id>.<base64 of nonce ‖ ciphertext ‖ tag>`, AES-256-GCM with a
/// random nonce and, as associated data, what the value belongs to (the caller's binding: the
/// user id and the kind of value), so a ciphertext copied into another row or field does not
/// open. Values are sealed with the current key and opened with whichever configured key they
/// name, so after a rotation old values stay readable until `userorg keys reseal` rewrites
/// them. `v1.` values (no key id, no associated data) are still opened.
#[derive(Clone)]
pub struct PiiCipher {
    current: (String, Aes256Gcm),
    retired: Vec<(String, Aes256Gcm)>,
}

impl PiiCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        PiiCipher::with_retired(key, &[])
    }

    /// The current key, and older keys values may still be sealed with.
    pub fn with_retired(key: &[u8; 32], retired: &[[u8; 32]]) -> Self {
        PiiCipher {
            current: (key_id(key), Aes256Gcm::new(key.into())),
            retired: retired
                .iter()
                .map(|old| (key_id(old), Aes256Gcm::new(old.into())))
                .collect(),
        }
    }

    /// The id of the key values are sealed with now.
    pub fn current_key_id(&self) -> &str {
        &self.current.0
    }

    fn cipher_named(&self, id: &str) -> Option<&Aes256Gcm> {
        std::iter::once(&self.current)
            .chain(self.retired.iter())
            .find(|(kid, _)| kid == id)
            .map(|(_, cipher)| cipher)
    }

    /// Encrypts `plaintext` bound to `binding`, with a fresh random nonce: the same value sealed
    /// twice differs. A failure is an error, never an empty ciphertext.
    pub fn seal(&self, binding: &[u8], plaintext: &str) -> Result<String, CryptoError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .current
            .1
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: binding,
                },
            )
            .map_err(|_| CryptoError::Sealing)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(format!(
            "{SEALED_V2}{}.{}",
            self.current.0,
            BASE64.encode(out)
        ))
    }

    /// Opens a value sealed with any configured key and bound to `binding`.
    pub fn open(&self, binding: &[u8], sealed: &str) -> Result<String, CryptoError> {
        let (cipher, body, aad) = if let Some(rest) = sealed.strip_prefix(SEALED_V2) {
            let (kid, body) = rest.split_once('.').ok_or(CryptoError::Malformed)?;
            let cipher = self.cipher_named(kid).ok_or(CryptoError::UnknownKey)?;
            (cipher, body, binding)
        } else if let Some(body) = sealed.strip_prefix(SEALED_PREFIX) {
            (&self.current.1, body, &[][..])
        } else {
            return Err(CryptoError::Malformed);
        };
        let bytes = BASE64.decode(body).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let plaintext = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Malformed)
    }

    /// True when `sealed` is not sealed with the current key in the current format.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        sealed
            .strip_prefix(SEALED_V2)
            .and_then(|rest| rest.split_once('.'))
            .is_none_or(|(kid, _)| kid != self.current.0)
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
    /// (base64 of 32 bytes; an empty string means "use the key file"), and the retired
    /// encryption keys: those configured, and those `userorg keys rotate` listed in
    /// `keys_dir/pii-retired.keys` (one base64 key per line).
    pub fn load(
        encryption_key: &str,
        retired_keys: &[String],
        blind_index_key: &str,
        keys_dir: &Path,
    ) -> anyhow::Result<PiiVault> {
        let encryption = load_or_create_key(encryption_key, &keys_dir.join(PII_KEY_FILE))?;
        let blind = load_or_create_key(blind_index_key, &keys_dir.join("blind-index.key"))?;
        let mut retired = Vec::new();
        for encoded in retired_keys {
            retired.push(decode_key(encoded).map_err(|reason| {
                anyhow::anyhow!("invalid key in security.pii_retired_keys: {reason}")
            })?);
        }
        retired.extend(read_retired_keys(keys_dir)?);
        Ok(PiiVault::new(
            PiiCipher::with_retired(&encryption, &retired),
            BlindIndex::new(&blind),
        ))
    }

    /// Seals a value of `kind` (email, phone, userName) belonging to row `row`.
    pub fn seal(&self, row: &str, kind: &str, plaintext: &str) -> Result<String, CryptoError> {
        self.cipher.seal(binding(row, kind).as_bytes(), plaintext)
    }

    pub fn open(&self, row: &str, kind: &str, sealed: &str) -> Result<String, CryptoError> {
        self.cipher.open(binding(row, kind).as_bytes(), sealed)
    }

    /// True when `sealed` should be rewritten under the current key.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        self.cipher.needs_reseal(sealed)
    }

    pub fn current_key_id(&self) -> &str {
        self.cipher.current_key_id()
    }

    /// The lookup token of an already normalised value (lower-cased email, national phone
    /// digits, lower-cased username...).
    pub fn token(&self, kind: &str, normalised: &str) -> String {
        self.index.token(kind, normalised)
    }
}

/// What a sealed value is bound to: its row and the kind of value.
fn binding(row: &str, kind: &str) -> String {
    format!("{row}\u{1f}{kind}")
}

/// The file of the current encryption key, and of the retired ones.
pub const PII_KEY_FILE: &str = "pii.key";
pub const PII_RETIRED_FILE: &str = "pii-retired.keys";

fn read_retired_keys(keys_dir: &Path) -> anyhow::Result<Vec<[u8; 32]>> {
    let path = keys_dir.join(PII_RETIRED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            decode_key(line)
                .map_err(|reason| anyhow::anyhow!("invalid key in {}: {reason}", path.display()))
        })
        .collect()
}

/// `userorg keys rotate`, the file part: the current key file's key joins the retired keys
/// (appended and flushed first, so a crash never loses a key values are sealed with), then a
/// new random key replaces it (written to a temporary file and renamed). Returns the new key
/// id. Refused when the key comes from configuration: rotate it there, list the old key in
/// `security.pii_retired_keys`, then run `userorg keys reseal`.
pub fn rotate_key_file(configured: &str, keys_dir: &Path) -> anyhow::Result<String> {
    if !configured.is_empty() {
        anyhow::bail!(
            "the PII key comes from security.pii_encryption_key: set a new one there, list the old one in security.pii_retired_keys, then run `userorg keys reseal`"
        );
    }
    let current_path = keys_dir.join(PII_KEY_FILE);
    let current = load_or_create_key("", &current_path)?;
    write_private(
        &keys_dir.join(PII_RETIRED_FILE),
        Write::Append,
        format!("{}\n", BASE64.encode(current)).as_bytes(),
    )?;
    let next: [u8; 32] = rand::random();
    let temp = keys_dir.join(format!(".{PII_KEY_FILE}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    write_private(&temp, Write::CreateNew, BASE64.encode(next).as_bytes())?;
    fs::rename(&temp, &current_path)?;
    if let Ok(dir) = fs::File::open(keys_dir) {
        let _ = dir.sync_all();
    }
    Ok(key_id(&next))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &[u8] = b"u1\x1femail";

    #[test]
    fn seal_then_open_round_trips_and_randomises() {
        let cipher = PiiCipher::new(&[7u8; 32]);
        let a = cipher.seal(ROW, "asha.rao@example.org").expect("sealed");
        let b = cipher.seal(ROW, "asha.rao@example.org").expect("sealed");
        assert_ne!(a, b, "a random nonce makes equal plaintexts differ");
        assert!(!a.contains("asha"));
        assert!(a.starts_with(&format!("v2.{}.", key_id(&[7u8; 32]))), "{a}");
        assert_eq!(cipher.open(ROW, &a).as_deref(), Ok("asha.rao@example.org"));
    }

    #[test]
    fn tampering_wrong_keys_and_other_bindings_are_detected() {
        let cipher = PiiCipher::new(&[7u8; 32]);
        let sealed = cipher.seal(ROW, "9876543210").expect("sealed");
        let mut bytes = sealed.clone().into_bytes();
        // A character inside the ciphertext (not the last ones, which may carry padding bits).
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            cipher.open(ROW, &tampered),
            Err(CryptoError::Authentication)
        );
        // A value copied into another user's row, or into another kind of field, does not open.
        assert_eq!(
            cipher.open(b"u2\x1femail", &sealed),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            cipher.open(b"u1\x1fphone", &sealed),
            Err(CryptoError::Authentication)
        );
        let other = PiiCipher::new(&[8u8; 32]);
        assert_eq!(other.open(ROW, &sealed), Err(CryptoError::UnknownKey));
        assert_eq!(cipher.open(ROW, "plain"), Err(CryptoError::Malformed));
    }

    #[test]
    fn after_a_rotation_old_values_open_and_are_flagged_for_resealing() {
        let old = PiiCipher::new(&[1u8; 32]);
        let sealed = old.seal(ROW, "asha@example.org").expect("sealed");
        let rotated = PiiCipher::with_retired(&[2u8; 32], &[[1u8; 32]]);
        assert_eq!(
            rotated.open(ROW, &sealed).as_deref(),
            Ok("asha@example.org")
        );
        assert!(rotated.needs_reseal(&sealed));
        let resealed = rotated.seal(ROW, "asha@example.org").expect("sealed");
        assert!(!rotated.needs_reseal(&resealed));
        assert_eq!(
            PiiCipher::new(&[2u8; 32]).open(ROW, &resealed).as_deref(),
            Ok("asha@example.org")
        );
        assert_ne!(key_id(&[1u8; 32]), key_id(&[2u8; 32]));
    }

    #[test]
    fn values_of_the_first_format_still_open() {
        let key = [7u8; 32];
        let nonce = [3u8; NONCE_LEN];
        let body = Aes256Gcm::new((&key).into())
            .encrypt(&Nonce::from(nonce), b"9876543210".as_ref())
            .expect("encrypt");
        let v1 = format!(
            "{SEALED_PREFIX}{}",
            BASE64.encode([nonce.as_slice(), &body].concat())
        );
        let cipher = PiiCipher::new(&key);
        assert_eq!(cipher.open(ROW, &v1).as_deref(), Ok("9876543210"));
        assert!(cipher.needs_reseal(&v1));
    }

    #[test]
    fn rotating_the_key_file_keeps_the_old_key_as_retired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let vault = PiiVault::load("", &[], "", &keys).expect("vault");
        let sealed = vault.seal("u1", "email", "a@b.c").expect("sealed");
        let before = vault.current_key_id().to_string();
        let next = rotate_key_file("", &keys).expect("rotated");
        assert_ne!(next, before);
        let vault = PiiVault::load("", &[], "", &keys).expect("vault");
        assert_eq!(vault.current_key_id(), next);
        assert_eq!(vault.open("u1", "email", &sealed).as_deref(), Ok("a@b.c"));
        assert!(vault.needs_reseal(&sealed));
        assert!(
            rotate_key_file(&BASE64.encode([9u8; 32]), &keys)
                .expect_err("configured keys rotate in configuration")
                .to_string()
                .contains("security.pii_retired_keys")
        );
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
