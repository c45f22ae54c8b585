//! Checks of request fields shared by several domains' handlers (regions, images, flavors,
//! markets, labels, guest data); every error says what was wrong and what to do.

use vmcloud_proto::pb;

use crate::api::problem::Problem;
use crate::catalog::{Catalog, RegionStatus};

/// Most user-data an instance may carry (EC2 allows 16 KiB).
pub const MAX_USER_DATA: usize = 16 * 1024;
const MAX_SSH_KEYS: usize = 10;
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// User-data and SSH keys a guest is given; the errors say which key is wrong and why.
pub(crate) fn check_guest_data(user_data: Option<&str>, keys: &[String]) -> Result<(), Problem> {
    if let Some(data) = user_data
        && data.len() > MAX_USER_DATA
    {
        return Err(Problem::unprocessable(
            "invalid-user-data",
            "User-data too large",
            format!(
                "user_data is {} bytes; at most {MAX_USER_DATA} are allowed (fetch larger content from the guest instead)",
                data.len()
            ),
        ));
    }
    if keys.len() > MAX_SSH_KEYS {
        return Err(Problem::unprocessable(
            "invalid-ssh-key",
            "Too many SSH keys",
            format!("{} SSH keys given; at most {MAX_SSH_KEYS}", keys.len()),
        ));
    }
    for (n, key) in keys.iter().enumerate() {
        let mut parts = key.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default();
        let ok = SSH_KEY_TYPES.contains(&kind)
            && body.len() >= 16
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            && !key.contains(['\n', '\r']);
        if !ok {
            return Err(Problem::unprocessable(
                "invalid-ssh-key",
                "Invalid SSH key",
                format!(
                    "ssh_keys[{n}] is not an OpenSSH public key (`<type> <base64> [comment]`, type one of {}); give the contents of a .pub file",
                    SSH_KEY_TYPES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The region must exist and take new work; the error lists the open ones.
pub(crate) fn check_region(catalog: &Catalog, region: &str) -> Result<(), Problem> {
    let choices = |names: Vec<&str>| names.join(", ");
    match catalog.regions.get(region) {
        None => {
            return Err(Problem::unprocessable(
                "unknown-region",
                "Unknown region",
                format!(
                    "region `{}` does not exist; choose one of: {}",
                    region,
                    choices(catalog.active_regions())
                ),
            ));
        }
        Some(r) if r.status != RegionStatus::Active => {
            let status = match r.status {
                RegionStatus::Maintenance => "in maintenance",
                RegionStatus::Planned => "not open yet",
                RegionStatus::Active => unreachable!(),
            };
            return Err(Problem::unprocessable(
                "region-unavailable",
                "Region unavailable",
                format!(
                    "region `{}` ({}) is {status} and takes no new work; choose one of: {}",
                    region,
                    r.name,
                    choices(catalog.active_regions())
                ),
            ));
        }
        Some(_) => {}
    }
    Ok(())
}

/// The image must exist; the error lists them.
pub(crate) fn check_image(catalog: &Catalog, image: &str) -> Result<(), Problem> {
    if catalog.images.contains_key(image) {
        return Ok(());
    }
    let names: Vec<&str> = catalog.images.keys().map(String::as_str).collect();
    Err(Problem::unprocessable(
        "unknown-image",
        "Unknown image",
        format!(
            "image `{image}` does not exist; choose one of: {}",
            names.join(", ")
        ),
    ))
}

/// The flavor must exist; the error lists them.
pub(crate) fn check_flavor(catalog: &Catalog, flavor: &str) -> Result<(), Problem> {
    let choices = |names: Vec<&str>| names.join(", ");
    if !catalog.flavors.contains_key(flavor) {
        return Err(Problem::unprocessable(
            "unknown-flavor",
            "Unknown flavor",
            format!(
                "flavor `{}` does not exist; choose one of: {}",
                flavor,
                choices(catalog.flavors.keys().map(String::as_str).collect())
            ),
        ));
    }
    Ok(())
}

/// Refuses a MIG flavor where only whole GPUs are offered (`what`: "AI jobs",
/// "reservations").
pub(crate) fn check_whole_gpus(catalog: &Catalog, flavor: &str, what: &str) -> Result<(), Problem> {
    let mig = catalog.flavors[flavor]
        .gpu
        .as_ref()
        .and_then(|g| g.mig.as_deref());
    match mig {
        Some(profile) => Err(Problem::unprocessable(
            "mig-not-offered",
            "MIG slices are not offered here",
            format!(
                "flavor `{flavor}` is a MIG slice ({profile}); {what} take whole GPUs: choose a flavor without `mig`, or create a MIG instance with POST /v1/instances"
            ),
        )),
        None => Ok(()),
    }
}

/// A reservation goes with market reserved only, a notice with spot only (and within
/// [`crate::catalog::SPOT_NOTICE_RANGE`]); `what` names the kind of work in the error.
pub(crate) fn check_market_fields(
    market: pb::Market,
    reservation: bool,
    notice: Option<u32>,
    what: &str,
) -> Result<(), Problem> {
    if reservation && market != pb::Market::Reserved {
        return Err(Problem::unprocessable(
            "invalid-reservation",
            "A reservation is for market reserved",
            format!(
                "reservation applies to reserved {what} only; drop it or set \"market\": \"reserved\""
            ),
        ));
    }
    let Some(n) = notice else { return Ok(()) };
    if market != pb::Market::Spot {
        return Err(Problem::unprocessable(
            "invalid-notice",
            "Notice is for spot",
            format!(
                "preemption_notice_s applies to spot {what} only; drop it or set \"market\": \"spot\""
            ),
        ));
    }
    if !crate::catalog::SPOT_NOTICE_RANGE.contains(&n) {
        return Err(Problem::unprocessable(
            "invalid-notice",
            "Invalid notice",
            format!("preemption_notice_s {n} must be between 30 and 3600 seconds"),
        ));
    }
    Ok(())
}

/// The market named in a request; the error lists the choices.
pub(crate) fn parse_market(market: Option<&str>) -> Result<pb::Market, Problem> {
    match market {
        None | Some("on-demand") => Ok(pb::Market::OnDemand),
        Some("spot") => Ok(pb::Market::Spot),
        Some("reserved") => Ok(pb::Market::Reserved),
        Some(other) => Err(Problem::unprocessable(
            "unknown-market",
            "Unknown market",
            format!("market `{other}` does not exist; choose one of: on-demand, spot, reserved"),
        )),
    }
}

/// Pools, label keys and values, spread groups: 1 to 63 of `a-z 0-9 - _ . : /`.
pub(crate) fn check_label(what: &str, value: &str) -> Result<(), Problem> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(
            "invalid-label",
            "Invalid label",
            format!(
                "{what} `{value}` must be 1 to 63 of: lowercase letters, digits, `-`, `_`, `.`, `:`, `/`"
            ),
        ))
    }
}

/// An RFC 3339 time in a request, as Unix ms; `field` names it in the error.
pub fn rfc3339_ms(field: &str, value: &str) -> Result<i64, Problem> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| {
            Problem::unprocessable(
                "invalid-time",
                "Invalid time",
                format!(
                    "{field} `{value}` is not an RFC 3339 time ({e}); write e.g. 2027-01-01T00:00:00Z"
                ),
            )
        })
}
