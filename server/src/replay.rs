//! Re-deciding audited requests (docs/admin.md): the playground's replay of one record
//! against the live bundle, and the impact preview — which audited decisions a candidate
//! bundle would decide differently from the baseline (the live bundle). Both describe each
//! record as the admin playground describes a request (`gatehouse_core::dry_run::DryRun`)
//! with the user and device **as they are now** in the store, and decide it through the one
//! decision path verify takes. `gatehouse policy impact DIR` shares it.
//!
//! A candidate comes from a directory (the files on disk) or an uploaded `.tar.gz`, which is
//! unpacked into a temporary directory and read exactly as a policy directory is read
//! (`BundleFiles::read`), so an upload can hold nothing a directory could not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_core::decide::Settings;
use gatehouse_core::dry_run::{DescribedDevice, DescribedUser, DryRun, DryRunAnswer};

use crate::policy::{Bundle, BundleFiles, PolicyError};
use crate::store::{AuditedDecision, Store, StoreError};

/// How much an uploaded bundle may unpack to: far above any real bundle, far below what
/// would hurt the admin listener.
const MAX_UNPACKED_BYTES: u64 = 16 * 1024 * 1024;
const MAX_ENTRIES: usize = 10_000;

/// Why a candidate bundle could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    /// The upload is not a gzip'd tar, or breaks a limit; the message says which.
    #[error("{0}")]
    Archive(String),
    /// The bundle does not compile or its tests fail (`file:line:col: message`).
    #[error("{0}")]
    Refused(String),
}

/// Reads the bundle in a `.tar.gz`: regular files only (links are skipped, so nothing can
/// point outside the upload), no path outside the archive's root, bounded in size and
/// number. Paths in errors are shown under `upload/`.
pub fn files_from_tar_gz(bytes: &[u8]) -> Result<BundleFiles, CandidateError> {
    let dir = tempfile::tempdir()
        .map_err(|e| CandidateError::Archive(format!("no temporary directory: {e}")))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| CandidateError::Archive(format!("not a .tar.gz: {e}")))?;
    let mut unpacked: u64 = 0;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            return Err(CandidateError::Archive(format!(
                "the archive has more than {MAX_ENTRIES} entries"
            )));
        }
        let mut entry =
            entry.map_err(|e| CandidateError::Archive(format!("not a .tar.gz: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            // Symlinks and hard links: a bundle needs none, and they could name files
            // outside the upload.
            continue;
        }
        unpacked += entry.size();
        if unpacked > MAX_UNPACKED_BYTES {
            return Err(CandidateError::Archive(format!(
                "the archive unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES / 1024 / 1024
            )));
        }
        // `unpack_in` refuses absolute paths and `..`; it answers false for those.
        let inside = entry
            .unpack_in(dir.path())
            .map_err(|e| CandidateError::Archive(format!("cannot unpack: {e}")))?;
        if !inside {
            return Err(CandidateError::Archive(
                "the archive names a path outside its root".into(),
            ));
        }
    }
    let mut files =
        BundleFiles::read(dir.path()).map_err(|e| CandidateError::Refused(e.to_string()))?;
    files.display_root = "upload".into();
    Ok(files)
}

/// Builds a candidate bundle (compile, tests, smoke evaluation) off the async workers.
pub async fn build_candidate(files: BundleFiles) -> Result<Bundle, CandidateError> {
    tokio::task::spawn_blocking(move || Bundle::build(&files))
        .await
        .map_err(|e| CandidateError::Refused(format!("the build task failed: {e}")))?
        .map_err(|e: PolicyError| CandidateError::Refused(e.to_string()))
}

/// Describes audited records as requests, with each user and device as the store has them
/// now (looked up once per run).
pub struct Describer<'a> {
    store: &'a Store,
    users: HashMap<String, Option<DescribedUser>>,
    devices: HashMap<String, Option<DescribedDevice>>,
}

impl<'a> Describer<'a> {
    pub fn new(store: &'a Store) -> Describer<'a> {
        Describer {
            store,
            users: HashMap::new(),
            devices: HashMap::new(),
        }
    }

    /// The request `record` audited, described for a dry run: its method, host and
    /// normalized path (the query is not audited; the scheme is taken as `https`), its
    /// client address, its time, and its user and device as they are now. A user deleted
    /// since is decided as nobody (as verify would treat their session).
    pub async fn describe(&mut self, record: &AuditedDecision) -> Result<DryRun, StoreError> {
        let user = match &record.email {
            Some(email) => self.user(email).await?,
            None => None,
        };
        let device = match (&user, &record.device_id) {
            (Some(_), Some(id)) => self.device(id).await?,
            _ => None,
        };
        let mut headers = BTreeMap::new();
        if let Some(ip) = &record.client_ip {
            headers.insert("X-Forwarded-For".to_string(), ip.clone());
        }
        Ok(DryRun {
            url: format!(
                "https://{}{}",
                record.host.as_deref().unwrap_or("localhost"),
                record.path.as_deref().unwrap_or("/")
            ),
            method: record.method.clone(),
            headers,
            user,
            device,
            time: Some(record.time.to_rfc3339()),
        })
    }

    async fn user(&mut self, email: &str) -> Result<Option<DescribedUser>, StoreError> {
        if let Some(known) = self.users.get(email) {
            return Ok(known.clone());
        }
        let described = self
            .store
            .user_by_email(email)
            .await?
            .map(|u| DescribedUser {
                email: u.user.email.clone(),
                id: Some(u.user.id.clone()),
                subject: u.user.subject.clone(),
                name: u.user.name.clone(),
                username: u.user.username.clone(),
                groups: u.groups,
                roles: u.roles,
                tenants: u.tenants.into_iter().collect(),
                claims: Some(u.user.claims.0),
                amr: Vec::new(),
            });
        self.users.insert(email.to_string(), described.clone());
        Ok(described)
    }

    async fn device(&mut self, id: &str) -> Result<Option<DescribedDevice>, StoreError> {
        if let Some(known) = self.devices.get(id) {
            return Ok(known.clone());
        }
        let described = self.store.device_by_id(id).await?.map(|d| DescribedDevice {
            managed: d.managed,
            trust: Some(d.trust),
            posture: Some(d.posture.0),
            id: Some(d.id),
            cert_fingerprint: d.cert_fingerprint,
        });
        self.devices.insert(id.to_string(), described.clone());
        Ok(described)
    }
}

/// One side of a comparison: what a bundle answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Answer {
    pub route: String,
    pub outcome: String,
    pub status: u16,
    pub reason: Option<String>,
}

