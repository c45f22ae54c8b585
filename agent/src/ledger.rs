//! The agent's ledger: the last desired config it accepted, in redb, fsynced before the agent
//! acts on it. Generations only grow: an older one is refused, the same one is a no-op.

use std::path::{Path, PathBuf};

use prost::Message;
use redb::{Database, ReadableDatabase, TableDefinition};
use vmcloud_proto::pb;

const DESIRED: TableDefinition<&str, &[u8]> = TableDefinition::new("desired_config");
const KEY: &str = "current";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the agent ledger at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("agent ledger I/O failed")]
    Redb(#[source] Box<redb::Error>),
    #[error(
        "the desired config in the agent ledger is corrupt; delete {path} and the agent will fetch it again from the scheduler"
    )]
    Corrupt { path: PathBuf },
}

impl<E: Into<redb::Error>> From<E> for LedgerError {
    fn from(e: E) -> Self {
        LedgerError::Redb(Box::new(e.into()))
    }
}

/// What storing a desired config did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Accepted,
    /// The same generation is already stored.
    Unchanged,
    /// Older than the stored generation: refused.
    Stale {
        current: u64,
    },
}

pub struct Ledger {
    path: PathBuf,
    db: Database,
    current: Option<pb::DesiredConfig>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let db = Database::create(path).map_err(|source| LedgerError::Open {
            path: path.to_owned(),
            source,
        })?;
        let current = {
            let txn = db.begin_read()?;
            match txn.open_table(DESIRED) {
                Ok(table) => match table.get(KEY)? {
                    Some(v) => Some(pb::DesiredConfig::decode(v.value()).map_err(|_| {
                        LedgerError::Corrupt {
                            path: path.to_owned(),
                        }
                    })?),
                    None => None,
                },
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Ledger {
            path: path.to_owned(),
            db,
            current,
        })
    }

    pub fn current(&self) -> Option<&pb::DesiredConfig> {
        self.current.as_ref()
    }

    /// Persists `config` (fsynced) unless it is older than or the same as what is stored.
    pub fn store(&mut self, config: &pb::DesiredConfig) -> Result<Stored, LedgerError> {
        if let Some(current) = &self.current {
            if config.generation < current.generation {
                return Ok(Stored::Stale {
                    current: current.generation,
                });
            }
            if config.generation == current.generation {
                return Ok(Stored::Unchanged);
            }
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DESIRED)?;
            table.insert(KEY, config.encode_to_vec().as_slice())?;
        }
        txn.commit()?;
        self.current = Some(config.clone());
        Ok(Stored::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_only_grow_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        let config = |generation| pb::DesiredConfig {
            generation,
            instances: vec![],
            ..Default::default()
        };
        {
            let mut ledger = Ledger::open(&path).unwrap();
            assert!(ledger.current().is_none());
            assert_eq!(ledger.store(&config(3)).unwrap(), Stored::Accepted);
            assert_eq!(ledger.store(&config(3)).unwrap(), Stored::Unchanged);
            assert_eq!(
                ledger.store(&config(2)).unwrap(),
                Stored::Stale { current: 3 }
            );
        }
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.current().unwrap().generation, 3);
    }
}
