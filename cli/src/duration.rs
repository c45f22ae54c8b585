//! Durations on the command line: `10s`, `500ms`, `2m`, `1h`, `30d`.

/// Like [`parse_duration`], and `0`/`0s` for none.
pub fn parse_duration_or_zero(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().trim_end_matches(['s', 'm', 'h', 'd']) {
        "0" | "0." | "0.0" => Ok(std::time::Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// Parses `10s`, `500ms`, `2m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}
