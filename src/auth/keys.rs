//! The ring of trusted token-verification keys, loaded from a directory (file name = `kid`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::DecodingKey;
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

use super::AuthError;

/// Smallest RSA modulus accepted, in bits. Keycloak's default is 2048; anything shorter is
/// factorable in practice (ASVS 11.3.2 approved algorithms) and would make every check moot.
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// A key file larger than this is not an RSA public key (a 4096-bit SPKI PEM is about 800 bytes);
/// the cap keeps a stray large file in the directory from being read into memory.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Standard base64 with or without `=` padding: Keycloak's admin console and Sunbird's helm charts
/// show the realm key body padded, hand-copied files sometimes lose the padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A trusted RSA public key, ready for RS256 verification.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub(crate) decoding_key: DecodingKey,
    /// Modulus length in bytes, which is also the exact length of a valid signature.
    pub(crate) modulus_bytes: usize,
}

impl TrustedKey {
    fn from_public_key(key: &RsaPublicKey) -> Result<Self, &'static str> {
        if key.n().bits() < MIN_RSA_BITS {
            return Err("rsa modulus shorter than 2048 bits");
        }
        Ok(TrustedKey {
            decoding_key: DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ),
            modulus_bytes: key.size(),
        })
    }
}

/// The set of public keys tokens may be signed with, keyed by `kid`.
///
/// Keys come only from here, never from the token (`jku`, `x5u`, `jwk`, `x5c` are ignored: ASVS
/// 9.1.3). The Sunbird/Keycloak convention is kept: every regular file of the key directory is one
/// RSA public key and its *file name* is the `kid`. Accepted file contents:
///
/// - PEM `-----BEGIN PUBLIC KEY-----` (SPKI, what `openssl rsa -pubout` writes),
/// - PEM `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1),
/// - the bare base64 body of either, without armour (what Keycloak's admin console shows and what
///   Sunbird's helm charts put in the `/keys/` files).
///
/// A ring is an immutable snapshot; [`KeyRing::reload`] reads the directory again and returns a
/// new ring, which [`crate::auth::TokenVerifier::reload_keys`] swaps in.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, TrustedKey>,
    source_dir: Option<PathBuf>,
    /// Keys that do not live in the directory and survive a reload (the local signer's key
    /// beside an external provider's directory).
    pinned: BTreeMap<String, TrustedKey>,
}

impl KeyRing {
    /// An empty ring that rejects every token; fill it with [`KeyRing::insert_pem`].
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// Loads every key file of `dir`.
    ///
    /// Hidden entries (names starting with `.`) and subdirectories are ignored; symbolic links are
    /// followed, because a Kubernetes secret or config map mounted as a directory presents each
    /// key as a link into a hidden `..data` directory. A file that cannot be read or parsed is
    /// skipped with a warning naming the file and the reason, so one bad file does not take the
    /// service down. A missing directory gives an empty ring (creating it is the caller's job) that
    /// remembers the directory, so a later [`KeyRing::reload`] picks up keys added to it.
    pub fn load_dir(dir: &Path) -> Result<KeyRing, AuthError> {
        let mut ring = KeyRing {
            keys: BTreeMap::new(),
            source_dir: Some(dir.to_path_buf()),
            pinned: BTreeMap::new(),
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(dir = %dir.display(), "token key directory does not exist, no keys loaded");
                return Ok(ring);
            }
            Err(error) => return Err(AuthError::io(dir, error)),
        };
        for entry in entries {
            let entry = entry.map_err(|error| AuthError::io(dir, error))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let Some(kid) = file_name.to_str() else {
                tracing::warn!(file = %path.display(), "skipped token key file: name is not utf-8");
                continue;
            };
            if kid.starts_with('.') {
                continue;
            }
            match read_key_file(&path) {
                Ok(Some((trusted, bits))) => {
                    tracing::info!(
                        key.id = kid,
                        key.bits = bits,
                        "loaded token verification key"
                    );
                    ring.keys.insert(kid.to_owned(), trusted);
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(file = %path.display(), reason, "skipped token key file");
                }
            }
        }
        if ring.is_empty() {
            tracing::warn!(dir = %dir.display(), "no token verification keys loaded, every token will be rejected");
        }
        Ok(ring)
    }

    /// Reads the directory this ring was loaded from again and returns the new ring.
    ///
    /// Used for key rotation without a restart. The current ring stays valid and unchanged; an
    /// error leaves it to the caller to keep using it.
    pub fn reload(&self) -> Result<KeyRing, AuthError> {
        match &self.source_dir {
            Some(dir) => {
                let mut ring = KeyRing::load_dir(dir)?;
                for (kid, key) in &self.pinned {
                    ring.keys.insert(kid.clone(), key.clone());
                }
                ring.pinned = self.pinned.clone();
                Ok(ring)
            }
            None => Err(AuthError::Settings(
                "key ring was not loaded from a directory",
            )),
        }
    }

    /// Adds (or replaces) the key `kid` from PEM or bare base64 text, in any of the forms
    /// [`KeyRing::load_dir`] accepts. Meant for keys that do not live in the directory, such as a
    /// key fetched from a JWKS endpoint or a test key.
    pub fn insert_pem(&mut self, kid: impl Into<String>, text: &str) -> Result<(), AuthError> {
        let kid = kid.into();
        let trusted = parse_public_key(text)
            .and_then(|key| TrustedKey::from_public_key(&key))
            .map_err(|reason| AuthError::Key {
                origin: format!("for kid {kid}"),
                reason,
            })?;
        self.keys.insert(kid, trusted);
        Ok(())
    }

    /// Adds the key `kid` like [`KeyRing::insert_pem`], and keeps it across reloads.
    pub fn pin_pem(&mut self, kid: impl Into<String>, text: &str) -> Result<(), AuthError> {
        let kid = kid.into();
        self.insert_pem(kid.clone(), text)?;
        if let Some(key) = self.keys.get(&kid) {
            self.pinned.insert(kid, key.clone());
        }
        Ok(())
    }

    /// The directory the ring was loaded from, if any.
    pub fn source_dir(&self) -> Option<&Path> {
        self.source_dir.as_deref()
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted (every token will be rejected).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in sorted order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// True when `kid` names a trusted key.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.get(kid)
    }
}

