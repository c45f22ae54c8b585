//! The API's own `/metrics`: requests by route (the router's template, never the raw path:
//! ids would make a series per object), method and status, their durations, and the rate
//! limiter's refusals (see [`crate::api::limits`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

fn duration_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// What the API counts.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests refused by a rate limit (`429 rate-limited`).
    pub rate_limited: Counter,
    /// Webhook delivery attempts this replica made (while it led), by outcome.
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let m = ApiMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_buckets),
            rate_limited: Counter::default(),
            webhook_deliveries: Family::default(),
        };
        // Both outcomes from the start (at 0), so that their rates exist before a delivery.
        for outcome in ["delivered", "failed"] {
            drop(m.webhook_deliveries.get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            }));
        }
        m
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vmcloud_api_requests",
            "API requests answered, by route template, method and status",
            self.requests.clone(),
        );
        registry.register(
            "vmcloud_api_request_duration_seconds",
            "Time to answer an API request, by route template and method",
            self.durations.clone(),
        );
        registry.register(
            "vmcloud_webhook_deliveries",
            "Webhook delivery attempts made by this replica, by outcome (delivered, failed: retried later, or the endpoint disabled)",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "vmcloud_api_rate_limited",
            "API requests refused by a rate limit (per caller, or per attempt of a login, PIN or code)",
            self.rate_limited.clone(),
        );
    }
}

/// Counts and times each request.
pub async fn track(State(m): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    if status == axum::http::StatusCode::TOO_MANY_REQUESTS
        && response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_some()
    {
        m.rate_limited.inc();
    }
    m.durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: status.as_u16().to_string(),
        })
        .inc();
    response
}

/// OpenMetrics text as the Prometheus text format (0.0.4): a counter's family is named with
/// its `_total` (OpenMetrics names it without), and the `# EOF` and `# UNIT` lines go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_with_their_total_in_the_prometheus_format() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n# HELP b Now.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            super::prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n# HELP b Now.\n# TYPE b gauge\nb 1\n"
        );
    }
}
