//! `gatehouse serve`.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, load_config};
use crate::app::{Application, StartError};

pub(super) async fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => return start_failed(e),
    };
    tracing::info!(listen = %app.public_addr(), admin = %app.admin_addr(), "gatehouse serving");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}

fn start_failed(e: StartError) -> ExitCode {
    fail(e.exit_code(), e)
}
