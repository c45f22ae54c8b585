//! API keys: `vmc_<key id>_<secret>`. The key id (8 bytes, hex) is public and looks the key up;
//! only the SHA-256 of the secret (16 bytes = 128 bits, hex) is stored in the replicated state.

use rand::Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyToken {
    pub key_id: String,
    pub secret: String,
}

impl ApiKeyToken {
    pub fn generate() -> ApiKeyToken {
        let mut rng = rand::rng();
        ApiKeyToken {
            key_id: hex::encode(rng.random::<[u8; 8]>()),
            secret: hex::encode(rng.random::<[u8; 16]>()),
        }
    }

    /// Parses `vmc_<16 hex>_<32 hex>`; `None` if it is not of that shape.
    pub fn parse(token: &str) -> Option<ApiKeyToken> {
        let rest = token.strip_prefix("vmc_")?;
        let (key_id, secret) = rest.split_once('_')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(key_id, 16) && hex(secret, 32)).then(|| ApiKeyToken {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn secret_sha256(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }
}

impl std::fmt::Display for ApiKeyToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vmc_{}_{}", self.key_id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = ApiKeyToken::generate();
        assert_eq!(ApiKeyToken::parse(&t.to_string()), Some(t.clone()));
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
