//! Lists page with `?limit=` (default 50, at most 1000) and `?cursor=`; an answer carries
//! `next_cursor` (absent on the last page). The cursor is an opaque encoding of the sort key of
//! the last item shown (creation time and id), never an offset, so a walk stays right while
//! others create and delete: nothing is shown twice, nothing that existed throughout is
//! skipped.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::api::context::ReadOptions;
use crate::api::problem::Problem;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// The query string of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub stale: bool,
    /// Read by the `Caller` extractor.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// Only items in this state (instances: `ended` lists those that have ended, from history,
    /// newest first).
    #[serde(default)]
    pub state: Option<String>,
    /// Only items in this region.
    #[serde(default)]
    pub region: Option<String>,
    /// Only items with this label, as `key=value` (hosts).
    #[serde(default)]
    pub label: Option<String>,
}

impl ListQuery {
    pub fn read(&self) -> ReadOptions {
        ReadOptions {
            stale: self.stale,
            project: None,
        }
    }

    pub fn limit(&self) -> Result<usize, Problem> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                format!("limit {n} is out of range: ask for 1 to {MAX_LIMIT} items a page"),
            )),
        }
    }

    /// A page of `items` (any order, by their sort keys) as this query asks for it.
    pub fn page<T>(
        &self,
        items: Vec<((i64, String), T)>,
    ) -> Result<(Vec<T>, Option<String>), Problem> {
        let limit = self.limit()?;
        let after = self.after()?;
        Ok(page_of(items, after.as_ref(), limit))
    }

    /// The sort key the page starts after, from `?cursor=`.
    pub fn after(&self) -> Result<Option<(i64, String)>, Problem> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

/// A page of `items` (any order) by their sort keys: those after `after`, at most `limit`, and
/// the cursor of the next page when more follow. For collections without an index of their
/// own (a project's reservations): a scan, fine while they are small.
pub fn page_of<T>(
    mut items: Vec<((i64, String), T)>,
    after: Option<&(i64, String)>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest = items
        .into_iter()
        .filter(|(key, _)| after.is_none_or(|a| key > a))
        .peekable();
    let mut page = Vec::with_capacity(limit.min(1024));
    let mut last = None;
    while page.len() < limit {
        let Some((key, item)) = rest.next() else {
            break;
        };
        page.push(item);
        last = Some(key);
    }
    let next = rest.peek().and(last).map(|k| encode(&k));
    (page, next)
}

pub fn encode(key: &(i64, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", key.0, key.1))
}

pub fn decode(cursor: &str) -> Result<(i64, String), Problem> {
    let bad = || {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-cursor",
            "Invalid cursor",
            "this cursor was not made by this API: pass the `next_cursor` of the previous page as it is, or start without one",
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_page_resumes_after_its_cursor() {
        let items: Vec<((i64, String), u32)> = (0..7)
            .rev()
            .map(|n| ((n as i64, format!("r{n}")), n))
            .collect();
        let (first, next) = page_of(items.clone(), None, 3);
        assert_eq!(first, vec![0, 1, 2]);
        let after = ListQuery {
            cursor: next,
            ..Default::default()
        }
        .after()
        .unwrap();
        let (second, next) = page_of(items.clone(), after.as_ref(), 3);
        assert_eq!(second, vec![3, 4, 5]);
        let after = ListQuery {
            cursor: next,
            ..Default::default()
        }
        .after()
        .unwrap();
        let (third, next) = page_of(items, after.as_ref(), 3);
        assert_eq!((third, next), (vec![6], None));
    }

    #[test]
    fn cursors_round_trip_and_forged_ones_are_refused() {
        let key = (1_796_000_000_123, "i-01a2".to_owned());
        let q = ListQuery {
            cursor: Some(encode(&key)),
            ..Default::default()
        };
        assert_eq!(q.after().unwrap(), Some(key));
        for bad in ["%%%", "bm90LWEta2V5", ""] {
            let q = ListQuery {
                cursor: Some(bad.to_owned()),
                ..Default::default()
            };
            assert!(q.after().is_err(), "{bad}");
        }
        let q = ListQuery {
            limit: Some(5000),
            ..Default::default()
        };
        assert_eq!(q.limit().unwrap_err().kind, "invalid-query");
        assert_eq!(ListQuery::default().limit().unwrap(), DEFAULT_LIMIT);
    }
}
