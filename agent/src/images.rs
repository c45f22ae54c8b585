//! The local image cache and each instance's files.
//!
//! An image is a directory `<image dir>/<name>/` with an `image.json` manifest naming its files
//! and their SHA-256: a base disk (qcow2 or raw) and, for images booted directly, a kernel,
//! an initrd and a command line (`images/test-guest/` builds one). Files are checked against
//! their checksum before first use and again whenever their size or modification time changes;
//! a mismatch fails the workload with the file named and the image is not used.
//!
//! Each instance owns `<data dir>/instances/<id>/`: its disk (a qcow2 overlay over the base
//! disk, so the base is shared and never written) and its serial console log. Removing the
//! instance removes the directory.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use vmcloud_proto::InstanceId;

/// Free space the instances directory must keep after an overlay is created.
pub const MIN_FREE_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image {name:?} is not in the image cache: {path} does not exist; build or copy the image there (see images/README.md)"
    )]
    Missing { name: String, path: PathBuf },
    #[error("image name {0:?} is not valid: use lowercase letters, digits, '.', '_' and '-'")]
    BadName(String),
    #[error("image {name:?}: {path} is not a valid manifest: {message}")]
    Manifest {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "image {name:?}: checksum mismatch for {path}: the manifest says sha256 {expected}, the file has {actual}; the file is damaged or was replaced, fetch the image again"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("image {name:?}: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "disk full: {path} has {free_mib} MiB free and needs at least {need_mib} MiB; free space or move instances off this host"
    )]
    DiskFull {
        path: PathBuf,
        free_mib: u64,
        need_mib: u64,
    },
    #[error("cannot prepare the files of instance {instance} in {path}: {message}")]
    Instance {
        instance: String,
        path: PathBuf,
        message: String,
    },
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kernel: Option<FileRef>,
    pub initrd: Option<FileRef>,
    pub cmdline: Option<String>,
    pub disk: Option<DiskRef>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRef {
    pub file: String,
    #[serde(default = "qcow2")]
    pub format: String,
    pub sha256: String,
}

fn qcow2() -> String {
    "qcow2".into()
}

/// A verified image: absolute paths to its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// Base disk and its format (`qcow2` or `raw`).
    pub disk: Option<(PathBuf, String)>,
}

/// The files of one instance, ready for its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFiles {
    pub dir: PathBuf,
    /// The instance's qcow2 overlay, when its image has a disk.
    pub disk: Option<PathBuf>,
    pub serial_log: PathBuf,
}

