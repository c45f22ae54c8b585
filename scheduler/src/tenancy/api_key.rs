//! Bearer secrets: API keys `vmc_<key id>_<secret>` and login sessions
//! `vms_<session id>_<secret>`. The id (8 bytes, hex) is public and looks the secret up; only
//! the SHA-256 of the secret (16 bytes = 128 bits, hex) is stored in the replicated state.
//! (A fast hash is right here: the secret is random, not a password.)

use rand::Rng;
use sha2::{Digest, Sha256};

fn generate_parts() -> (String, String) {
    let mut rng = rand::rng();
    (
        hex::encode(rng.random::<[u8; 8]>()),
        hex::encode(rng.random::<[u8; 16]>()),
    )
}

/// Splits `<prefix><16 hex>_<32 hex>`; `None` if it is not of that shape.
fn parse_parts(prefix: &str, token: &str) -> Option<(String, String)> {
    let rest = token.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 32)).then(|| (id.to_owned(), secret.to_owned()))
}

fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyToken {
    pub key_id: String,
    pub secret: String,
}

impl ApiKeyToken {
    pub fn generate() -> ApiKeyToken {
        let (key_id, secret) = generate_parts();
        ApiKeyToken { key_id, secret }
    }

    /// Parses `vmc_<16 hex>_<32 hex>`; `None` if it is not of that shape.
    pub fn parse(token: &str) -> Option<ApiKeyToken> {
        parse_parts("vmc_", token).map(|(key_id, secret)| ApiKeyToken { key_id, secret })
    }

    pub fn secret_sha256(&self) -> Vec<u8> {
        sha256(&self.secret)
    }
}

impl std::fmt::Display for ApiKeyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vmc_{}_{}", self.key_id, self.secret)
    }
}

/// What a logged-in browser (cookie) or CLI (bearer) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginToken {
    pub session_id: String,
    pub secret: String,
}

impl LoginToken {
    pub fn generate() -> LoginToken {
        let (session_id, secret) = generate_parts();
        LoginToken { session_id, secret }
    }

    /// Parses `vms_<16 hex>_<32 hex>`; `None` if it is not of that shape.
    pub fn parse(token: &str) -> Option<LoginToken> {
        parse_parts("vms_", token).map(|(session_id, secret)| LoginToken { session_id, secret })
    }

    pub fn secret_sha256(&self) -> Vec<u8> {
        sha256(&self.secret)
    }
}

impl std::fmt::Display for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vms_{}_{}", self.session_id, self.secret)
    }
}

/// A single-use secret sent by mail (email verification, password reset): 32 random bytes,
/// hex; only its SHA-256 goes in the log.
pub fn mail_token() -> (String, Vec<u8>) {
    let token = hex::encode(rand::rng().random::<[u8; 32]>());
    let hash = sha256(&token);
    (token, hash)
}

/// The SHA-256 of a mailed token, to compare with the stored one.
pub fn mail_token_sha256(token: &str) -> Vec<u8> {
    sha256(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = ApiKeyToken::generate();
        assert_eq!(ApiKeyToken::parse(&t.to_string()), Some(t.clone()));
        let l = LoginToken::generate();
        assert_eq!(LoginToken::parse(&l.to_string()), Some(l.clone()));
        assert_eq!(ApiKeyToken::parse(&l.to_string()), None);
        assert_eq!(LoginToken::parse(&t.to_string()), None);
        for bad in [
            "",
            "vmc_",
            "vmc_abc_def",
            "xyz_0123456789abcdef_0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(ApiKeyToken::parse(bad), None, "{bad}");
        }
    }
}
