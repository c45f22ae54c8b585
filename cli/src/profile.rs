//! The CLI's own config: named profiles of API address + API key, in
//! `$XDG_CONFIG_HOME/vmcloud/config.toml` (default `~/.config/vmcloud/config.toml`).
//! `VMCLOUD_API` and `VMCLOUD_TOKEN` override the profile; `vmcloud dev` writes the `dev` one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vmcloud_proto::config::parse_toml;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// API key (`vmc_...`) or login token (`vms_...`).
    pub token: String,
    /// The project a login token acts in (sent as `VMCloud-Project`); an API key always
    /// acts in its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

pub fn config_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("vmcloud").join("config.toml")
}

/// Reads the CLI config; a missing file is an empty config.
pub fn load() -> anyhow::Result<(PathBuf, CliConfig)> {
    let path = config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((path, CliConfig::default()));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let config: CliConfig = parse_toml(&path, &text)?;
    for (name, p) in &config.profiles {
        if !(p.api.starts_with("http://") || p.api.starts_with("https://")) {
            bail!(vmcloud_proto::config::ConfigError::new(
                &path,
                format!("profiles.{name}.api"),
                format!("`{}` is not an http:// or https:// URL", p.api)
            ));
        }
    }
    if let Some(current) = &config.current_profile
        && !config.profiles.contains_key(current)
    {
        bail!(vmcloud_proto::config::ConfigError::new(
            &path,
            "current_profile",
            format!("no profile named `{current}` in [profiles]")
        ));
    }
    Ok((path, config))
}

/// Sets the project of profile `name` (which must exist).
pub fn set_profile_project(name: &str, project: Option<String>) -> anyhow::Result<PathBuf> {
    let (path, config) = load()?;
    let mut profile = config
        .profiles
        .get(name)
        .cloned()
        .with_context(|| format!("no profile named `{name}` in {}", path.display()))?;
    profile.project = project;
    save_profile(name, profile)
}

/// The profile a client command uses (`--profile`, `VMCLOUD_PROFILE`, the current one).
pub fn current_name(profile_flag: Option<String>) -> anyhow::Result<String> {
    let (_, config) = load()?;
    Ok(profile_flag
        .or_else(|| {
            std::env::var("VMCLOUD_PROFILE")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .or(config.current_profile)
        .unwrap_or_else(|| "dev".to_owned()))
}

/// Writes `profile` under `name` (creating the file, mode 0600: it holds a key) and makes it
/// the current profile if none is set.
pub fn save_profile(name: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    let (path, mut config) = load()?;
    config.profiles.insert(name.to_owned(), profile);
    config
        .current_profile
        .get_or_insert_with(|| name.to_owned());
    let text = toml::to_string(&config).context("encoding the CLI config")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = format!("# Written by `vmcloud dev`; profiles may be edited by hand.\n{text}");
    crate::data_dir::write_private(&path, &text)?;
    Ok(path)
}

/// Where the API address and key come from for a client command.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub api: String,
    pub token: Option<String>,
    /// Said in errors: `VMCLOUD_API`, `--api`, or `profile dev in ~/.config/...`.
    pub source: String,
    /// The project to act in (`VMCLOUD_PROJECT`, or the profile's).
    pub project: Option<String>,
}

pub fn resolve(
    api_flag: Option<String>,
    token_flag: Option<String>,
    profile_flag: Option<String>,
) -> anyhow::Result<Endpoint> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (path, config) = load()?;
    let profile_name = profile_flag
        .or_else(|| env("VMCLOUD_PROFILE"))
        .or(config.current_profile.clone())
        .unwrap_or_else(|| "dev".to_owned());
    let profile = config.profiles.get(&profile_name);
    let (api, source) = if let Some(api) = api_flag {
        (api, "--api".to_owned())
    } else if let Some(api) = env("VMCLOUD_API") {
        (api, "VMCLOUD_API".to_owned())
    } else if let Some(p) = profile {
        (
            p.api.clone(),
            format!("profile `{profile_name}` in {}", path.display()),
        )
    } else {
        bail!(
            "no API configured: start a local fleet with `vmcloud dev` (it writes a `dev` profile to {}), \
             or set VMCLOUD_API and VMCLOUD_TOKEN",
            path.display()
        );
    };
    let token = token_flag
        .or_else(|| env("VMCLOUD_TOKEN"))
        .or_else(|| profile.map(|p| p.token.clone()));
    let project = env("VMCLOUD_PROJECT").or_else(|| profile.and_then(|p| p.project.clone()));
    Ok(Endpoint {
        api: api.trim_end_matches('/').to_owned(),
        token,
        source,
        project,
    })
}
