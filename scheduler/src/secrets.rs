//! Sealed secrets (DESIGN.md invariant 14): what must be read back in clear later (TOTP
//! seeds, OIDC client secrets, webhook signing secrets) goes into the replicated log and
//! snapshots only sealed with XChaCha20-Poly1305 under a key-encryption key that each replica
//! loads from a file outside the log (`--secrets-key`).
//!
//! The key file holds one or more keys, one per line (64 hex digits; `#` starts a comment).
//! The first seals; all of them open, so a key can be rotated without losing what the old one
//! sealed (docs/operations.md, "Rotating the secrets key"). A sealed value names the key that
//! sealed it: `v1.<key id>.<base64url(nonce ‖ ciphertext)>`, where the key id is the first
//! 8 hex digits of the key's SHA-256. The associated data binds a sealed value to its use and
//! owner (`totp:usr-…`), so one user's sealed seed cannot be moved to another.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}, line {line}: a secrets key is 64 hex digits (32 bytes); make one with `vmcloud secrets new-key`"
    )]
    BadKey { path: PathBuf, line: usize },
    #[error("{0} holds no key: add one line of 64 hex digits (`vmcloud secrets new-key`)")]
    Empty(PathBuf),
    #[error("cannot write the secrets key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "a secret sealed with key {0} cannot be opened: that key is not in this replica's --secrets-key file"
    )]
    UnknownKey(String),
    #[error("a sealed secret is damaged, or was sealed for another use or owner")]
    Damaged,
}

/// The key-encryption keys of this replica: the first seals, every one opens.
#[derive(Clone)]
pub struct SecretsKey {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SecretsKey").field("key_ids", &ids).finish()
    }
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

impl SecretsKey {
    /// Keys from raw 32-byte values (the first seals).
    pub fn from_keys(keys: &[[u8; 32]]) -> SecretsKey {
        SecretsKey {
            keys: keys
                .iter()
                .map(|k| (key_id(k), XChaCha20Poly1305::new(k.into())))
                .collect(),
        }
    }

    /// Reads a key file (see the module's documentation).
    pub fn load(path: &Path) -> Result<SecretsKey, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bytes: [u8; 32] = hex::decode(line)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| SecretsError::BadKey {
                    path: path.to_owned(),
                    line: n + 1,
                })?;
            keys.push(bytes);
        }
        if keys.is_empty() {
            return Err(SecretsError::Empty(path.to_owned()));
        }
        Ok(SecretsKey::from_keys(&keys))
    }

    /// A new random key as a key file's line.
    pub fn new_key_line() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// Loads `path`, first writing a new key there (readable by its owner only) when the file
    /// does not exist: what `vmcloud dev` does.
    pub fn load_or_create(path: &Path) -> Result<SecretsKey, SecretsError> {
        if !path.exists() {
            let write = |source| SecretsError::Write {
                path: path.to_owned(),
                source,
            };
            let text = format!(
                "# VMCloud secrets key (key-encryption key for sealed secrets). Keep it secret;\n# every replica needs the same file. Rotation: docs/operations.md.\n{}\n",
                SecretsKey::new_key_line()
            );
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(write)?;
            file.write_all(text.as_bytes()).map_err(write)?;
        }
        SecretsKey::load(path)
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `plaintext` for `purpose` (the associated data: its use and owner).
    pub fn seal(&self, plaintext: &[u8], purpose: &str) -> String {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length a secret has");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("v1.{id}.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    /// Opens what [`SecretsKey::seal`] sealed for the same `purpose`.
    pub fn open(&self, sealed: &str, purpose: &str) -> Result<Vec<u8>, SecretsError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretsError::Damaged);
        };
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretsError::Damaged)?;
        if blob.len() < 24 {
            return Err(SecretsError::Damaged);
        }
        let (nonce, ciphertext) = blob.split_at(24);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Damaged)
    }

    /// Whether `sealed` was sealed by a key other than the sealing one (to be resealed).
    pub fn is_stale(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) != Some(self.sealing_key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_the_same_purpose_only() {
        let k = SecretsKey::from_keys(&[[7; 32]]);
        let sealed = k.seal(b"JBSWY3DPEHPK3PXP", "totp:usr-a");
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(k.open(&sealed, "totp:usr-a").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(matches!(
            k.open(&sealed, "totp:usr-b"),
            Err(SecretsError::Damaged)
        ));
        // Two seals of the same secret differ (random nonces).
        assert_ne!(sealed, k.seal(b"JBSWY3DPEHPK3PXP", "totp:usr-a"));
    }

    #[test]
    fn an_old_key_still_opens_after_rotation_and_an_unknown_one_is_named() {
        let old = SecretsKey::from_keys(&[[1; 32]]);
        let sealed = old.seal(b"s", "p");
        let rotated = SecretsKey::from_keys(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&sealed, "p").unwrap(), b"s");
        assert!(rotated.is_stale(&sealed));
        assert!(!rotated.is_stale(&rotated.seal(b"s", "p")));
        let other = SecretsKey::from_keys(&[[3; 32]]);
        let err = other.open(&sealed, "p").unwrap_err().to_string();
        assert!(err.contains(old.sealing_key_id()), "{err}");
    }

    #[test]
    fn key_files_are_checked_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let k = SecretsKey::load_or_create(&path).unwrap();
        let again = SecretsKey::load(&path).unwrap();
        assert_eq!(k.sealing_key_id(), again.sealing_key_id());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "# comment\n\nnot-hex\n").unwrap();
        let err = SecretsKey::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("64 hex digits"),
            "{err}"
        );
        std::fs::write(&path, "# only a comment\n").unwrap();
        assert!(matches!(
            SecretsKey::load(&path),
            Err(SecretsError::Empty(_))
        ));
    }
}
