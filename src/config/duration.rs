//! Go's `time.ParseDuration`, ballast's one duration parser.
//!
//! etcd's duration flags (`--grpc-keepalive-timeout=20s`) and its periodic
//! `--auto-compaction-retention=1h30m` are parsed by Go's `time` package, so
//! ballast accepts exactly what Go accepts, `[-+]?([0-9]*(\.[0-9]*)?unit)+`
//! or a bare `0`, with the same arithmetic (int64 nanoseconds, fractions
//! through a float64 scale) and the same error text.

use std::time::Duration;

/// The largest magnitude a Go `time.Duration` (int64 nanoseconds) holds: that of its minimum.
const MAX_MAGNITUDE_NS: u64 = 1 << 63;

/// A Go `time.Duration`. Go's is signed and `std::time::Duration` is not,
/// so the sign is kept beside the magnitude (`negative` is never set for 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoDuration {
    pub negative: bool,
    pub magnitude: Duration,
}

impl GoDuration {
    /// The duration, unless it is below zero.
    pub fn non_negative(self) -> Option<Duration> {
        (!self.negative).then_some(self.magnitude)
    }
}

/// Parses `s` as Go's `time.ParseDuration` does, e.g. `1h30m`, `-1.5s`, `.5µs`, `0`.
pub fn parse(s: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(GoDuration { negative: false, magnitude: Duration::ZERO });
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: u64 = 0;
    while !rest.is_empty() {
        let (ns, after) = component(rest, s)?;
        total_ns = total_ns.checked_add(ns).filter(|&t| t <= MAX_MAGNITUDE_NS).ok_or_else(invalid)?;
        rest = after;
    }
    if !negative && total_ns == MAX_MAGNITUDE_NS {
        return Err(invalid()); // one past int64's maximum
    }
    Ok(GoDuration { negative: negative && total_ns > 0, magnitude: Duration::from_nanos(total_ns) })
}

/// One `[0-9]*(\.[0-9]*)?unit` at the start of `rest` (a part of `orig`), in
/// nanoseconds, and what follows it.
fn component<'a>(rest: &'a str, orig: &str) -> Result<(u64, &'a str), String> {
    let invalid = || format!("time: invalid duration {}", quote(orig));
    let (int_digits, after_int) = split_digits(rest);
    let whole = leading_int(int_digits).ok_or_else(invalid)?;
    let (fraction_digits, after_number) = match after_int.strip_prefix('.') {
        Some(after_dot) => split_digits(after_dot),
        None => ("", after_int),
    };
    if int_digits.is_empty() && fraction_digits.is_empty() {
        return Err(invalid());
    }
    let unit_len = after_number.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after_number.len());
    let (unit, after) = after_number.split_at(unit_len);
    if unit.is_empty() {
        return Err(format!("time: missing unit in duration {}", quote(orig)));
    }
    let unit_ns = unit_nanos(unit)
        .ok_or_else(|| format!("time: unknown unit {} in duration {}", quote(unit), quote(orig)))?;
    let mut ns = whole.checked_mul(unit_ns).filter(|&v| v <= MAX_MAGNITUDE_NS).ok_or_else(invalid)?;
    let (fraction, scale) = leading_fraction(fraction_digits);
    if fraction > 0 {
        // Go: v += uint64(float64(f) * (float64(unit) / scale))
        ns = ns.saturating_add((fraction as f64 * (unit_ns as f64 / scale)) as u64);
        if ns > MAX_MAGNITUDE_NS {
            return Err(invalid());
        }
    }
    Ok((ns, after))
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000, // "u", U+00B5 micro sign, U+03BC Greek mu
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// The leading ASCII digits of `s`, and the rest.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// Go's `leadingInt`: the digits' value, `None` past 2^63.
fn leading_int(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |x, d| {
        x.checked_mul(10)?.checked_add(u64::from(d - b'0')).filter(|&x| x <= MAX_MAGNITUDE_NS)
    })
}

