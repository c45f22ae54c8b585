//! `vmcloud bench rating`: billable intervals rated per second on one core (DESIGN.md §6;
//! issue 19: ≥ 1,000,000/s).
//!
//! Real path: the pure rating of the billing crate (`vmcloud_billing::rating::rate`) with the
//! built-in price books, over intervals shaped as a month's usage is: organisations of a few
//! to a few hundred resources, each resource cut into several intervals (placements, month
//! ends, restarts), flavors and markets mixed (on demand, spot, reserved, public addresses).
//! Each organisation is rated on its own, as a billing run does.

use std::time::Instant;

use clap::Args;
use serde_json::json;
use vmcloud_billing::prices::PriceBooks;
use vmcloud_billing::rating::{Interval, Market, rate};

/// DESIGN.md §6 / issue 19.
const BUDGET_PER_S: f64 = 1_000_000.0;

#[derive(Debug, Args)]
pub struct RatingBenchArgs {
    /// Intervals to rate.
    #[arg(long, default_value_t = 10_000_000)]
    pub intervals: u64,
    /// Intervals per organisation (rated together).
    #[arg(long, default_value_t = 1_000)]
    pub per_org: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn rating(args: RatingBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.intervals > 0 && args.per_org > 0,
        "--intervals and --per-org must be at least 1"
    );
    let books = PriceBooks::builtin();
    let book = books.0.values().next().expect("a price book");
    let flavors: Vec<String> = book.flavors.keys().cloned().collect();
    let mut rng = args.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    println!(
        "rating {} intervals, {} per organisation, seed {} (one core)",
        args.intervals, args.per_org, args.seed
    );
    // One organisation's month, built once per organisation outside the timed part.
    let month_ms: i64 = 30 * 86_400_000;
    let mut org_intervals = |n: u64| -> Vec<Interval> {
        let resources = (n / 4).max(1);
        (0..n)
            .map(|k| {
                let r = k % resources;
                let from = (next() % month_ms as u64) as i64;
                let len = (next() % (month_ms as u64 / 8)) as i64;
                let (flavor, market) = match r % 10 {
                    0 => ("public-ipv4".to_owned(), Market::OnDemand),
                    1 | 2 => (flavors[(r as usize) % flavors.len()].clone(), Market::Spot),
                    3 => (
                        flavors[(r as usize) % flavors.len()].clone(),
                        Market::Reserved(12),
                    ),
                    _ => (
                        flavors[(r as usize) % flavors.len()].clone(),
                        Market::OnDemand,
                    ),
                };
                Interval {
                    resource: format!("i-{r:020x}"),
                    flavor,
                    market,
                    from_ms: from,
                    to_ms: from + len,
                }
            })
            .collect()
    };
    let mut done = 0u64;
    let mut lines = 0usize;
    let mut rated_s = 0.0f64;
    while done < args.intervals {
        let n = args.per_org.min(args.intervals - done);
        let intervals = org_intervals(n);
        let t = Instant::now();
        let out = rate(book, &intervals)?;
        rated_s += t.elapsed().as_secs_f64();
        lines += out.len();
        done += n;
    }
    let per_s = done as f64 / rated_s;
    println!(
        "rated {done} intervals into {lines} lines in {rated_s:.2} s of rating: {per_s:.0} intervals/s (budget ≥ {BUDGET_PER_S:.0}/s)"
    );
    println!(
        "{}",
        json!({
            "bench": "rating",
            "intervals": done,
            "per_org": args.per_org,
            "seed": args.seed,
            "lines": lines,
            "rating_s": rated_s,
            "intervals_per_s": per_s,
            "budget_intervals_per_s": BUDGET_PER_S,
            "within_budget": per_s >= BUDGET_PER_S,
        })
    );
    Ok(())
}
