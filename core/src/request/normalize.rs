//! Path and host normalization (docs/security.md).
//!
//! Every spelling of a path must reach the route its canonical form reaches, or be refused.
//! Upstream servers disagree on how they read a path (Tomcat drops `;params`, IIS folds case
//! and backslashes, some decode twice), so anything that two servers could read differently
//! is either resolved to one form here or rejected with 400.

use std::fmt;

/// Longest path (before normalization) that we accept; longer ones are refused, not cut.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest host name (RFC 1035).
pub const MAX_HOST_BYTES: usize = 253;

/// Why a path or host was refused. Every variant becomes a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("path must start with `/`")]
    NotOriginForm,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("path contains a character that must be percent-encoded")]
    RawByte,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains a fragment")]
    Fragment,
    #[error("path contains a malformed percent-escape")]
    BadEscape,
    #[error("path contains an encoded `/`, `\\`, `%`, `;`, `?`, `#` or control character")]
    ForbiddenEscape,
    #[error("path contains a `.` or `..` segment with `;` parameters")]
    DotSegmentWithParams,
    #[error("path is not valid UTF-8 after decoding")]
    InvalidUtf8,
    #[error("path climbs above the root with `..`")]
    AboveRoot,
    #[error("host is not a valid host name")]
    BadHost,
}

/// A path in canonical form: starts with `/`, no `.`/`..`/empty segments, no `;params`,
/// unreserved escapes decoded, optionally lower-cased. Only [`normalize_path`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    path: String,
}

impl NormalizedPath {
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The non-empty segments, e.g. `["restaurant", "orders"]` for `/restaurant/orders/`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Splits a request target into its path and query (without `?`).
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalizes the path part of a request target (no query).
///
/// `case_insensitive` folds ASCII case, for bundles whose upstreams treat `/ADMIN` as `/admin`.
pub fn normalize_path(raw: &str, case_insensitive: bool) -> Result<NormalizedPath, NormalizeError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(NormalizeError::TooLong);
    }
    if !raw.starts_with('/') {
        return Err(NormalizeError::NotOriginForm);
    }
    for &b in raw.as_bytes() {
        match b {
            b'\\' => return Err(NormalizeError::Backslash),
            b'#' => return Err(NormalizeError::Fragment),
            // Visible ASCII only: spaces, controls and raw non-ASCII bytes are never sent by a
            // conforming client and are read differently by different servers.
            0x21..=0x7e => {}
            _ => return Err(NormalizeError::RawByte),
        }
    }

    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    let mut decoded: Vec<u8> = Vec::with_capacity(64);
    for raw_segment in raw[1..].split('/') {
        // Tomcat and Jetty drop `;params` from each segment before routing; so do we, so that
        // `/admin;x/` is seen as `/admin/`. (An encoded `%3B` is refused below: Tomcat and
        // Spring decode it and then treat it as a separator, NGINX as a character.)
        let (raw_segment, has_params) = match raw_segment.split_once(';') {
            Some((before, _)) => (before, true),
            None => (raw_segment, false),
        };
        decoded.clear();
        let bytes = raw_segment.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex_value(h), hex_value(l)),
                    _ => return Err(NormalizeError::BadEscape),
                };
                let byte = match (hi, lo) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Err(NormalizeError::BadEscape),
                };
                // An encoded `/` or `\` would be a separator to some upstreams and not to
                // others; an encoded `%` is double encoding, read differently by servers that
                // decode twice; an encoded `;`, `?` or `#` ends the path for servers that
                // decode before splitting (`/kitchen/..%3Bx/finance` is `/finance` to a
                // Tomcat app); controls have no business in a path.
                if matches!(byte, b'/' | b'\\' | b'%' | b';' | b'?' | b'#')
                    || byte < 0x20
                    || byte == 0x7f
                {
                    return Err(NormalizeError::ForbiddenEscape);
                }
                decoded.push(byte);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        // Overlong forms such as %C0%AF are invalid UTF-8 and are refused here.
        let segment = std::str::from_utf8(&decoded).map_err(|_| NormalizeError::InvalidUtf8)?;
        // `..;` and `.;x` are dot segments to Tomcat and Spring (which drop the parameters
        // first) but ordinary names to NGINX, which would route `/marketing/..;/restaurant`
        // to the marketing app while a Java app behind it serves `/restaurant`. No reading
        // is safe for both, so the spelling is refused.
        if has_params && matches!(segment, "." | "..") {
            return Err(NormalizeError::DotSegmentWithParams);
        }
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(NormalizeError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => {
                let s = if case_insensitive {
                    s.to_lowercase()
                } else {
                    s.to_string()
                };
                segments.push(s);
            }
        }
    }

    let mut path = String::with_capacity(raw.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(NormalizedPath { path })
}

