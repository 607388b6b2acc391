//! Request headers as every transport has them, without naming any transport's types.
//!
//! actix-web speaks `http` 0.2, tonic `http` 1.x, and Envoy's `CheckRequest` carries a plain
//! map: the decision reads headers through [`Headers`] so one piece of code serves them all.
//! The server wraps each transport's map in a newtype that implements it.

/// Read access to a request's headers. Names are compared in lower case.
pub trait Headers {
    /// Every value of the header `name` (a lower-case literal: the names the decision reads
    /// are fixed, which lets a transport look them up without parsing or copying the name on
    /// every request), in the order received.
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]>;

    /// Every header as `(lower-case name, value)`, in the order received.
    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// The value of `name` when it appears exactly once and is text.
    fn single_text(&self, name: &'static str) -> Option<&str> {
        let mut values = self.get_all(name);
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        header_text(first)
    }
}

/// A header value as text: visible ASCII, spaces and tabs only (what `http`'s
/// `HeaderValue::to_str` accepts), so every transport reads the same values as text.
pub fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Headers as a list of pairs (names in any case): tests, the admin playground, gRPC.
impl<N: AsRef<str>, V: AsRef<str>> Headers for [(N, V)] {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().as_bytes())
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref().as_bytes()))
    }
}

impl<N: AsRef<str>, V: AsRef<str>> Headers for Vec<(N, V)> {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.as_slice().get_all(name)
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.as_slice().pairs()
    }
}

/// Whether `name` is a valid header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as a header value: no control characters but tab (the rule
/// of `http`'s `HeaderValue::from_str`), so no header or response can be split.
pub fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_found_without_case() {
        let h = vec![("X-A", "1"), ("x-a", "2"), ("b", "3")];
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![b"1", b"2"]);
        assert_eq!(h.single_text("x-a"), None);
        assert_eq!(h.single_text("b"), Some("3"));
        assert_eq!(h.single_text("c"), None);
    }

    #[test]
    fn header_names_and_values_that_cannot_be_sent_are_refused() {
        assert!(is_header_name("X-Tenant-Id"));
        for bad in ["", "X Tenant", "X-Tenant:", "X-T\u{e9}nant", "X-A\r\nB"] {
            assert!(!is_header_name(bad), "{bad:?}");
        }
        assert!(is_header_value("acme \t caf\u{e9}"));
        for bad in ["a\r\nSet-Cookie: x", "a\nb", "a\u{7f}", "a\0"] {
            assert!(!is_header_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn header_text_refuses_controls_and_non_ascii() {
        assert_eq!(header_text(b"ok value\t1"), Some("ok value\t1"));
        assert_eq!(header_text(b"bad\r\n"), None);
        assert_eq!(header_text("caf\u{e9}".as_bytes()), None);
    }
}
