//! `gatehouse session create|revoke`.

use std::process::ExitCode;

use super::{SessionCommand, connect, fail};
use crate::session::token::CookieSigner;
use crate::session::{SessionGrant, issue_session};

pub(super) async fn session(command: SessionCommand) -> ExitCode {
    match command {
        SessionCommand::Create {
            email,
            groups,
            tenant,
            tenant_role,
            name,
            username,
            ttl,
            config,
        } => {
            let groups: Vec<String> = groups
                .into_iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            // `--groups` splits on commas, so no name here has one; the other rules the
            // IdP's groups follow (no control characters, at most 256 bytes) apply too.
            if let Some((group, problem)) = groups
                .iter()
                .find_map(|g| crate::oidc::claims::group_name_problem(g).map(|p| (g, p)))
            {
                return fail(2, format!("--groups: the group {group:?} {problem}"));
            }
            let (config, store) = match connect(&config.config).await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let signer = CookieSigner::new(config.cookie.secret.expose().as_bytes());
            let grant = SessionGrant {
                email,
                name,
                username,
                store_groups: Some(groups),
                tenant: tenant.map(|t| (t, tenant_role)),
                ttl: ttl.unwrap_or(config.session.ttl.0),
                amr: vec!["cli".into()],
                ip: None,
                user_agent: Some("gatehouse-cli".into()),
            };
            match issue_session(&store, &signer, &grant, chrono::Utc::now()).await {
                Ok(issued) => {
                    // stdout carries only the cookie value, for scripts.
                    println!("{}", issued.cookie_value);
                    eprintln!(
                        "session {} for {} expires {}; send it as cookie `{}` or `Authorization: Bearer`",
                        issued.session_id,
                        grant.email,
                        issued.expires_at.to_rfc3339(),
                        config.cookie.name
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        SessionCommand::Revoke { email, all, config } => {
            let (_, store) = match connect(&config.config).await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let now = chrono::Utc::now();
            let result = match (&email, all) {
                (_, true) => store.revoke_all_sessions("cli: revoke --all", now).await,
                (Some(e), false) => {
                    store
                        .revoke_sessions_by_email(e, "cli: revoke --email", now)
                        .await
                }
                (None, false) => return fail(2, "give --email or --all"),
            };
            match result {
                Ok(hashes) => {
                    let who = if all {
                        "all sessions".to_string()
                    } else {
                        email.clone().unwrap_or_default()
                    };
                    let record = crate::audit::AuditRecord::event(
                        "revoke",
                        "revoked",
                        email.as_deref(),
                        Some(format!("cli: {} session(s) of {who}", hashes.len())),
                    );
                    if let Err(e) = store.insert_audit(&[record]).await {
                        eprintln!("warning: revocation done but not audited: {e}");
                    }
                    println!("revoked {} session(s)", hashes.len());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}
