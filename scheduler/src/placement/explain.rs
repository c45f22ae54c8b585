//! Explanations: why an instance fits nowhere, with counts of hosts left out and why.

use crate::instances::types::Instance;
use crate::placement::filters::Skip;
use crate::placement::spread::Spread;

/// Counts of hosts left out by [`host_filter`], for explanations.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    pub(crate) not_ready: usize,
    pub(crate) selector: usize,
    pub(crate) spread: usize,
}

impl Skipped {
    #[inline]
    pub(crate) fn count(&mut self, skip: Skip) {
        match skip {
            Skip::NotReady => self.not_ready += 1,
            Skip::Selector => self.selector += 1,
            Skip::Spread => self.spread += 1,
        }
    }

    /// ", 3 not ready (cordoned, draining, in maintenance or down), …" — only the non-zero.
    pub(crate) fn explain(&self, instance: &Instance, spread: Option<&Spread>) -> String {
        let mut out = String::new();
        if self.not_ready > 0 {
            out += &format!(
                ", {} not ready (cordoned, draining, in maintenance or down)",
                self.not_ready
            );
        }
        if self.selector > 0 {
            let what = match &instance.pool {
                Some(p) => format!("outside pool {p} or without the labels asked for"),
                None if instance.node_selector.is_empty() => "in a dedicated pool".to_owned(),
                None => "in a dedicated pool or without the labels asked for".to_owned(),
            };
            out += &format!(", {} {what}", self.selector);
        }
        if self.spread > 0 {
            out += &format!(
                ", {} already hold one of spread group {}",
                self.spread,
                spread.map_or("", |s| s.name.as_str())
            );
        }
        out
    }
}

/// ", 3 with the room held for reservations" — empty for 0.
pub(crate) fn held_note(reserved: usize) -> String {
    if reserved == 0 {
        String::new()
    } else {
        format!(", {reserved} with the room held for reservations")
    }
}
