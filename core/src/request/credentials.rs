//! The credentials a request presents — session cookies and a bearer token — read the same
//! way from every transport's headers (an actix map, Envoy's `CheckRequest` map).

use super::headers::{Headers, header_text};

/// Values of every cookie named `name` in the request's `Cookie` headers. Malformed pairs
/// are skipped rather than failing the whole header, so one broken cookie from another app
/// on the domain cannot lock a user out. (Envoy merges repeated `Cookie` headers into one
/// value joined by `; `, which reads the same.)
pub fn cookie_values<'a, H: Headers + ?Sized>(headers: &'a H, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for header in headers.get_all("cookie") {
        let Some(text) = header_text(header) else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                out.push(v.trim().trim_matches('"'));
            }
        }
    }
    out
}

/// The token of an `Authorization: Bearer <token>` header, if there is exactly one.
pub fn bearer_token<H: Headers + ?Sized>(headers: &H) -> Option<&str> {
    let text = headers.single_text("authorization")?;
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_broken_pairs() {
        let h = vec![
            ("cookie", "a=1; broken; _gatehouse=abc.def; b=2"),
            ("Cookie", "_gatehouse=\"x.y\""),
        ];
        assert_eq!(cookie_values(&h, "_gatehouse"), vec!["abc.def", "x.y"]);
        assert!(cookie_values(&h, "missing").is_empty());
        let not_text = vec![("cookie", "_gatehouse=caf\u{e9}")];
        assert!(cookie_values(&not_text, "_gatehouse").is_empty());
    }

    #[test]
    fn bearer_tokens_need_the_scheme_and_a_single_header() {
        let one = |v: &'static str| vec![("authorization", v)];
        assert_eq!(bearer_token(&one("Bearer tok")), Some("tok"));
        assert_eq!(bearer_token(&one("bearer  tok ")), Some("tok"));
        assert_eq!(bearer_token(&one("Basic dXNlcg==")), None);
        assert_eq!(bearer_token(&one("Bearer ")), None);
        let two = vec![("authorization", "Bearer a"), ("authorization", "Bearer b")];
        assert_eq!(bearer_token(&two), None);
    }
}
