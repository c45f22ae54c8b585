//! This binary's version, git sha and build date, as stamped by `build.rs`.

use vmcloud_proto::BuildInfo;

pub fn build_info() -> BuildInfo {
    let sha = option_env!("VERGEN_GIT_SHA").unwrap_or("unknown");
    let sha = if sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        &sha[..sha.len().min(12)]
    } else {
        "unknown"
    };
    let dirty = option_env!("VERGEN_GIT_DIRTY") == Some("true");
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_sha: if dirty {
            format!("{sha}-dirty")
        } else {
            sha.to_owned()
        },
        build_date: option_env!("VERGEN_BUILD_DATE")
            .unwrap_or("unknown")
            .to_owned(),
    }
}

/// `0.1.0 (git abc123def456, built 2026-11-21)`
pub fn long_version() -> String {
    let b = build_info();
    format!("{} (git {}, built {})", b.version, b.git_sha, b.build_date)
}
