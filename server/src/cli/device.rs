//! `gatehouse device list|set|register`.

use std::path::Path;
use std::process::ExitCode;

use super::{ConfigArg, DeviceCommand, OutputFormat, connect, fail};

pub(super) async fn device(command: DeviceCommand) -> ExitCode {
    match command {
        DeviceCommand::List {
            email,
            format,
            config,
        } => device_list(email.as_deref(), format, &config.config).await,
        DeviceCommand::Set {
            id,
            managed,
            trust,
            config,
        } => device_set(&id, managed, trust.as_deref(), &config.config).await,
        DeviceCommand::Register {
            cert_fingerprint,
            managed,
            trust,
            email,
            config,
        } => device_register(&cert_fingerprint, managed, &trust, email, &config.config).await,
    }
}

async fn device_list(email: Option<&str>, format: OutputFormat, config: &Path) -> ExitCode {
    let (_, store) = match connect(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let devices = match store.list_devices(email).await {
        Ok(d) => d,
        Err(e) => return fail(1, e),
    };
    match format {
        OutputFormat::Json => {
            for d in &devices {
                println!("{}", serde_json::to_string(d).unwrap_or_default());
            }
        }
        OutputFormat::Table => {
            println!(
                "{:<36}  {:<28}  {:<11}  {:<7}  {:<6}  LAST SEEN",
                "ID", "USER", "KIND", "MANAGED", "TRUST"
            );
            for d in &devices {
                println!(
                    "{:<36}  {:<28}  {:<11}  {:<7}  {:<6}  {}",
                    d.id,
                    d.email.as_deref().unwrap_or("-"),
                    if d.browser { "browser" } else { "certificate" },
                    d.managed,
                    d.trust,
                    d.last_seen_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    ExitCode::SUCCESS
}

async fn device_set(
    id: &str,
    managed: Option<bool>,
    trust: Option<&str>,
    config: &Path,
) -> ExitCode {
    if managed.is_none() && trust.is_none() {
        return fail(2, "nothing to set: give --managed and/or --trust");
    }
    let (_, store) = match connect(config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let change = crate::store::DeviceChange {
        managed,
        trust: trust.map(str::to_string),
        posture: None,
    };
    match store.update_device(id, &change).await {
        Ok(true) => {
            let record = crate::audit::AuditRecord::event(
                "admin",
                "device_updated",
                None,
                Some(format!("{id} managed={managed:?} trust={trust:?}")),
            );
            if let Err(e) = store.insert_audit(&[record]).await {
                eprintln!("warning: device updated but not audited: {e}");
            }
            let detail = serde_json::json!({"managed": managed, "trust": trust});
            if let Err(e) = store
                .record_admin_action(
                    "cli",
                    "device_updated",
                    Some(id),
                    &detail,
                    chrono::Utc::now(),
                )
                .await
            {
                eprintln!("warning: admin action not recorded: {e}");
            }
            eprintln!("device {id} updated");
            ExitCode::SUCCESS
        }
        Ok(false) => fail(1, format!("no device with id {id}")),
        Err(crate::store::StoreError::Invalid(message)) => fail(2, message),
        Err(e) => fail(1, e),
    }
}

async fn device_register(
    cert_fingerprint: &str,
    managed: bool,
    trust: &str,
    email: Option<String>,
    config: &Path,
) -> ExitCode {
    let config = ConfigArg {
        config: config.to_path_buf(),
    };
    let Some(fingerprint) = crate::session::device::normalize_fingerprint(cert_fingerprint) else {
        return fail(
            2,
            "--cert-fingerprint must be a hex SHA-256 or SHA-1 fingerprint",
        );
    };
    let (_, store) = match connect(&config.config).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    match store
        .register_cert_device(
            &fingerprint,
            managed,
            trust,
            email.as_deref(),
            chrono::Utc::now(),
        )
        .await
    {
        Ok(id) => {
            let record = crate::audit::AuditRecord::event(
                "admin",
                "device_registered",
                email.as_deref(),
                Some(format!("{fingerprint} managed={managed} trust={trust}")),
            );
            if let Err(e) = store.insert_audit(&[record]).await {
                eprintln!("warning: device registered but not audited: {e}");
            }
            println!("{id}");
            eprintln!("device {id}: {fingerprint}, managed: {managed}, trust: {trust}");
            ExitCode::SUCCESS
        }
        Err(crate::store::StoreError::Invalid(message)) => fail(2, message),
        Err(e) => fail(1, e),
    }
}
