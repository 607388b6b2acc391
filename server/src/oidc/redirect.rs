//! Where `rd=` may send the browser after login or logout (docs/security.md).
//!
//! Only to `public_url`'s host or a host of `allowed_redirect_domains` (exact, or
//! dot-prefixed: `.example.com` is example.com and its subdomains, never
//! `evilexample.com`). Every spelling a browser might read differently from us is refused
//! before parsing: whitespace or control characters anywhere (browsers strip tabs and
//! newlines inside URLs), backslashes (browsers read `/\evil.com` as `//evil.com`),
//! protocol-relative `//host`, userinfo, and schemes other than http(s). A refused `rd`
//! falls back to the root of `public_url`.

use url::Url;

/// One `allowed_redirect_domains` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DomainRule {
    /// `example.com`: that host only.
    Exact(String),
    /// `.example.com`: example.com and every subdomain of it.
    Suffix(String),
}

impl DomainRule {
    fn parse(entry: &str) -> DomainRule {
        let entry = entry.trim().to_ascii_lowercase();
        match entry.strip_prefix('.') {
            Some(bare) => DomainRule::Suffix(bare.to_string()),
            None => DomainRule::Exact(entry),
        }
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            DomainRule::Exact(d) => host == d,
            DomainRule::Suffix(d) => {
                host == d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
        }
    }
}

/// Validates redirect targets; built once from the configuration.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    public_url: Url,
    public_host: String,
    rules: Vec<DomainRule>,
}

impl RedirectPolicy {
    pub fn new(public_url: &Url, allowed_redirect_domains: &[String]) -> RedirectPolicy {
        RedirectPolicy {
            public_url: public_url.clone(),
            public_host: public_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            rules: allowed_redirect_domains
                .iter()
                .map(|d| DomainRule::parse(d))
                .collect(),
        }
    }

    /// Where to go when `rd` is missing or refused: the root of `public_url`.
    pub fn fallback(&self) -> String {
        self.public_url
            .join("/")
            .map(String::from)
            .unwrap_or_else(|_| self.public_url.to_string())
    }

    /// The absolute URL to redirect to, or `None` when `rd` is refused.
    pub fn validate(&self, rd: &str) -> Option<String> {
        if rd.is_empty() || rd.len() > 2048 {
            return None;
        }
        // Browsers drop tabs/newlines inside URLs and trim spaces, so `/\t/evil.com` becomes
        // `//evil.com` for them: any whitespace or control character is refused outright.
        if rd
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return None;
        }
        if let Some(rest) = rd.strip_prefix('/') {
            // `//evil.com` is protocol-relative: another host.
            if rest.starts_with('/') {
                return None;
            }
            return self.public_url.join(rd).ok().map(String::from);
        }
        let url = Url::parse(rd).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        // No downgrade from an https deployment to plain http.
        if self.public_url.scheme() == "https" && url.scheme() != "https" {
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        // `example.com.` is the same host to DNS but not to a suffix comparison.
        if host.ends_with('.') || host.is_empty() {
            return None;
        }
        let allowed = host == self.public_host || self.rules.iter().any(|r| r.allows(&host));
        allowed.then(|| url.to_string())
    }

    /// [`Self::validate`], falling back to the root of `public_url`.
    pub fn validate_or_fallback(&self, rd: Option<&str>) -> String {
        rd.and_then(|rd| self.validate(rd))
            .unwrap_or_else(|| self.fallback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(
            &Url::parse("https://auth.example.com").unwrap(),
            &[
                "example.com".into(),
                ".example.com".into(),
                "apps.test".into(),
            ],
        )
    }

    #[test]
    fn allowed_targets_pass_normalized() {
        let p = policy();
        for (rd, expected) in [
            ("https://example.com/", "https://example.com/"),
            (
                "https://app.example.com/x?y=1#z",
                "https://app.example.com/x?y=1#z",
            ),
            (
                "https://a.b.example.com:8443/p",
                "https://a.b.example.com:8443/p",
            ),
            (
                "HTTPS://APP.EXAMPLE.COM/Path",
                "https://app.example.com/Path",
            ),
            (
                "https://auth.example.com/done",
                "https://auth.example.com/done",
            ),
            ("https://apps.test/", "https://apps.test/"),
            (
                "/dashboard?tab=1",
                "https://auth.example.com/dashboard?tab=1",
            ),
            ("/", "https://auth.example.com/"),
        ] {
            assert_eq!(p.validate(rd).as_deref(), Some(expected), "{rd}");
        }
    }

    /// Open-redirect spellings seen in the wild (CVE-2021-21291, GHSA-j7px-6hwj-hpjg and
    /// oauth2-proxy's and Pomerium's redirect bugs). Each must be refused.
    #[test]
    fn hostile_targets_are_refused() {
        let p = policy();
        let hostile = [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "\\\\evil.com",
            "/\t/evil.com",
            "/ /evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            " //evil.com",
            "https://evil.com",
            "https://example.com.evil.com",
            "https://evilexample.com",
            "https://evil.com/.example.com",
            "https://evil.com?.example.com",
            "https://evil.com#.example.com",
            "https://user@evil.com",
            "https://example.com@evil.com",
            "https://example.com:pass@evil.com",
            "https://app.example.com@evil.com/",
            "https:evil.com",
            "https:/evil.com",
            "https:///evil.com",
            "https://evil.com\\@example.com",
            "javascript:alert(1)",
            "JavaScript://example.com/%0Aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "ftp://example.com/",
            "http://app.example.com/",
            "https://example.com./",
            "https://app.example.com\u{3002}evil.com",
            "https://ex\u{0430}mple.com/",
            "%2F%2Fevil.com",
            "evil.com",
            "",
            "\u{0000}https://example.com",
            "https://example.com\u{00a0}.evil.com",
        ];
        for rd in hostile {
            assert_eq!(p.validate(rd), None, "{rd:?} must be refused");
            assert_eq!(
                p.validate_or_fallback(Some(rd)),
                "https://auth.example.com/",
                "{rd:?}"
            );
        }
    }

    #[test]
    fn plain_http_is_allowed_only_for_plain_http_deployments() {
        let p = RedirectPolicy::new(
            &Url::parse("http://127.0.0.1:4180").unwrap(),
            &["localhost".into()],
        );
        assert_eq!(
            p.validate("http://localhost:8080/app").as_deref(),
            Some("http://localhost:8080/app")
        );
        assert_eq!(
            p.validate("http://127.0.0.1:9999/x").as_deref(),
            Some("http://127.0.0.1:9999/x")
        );
        assert_eq!(p.validate("http://localhost.evil.com/"), None);
        assert_eq!(p.fallback(), "http://127.0.0.1:4180/");
    }

    #[test]
    fn suffix_rules_match_on_label_boundaries() {
        let rule = DomainRule::parse(".Example.com");
        assert!(rule.allows("example.com"));
        assert!(rule.allows("a.example.com"));
        assert!(!rule.allows("aexample.com"));
        assert!(!rule.allows("example.com.evil"));
        let exact = DomainRule::parse("example.com");
        assert!(exact.allows("example.com"));
        assert!(!exact.allows("a.example.com"));
    }
}
