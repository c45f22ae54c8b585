//! Parsing TOML configuration with errors that name the file and the key.
//!
//! Callers read the file; this turns its text into a typed value. Every config struct uses
//! `#[serde(deny_unknown_fields)]`, so a typo is an error that points at the key.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: which file, which key, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// Dotted key path (`profiles.dev.api`); empty when the error is about the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() || self.key == "." {
            write!(
                f,
                "config error in {}: {}",
                self.path.display(),
                self.message
            )
        } else {
            write!(
                f,
                "config error in {} at key `{}`: {}",
                self.path.display(),
                self.key,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses `text` (the contents of `path`) as `T`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        ConfigError::new(path, "", e.message().to_owned() + &line_of(text, e.span()))
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError::new(
            path,
            key,
            inner.message().to_owned() + &line_of(text, inner.span()),
        )
    })
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn errors_name_file_and_key() {
        let path = Path::new("/etc/x.toml");
        let e = parse_toml::<Outer>(path, "[inner]\nport = \"eighty\"\n").unwrap_err();
        assert_eq!(e.key, "inner.port");
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");

        let e = parse_toml::<Outer>(path, "[inner]\nport = 1\nprot = 2\n").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");

        let e = parse_toml::<Outer>(path, "[inner\n").unwrap_err();
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
    }
}