#[derive(Debug)]
pub struct ImageCache {
    images: PathBuf,
    instances: PathBuf,
    /// Files already checked: path → (size, mtime, sha256).
    verified: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl ImageCache {
    /// `images`: where images live; `instances`: where instance directories are made.
    pub fn new(images: impl Into<PathBuf>, instances: impl Into<PathBuf>) -> ImageCache {
        ImageCache {
            images: images.into(),
            instances: instances.into(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn image_dir(&self) -> &Path {
        &self.images
    }

    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.instances.join(id.as_str())
    }

    /// Whether an image of that name is in the cache (its manifest exists).
    pub fn contains(&self, name: &str) -> bool {
        valid_name(name) && self.images.join(name).join("image.json").is_file()
    }

    /// Reads and verifies an image.
    pub fn image(&self, name: &str) -> Result<Image, ImageError> {
        if !valid_name(name) {
            return Err(ImageError::BadName(name.to_owned()));
        }
        let dir = self.images.join(name);
        let path = dir.join("image.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::Missing {
                    name: name.to_owned(),
                    path,
                });
            }
            Err(source) => {
                return Err(ImageError::Read {
                    name: name.to_owned(),
                    path,
                    source,
                });
            }
        };
        let bad = |message: String| ImageError::Manifest {
            name: name.to_owned(),
            path: path.clone(),
            message,
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if manifest.name != name {
            return Err(bad(format!(
                "\"name\" is {:?} but the directory is {name:?}",
                manifest.name
            )));
        }
        if manifest.disk.is_none() && manifest.kernel.is_none() {
            return Err(bad("it names neither a \"disk\" nor a \"kernel\"".into()));
        }
        if manifest.initrd.is_some() && manifest.kernel.is_none() {
            return Err(bad("\"initrd\" needs a \"kernel\"".into()));
        }
        let file = |f: &FileRef| self.verified_file(name, &dir, &f.file, &f.sha256);
        let disk = match &manifest.disk {
            Some(d) => {
                if d.format != "qcow2" && d.format != "raw" {
                    return Err(bad(format!(
                        "disk format {:?} is not supported; use \"qcow2\" or \"raw\"",
                        d.format
                    )));
                }
                Some((
                    self.verified_file(name, &dir, &d.file, &d.sha256)?,
                    d.format.clone(),
                ))
            }
            None => None,
        };
        Ok(Image {
            name: name.to_owned(),
            kernel: manifest.kernel.as_ref().map(file).transpose()?,
            initrd: manifest.initrd.as_ref().map(file).transpose()?,
            cmdline: manifest.cmdline.clone(),
            disk,
        })
    }

    fn verified_file(
        &self,
        name: &str,
        dir: &Path,
        file: &str,
        sha256: &str,
    ) -> Result<PathBuf, ImageError> {
        if file.contains('/') || file.starts_with('.') {
            return Err(ImageError::Manifest {
                name: name.to_owned(),
                path: dir.join("image.json"),
                message: format!("file {file:?} must be a plain name inside the image directory"),
            });
        }
        let path = dir.join(file);
        let read_err = |source| ImageError::Read {
            name: name.to_owned(),
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(read_err)?;
        let stamp = (meta.len(), meta.modified().map_err(read_err)?);
        let expected = sha256.to_ascii_lowercase();
        {
            let verified = self.verified.lock().unwrap();
            if let Some((len, mtime, sum)) = verified.get(&path)
                && (*len, *mtime) == stamp
                && *sum == expected
            {
                return Ok(path);
            }
        }
        let actual = sha256_file(&path).map_err(read_err)?;
        if actual != expected {
            return Err(ImageError::Checksum {
                name: name.to_owned(),
                path,
                expected,
                actual,
            });
        }
        self.verified
            .lock()
            .unwrap()
            .insert(path.clone(), (stamp.0, stamp.1, actual));
        Ok(path)
    }

    /// Creates the instance's directory and disk overlay if they do not exist yet. Idempotent:
    /// an existing overlay is kept (it holds the guest's data).
    pub fn prepare(
        &self,
        id: &InstanceId,
        image: Option<&Image>,
        disk_gib: u64,
    ) -> Result<InstanceFiles, ImageError> {
        let dir = self.instance_dir(id);
        let fail = |message: String| ImageError::Instance {
            instance: id.to_string(),
            path: dir.clone(),
            message,
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let serial_log = dir.join("serial.log");
        let disk = match image.and_then(|i| i.disk.as_ref()) {
            None => None,
            Some((base, format)) => {
                let overlay = dir.join("disk.qcow2");
                if !overlay.exists() {
                    let free = free_bytes(&dir).map_err(|e| fail(e.to_string()))?;
                    if free < MIN_FREE_BYTES {
                        return Err(ImageError::DiskFull {
                            path: dir.clone(),
                            free_mib: free >> 20,
                            need_mib: MIN_FREE_BYTES >> 20,
                        });
                    }
                    create_overlay(base, format, &overlay, disk_gib).map_err(fail)?;
                }
                Some(overlay)
            }
        };
        Ok(InstanceFiles {
            dir,
            disk,
            serial_log,
        })
    }

    /// Removes the instance's directory (its disk and logs). Idempotent.
    pub fn remove(&self, id: &InstanceId) -> Result<(), ImageError> {
        let dir = self.instance_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::Instance {
                instance: id.to_string(),
                path: dir,
                message: format!("removing it: {e}"),
            }),
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn free_bytes(dir: &Path) -> nix::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    Ok(st.blocks_available() * st.fragment_size())
}

/// `qemu-img create -f qcow2 -b BASE -F FORMAT OVERLAY SIZE`, written to a temporary name and
/// renamed, so a crash never leaves a half-made overlay under the real name.
fn create_overlay(base: &Path, format: &str, overlay: &Path, disk_gib: u64) -> Result<(), String> {
    let tmp = overlay.with_extension("qcow2.partial");
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base)
        .arg(&tmp);
    if disk_gib > 0 {
        cmd.arg(format!("{disk_gib}G"));
    }
    let out = cmd.output().map_err(|e| {
        format!("running qemu-img: {e}; install qemu-utils (the agent makes disk overlays with it)")
    })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, overlay).map_err(|e| format!("renaming the new overlay: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(root: &Path, name: &str, manifest: &str, files: &[(&str, &[u8])]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, data) in files {
            std::fs::write(dir.join(f), data).unwrap();
        }
        std::fs::write(dir.join("image.json"), manifest).unwrap();
    }

    fn sum(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn verifies_checksums_and_names_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("images"), tmp.path().join("instances"));
        let kernel = b"kernel bytes".as_slice();
        write_image(
            cache.image_dir(),
            "tiny",
            &format!(
                r#"{{"name":"tiny","kernel":{{"file":"vmlinuz","sha256":"{}"}},"cmdline":"console=ttyS0"}}"#,
                sum(kernel)
            ),
            &[("vmlinuz", kernel)],
        );
        let image = cache.image("tiny").unwrap();
        assert_eq!(image.kernel, Some(cache.image_dir().join("tiny/vmlinuz")));
        assert_eq!(image.cmdline.as_deref(), Some("console=ttyS0"));
        assert!(cache.contains("tiny") && !cache.contains("nope"));

        // The file changes under the cache: the next use checks it again and refuses it.
        std::fs::write(cache.image_dir().join("tiny/vmlinuz"), b"tampered!!!!!").unwrap();
        let err = cache.image("tiny").unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("vmlinuz"),
            "{err}"
        );

