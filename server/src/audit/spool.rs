//! The spool: an append-only, fsync'd JSON-lines file where audit batches wait while the
//! database is unreachable. A line cut short by a crash is skipped (and logged) on replay.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::AuditRecord;

const FILE_NAME: &str = "audit-spool.jsonl";

pub struct Spool {
    path: PathBuf,
    /// Records in the file (counted on open, kept up to date).
    pending: usize,
}

impl Spool {
    /// Opens (creating the directory if needed) the spool in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let pending = match File::open(&path) {
            Ok(f) => BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Spool { path, pending })
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` and fsyncs before returning: a spooled record survives a crash.
    pub fn append(&mut self, records: &[AuditRecord]) -> std::io::Result<()> {
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
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        self.pending += records.len();
        Ok(())
    }

    /// Every spooled record, in the order written.
    pub fn read_all(&self) -> std::io::Result<Vec<AuditRecord>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::error!(line = n + 1, error = %e, "skipping a damaged audit spool line")
                }
            }
        }
        Ok(records)
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
    fn a_removed_spool_directory_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::open(&spool_dir).unwrap();
        std::fs::remove_dir_all(&spool_dir).unwrap();
        spool.append(&[record("a")]).unwrap();
        assert_eq!(spool.read_all().unwrap().len(), 1);
    }
}
