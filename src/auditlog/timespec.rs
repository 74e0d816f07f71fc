//! `--since` / `--until`: an RFC 3339 time, or a duration before now (`2h`, `1h30m`).

use jiff::{SignedDuration, Timestamp};

const FORMS: &str = "an RFC 3339 time (2024-05-01T12:00:00Z) or a duration before now \
                     (30s, 15m, 2h, 7d, 1w, 1h30m)";

/// clap's value parser: relative times count back from the moment of parsing.
pub(crate) fn parse_time_arg(s: &str) -> Result<Timestamp, String> {
    parse_time_at(s, Timestamp::now())
}

pub(crate) fn parse_time_at(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if s.contains('T') || s.contains('t') || s.contains(':') {
        return s
            .parse::<Timestamp>()
            .map_err(|e| format!("{s:?} is not {FORMS}: {e}"));
    }
    let ago = parse_duration(s).ok_or_else(|| format!("{s:?} is not {FORMS}"))?;
    now.checked_sub(ago)
        .map_err(|_| format!("{s:?} goes back before the earliest time there is"))
}

/// `<number><unit>` repeated, units `s`, `m`, `h`, `d` (24 h) and `w` (7 d).
fn parse_duration(s: &str) -> Option<SignedDuration> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(number.checked_mul(seconds)?)?;
    }
    Some(SignedDuration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn rfc3339_times_with_any_offset() {
        assert_eq!(
            parse_time_at("2024-05-01T14:00:00+02:00", now()).unwrap(),
            now()
        );
        assert_eq!(
            parse_time_at("2024-05-01T10:30:00.5Z", now())
                .unwrap()
                .to_string(),
            "2024-05-01T10:30:00.5Z"
        );
    }

    #[test]
    fn durations_count_back_from_now() {
        let at = |s| parse_time_at(s, now()).unwrap().to_string();
        assert_eq!(at("2h"), "2024-05-01T10:00:00Z");
        assert_eq!(at("1h30m"), "2024-05-01T10:30:00Z");
        assert_eq!(at("90s"), "2024-05-01T11:58:30Z");
        assert_eq!(at("7d"), "2024-04-24T12:00:00Z");
        assert_eq!(at("1w"), "2024-04-24T12:00:00Z");
        assert_eq!(at("now"), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for bad in [
            "",
            "2x",
            "h",
            "yesterday",
            "-2h",
            "2024-13-01T00:00:00Z",
            "2h 30m",
        ] {
            let err = parse_time_at(bad, now()).unwrap_err();
            assert!(err.contains("is not an RFC 3339 time"), "{bad}: {err}");
        }
        assert!(parse_time_at("99999999999999w", now()).is_err());
    }
}