        let err = cache.image("nope").unwrap_err().to_string();
        assert!(
            err.contains("not in the image cache") && err.contains("nope/image.json"),
            "{err}"
        );
        let err = cache.image("../etc").unwrap_err().to_string();
        assert!(err.contains("not valid"), "{err}");

        write_image(cache.image_dir(), "bad", r#"{"name":"bad"}"#, &[]);
        let err = cache.image("bad").unwrap_err().to_string();
        assert!(err.contains("neither a \"disk\" nor a \"kernel\""), "{err}");
        write_image(
            cache.image_dir(),
            "escape",
            r#"{"name":"escape","kernel":{"file":"../tiny/vmlinuz","sha256":"00"}}"#,
            &[],
        );
        let err = cache.image("escape").unwrap_err().to_string();
        assert!(err.contains("plain name"), "{err}");
    }

    #[test]
    fn overlays_are_made_once_and_removed_with_the_instance() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            vmcloud_proto::testing::skip(
                "images::overlays_are_made_once_and_removed_with_the_instance",
                "qemu-img not found (Debian package qemu-utils)",
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("images"), tmp.path().join("instances"));
        let dir = cache.image_dir().join("base");
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(dir.join("disk.qcow2"))
            .arg("16M")
            .status()
            .unwrap();
        assert!(status.success());
        let data = std::fs::read(dir.join("disk.qcow2")).unwrap();
        std::fs::write(
            dir.join("image.json"),
            format!(
                r#"{{"name":"base","disk":{{"file":"disk.qcow2","sha256":"{}"}}}}"#,
                sum(&data)
            ),
        )
        .unwrap();
        let image = cache.image("base").unwrap();
        let id = InstanceId::generate();
        let files = cache.prepare(&id, Some(&image), 1).unwrap();
        let overlay = files.disk.clone().unwrap();
        let info = Command::new("qemu-img")
            .args(["info", "--output=json", "-U"])
            .arg(&overlay)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["virtual-size"], 1u64 << 30);
        assert!(
            info["backing-filename"]
                .as_str()
                .unwrap()
                .ends_with("base/disk.qcow2")
        );
        // Prepared again: the same overlay, untouched.
        std::fs::write(files.dir.join("marker"), b"guest data").unwrap();
        assert_eq!(cache.prepare(&id, Some(&image), 1).unwrap(), files);
        assert!(files.dir.join("marker").exists());
        cache.remove(&id).unwrap();
        cache.remove(&id).unwrap();
        assert!(!files.dir.exists());
    }
}
