//! `gatehouse migrate`.

use std::path::Path;
use std::process::ExitCode;

use super::connect;

pub(super) async fn migrate(path: &Path) -> ExitCode {
    match connect(path).await {
        Ok((_, store)) => {
            eprintln!("migrations applied ({})", store.backend_name());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
