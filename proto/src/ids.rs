//! Typed identifiers. Each is a validated string so ids stay readable in logs, URLs and the
//! CLI, and a node id can never be passed where an instance id is expected.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

string_id!(
    /// A host in the fleet, named by the certificate its agent holds (a DNS label).
    NodeId,
    "node"
);
string_id!(
    /// A VPS or GPU instance: `i-` followed by 20 lowercase hex digits.
    InstanceId,
    "instance"
);
string_id!(
    /// A customer project.
    ProjectId,
    "project"
);
string_id!(
    /// An organisation (a company, a person or a gaming household): `org-` followed by 16
    /// lowercase hex digits, or 1–64 letters, digits and `-` for organisations made from the
    /// projects of an older log.
    OrgId,
    "organisation"
);
string_id!(
    /// A user (a person who logs in): `usr-` followed by 16 lowercase hex digits.
    UserId,
    "user"
);
string_id!(
    /// Capacity held for a project: `rsv-` followed by 16 lowercase hex digits.
    ReservationId,
    "reservation"
);
string_id!(
    /// An AI batch job (one or more member instances): `job-` followed by 16 lowercase hex
    /// digits.
    JobId,
    "job"
);

/// `prefix` followed by `digits` lowercase hex digits.
fn parse_prefixed_hex(
    s: &str,
    prefix: &str,
    digits: usize,
    kind: &'static str,
    reason: &'static str,
) -> Result<String, IdError> {
    let hex = s.strip_prefix(prefix).unwrap_or_default();
    if hex.len() != digits
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(IdError {
            kind,
            value: s.to_owned(),
            reason,
        });
    }
    Ok(s.to_owned())
}