impl From<&DryRunAnswer> for Answer {
    fn from(a: &DryRunAnswer) -> Answer {
        Answer {
            route: a.route.clone(),
            outcome: a.outcome.to_string(),
            status: a.status,
            reason: a.reason.clone(),
        }
    }
}

/// An audited request the candidate decides differently.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub id: i64,
    pub time: DateTime<Utc>,
    pub request_id: String,
    pub email: Option<String>,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    /// What was decided at the time (for reference: users and bundles have changed since).
    pub audited: Answer,
    /// The baseline bundle's answer now.
    pub before: Answer,
    /// The candidate's answer.
    pub after: Answer,
}

/// The changes of one route (the candidate's route for the request).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteChanges {
    pub route: String,
    pub changes: Vec<Change>,
}

/// What a candidate bundle would change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImpactReport {
    pub candidate_version: String,
    pub baseline_version: String,
    pub since: DateTime<Utc>,
    /// Audited requests re-decided.
    pub evaluated: usize,
    /// Of those, decided differently.
    pub changed: usize,
    /// More requests were audited in the window than `limit`: the oldest were not re-decided.
    pub truncated: bool,
    /// Grouped by route, the route with the most changes first.
    pub routes: Vec<RouteChanges>,
}

/// Re-decides the newest `limit` decisions audited since `since` with `baseline` and
/// `candidate`, and reports those whose outcome, status or reason differ.
pub async fn impact(
    store: &Store,
    settings: &Settings,
    baseline: Arc<Bundle>,
    candidate: Arc<Bundle>,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<ImpactReport, StoreError> {
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut records = store.audited_decisions_since(since, fetch).await?;
    let truncated = records.len() > limit;
    records.truncate(limit);
    let mut describer = Describer::new(store);
    let mut described = Vec::with_capacity(records.len());
    for record in records {
        let dry_run = describer.describe(&record).await?;
        described.push((record, dry_run));
    }
    let settings = settings.clone();
    let (candidate_version, baseline_version) =
        (candidate.version.clone(), baseline.version.clone());
    // Deciding is CPU work (two policy evaluations per record): off the async workers.
    let changes = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let mut changes = Vec::new();
        for (record, dry_run) in &described {
            let (Ok(before), Ok(after)) = (
                dry_run.answer(&baseline, &settings, now),
                dry_run.answer(&candidate, &settings, now),
            ) else {
                // Only a malformed time fails a description, and ours are RFC 3339.
                continue;
            };
            let (before, after) = (Answer::from(&before), Answer::from(&after));
            if (&before.outcome, before.status, &before.reason)
                != (&after.outcome, after.status, &after.reason)
            {
                changes.push(change(record, before, after));
            }
        }
        (described.len(), changes)
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("the impact task failed: {e}")))?;
    let (evaluated, changes) = changes;
    let changed = changes.len();
    let mut by_route: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for c in changes {
        by_route.entry(c.after.route.clone()).or_default().push(c);
    }
    let mut routes: Vec<RouteChanges> = by_route
        .into_iter()
        .map(|(route, changes)| RouteChanges { route, changes })
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.changes.len()));
    Ok(ImpactReport {
        candidate_version,
        baseline_version,
        since,
        evaluated,
        changed,
        truncated,
        routes,
    })
}

fn change(record: &AuditedDecision, before: Answer, after: Answer) -> Change {
    Change {
        id: record.id,
        time: record.time,
        request_id: record.request_id.clone(),
        email: record.email.clone(),
        method: record.method.clone().unwrap_or_default(),
        host: record.host.clone(),
        path: record.path.clone().unwrap_or_default(),
        audited: Answer {
            route: record.route.clone().unwrap_or_default(),
            outcome: record.decision.clone(),
            status: u16::try_from(record.status).unwrap_or(0),
            reason: record.reason.clone(),
        },
        before,
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_upload_is_read_like_a_directory() {
        let bytes = tar_gz(&[
            ("./routes.yaml", b"routes: []\n"),
            ("pkg/a.rego", b"package a\n"),
            ("notes.txt", b"ignored"),
        ]);
        let files = files_from_tar_gz(&bytes).unwrap();
        let paths: Vec<&str> = files.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["pkg/a.rego", "routes.yaml"]);
        assert_eq!(files.display_root, "upload");
    }

    #[test]
    fn uploads_cannot_escape_or_be_anything_but_a_tar_gz() {
        assert!(matches!(
            files_from_tar_gz(b"not gzip at all"),
            Err(CandidateError::Archive(_))
        ));
        // A link to a file outside the upload is skipped, not followed.
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "routes.yaml", "/etc/passwd")
            .unwrap();
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        match files_from_tar_gz(&bytes) {
            Ok(files) => assert!(files.files.is_empty(), "{:?}", files.files),
            Err(CandidateError::Refused(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
