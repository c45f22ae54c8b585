//! Passwords: argon2id hashes (PHC strings, OWASP's parameters), a strength check (zxcvbn,
//! Dropbox's estimator, as GitHub and 1Password use it), and verification that takes as long
//! for an unknown email as for a wrong password.
//!
//! Hashing costs tens of milliseconds of CPU on purpose: handlers run it on the blocking
//! pool, never in `apply` (the log carries the hash).

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WeakPassword(pub String);

/// Refuses passwords shorter than 10 characters, longer than 256, or that zxcvbn scores
/// below 3 of 4 ("safely unguessable: moderate protection from offline slow-hash
/// scenario") given the user's email and name as known words.
pub fn check_strength(password: &str, known: &[&str]) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < 10 {
        return Err(WeakPassword(
            "the password must be at least 10 characters long".into(),
        ));
    }
    if chars > 256 {
        return Err(WeakPassword(
            "the password must be at most 256 characters long".into(),
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, known);
    if (estimate.score() as u8) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| {
                f.warning()
                    .map(|w| w.to_string())
                    .or_else(|| f.suggestions().first().map(|s| s.to_string()))
            })
            .unwrap_or_else(|| "add more words or characters".into());
        return Err(WeakPassword(format!(
            "the password is too easy to guess ({hint}); a few unrelated words make a strong one"
        )));
    }
    Ok(())
}

/// The argon2id PHC string of `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// A hash no password matches, verified against for unknown emails so they take as long.
static DECOY: LazyLock<String> = LazyLock::new(|| hash("decoy password that matches no account"));

/// Whether `password` matches `stored` (a PHC string); with `None` (no such user) verifies
/// against a decoy hash and returns false, in the same time.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let target = stored.unwrap_or(&DECOY);
    let matches = PasswordHash::new(target)
        .is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok());
    matches && stored.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_decoys_never_match() {
        let h = hash("correct horse battery staple");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", Some(&h)));
        assert!(!verify("correct horse battery stapler", Some(&h)));
        assert!(!verify("decoy password that matches no account", None));
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        for weak in ["short", "password123", "aaaaaaaaaaaa", "ann@example.com1"] {
            let err = check_strength(weak, &["ann@example.com", "ann"]).unwrap_err();
            assert!(!err.0.is_empty(), "{weak}");
        }
        check_strength("violet-tram-orbit-canal", &["ann@example.com"]).unwrap();
    }
}
