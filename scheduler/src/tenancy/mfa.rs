//! Two-step verification: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of clock
//! skew either way) and single-use recovery codes.
//!
//! The secret is made and checked by the handler (it needs the replicas' secrets key to open
//! the sealed seed); `apply` holds what must agree on every replica: the sealed seed, the
//! last step used (a code is refused at or before it, so it cannot be replayed, even through
//! another replica) and the recovery codes' hashes (each removed when used).

use rand::RngCore as _;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};
use vmcloud_proto::{UserId, pb};

use crate::state::{Applied, ApplyResult, ClusterState, Rejected};

/// Seconds per TOTP step.
pub const STEP_S: u64 = 30;
/// How many recovery codes an enrolment gives.
pub const RECOVERY_CODES: usize = 10;

/// What the sealed seed is bound to (the AEAD's associated data).
pub fn seal_purpose(user: &UserId) -> String {
    format!("totp:{user}")
}

/// A new TOTP secret (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], email: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_S,
        secret.to_vec(),
        Some("VMCloud".to_owned()),
        email.replace(':', "_"),
    )
}

/// The `otpauth://` URL authenticator apps scan.
pub fn otpauth_url(secret: &[u8], email: &str) -> String {
    totp(secret, email).get_url()
}

/// The secret as authenticator apps take it typed in (base32).
pub fn secret_base32(secret: &[u8]) -> String {
    totp(secret, "").get_secret_base32()
}

/// The QR code of `url`, as an SVG image.
pub fn qr_svg(url: &str) -> String {
    qrcode::QrCode::new(url.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build()
        })
        .unwrap_or_default()
}

/// The code for the step at `unix_s` (for tests and tools).
pub fn code_at(secret: &[u8], unix_s: u64) -> String {
    totp(secret, "").generate(unix_s)
}

/// The time step `code` matches at `unix_s` (the current one, or one either side), if any.
pub fn matching_step(secret: &[u8], code: &str, unix_s: u64) -> Option<u64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_s / STEP_S;
    let t = totp(secret, "");
    (now.saturating_sub(1)..=now + 1).find(|step| {
        let expected = t.generate(step * STEP_S);
        // Constant time over the six digits.
        expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })
}

/// New recovery codes (`xxxx-xxxx-xxxx`, lower-case letters and digits without look-alikes),
/// and their hashes for the state.
pub fn recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..12)
                .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
                .collect();
            let s: String = chars.into_iter().collect();
            format!("{}-{}-{}", &s[0..4], &s[4..8], &s[8..12])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_sha256(c)).collect();
    (codes, hashes)
}

/// The hash a recovery code is kept as (dashes, spaces and case do not matter).
pub fn recovery_sha256(code: &str) -> Vec<u8> {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes()).to_vec()
}

fn user_id(s: &str) -> Result<UserId, Rejected> {
    UserId::parse(s).map_err(|e| Rejected::Invalid(e.to_string()))
}

impl ClusterState {
    pub(crate) fn enrol_totp(&mut self, c: pb::EnrolTotp) -> ApplyResult {
        let id = user_id(&c.user_id)?;
        if !c.sealed_secret.starts_with("v1.") {
            return Err(Rejected::Invalid(
                "a TOTP secret is kept sealed only".to_owned(),
            ));
        }
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        user.totp_pending = Some(c.sealed_secret);
        Ok(Applied::Done)
    }

    pub(crate) fn confirm_totp(&mut self, c: pb::ConfirmTotp) -> ApplyResult {
        let id = user_id(&c.user_id)?;
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        if user.totp_pending.as_deref() != Some(c.sealed_secret.as_str()) {
            return Err(Rejected::Conflict(
                "another enrolment started since: use the code of the newest QR code".to_owned(),
            ));
        }
        if c.step <= user.totp_last_step {
            return Err(Rejected::Invalid(
                "this code was used already: wait for the next one".to_owned(),
            ));
        }
        if c.recovery_sha256.len() != RECOVERY_CODES {
            return Err(Rejected::Invalid(format!(
                "an enrolment comes with {RECOVERY_CODES} recovery codes"
            )));
        }
        user.totp_sealed = user.totp_pending.take();
        user.totp_last_step = c.step;
        user.recovery_sha256 = c.recovery_sha256;
        Ok(Applied::Done)
    }

    pub(crate) fn disable_totp(&mut self, c: pb::DisableTotp) -> ApplyResult {
        let id = user_id(&c.user_id)?;
        let user = self
            .users
            .get_mut(&id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        user.totp_sealed = None;
        user.totp_pending = None;
        user.recovery_sha256.clear();
        Ok(Applied::Done)
    }

    /// Spends the second factor a login used: a TOTP step after the last one, or a recovery
    /// code that is still unused. Neither (`0`, empty): nothing to spend.
    pub(crate) fn use_second_factor(
        &mut self,
        id: &UserId,
        totp_step: u64,
        recovery_sha256: &[u8],
    ) -> Result<(), Rejected> {
        let user = self
            .users
            .get_mut(id)
            .ok_or_else(|| Rejected::NotFound(format!("user {id}")))?;
        if totp_step > 0 {
            if totp_step <= user.totp_last_step {
                return Err(Rejected::Unauthenticated(
                    "this code was used already: wait for the next one".to_owned(),
                ));
            }
            user.totp_last_step = totp_step;
        }
        if !recovery_sha256.is_empty() {
            let at = user
                .recovery_sha256
                .iter()
                .position(|h| h == recovery_sha256)
                .ok_or_else(|| {
                    Rejected::Unauthenticated("this recovery code was used already".to_owned())
                })?;
            user.recovery_sha256.remove(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 appendix B, SHA-1 seed, last six digits.
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, t), code, "at {t}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now);
        assert_eq!(matching_step(&secret, &code, now), Some(now / STEP_S));
        assert_eq!(
            matching_step(&secret, &code, now + STEP_S),
            Some(now / STEP_S)
        );
        assert_eq!(matching_step(&secret, &code, now + 3 * STEP_S), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_are_distinct_and_forgiving_to_type() {
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::BTreeSet<_> = hashes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(recovery_sha256(&typed), hashes[0]);
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_otpauth_url() {
        let url = otpauth_url(&new_secret(), "ada@example.com");
        assert!(
            url.starts_with("otpauth://totp/VMCloud:ada%40example.com?"),
            "{url}"
        );
        assert!(qr_svg(&url).contains("<svg"));
    }
}
