//! URLs as etcd checks them (`types.NewURLs`), with the small part of Go's
//! `url.Parse` and `net.SplitHostPort` those checks need.

/// Comma-separated URLs as etcd's `types.NewURLs`: validated, then sorted
/// and de-duplicated like `flags.UniqueURLs`.
pub(super) fn parse_urls(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for u in s.split(',') {
        let u = u.trim();
        check_url(u)?;
        out.push(u.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(super) struct UrlParts<'a> {
    pub(super) scheme: String,
    pub(super) host: &'a str,
    path: &'a str,
}

/// A small subset of Go's `url.Parse`, enough for etcd's URL checks.
pub(super) fn split_url(u: &str) -> Result<UrlParts<'_>, String> {
    if u.starts_with(':') {
        return Err(format!("parse {:?}: missing protocol scheme", u));
    }
    let scheme_end = u.find(':').filter(|&i| {
        let s = &u[..i];
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let Some(scheme_end) = scheme_end else {
        let first_segment = u.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(format!(
                "parse {:?}: first path segment in URL cannot contain colon",
                u
            ));
        }
        return Ok(UrlParts {
            scheme: String::new(),
            host: "",
            path: u,
        });
    };
    let scheme = u[..scheme_end].to_ascii_lowercase();
    let rest = &u[scheme_end + 1..];
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let Some(after) = rest.strip_prefix("//") else {
        return Ok(UrlParts {
            scheme,
            host: "",
            path: "",
        });
    };
    let auth_end = after.find('/').unwrap_or(after.len());
    let authority = &after[..auth_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Ok(UrlParts {
        scheme,
        host,
        path: &after[auth_end..],
    })
}

/// etcd's `types.NewURLs` check for one URL.
pub fn check_url(u: &str) -> Result<(), String> {
    let parts = split_url(u)?;
    match parts.scheme.as_str() {
        "http" | "https" => {
            if split_host_port(parts.host).is_err() {
                return Err(format!(
                    "URL address does not have the form \"host:port\": {}",
                    u
                ));
            }
            if !parts.path.is_empty() {
                return Err(format!("URL must not contain a path: {}", u));
            }
            Ok(())
        }
        "unix" | "unixs" => Ok(()),
        _ => Err(format!(
            "URL scheme must be http, https, unix, or unixs: {}",
            u
        )),
    }
}

/// Go's `net.SplitHostPort`.
pub(super) fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let fail = |why: &str| Err(format!("address {}: {}", hostport, why));
    if let Some(inner) = hostport.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return fail("missing ']' in address");
        };
        return match inner[close + 1..].strip_prefix(':') {
            Some(port) => Ok((&inner[..close], port)),
            None => fail("missing port in address"),
        };
    }
    match hostport.rsplit_once(':') {
        None => fail("missing port in address"),
        Some((host, _)) if host.contains(':') => fail("too many colons in address"),
        Some((host, port)) => Ok((host, port)),
    }
}
