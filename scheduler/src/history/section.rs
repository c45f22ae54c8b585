//! A snapshot's history section: each record as log index (u64 LE), sequence (u32 LE),
//! length (u32 LE) and the record as the history store keeps it, oldest first, to the end
//! (see [`crate::state::snapshot_format`]).

use crate::history::types::HistoryKey;

/// The section ends inside a record.
#[derive(Debug, thiserror::Error)]
#[error("the history section ends inside {0}")]
pub struct Truncated(&'static str);

/// Appends one record to a section.
pub fn push(out: &mut Vec<u8>, key: HistoryKey, record: &[u8]) {
    out.extend_from_slice(&key.index.to_le_bytes());
    out.extend_from_slice(&key.seq.to_le_bytes());
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

/// The records of a section, each encoded as the history store keeps them.
#[derive(Debug, Clone)]
pub struct HistoryRecords<'a> {
    rest: &'a [u8],
}

impl<'a> HistoryRecords<'a> {
    pub fn new(section: &'a [u8]) -> Self {
        HistoryRecords { rest: section }
    }
}

impl<'a> Iterator for HistoryRecords<'a> {
    type Item = Result<(HistoryKey, &'a [u8]), Truncated>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((head, rest)) = self.rest.split_at_checked(16) else {
            self.rest = &[];
            return Some(Err(Truncated("a record's header")));
        };
        let index = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let seq = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
        let Some((record, rest)) = rest.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(Truncated("a record")));
        };
        self.rest = rest;
        Some(Ok((HistoryKey { index, seq }, record)))
    }
}