/// Normalizes a `Host` value: lower-case, no port, no trailing dot. `None` for an empty host.
///
/// A mixed-case or dotted host once skipped Authelia's host rules; here every spelling of
/// a host name maps to one string or is refused.
pub fn normalize_host(raw: &str) -> Result<Option<String>, NormalizeError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: `[::1]` or `[::1]:8080`.
        let (addr, after) = rest.split_once(']').ok_or(NormalizeError::BadHost)?;
        if !(after.is_empty() || is_port(after.strip_prefix(':').ok_or(NormalizeError::BadHost)?)) {
            return Err(NormalizeError::BadHost);
        }
        let ip: std::net::Ipv6Addr = addr.parse().map_err(|_| NormalizeError::BadHost)?;
        return Ok(Some(format!("[{ip}]")));
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return Err(NormalizeError::BadHost),
            None => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.is_empty() || host.len() > MAX_HOST_BYTES {
        return Err(NormalizeError::BadHost);
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid {
        return Err(NormalizeError::BadHost);
    }
    Ok(Some(host.to_ascii_lowercase()))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, NormalizeError> {
        normalize_path(p, false).map(|n| n.as_str().to_string())
    }

    #[test]
    fn canonical_paths_are_unchanged() {
        for p in [
            "/",
            "/admin",
            "/admin/",
            "/a/b/c",
            "/a-b_c~d.e",
            "/files/report.pdf",
        ] {
            assert_eq!(norm(p).unwrap(), p);
        }
    }

    /// The hostile spellings table: each resolves to the canonical form or is refused.
    #[test]
    fn hostile_spellings_resolve_or_are_refused() {
        use NormalizeError::*;
        let cases: &[(&str, Result<&str, NormalizeError>)] = &[
            ("/admin/../admin", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("///admin//users", Ok("/admin/users")),
            ("/%61dmin", Ok("/admin")),
            ("/%61%64%6D%69%6E", Ok("/admin")),
            ("/admin%2f..", Err(ForbiddenEscape)),
            ("/admin%2F..%2F", Err(ForbiddenEscape)),
            ("/admin;x", Ok("/admin")),
            ("/admin;jsessionid=1/users", Ok("/admin/users")),
            ("/public/..;/admin", Err(DotSegmentWithParams)),
            ("/marketing/..;/restaurant/x", Err(DotSegmentWithParams)),
            ("/public/..;x=1/admin", Err(DotSegmentWithParams)),
            ("/public/.;x/admin", Err(DotSegmentWithParams)),
            ("/public/%2e%2e;/admin", Err(DotSegmentWithParams)),
            ("/public/.%2e;jsessionid=1/admin", Err(DotSegmentWithParams)),
            ("/public/...;/admin", Ok("/public/.../admin")),
            ("/;x/admin", Ok("/admin")),
            ("/kitchen/..%3Bx/finance", Err(ForbiddenEscape)),
            ("/kitchen/..%3bx/finance", Err(ForbiddenEscape)),
            ("/app/admin%3F", Err(ForbiddenEscape)),
            ("/app/admin%3f.css", Err(ForbiddenEscape)),
            ("/app/admin%23", Err(ForbiddenEscape)),
            ("/./admin", Ok("/admin")),
            ("/admin/.", Ok("/admin/")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public/%252e%252e/admin", Err(ForbiddenEscape)),
            ("/admin%5c..", Err(ForbiddenEscape)),
            ("/public\\..\\admin", Err(Backslash)),
            ("/%c0%ae%c0%ae/admin", Err(InvalidUtf8)),
            ("/%c0%afadmin", Err(InvalidUtf8)),
            ("/%e0%80%afadmin", Err(InvalidUtf8)),
            ("/%ff", Err(InvalidUtf8)),
            ("/admin%00", Err(ForbiddenEscape)),
            ("/admin%0a", Err(ForbiddenEscape)),
            ("/admin%", Err(BadEscape)),
            ("/admin%4", Err(BadEscape)),
            ("/admin%zz", Err(BadEscape)),
            ("/..", Err(AboveRoot)),
            ("/../admin", Err(AboveRoot)),
            ("/a/../../admin", Err(AboveRoot)),
            ("/admin#frag", Err(Fragment)),
            ("/ad min", Err(RawByte)),
            ("/admin\t", Err(RawByte)),
            ("/caf\u{e9}", Err(RawByte)),
            ("admin", Err(NotOriginForm)),
            ("", Err(NotOriginForm)),
            ("/caf%C3%A9", Ok("/caf\u{e9}")),
            ("/a%3Bb", Err(ForbiddenEscape)),
        ];
        for (input, expected) in cases {
            let got = norm(input);
            let expected = expected.clone().map(|s| s.to_string());
            assert_eq!(got, expected, "input {input:?}");
        }
        assert!(cases.len() >= 25);
    }

    #[test]
    fn overlong_path_is_refused() {
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(norm(&long), Err(NormalizeError::TooLong));
    }

    #[test]
    fn case_folding_only_when_asked() {
        assert_eq!(norm("/ADMIN").unwrap(), "/ADMIN");
        assert_eq!(
            normalize_path("/ADMIN/Users", true).unwrap().as_str(),
            "/admin/users"
        );
        assert_eq!(normalize_path("/%41DMIN", true).unwrap().as_str(), "/admin");
    }

    #[test]
    fn segments_skip_empty_parts() {
        let p = normalize_path("/restaurant/orders/", false).unwrap();
        assert_eq!(
            p.segments().collect::<Vec<_>>(),
            vec!["restaurant", "orders"]
        );
        assert_eq!(normalize_path("/", false).unwrap().segments().count(), 0);
    }

    #[test]
    fn hosts_fold_to_one_spelling() {
        let ok = |h: &str| normalize_host(h).unwrap().unwrap();
        assert_eq!(ok("App.Example.COM"), "app.example.com");
        assert_eq!(ok("app.example.com."), "app.example.com");
        assert_eq!(ok("app.example.com:443"), "app.example.com");
        assert_eq!(ok("APP.example.com.:8443"), "app.example.com");
        assert_eq!(ok("[::1]:8080"), "[::1]");
        assert_eq!(ok("127.0.0.1:4180"), "127.0.0.1");
        assert_eq!(normalize_host("").unwrap(), None);
        for bad in [
            "app..example.com",
            "app.example.com:",
            "app.example.com:abc",
            "evil.com/x",
            "user@evil.com",
            "a b.com",
            "[::1",
            "[zz]:80",
            ".",
            "caf\u{e9}.com",
        ] {
            assert_eq!(normalize_host(bad), Err(NormalizeError::BadHost), "{bad:?}");
        }
    }
}