/// Go's `leadingFraction`: the digits' value and 10^(digits used); digits
/// that would overflow are dropped.
fn leading_fraction(digits: &str) -> (u64, f64) {
    let (mut x, mut scale) = (0u64, 1f64);
    for d in digits.bytes() {
        if x > (MAX_MAGNITUDE_NS - 1) / 10 {
            break;
        }
        let y = x * 10 + u64::from(d - b'0');
        if y > MAX_MAGNITUDE_NS {
            break;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale)
}

/// Go's `time.quote`: double quotes, with non-ASCII and control bytes as `\xNN`.
fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        if c < ' ' || !c.is_ascii() {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

    fn ok(s: &str) -> Duration {
        match parse(s) {
            Ok(d) => d.non_negative().unwrap_or_else(|| panic!("{s:?} is negative")),
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn negative(s: &str) -> Duration {
        let d = parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(d.negative, "{s:?}");
        d.magnitude
    }

    fn err(s: &str) -> String {
        parse(s).expect_err(s)
    }

    #[test]
    fn accepts_what_go_accepts() {
        for zero in ["0", "-0", "+0", "0s", "0.0h", "-0s"] {
            assert_eq!(parse(zero), Ok(GoDuration { negative: false, magnitude: Duration::ZERO }), "{zero}");
        }
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("100ms"), Duration::from_millis(100));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("1.004s"), Duration::from_millis(1004));
        assert_eq!(ok("+1h"), Duration::from_secs(3600));
        assert_eq!(ok("3ns"), Duration::from_nanos(3));
        for micro in ["2us", "2µs", "2μs"] {
            assert_eq!(ok(micro), Duration::from_micros(2), "{micro}");
        }
        assert_eq!(ok("1h1h1m"), Duration::from_secs(7260));
        assert_eq!(negative("-1.5s"), Duration::from_millis(1500));
        assert_eq!(negative("-2m3.4s"), Duration::from_millis(123_400));
    }

    #[test]
    fn go_precision_and_range() {
        // cases from Go's own time tests
        assert_eq!(ok("0.3333333333333333333h"), Duration::from_secs(20 * 60));
        assert_eq!(ok("9007199254740993ns"), Duration::from_nanos((1 << 53) + 1));
        assert_eq!(ok("0.100000000000000000000h"), Duration::from_secs(6 * 60));
        assert_eq!(ok("0.830103483285477580700h"), Duration::new(49 * 60 + 48, 372_539_827));
        assert_eq!(ok("9223372036854775807ns"), MAX);
        assert_eq!(ok("9223372036854775.807us"), MAX);
        assert_eq!(ok("9223372036s854ms775us807ns"), MAX);
        let min_magnitude = Duration::from_nanos(1 << 63);
        assert_eq!(negative("-9223372036854775808ns"), min_magnitude);
        assert_eq!(negative("-9223372036854775.808us"), min_magnitude);
        assert_eq!(negative("-9223372036s854ms775us808ns"), min_magnitude);
        assert_eq!(negative("-2562047h47m16.854775808s"), min_magnitude);
        for overflow in ["9223372036854775808ns", "2562047h47m16.854775808s", "9223372036854775810ns", "3000000h", "-9223372036854775809ns"] {
            assert_eq!(err(overflow), format!("time: invalid duration \"{overflow}\""));
        }
    }

    #[test]
    fn errors_read_like_go() {
        for invalid in ["", "-", "+", "abc", "s", ".s", "-.s", "+-1h", "h1", "1h."] {
            assert_eq!(err(invalid), format!("time: invalid duration \"{invalid}\""), "{invalid:?}");
        }
        for missing in ["5", "-5", "1.2", "1h2", "1..2s", "2562047"] {
            assert_eq!(err(missing), format!("time: missing unit in duration \"{missing}\""), "{missing:?}");
        }
        assert_eq!(err("5x"), "time: unknown unit \"x\" in duration \"5x\"");
        assert_eq!(err("3 s"), "time: unknown unit \" s\" in duration \"3 s\"");
        assert_eq!(err("1h-2m"), "time: unknown unit \"h-\" in duration \"1h-2m\"");
        assert_eq!(err("1e3h"), "time: unknown unit \"e\" in duration \"1e3h\"");
        assert_eq!(err("1d"), "time: unknown unit \"d\" in duration \"1d\"");
        assert_eq!(err("1µx"), "time: unknown unit \"\\xc2\\xb5x\" in duration \"1\\xc2\\xb5x\"");
        assert_eq!(err("\u{FFFD}"), "time: invalid duration \"\\xef\\xbf\\xbd\"");
        assert_eq!(err("\"1\\"), "time: invalid duration \"\\\"1\\\\\"");
    }
}
