//! Policy impact preview (docs/admin.md): which audited decisions a candidate bundle would
//! decide differently from the baseline (the live bundle), users as they are now. The admin
//! API (`POST /admin/api/impact`) and `gatehouse policy impact DIR` share it.
//!
//! A candidate comes from a directory (the files on disk) or an uploaded `.tar.gz`, which is
//! unpacked into a temporary directory and read exactly as a policy directory is read
//! (`BundleFiles::read`), so an upload can hold nothing a directory could not.

use crate::policy::{Bundle, BundleFiles, PolicyError};

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
