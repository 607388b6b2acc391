//! The spool: an append-only, fsync'd JSON-lines file where audit batches wait while the
//! database is unreachable. A line cut short by a crash is skipped (and logged) on replay.
//!
//! Replay reads the file in bounded chunks from an offset ([`Spool::read_chunk`]); each chunk
//! written to the database moves the offset past it ([`Spool::mark_replayed`]), and once the
//! whole file is in the database it is emptied ([`Spool::clear`]). The offset lives in memory
//! only: after a crash the replay starts again at the top, and the database ignores rows it
//! already has (inserts are `ON CONFLICT DO NOTHING`), so nothing is lost or doubled.
//! Everything here is blocking file I/O: the writer calls it through `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::AuditRecord;

const FILE_NAME: &str = "audit-spool.jsonl";
/// Bytes one chunk reads at most (beyond its first line), whatever its record limit.
pub const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;

pub struct Spool {
    path: PathBuf,
    /// Records in the file not yet replayed (counted on open, kept up to date).
    pending: usize,
    /// The file's length as far as we know (it is ours alone).
    len: u64,
    /// Byte offset of the first line not yet written to the database.
    replayed_to: u64,
    /// A failed append may have left part of a line: the next one starts a fresh line.
    torn: bool,
    /// Records were appended without an fsync since the last one ([`Spool::append_unsynced`]).
    unsynced: bool,
}