impl fmt::Debug for KeyRing {
    // Only the kids: key material has no business in debug output either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("source_dir", &self.source_dir)
            .finish()
    }
}

/// Reads one directory entry and returns the key with its modulus length in bits. `Ok(None)` means
/// "not a key file, ignore quietly" (a directory); `Err` carries a reason fit for a log line.
fn read_key_file(path: &Path) -> Result<Option<(TrustedKey, usize)>, &'static str> {
    // `fs::metadata` follows symbolic links, which is what mounted secrets need.
    let metadata = fs::metadata(path).map_err(|_| "cannot read file metadata")?;
    if metadata.is_dir() {
        return Ok(None);
    }
    if !metadata.is_file() {
        return Err("not a regular file");
    }
    if metadata.len() > MAX_KEY_FILE_BYTES {
        return Err("file too large for a public key");
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text))
        .map_err(|_| "cannot read file as utf-8 text")?;
    let key = parse_public_key(&text)?;
    let trusted = TrustedKey::from_public_key(&key)?;
    Ok(Some((trusted, key.n().bits())))
}

/// Parses an RSA public key from PEM (SPKI or PKCS#1) or from a bare base64 DER body.
///
/// The armour is stripped here rather than by a PEM parser so that the line-ending and
/// line-length variations of hand-made files (CRLF, one long line, no final newline) all load,
/// exactly as Sunbird's `KeyManager` (which strips the armour and decodes the rest) accepts them.
pub(crate) fn parse_public_key(text: &str) -> Result<RsaPublicKey, &'static str> {
    let text = text.trim_start_matches('\u{feff}').trim();
    let (label, body) = match text.strip_prefix("-----BEGIN ") {
        Some(rest) => {
            let (label, after_begin) = rest.split_once("-----").ok_or("broken pem armour")?;
            let end_marker = format!("-----END {label}-----");
            let body = after_begin
                .strip_suffix(end_marker.as_str())
                .ok_or("broken pem armour")?;
            if body.contains("-----") {
                return Err("more than one pem block");
            }
            (Some(label), body)
        }
        None => (None, text),
    };
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err("empty key");
    }
    let der = LENIENT_BASE64
        .decode(compact.as_bytes())
        .map_err(|_| "invalid base64")?;
    match label {
        Some("PUBLIC KEY") => {
            RsaPublicKey::from_public_key_der(&der).map_err(|_| "not an rsa spki public key")
        }
        Some("RSA PUBLIC KEY") => {
            RsaPublicKey::from_pkcs1_der(&der).map_err(|_| "not a pkcs#1 rsa public key")
        }
        Some(label) if label.contains("PRIVATE KEY") => {
            Err("a private key does not belong in the public key directory")
        }
        Some(_) => Err("unsupported pem label"),
        None => RsaPublicKey::from_public_key_der(&der)
            .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
            .map_err(|_| "not an rsa public key"),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rsa::RsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    use super::*;
    use crate::auth::test_support::{bare_base64, pkcs1_pem, spki_pem, test_keys};

    #[test]
    fn loads_pem_and_bare_base64_keys_named_by_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = test_keys();
        fs::write(dir.path().join("spki"), spki_pem(&keys.trusted)).expect("write");
        fs::write(dir.path().join("pkcs1"), pkcs1_pem(&keys.trusted)).expect("write");
        fs::write(dir.path().join("bare"), bare_base64(&keys.attacker)).expect("write");
        // Hand-made variants: CRLF line endings, one long line, no final newline.
        let crlf = spki_pem(&keys.attacker).replace('\n', "\r\n");
        fs::write(dir.path().join("crlf"), crlf).expect("write");
        let body = bare_base64(&keys.trusted);
        let one_line = format!("-----BEGIN PUBLIC KEY-----{body}-----END PUBLIC KEY-----");
        fs::write(dir.path().join("one-line"), one_line).expect("write");
        let unpadded = body.trim_end_matches('=').to_owned();
        fs::write(dir.path().join("bare-unpadded"), format!("\n{unpadded}\n")).expect("write");

        let ring = KeyRing::load_dir(dir.path()).expect("ring loads");
        assert_eq!(
            ring.kids().collect::<Vec<_>>(),
            ["bare", "bare-unpadded", "crlf", "one-line", "pkcs1", "spki"]
        );
        assert_eq!(ring.len(), 6);
        assert!(ring.contains("spki") && !ring.contains("missing"));
        assert_eq!(ring.source_dir(), Some(dir.path()));
    }

    #[test]
    fn skips_hidden_entries_subdirectories_and_unusable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = test_keys();
        let pem = spki_pem(&keys.trusted);
        fs::write(dir.path().join("good"), &pem).expect("write");
        fs::write(dir.path().join(".hidden"), &pem).expect("write");
        fs::create_dir(dir.path().join("subdir")).expect("mkdir");
        fs::write(dir.path().join("subdir").join("nested"), &pem).expect("write");
        fs::write(dir.path().join("README"), "public keys go here").expect("write");
        fs::write(dir.path().join("empty"), "").expect("write");
        fs::write(dir.path().join("binary"), [0xff_u8, 0xfe, 0x00]).expect("write");
        fs::write(dir.path().join("big"), "A".repeat(70 * 1024)).expect("write");
        let private = keys.trusted.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        fs::write(dir.path().join("private"), private.as_bytes()).expect("write");
        let certificate = pem.replace("PUBLIC KEY", "CERTIFICATE");
        fs::write(dir.path().join("certificate"), certificate).expect("write");
        let two_blocks = format!("{pem}{pem}");
        fs::write(dir.path().join("two-blocks"), two_blocks).expect("write");
        let truncated = pem.replace("-----END PUBLIC KEY-----", "");
        fs::write(dir.path().join("truncated"), truncated).expect("write");

        let ring = KeyRing::load_dir(dir.path()).expect("ring loads");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn rejects_keys_shorter_than_2048_bits() {
        let short = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).expect("1024-bit key");
        let mut ring = KeyRing::new();
        let error = ring
            .insert_pem("short", &spki_pem(&short))
            .expect_err("short key refused");
        assert!(matches!(error, AuthError::Key { .. }));
        assert!(ring.is_empty());
    }

    #[test]
    fn key_errors_name_the_source_never_the_material() {
        let pem = spki_pem(&test_keys().trusted);
        let broken = pem.replace('M', "*");
        let error = KeyRing::new()
            .insert_pem("broken-kid", &broken)
            .expect_err("broken key refused");
        let message = error.to_string();
        assert!(message.contains("broken-kid"), "{message}");
        assert!(!message.contains("MII"), "{message}");
    }

    #[test]
    fn missing_directory_gives_an_empty_ring_that_can_be_reloaded() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("not-yet");
        let ring = KeyRing::load_dir(&dir).expect("missing dir is fine");
        assert!(ring.is_empty());
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("late"), spki_pem(&test_keys().trusted)).expect("write");
        let reloaded = ring.reload().expect("reload");
        assert_eq!(reloaded.kids().collect::<Vec<_>>(), ["late"]);
        assert!(ring.is_empty(), "the old snapshot is unchanged");
    }

    #[test]
    fn unreadable_directory_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("a-file");
        fs::write(&file, "x").expect("write");
        let error = KeyRing::load_dir(&file).expect_err("a file is not a directory");
        assert!(matches!(error, AuthError::Io { .. }));
        assert!(!error.is_token_rejection());
    }

    #[cfg(unix)]
    #[test]
    fn follows_symbolic_links_like_a_mounted_kubernetes_secret() {
        // A mounted secret looks like: `kid -> ..data/kid`, `..data -> ..2024_01_01_timestamp/`.
        let dir = tempfile::tempdir().expect("tempdir");
        let versioned = dir.path().join("..2024_01_01");
        fs::create_dir(&versioned).expect("mkdir");
        fs::write(
            versioned.join("keycloak-kid"),
            spki_pem(&test_keys().trusted),
        )
        .expect("write");
        std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/keycloak-kid", dir.path().join("keycloak-kid"))
            .expect("link");
        let ring = KeyRing::load_dir(dir.path()).expect("ring loads");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["keycloak-kid"]);
    }

    #[test]
    fn debug_output_lists_kids_only() {
        let mut ring = KeyRing::new();
        ring.insert_pem("kid-1", &spki_pem(&test_keys().trusted))
            .expect("insert");
        let debug = format!("{ring:?}");
        assert!(debug.contains("kid-1"));
        assert!(
            !debug.contains("MII") && !debug.contains("SecretOrDer"),
            "{debug}"
        );
    }
}
