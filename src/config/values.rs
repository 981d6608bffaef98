//! Flag values checked as their Go `flag.Value.Set` would (Go's `strconv`
//! and etcd's `pkg/flags` types); the error text is what Go puts after
//! `invalid value "..." for flag -x: `.

use super::duration;
use super::flags::Ty;
use super::url::parse_urls;

/// Checks a raw value the way the flag's Go `Value.Set` would; the `Err`
/// text is what Go puts after `invalid value "..." for flag -x: `.
pub(super) fn check_value(ty: Ty, value: &str) -> Result<(), String> {
    match ty {
        Ty::Bool => parse_go_bool(value).map(drop),
        Ty::Str | Ty::Strings | Ty::Ignored => Ok(()),
        Ty::Uint => parse_go_uint(value).map(drop),
        Ty::Int => parse_go_int(value).map(drop),
        Ty::U32 => value
            .parse::<u32>()
            .map(drop)
            .map_err(|_| format!("strconv.ParseUint: parsing {:?}: invalid syntax", value)),
        Ty::Duration => duration::parse(value).map(drop),
        Ty::Urls => parse_urls(value).map(drop),
        Ty::UrlsOrStar if value == "*" => Ok(()),
        Ty::UrlsOrStar => parse_urls(value).map(drop),
        Ty::Choice(valid) if valid.contains(&value) => Ok(()),
        Ty::Choice(_) => Err("invalid value".to_string()),
        Ty::Choices(valid) => match value.split(',').find(|v| !valid.contains(v)) {
            Some(bad) => Err(format!("invalid value {:?}", bad)),
            None => Ok(()),
        },
    }
}

/// etcd's `flags.StringsValue.Set`: split at commas, nothing trimmed (so an explicit empty
/// value is one empty string).
pub(super) fn split_strings(s: &str) -> Vec<String> {
    s.split(',').map(str::to_string).collect()
}

pub(super) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("parse error".to_string()),
    }
}

/// `strconv.ParseUint(s, 0, 64)`: decimal, `0x`, `0o`, `0b` or leading-`0`
/// octal, underscores allowed only after a base prefix.
pub(super) fn parse_go_uint(s: &str) -> Result<u64, String> {
    let parse_error = || "parse error".to_string();
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if radix == 10 && digits.contains('_') {
        return Err(parse_error());
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(parse_error());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| "value out of range".to_string())
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(super) fn parse_go_int(s: &str) -> Result<i64, String> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(rest)?;
    let range = || "value out of range".to_string();
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(range());
        }
        Ok((magnitude as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_parsing() {
        assert_eq!(parse_go_uint("0x10"), Ok(16));
        assert_eq!(parse_go_uint("010"), Ok(8));
        assert_eq!(parse_go_uint("0b11"), Ok(3));
        assert_eq!(parse_go_uint("0x_1_0"), Ok(16));
        assert!(parse_go_uint("1_0").is_err());
        assert!(parse_go_uint("+1").is_err());
        assert_eq!(parse_go_int("-0x10"), Ok(-16));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
    }

    #[test]
    fn duration_flags_take_go_durations() {
        for ok in ["0", "1h30m", "-1.5s", "100ms", "2µs", ".5s"] {
            assert!(check_value(Ty::Duration, ok).is_ok(), "{}", ok);
        }
        for bad in ["", "5", "abc", "5x", "s"] {
            assert!(check_value(Ty::Duration, bad).is_err(), "{}", bad);
        }
    }
}
