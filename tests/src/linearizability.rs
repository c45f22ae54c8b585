//! A linearizability checker for registers (Wing & Gong's search with Lowe's memoization, as
//! in Porcupine), written here to check histories recorded against the replicated log.
//!
//! A history is a list of operations on keys, each with the time it was called and the time
//! it returned. A write whose outcome is unknown (timed out: it may or may not have taken
//! effect) has no return time; it may be placed anywhere after its call, or nowhere. Keys are
//! independent registers, so each key is checked on its own (linearizability is local).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One operation on a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write(u64),
    /// A read and the value it returned (`None`: never written).
    Read(Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: Op,
    /// Nanoseconds since the history started.
    pub call: u64,
    /// `None` when the outcome is unknown (only meaningful for writes).
    pub ret: Option<u64>,
}

/// No order of the operations on `key` explains what the clients saw.
#[derive(Debug, Clone)]
pub struct Violation {
    pub key: String,
    pub operations: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history of key {:?} is not linearizable ({} operations):",
            self.key,
            self.operations.len()
        )?;
        for o in &self.operations {
            let ret = o
                .ret
                .map_or("?".to_owned(), |r| format!("{:.3}", r as f64 / 1e6));
            writeln!(
                f,
                "  client {} {:?} [{:.3} ms, {ret} ms]",
                o.client,
                o.op,
                o.call as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

/// Checks every key's history; the first key without a linearization is returned.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for o in history {
        // A read with no answer tells nothing.
        if matches!(o.op, Op::Read(_)) && o.ret.is_none() {
            continue;
        }
        by_key.entry(&o.key).or_default().push(o.clone());
    }
    for (key, ops) in by_key {
        if !check_register(&ops) {
            let mut operations = ops;
            operations.sort_by_key(|o| o.call);
            return Err(Violation {
                key: key.to_owned(),
                operations,
            });
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    time: u64,
}

/// The search over one register's operations.
fn check_register(ops: &[Operation]) -> bool {
    let n = ops.len();
    if n == 0 {
        return true;
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        entries.push(Entry {
            op: i,
            is_call: true,
            time: o.call,
        });
        entries.push(Entry {
            op: i,
            is_call: false,
            time: o.ret.unwrap_or(u64::MAX),
        });
    }
    // At equal times calls come first: overlapping is the permissive reading.
    entries.sort_by_key(|e| (e.time, !e.is_call));
    // A doubly linked list over the entries, with a head sentinel at index `len`.
    let len = entries.len();
    let head = len;
    // `next[i]`/`prev[i]` link entry i; `end` (== the sentinel) closes the list.
    let end = head;
    let mut next: Vec<usize> = (1..=len).collect();
    next.push(0);
    let mut prev: Vec<usize> = (0..=len)
        .map(|i| if i == 0 { head } else { i - 1 })
        .collect();
    prev[head] = len - 1;
    next[head] = 0;
    let mut return_of = vec![0usize; n];
    for (i, e) in entries.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = i;
        }
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != end {
            prev[nx] = p;
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != end {
            prev[nx] = i;
        }
    };

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut cur = next[head];
    loop {
        if cur == end {
            return true;
        }
        let e = entries[cur];
        if !e.is_call && e.time == u64::MAX {
            // Only unknown-outcome operations are left: they did not happen.
            return true;
        }
        if e.is_call {
            let (ok, new_state) = match ops[e.op].op {
                Op::Write(v) => (true, Some(v)),
                Op::Read(seen) => (seen == state, state),
            };
            if ok {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((lin.clone(), new_state)) {
                    stack.push((cur, state));
                    state = new_state;
                    linearized = lin;
                    lift(&mut next, &mut prev, cur);
                    lift(&mut next, &mut prev, return_of[e.op]);
                    cur = next[head];
                    continue;
                }
            }
            cur = next[cur];
        } else {
            // The earliest pending return: its operation must come before everything after
            // it, and it could not be placed. Undo the last choice.
            let Some((call, previous)) = stack.pop() else {
                return false;
            };
            let op = entries[call].op;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut next, &mut prev, return_of[op]);
            unlift(&mut next, &mut prev, call);
            cur = next[call];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, op: Op, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            client,
            key: "x".into(),
            op,
            call,
            ret,
        }
    }

    #[test]
    fn table() {
        use Op::*;
        let cases: Vec<(&str, Vec<Operation>, bool)> = vec![
            ("empty", vec![], true),
            ("read of nothing", vec![op(0, Read(None), 0, Some(1))], true),
            (
                "write then read",
                vec![
                    op(0, Write(1), 0, Some(10)),
                    op(1, Read(Some(1)), 20, Some(30)),
                ],
                true,
            ),
            (
                "read of a value never written",
                vec![
                    op(0, Write(1), 0, Some(10)),
                    op(1, Read(Some(2)), 20, Some(30)),
                ],
                false,
            ),
            (
                "stale read after a newer write returned",
                vec![
                    op(0, Write(1), 0, Some(10)),
                    op(0, Write(2), 20, Some(30)),
                    op(1, Read(Some(1)), 40, Some(50)),
                ],
                false,
            ),
            (
                "read concurrent with a write sees old or new",
                vec![
                    op(0, Write(1), 0, Some(10)),
                    op(0, Write(2), 20, Some(100)),
                    op(1, Read(Some(1)), 30, Some(40)),
                    op(2, Read(Some(2)), 50, Some(60)),
                ],
                true,
            ),
            (
                "reads that go back in time",
                vec![
                    op(0, Write(1), 0, Some(10)),
                    op(0, Write(2), 20, Some(100)),
                    op(1, Read(Some(2)), 30, Some(40)),
                    op(2, Read(Some(1)), 50, Some(60)),
                ],
                false,
            ),
            (
                "unknown write that happened",
                vec![op(0, Write(3), 0, None), op(1, Read(Some(3)), 50, Some(60))],
                true,
            ),
            (
                "unknown write that did not happen",
                vec![op(0, Write(3), 0, None), op(1, Read(None), 50, Some(60))],
                true,
            ),
            (
                "unknown write cannot happen before its call",
                vec![op(1, Read(Some(3)), 0, Some(10)), op(0, Write(3), 20, None)],
                false,
            ),
        ];
        for (name, history, ok) in cases {
            assert_eq!(check(&history).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn many_sequential_operations_are_fast() {
        let mut history = Vec::new();
        for i in 0..400u64 {
            history.push(op(0, Op::Write(i), i * 20, Some(i * 20 + 5)));
            history.push(op(1, Op::Read(Some(i)), i * 20 + 10, Some(i * 20 + 15)));
        }
        assert!(check(&history).is_ok());
    }
}