impl JobId {
    pub fn generate() -> Self {
        JobId(format!("job-{}", random_hex(8)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(
            s,
            "job-",
            16,
            "job",
            "expected `job-` and 16 lowercase hex digits",
        )
        .map(|s| JobId(s.into()))
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl InstanceId {
    /// A new id: the creation time in milliseconds (12 hex digits) then 32 random bits, so ids
    /// sort roughly by creation (as ULIDs do) and new instances land together at the end of
    /// the state's ordered map instead of all over it.
    pub fn generate() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            & 0xffff_ffff_ffff;
        InstanceId(format!("i-{ms:012x}{}", random_hex(4)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError {
            kind: "instance",
            value: s.to_owned(),
            reason,
        };
        let hex = s
            .strip_prefix("i-")
            .ok_or_else(|| err("instance ids start with `i-`"))?;
        if hex.len() != 20
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("expected `i-` and 20 lowercase hex digits"));
        }
        Ok(InstanceId(s.into()))
    }
}

impl NodeId {
    /// A node id is a DNS label: 1–63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError {
            kind: "node",
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.len() > 63 {
            return Err(err("must be 1 to 63 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("only lowercase letters, digits and `-` are allowed"));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(err("must not start or end with `-`"));
        }
        Ok(NodeId(s.into()))
    }

    /// Turns a host name into a valid node id (lowercased, other characters replaced by `-`).
    pub fn from_hostname(hostname: &str) -> Self {
        let label = hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let cleaned: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        let trimmed = cleaned.trim_matches('-');
        NodeId(if trimmed.is_empty() {
            "node".into()
        } else {
            trimmed.into()
        })
    }
}

impl OrgId {
    pub fn generate() -> Self {
        OrgId(format!("org-{}", random_hex(8)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(IdError {
                kind: "organisation",
                value: s.to_owned(),
                reason: "1 to 64 letters, digits or `-`",
            });
        }
        Ok(OrgId(s.into()))
    }
}

impl UserId {
    pub fn generate() -> Self {
        UserId(format!("usr-{}", random_hex(8)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(
            s,
            "usr-",
            16,
            "user",
            "expected `usr-` and 16 lowercase hex digits",
        )
        .map(|s| UserId(s.into()))
    }
}

impl ReservationId {
    pub fn generate() -> Self {
        ReservationId(format!("rsv-{}", random_hex(8)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(
            s,
            "rsv-",
            16,
            "reservation",
            "expected `rsv-` and 16 lowercase hex digits",
        )
        .map(|s| ReservationId(s.into()))
    }
}

impl ProjectId {
    pub fn generate() -> Self {
        ProjectId(format!("prj-{}", random_hex(8)).into())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(IdError {
                kind: "project",
                value: s.to_owned(),
                reason: "1 to 64 letters, digits or `-`",
            });
        }
        Ok(ProjectId(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_instance_ids_parse() {
        for _ in 0..100 {
            let id = InstanceId::generate();
            assert_eq!(InstanceId::parse(id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn bad_instance_ids_are_refused() {
        for bad in [
            "",
            "i-",
            "x-0123456789abcdef0123",
            "i-0123456789ABCDEF0123",
            "i-0123",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn node_ids() {
        assert!(NodeId::parse("dev-par-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(NodeId::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            NodeId::from_hostname("Host_01.example.com").as_str(),
            "host-01"
        );
        assert_eq!(NodeId::from_hostname("___").as_str(), "node");
    }
}

string_id!(
    /// A GPU, by the PCI address its host reports (`0000:17:00.0`).
    GpuId,
    "GPU"
);

impl GpuId {
    /// A PCI address as the host reports it: hex digits, `:` and `.`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.contains(':')
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if ok {
            Ok(GpuId(s.into()))
        } else {
            Err(IdError {
                kind: "GPU",
                value: s.to_owned(),
                reason: "expected a PCI address such as 0000:17:00.0",
            })
        }
    }
}

/// A MIG slice: a GPU in MIG mode, a profile (`3g.40gb`) and the first memory slice it takes.
/// Written `<pci>/<profile>@<start>` (`0000:17:00.0/3g.40gb@4`) on the wire and in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigSliceId {
    pub gpu: GpuId,
    pub profile: String,
    pub start: u8,
}

impl MigSliceId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = |reason| IdError {
            kind: "MIG slice",
            value: s.to_owned(),
            reason,
        };
        let (pci, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("expected <pci>/<profile>@<start>"))?;
        let (profile, start) = rest
            .split_once('@')
            .ok_or_else(|| bad("expected <pci>/<profile>@<start>"))?;
        let gpu = GpuId::parse(pci).map_err(|_| bad("its GPU is not a PCI address"))?;
        if profile.is_empty()
            || !profile
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(bad("its profile is not a MIG profile name such as 3g.40gb"));
        }
        let start = start
            .parse()
            .map_err(|_| bad("its start is not a slice position (0 to 7)"))?;
        Ok(MigSliceId {
            gpu,
            profile: profile.to_owned(),
            start,
        })
    }
}

impl fmt::Display for MigSliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.gpu, self.profile, self.start)
    }
}

/// What a workload binds on its host: a whole GPU or one MIG slice of a GPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GpuBinding {
    Whole(GpuId),
    Slice(MigSliceId),
}

impl GpuBinding {
    /// `0000:17:00.0` (a whole GPU) or `0000:17:00.0/3g.40gb@4` (a MIG slice).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.contains('/') {
            MigSliceId::parse(s).map(GpuBinding::Slice)
        } else {
            GpuId::parse(s).map(GpuBinding::Whole)
        }
    }

    /// The GPU it is on.
    pub fn gpu(&self) -> &GpuId {
        match self {
            GpuBinding::Whole(g) => g,
            GpuBinding::Slice(s) => &s.gpu,
        }
    }
}

impl fmt::Display for GpuBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuBinding::Whole(g) => g.fmt(f),
            GpuBinding::Slice(s) => s.fmt(f),
        }
    }
}

/// Written as its string form, so snapshots and JSON keep the form they always had.
macro_rules! serde_as_string {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

serde_as_string!(MigSliceId);
serde_as_string!(GpuBinding);
