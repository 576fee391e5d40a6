//! Durations and sizes as users type them on both command lines (`2h`, `7d`, `1h30m`, `500ms`;
//! `256MiB`, `1G`), parsed once here so `flowrec` and `flowsql` agree.

use std::time::Duration;

/// Parses `90s`, `15m`, `2h`, `7d`, `1w`, `500ms` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration (expected e.g. 30s, 15m, 2h, 7d, 1h30m)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let too_large = || format!("{text:?}: too large a duration");
        // Milliseconds, or seconds times the unit's length.
        let (from, per_unit): (fn(u64) -> Duration, u64) = match unit {
            "ms" => (Duration::from_millis, 1),
            "s" | "sec" => (Duration::from_secs, 1),
            "m" | "min" => (Duration::from_secs, 60),
            "h" => (Duration::from_secs, 3600),
            "d" => (Duration::from_secs, 86_400),
            "w" => (Duration::from_secs, 604_800),
            "" => {
                return Err(format!(
                    "{text:?}: missing unit after {number} (s, m, h, d, w)"
                ))
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ms, s, m, h, d, w)"
                ))
            }
        };
        let part = from(number.checked_mul(per_unit).ok_or_else(too_large)?);
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(total)
}

/// Parses a byte size: `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB`
/// as powers of 1024, as most infrastructure tools do).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("{text:?} is not a size (expected e.g. 256MiB)"));
    }
    let number: usize = text[..digits]
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let factor: usize = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// A byte count as people read it: `512 B`, `1.5 KiB`, `20.3 MiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("h").unwrap_err().contains("not a duration"));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        // Overflow is an error, not a panic or a silently shorter duration.
        for huge in [
            "18446744073709551615s1s",
            "18446744073709551615d",
            "99999999999999999999s",
        ] {
            assert!(
                parse_duration(huge).unwrap_err().contains("too large"),
                "{huge}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
    }
}
