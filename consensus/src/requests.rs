//! Client request ids: a proposal made with [`crate::Raft::propose_once`] carries an id, and
//! an entry whose id was already applied is not applied again — so a client that retries
//! after a timeout (not knowing whether its first try was committed) changes the state once.
//!
//! The table of applied ids is part of the replicated state: every replica records the same
//! ids at the same indexes, forgets them by the same rule (ids older than [`WINDOW`] entries),
//! and snapshots carry the table (wrapped around the state machine's bytes, see [`wrap`]).

use std::collections::{BTreeMap, HashMap};

/// How many log entries an id is remembered for.
pub const WINDOW: u64 = 100_000;

pub type RequestId = [u8; 16];

/// Marks the snapshot envelope; snapshots without it are the state machine's bytes alone.
const MAGIC: &[u8; 8] = b"VMCREQ1\0";

/// Entry contexts: a tag byte, then 16 bytes (random for plain proposals, the request id for
/// [`crate::Raft::propose_once`]), then — on entries proposed since proposals fail over —
/// the 8-byte term the proposing replica was in when it handed the entry to its leader.
pub(crate) const PLAIN: u8 = 0;
pub(crate) const ONCE: u8 = 1;

/// Length of a proposal's key (tag and id): what its waiter is found by.
pub(crate) const KEY_LEN: usize = 17;

pub(crate) fn context(tag: u8, id: RequestId) -> Vec<u8> {
    let mut c = Vec::with_capacity(17);
    c.push(tag);
    c.extend_from_slice(&id);
    c
}

/// `context` stamped with the term it is proposed in (see [`proposed_in`]).
pub(crate) fn stamped(context: &[u8], term: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(KEY_LEN + 8);
    c.extend_from_slice(context);
    c.extend_from_slice(&term.to_le_bytes());
    c
}

/// The key of an entry's context (tag and id), what its waiter is registered under.
pub(crate) fn key(context: &[u8]) -> &[u8] {
    &context[..context.len().min(KEY_LEN)]
}

/// The term the proposer was in when it handed the entry on, if the context carries it.
///
/// An entry is applied only if it was appended in that very term: a proposal that reached a
/// leader of a later term than its proposer knew is skipped by every replica alike. So once a
/// replica has applied an entry of a term later than the one a waiting proposal was stamped
/// with, that proposal can never be applied any more — every committed entry of its term
/// comes before — and the proposer may safely propose it again (see `Raft::propose_entry`).
pub(crate) fn proposed_in(context: &[u8]) -> Option<u64> {
    let term = context.get(KEY_LEN..KEY_LEN + 8)?;
    Some(u64::from_le_bytes(term.try_into().ok()?))
}

/// The request id in an entry's context, if it was proposed with one.
pub(crate) fn request_id(context: &[u8]) -> Option<RequestId> {
    match key(context).split_first() {
        Some((&ONCE, id)) => id.try_into().ok(),
        _ => None,
    }
}

/// Applied request ids and the index each was applied at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requests {
    by_id: HashMap<RequestId, u64>,
    by_index: BTreeMap<u64, RequestId>,
}

impl Requests {
    /// The index `id` was applied at, if it is remembered.
    pub fn seen(&self, id: &RequestId) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    pub fn record(&mut self, id: RequestId, index: u64) {
        self.by_id.insert(id, index);
        self.by_index.insert(index, id);
        let oldest = index.saturating_sub(WINDOW);
        while let Some((&i, _)) = self.by_index.first_key_value() {
            if i >= oldest {
                break;
            }
            let (_, old) = self.by_index.pop_first().expect("checked above");
            self.by_id.remove(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A snapshot's data: the request table, then the state machine's bytes.
pub fn wrap(requests: &Requests, state: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + requests.len() * 24 + state.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(requests.by_index.len() as u64).to_le_bytes());
    for (index, id) in &requests.by_index {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(id);
    }
    out.extend_from_slice(&state);
    out
}

/// Splits a snapshot's data into the request table and the state machine's bytes.
pub fn unwrap(data: &[u8]) -> Result<(Requests, &[u8]), String> {
    let Some(rest) = data.strip_prefix(MAGIC.as_slice()) else {
        return Ok((Requests::default(), data));
    };
    let (count, mut rest) = rest.split_at_checked(8).ok_or("truncated request table")?;
    let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
    let mut requests = Requests::default();
    for _ in 0..count {
        let (record, tail) = rest.split_at_checked(24).ok_or("truncated request table")?;
        let index = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
        let id: RequestId = record[8..].try_into().expect("16 bytes");
        requests.by_id.insert(id, index);
        requests.by_index.insert(index, id);
        rest = tail;
    }
    Ok((requests, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_for_a_window_and_survive_the_envelope() {
        let mut r = Requests::default();
        r.record([1; 16], 10);
        r.record([2; 16], 20);
        assert_eq!(r.seen(&[1; 16]), Some(10));
        let data = wrap(&r, b"state".to_vec());
        let (back, state) = unwrap(&data).unwrap();
        assert_eq!(back, r);
        assert_eq!(state, b"state");
        // Old snapshots (no envelope) are the state alone.
        assert_eq!(unwrap(b"plain").unwrap().1, b"plain");
        r.record([3; 16], 20 + WINDOW);
        assert_eq!(r.seen(&[1; 16]), None, "forgotten after the window");
        assert_eq!(r.seen(&[2; 16]), Some(20));
        assert_eq!(request_id(&context(ONCE, [7; 16])), Some([7; 16]));
        assert_eq!(request_id(&context(PLAIN, [7; 16])), None);
        let stamped = stamped(&context(ONCE, [7; 16]), 42);
        assert_eq!(
            request_id(&stamped),
            Some([7; 16]),
            "the term does not hide the id"
        );
        assert_eq!(proposed_in(&stamped), Some(42));
        assert_eq!(key(&stamped), context(ONCE, [7; 16]));
        assert_eq!(
            proposed_in(&context(ONCE, [7; 16])),
            None,
            "entries from before"
        );
    }
}
