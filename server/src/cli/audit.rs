//! `gatehouse audit query`.

use std::process::ExitCode;

use super::{AuditCommand, OutputFormat, connect, fail};

pub(super) async fn audit(command: AuditCommand) -> ExitCode {
    let AuditCommand::Query {
        user,
        route,
        decision,
        tenant,
        since,
        until,
        limit,
        format,
        config,
    } = command;
    let (_, store) = match connect(&config.config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let filter = crate::store::AuditFilter {
        email: user,
        route,
        decision,
        tenant,
        since,
        until,
        limit,
    };
    let rows = match store.query_audit(&filter).await {
        Ok(rows) => rows,
        Err(e) => return fail(1, e),
    };
    match format {
        OutputFormat::Json => {
            for row in &rows {
                println!("{}", serde_json::to_string(row).unwrap_or_default());
            }
        }
        OutputFormat::Table => {
            println!(
                "{:<27} {:<15} {:>3}  {:<16} {:<24} {:<6} {:<28} REASON",
                "TIME", "DECISION", "ST", "ROUTE", "USER", "METHOD", "PATH"
            );
            for r in &rows {
                println!(
                    "{:<27} {:<15} {:>3}  {:<16} {:<24} {:<6} {:<28} {}",
                    r.time,
                    r.decision,
                    r.status,
                    r.route.as_deref().unwrap_or("-"),
                    r.email.as_deref().unwrap_or("-"),
                    r.method.as_deref().unwrap_or("-"),
                    r.path.as_deref().unwrap_or("-"),
                    r.reason.as_deref().unwrap_or("")
                );
            }
            eprintln!("{} record(s)", rows.len());
        }
    }
    ExitCode::SUCCESS
}