/// Records read from the spool, and where the next chunk starts.
#[derive(Debug)]
pub struct Chunk {
    pub records: Vec<AuditRecord>,
    /// Non-empty lines read (damaged ones included, which are skipped).
    pub lines: usize,
    /// The offset just past the last line read.
    pub end: u64,
    /// Nothing is left after this chunk: the spool can be emptied once it is written.
    pub at_end: bool,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

impl Spool {
    /// Opens (creating the directory if needed) the spool in `dir`. A last line cut short by
    /// a crash is closed with a newline, so the next append starts a line of its own.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut spool = Spool {
            path,
            pending: 0,
            len: 0,
            replayed_to: 0,
            torn: false,
            unsynced: false,
        };
        let file = match File::open(&spool.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spool),
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut ends_with_newline = true;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            spool.len += n as u64;
            ends_with_newline = line.ends_with(b"\n");
            if !is_blank(&line) {
                spool.pending += 1;
            }
        }
        if !ends_with_newline {
            let mut file = OpenOptions::new().append(true).open(&spool.path)?;
            file.write_all(b"\n")?;
            file.sync_data()?;
            spool.len += 1;
        }
        Ok(spool)
    }

    /// Records waiting in the spool.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the spool holds anything not yet replayed (newer records must queue behind).
    pub fn is_empty(&self) -> bool {
        self.replayed_to >= self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and fsyncs before returning: a spooled record survives a crash.
    pub fn append(&mut self, records: &[AuditRecord]) -> std::io::Result<()> {
        self.write(records, true)
    }

    /// Appends `records` without waiting for the disk: for a record the queue could not take
    /// (`AuditSink::record`), which a request is waiting on. Such a record survives a crash of
    /// Gatehouse (it is in the kernel's page cache), not yet a power loss, until the writer's
    /// next [`Spool::sync`] a flush interval later; in the queue it would survive neither.
    pub fn append_unsynced(&mut self, records: &[AuditRecord]) -> std::io::Result<()> {
        self.write(records, false)
    }

    /// Fsyncs what [`Spool::append_unsynced`] wrote since the last sync.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        match File::open(&self.path) {
            Ok(file) => file.sync_data()?,
            // Removed under us: what it held is gone, nothing is left to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.unsynced = false;
        Ok(())
    }

    fn write(&mut self, records: &[AuditRecord], sync: bool) -> std::io::Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        // The directory may have been removed under us (a cleanup job, an operator): make it
        // again rather than lose the records.
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let current = file.metadata()?.len();
        if current < self.replayed_to || current < self.len {
            // Removed or truncated by someone else: what it held is gone; start over.
            self.replayed_to = 0;
            self.pending = 0;
            self.torn = false;
        }
        self.len = current;
        if self.torn && current > 0 {
            text.insert(0, '\n');
        }
        let written = file.write_all(text.as_bytes()).and_then(|()| {
            if sync {
                // Everything appended before, unsynced, is on disk with this too.
                file.sync_data()?;
                self.unsynced = false;
            } else {
                self.unsynced = true;
            }
            Ok(())
        });
        if let Err(e) = written {
            // Part of the text may be in the file: the next append starts a fresh line.
            self.torn = true;
            self.len = file.metadata().map(|m| m.len()).unwrap_or(self.len);
            return Err(e);
        }
        self.torn = false;
        self.len += text.len() as u64;
        self.pending += records.len();
        Ok(())
    }

    /// The next records to replay: at most `max_records`, and no more lines than fit in
    /// `max_bytes` (at least one), from the first line not yet replayed. Damaged lines are
    /// skipped (and logged), counted in `lines`; a last line without its newline (a write
    /// that failed part-way) is never a record and ends the spool.
    pub fn read_chunk(&self, max_records: usize, max_bytes: usize) -> std::io::Result<Chunk> {
        let mut chunk = Chunk {
            records: Vec::new(),
            lines: 0,
            end: self.replayed_to,
            at_end: true,
        };
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(chunk),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.replayed_to))?;
        // Never read past what we know was written (a torn tail is a failed write's).
        let mut reader = BufReader::new(file.take(self.len.saturating_sub(self.replayed_to)));
        let mut line = Vec::new();
        let mut bytes = 0usize;
        loop {
            if chunk.records.len() >= max_records.max(1) || (bytes >= max_bytes && bytes > 0) {
                chunk.at_end = self.len <= chunk.end;
                break;
            }
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || !line.ends_with(b"\n") {
                break;
            }
            bytes += n;
            chunk.end += n as u64;
            if is_blank(&line) {
                continue;
            }
            chunk.lines += 1;
            match serde_json::from_slice(&line) {
                Ok(r) => chunk.records.push(r),
                Err(e) => tracing::error!(offset = chunk.end - n as u64, error = %e,
                    "skipping a damaged audit spool line"),
            }
        }
        Ok(chunk)
    }

    /// Records that `chunk` (the last one read) is in the database.
    pub fn mark_replayed(&mut self, chunk: &Chunk) {
        self.replayed_to = self.replayed_to.max(chunk.end);
        self.pending = self.pending.saturating_sub(chunk.lines);
    }

    /// Every spooled record not yet replayed, in the order written (in chunks; for tests
    /// and tools, the writer reads one chunk at a time).
    pub fn read_all(&self) -> std::io::Result<Vec<AuditRecord>> {
        let mut records = Vec::new();
        let mut at = Spool {
            path: self.path.clone(),
            pending: self.pending,
            len: self.len,
            replayed_to: self.replayed_to,
            torn: self.torn,
            unsynced: self.unsynced,
        };
        loop {
            let chunk = at.read_chunk(10_000, MAX_CHUNK_BYTES)?;
            at.mark_replayed(&chunk);
            let done = chunk.at_end;
            records.extend(chunk.records);
            if done {
                return Ok(records);
            }
        }
    }

    /// Empties the spool after a successful replay.
    pub fn clear(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        file.sync_all()?;
        self.pending = 0;
        self.len = 0;
        self.replayed_to = 0;
        self.torn = false;
        self.unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> AuditRecord {
        AuditRecord {
            time: chrono::Utc::now(),
            request_id: id.into(),
            kind: "verify".into(),
            user_id: None,
            email: Some("ann@example.com".into()),
            tenant: None,
            device_id: None,
            route: Some("r".into()),
            host: None,
            method: Some("GET".into()),
            path: Some("/r".into()),
            decision: "allow".into(),
            status: 200,
            reason: None,
            policy_version: Some("v".into()),
            latency_us: 12,
            client_ip: None,
            transport: None,
        }
    }

    #[test]
    fn spooled_records_survive_reopen_in_order_and_damage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.append(&[record("a"), record("b")]).unwrap();
        spool.append(&[record("c")]).unwrap();
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(spool.path()).unwrap();
        f.write_all(b"{\"time\":\"2026").unwrap();
        let reopened = Spool::open(dir.path()).unwrap();
        let ids: Vec<String> = reopened
            .read_all()
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        let mut reopened = reopened;
        reopened.clear().unwrap();
        assert_eq!(reopened.pending(), 0);
        assert!(reopened.read_all().unwrap().is_empty());
    }

    #[test]
    fn replay_reads_bounded_chunks_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        let all: Vec<AuditRecord> = (0..2500).map(|i| record(&format!("r{i}"))).collect();
        for batch in all.chunks(700) {
            spool.append(batch).unwrap();
        }
        assert_eq!(spool.pending(), 2500);
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            let chunk = spool.read_chunk(1000, MAX_CHUNK_BYTES).unwrap();
            calls += 1;
            assert!(chunk.records.len() <= 1000);
            // Reading again without marking gives the same chunk (a failed insert retries it).
            let again = spool.read_chunk(1000, MAX_CHUNK_BYTES).unwrap();
            assert_eq!(again.records, chunk.records);
            spool.mark_replayed(&chunk);
            seen.extend(chunk.records.iter().map(|r| r.request_id.clone()));
            if chunk.at_end {
                break;
            }
        }
        assert_eq!(calls, 3);
        let expected: Vec<String> = all.iter().map(|r| r.request_id.clone()).collect();
        assert_eq!(seen, expected);
        assert_eq!(spool.pending(), 0);
        assert!(spool.is_empty());
        // A byte bound stops a chunk early too (but never before one line).
        spool.clear().unwrap();
        spool.append(&all[..10]).unwrap();
        let chunk = spool.read_chunk(1000, 1).unwrap();
        assert_eq!(chunk.records.len(), 1);
        assert!(!chunk.at_end);
        spool.mark_replayed(&chunk);
        // Records appended while a replay is under way queue behind it.
        spool.append(&all[10..12]).unwrap();
        let chunk = spool.read_chunk(1000, MAX_CHUNK_BYTES).unwrap();
        assert_eq!(chunk.records.len(), 11);
        assert_eq!(chunk.records[0].request_id, "r1");
        assert_eq!(chunk.records[10].request_id, "r11");
        assert!(chunk.at_end);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_does_not_swallow_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.append(&[record("a")]).unwrap();
        let mut f = OpenOptions::new().append(true).open(spool.path()).unwrap();
        f.write_all(b"{\"time\":\"2026").unwrap();
        drop(spool);
        let mut reopened = Spool::open(dir.path()).unwrap();
        reopened.append(&[record("b")]).unwrap();
        let ids: Vec<String> = reopened
            .read_all()
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
    }

    #[test]
    fn a_removed_spool_directory_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::open(&spool_dir).unwrap();
        std::fs::remove_dir_all(&spool_dir).unwrap();
        spool.append(&[record("a")]).unwrap();
        assert_eq!(spool.read_all().unwrap().len(), 1);
    }
}
