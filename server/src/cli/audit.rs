//! `gatehouse audit query`: one page of `Store::search_audit`, newest first; the next
//! page's `--cursor` goes to stderr (keyset pagination, docs/audit.md).

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
        cursor,
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
        cursor,
        limit,
    };
    let page = match store.search_audit(&filter).await {
        Ok(page) => page,
        Err(e) => return fail(1, e),
    };
    let rows = &page.items;
    match format {
        OutputFormat::Json => {
            for row in rows {
                println!("{}", serde_json::to_string(row).unwrap_or_default());
            }
        }
        OutputFormat::Table => {
            println!(
                "{:<27} {:<15} {:>3}  {:<16} {:<24} {:<6} {:<28} REASON",
                "TIME", "DECISION", "ST", "ROUTE", "USER", "METHOD", "PATH"
            );
            for r in rows {
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
    // On stderr, so `--format json` output stays one object per line.
    if let Some(next) = page.next_cursor {
        eprintln!("more: --cursor {next}");
    }
    ExitCode::SUCCESS
}
