//! Snapshot files: the state machine at one log index, written so that a crash at any moment
//! leaves either the old snapshot or the new one, never half of one.
//!
//! Layout of `snapshot-<index>.snap`: magic `VMCSNAP1`, index (u64 LE), term (u64 LE), length
//! of the encoded `ConfState` (u32 LE) and its bytes, length of the data (u64 LE) and the
//! data, then a CRC-32 (u32 LE) of everything before it. Written to a temporary file, fsynced,
//! renamed into place, and the directory fsynced; older snapshots are removed afterwards.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::ConfState;

const MAGIC: &[u8; 8] = b"VMCSNAP1";

/// A snapshot: the state machine's bytes after applying everything up to `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "snapshot {path} is corrupt ({reason}); this replica must not start on it: wipe its data dir and let it re-join from its peers"
    )]
    Corrupt { path: PathBuf, reason: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

fn file_name(index: u64) -> String {
    format!("snapshot-{index:020}.snap")
}

/// The index in a snapshot file's name (`.snap`, or a `.tmp` one being written).
fn index_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("snapshot-")?;
    let digits = rest
        .strip_suffix(".snap")
        .or_else(|| rest.strip_suffix(".tmp"))?;
    digits.parse().ok()
}

impl SnapshotFile {
    /// Writes the file's bytes to `out` as they are made, the CRC computed on the way (a
    /// large state is not copied once more into a buffer of its own).
    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let cs = self
            .conf_state
            .write_to_bytes()
            .expect("encoding a ConfState cannot fail");
        let mut head = Vec::with_capacity(8 + 8 + 8 + 4 + cs.len() + 8);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&self.index.to_le_bytes());
        head.extend_from_slice(&self.term.to_le_bytes());
        head.extend_from_slice(&(cs.len() as u32).to_le_bytes());
        head.extend_from_slice(&cs);
        head.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&self.data);
        out.write_all(&head)?;
        out.write_all(&self.data)?;
        out.write_all(&crc.finalize().to_le_bytes())
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<SnapshotFile, SnapshotError> {
        let corrupt = |reason| SnapshotError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let (body, crc) = bytes
            .split_at_checked(bytes.len().saturating_sub(4))
            .ok_or(corrupt("truncated"))?;
        if crc.len() != 4 || crc32fast::hash(body).to_le_bytes() != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let mut rest = body
            .strip_prefix(MAGIC.as_slice())
            .ok_or(corrupt("not a snapshot file"))?;
        let mut take = |n: usize| -> Result<&[u8], SnapshotError> {
            let (head, tail) = rest.split_at_checked(n).ok_or(corrupt("truncated"))?;
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let index = u64_at(take(8)?);
        let term = u64_at(take(8)?);
        let cs_len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let mut conf_state = ConfState::default();
        conf_state
            .merge_from_bytes(take(cs_len)?)
            .map_err(|_| corrupt("undecodable configuration"))?;
        let data_len = u64_at(take(8)?) as usize;
        let data = take(data_len)?.to_vec();
        if !rest.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(SnapshotFile {
            index,
            term,
            conf_state,
            data,
        })
    }
}

/// The directory holding one replica's snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    pub fn new(dir: PathBuf) -> SnapshotDir {
        SnapshotDir { dir }
    }

    /// The newest snapshot, checked, or `None` when there is none.
    pub fn latest(&self) -> Result<Option<SnapshotFile>, SnapshotError> {
        // The applier's snapshot thread may save a newer one and remove this one between the
        // listing and the read: list again.
        for _ in 0..10 {
            match self.latest_once() {
                Err(SnapshotError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                other => return other,
            }
        }
        self.latest_once()
    }

    fn latest_once(&self) -> Result<Option<SnapshotFile>, SnapshotError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut newest: Option<PathBuf> = None;
        for entry in entries {
            let path = entry.map_err(io(&self.dir))?.path();
            let is_snapshot = path.extension().is_some_and(|e| e == "snap");
            if is_snapshot
                && newest
                    .as_ref()
                    .is_none_or(|n| path.file_name() > n.file_name())
            {
                newest = Some(path);
            }
        }
        let Some(path) = newest else { return Ok(None) };
        let bytes = fs::read(&path).map_err(io(&path))?;
        SnapshotFile::decode(&path, &bytes).map(Some)
    }

    /// Index of the newest snapshot file here (by name, unchecked).
    pub fn newest_index(&self) -> Option<u64> {
        fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter_map(|e| index_of(&e.path()))
            .max()
    }

    /// Writes `snapshot` durably and removes older ones. Two threads may save (the applier's
    /// snapshot thread, and the runner installing one from the leader): a snapshot older than
    /// one already here is not written, and only older files are ever removed.
    pub fn save(&self, snapshot: &SnapshotFile) -> Result<(), SnapshotError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        if self.newest_index().is_some_and(|n| n >= snapshot.index) {
            return Ok(());
        }
        let path = self.dir.join(file_name(snapshot.index));
        let tmp = path.with_extension("tmp");
        {
            let mut file = File::create(&tmp).map_err(io(&tmp))?;
            snapshot.write_to(&mut file).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let other = entry.path();
            if index_of(&other).is_some_and(|i| i < snapshot.index) {
                let _ = fs::remove_file(other);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(index: u64) -> SnapshotFile {
        SnapshotFile {
            index,
            term: 3,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            data: format!("state at {index}").into_bytes(),
        }
    }

    #[test]
    fn the_latest_snapshot_round_trips_and_older_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::new(dir.path().join("snapshots"));
        assert_eq!(snaps.latest().unwrap(), None);
        snaps.save(&snapshot(10)).unwrap();
        snaps.save(&snapshot(20)).unwrap();
        assert_eq!(snaps.latest().unwrap(), Some(snapshot(20)));
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
            1
        );
    }

    #[test]
    fn an_older_snapshot_never_replaces_or_removes_a_newer_one() {
        // The applier's snapshot thread and the runner (installing the leader's) both save.
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::new(dir.path().to_owned());
        snaps.save(&snapshot(30)).unwrap();
        snaps.save(&snapshot(20)).unwrap();
        assert_eq!(snaps.latest().unwrap(), Some(snapshot(30)));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::new(dir.path().to_owned());
        snaps.save(&snapshot(7)).unwrap();
        let path = dir.path().join(file_name(7));
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 8;
        bytes[at] ^= 0x10;
        fs::write(&path, bytes).unwrap();
        let err = snaps.latest().unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::Corrupt {
                    reason: "checksum mismatch",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("wipe its data dir"));
    }
}
