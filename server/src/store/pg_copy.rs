//! Postgres's binary `COPY` format (https://www.postgresql.org/docs/current/sql-copy.html,
//! "Binary Format"), for the audit writer's batches: the server parses no text and plans no
//! statement per batch, the cheapest way to put many rows into an indexed table.
//!
//! A stream is a header, tuples (a field count, then each field as a length and its bytes in
//! the type's binary send format, or length -1 for NULL) and a trailer. Only the types the
//! audit rows use are here: `text`, `integer`, `bigint` and `timestamptz`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

/// The 11-byte signature, then flags (no OIDs) and the header extension length, both zero.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds from the Unix epoch to Postgres's, 2000-01-01 00:00:00 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `value` as Postgres's `text` can hold it. It cannot hold NUL, and one such value would
/// refuse a whole audit batch — and its replay from the spool, for ever, holding up every
/// record behind it: NUL becomes U+FFFD, as a byte that is not UTF-8 would.
pub fn pg_text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// One binary `COPY … FROM STDIN (FORMAT binary)` payload, built a row at a time.
pub struct BinaryCopy {
    buf: Vec<u8>,
}

impl BinaryCopy {
    /// A payload with its header; `capacity` is a guess of the bytes it will hold.
    pub fn with_capacity(capacity: usize) -> BinaryCopy {
        let mut buf = Vec::with_capacity(capacity.max(HEADER.len() + 2));
        buf.extend_from_slice(HEADER);
        BinaryCopy { buf }
    }

    /// Starts a row of `fields` fields; exactly that many field calls must follow.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // A field's length is an int32; no audit field comes near 2 GiB (they are capped
        // long before), so a longer one is cut rather than a length that wraps.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&bytes[..len as usize]);
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `text` field (see [`pg_text`]).
    pub fn text(&mut self, value: &str) {
        self.field(pg_text(value).as_bytes());
    }

    /// A nullable `text` field.
    pub fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// An `integer` field.
    pub fn int4(&mut self, value: i32) {
        self.field(&value.to_be_bytes());
    }

    /// A `bigint` field.
    pub fn int8(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    /// A `timestamptz` field: microseconds since 2000-01-01 UTC.
    pub fn timestamptz(&mut self, value: DateTime<Utc>) {
        self.int8(value.timestamp_micros() - POSTGRES_EPOCH_MICROS);
    }

    /// The payload with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_laid_out_as_postgres_reads_it() {
        let mut copy = BinaryCopy::with_capacity(0);
        copy.row(4);
        copy.text("ab");
        copy.opt_text(None);
        copy.int4(-2);
        copy.timestamptz(DateTime::from_timestamp(946_684_801, 0).unwrap());
        let bytes = copy.finish();
        let mut expected = HEADER.to_vec();
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, expected);
        assert_eq!(HEADER.len(), 19);
    }

    #[test]
    fn nul_in_text_becomes_the_replacement_character() {
        let mut copy = BinaryCopy::with_capacity(0);
        copy.text("a\0b");
        let bytes = copy.finish();
        let field = &bytes[HEADER.len()..bytes.len() - 2];
        assert_eq!(&field[..4], &5i32.to_be_bytes());
        assert_eq!(std::str::from_utf8(&field[4..]).unwrap(), "a\u{fffd}b");
    }
}
