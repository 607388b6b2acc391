//! Devices identified by a client certificate fingerprint from a trusted ingress.

use crate::helpers::{Person, spawn_app, spawn_app_with};

const FINGERPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

#[tokio::test]
async fn a_registered_certificate_is_the_device_policies_see() {
    for backend in crate::helpers::BACKENDS {
        let app = spawn_app(backend).await;
        let fin = app.fin_with_certificate_device(FINGERPRINT).await;
        let reports = "https://apps.example.com/reports";
        // The example `reports` route: finance, from a managed device.
        let without = app.verify_as(reports, &fin).await;
        assert_eq!(without.status(), 403, "{backend:?}");
        let with = app
            .verify(reports)
            .header("Cookie", app.cookie(&fin))
            .header("X-Client-Cert-Fingerprint", FINGERPRINT)
            .send()
            .await
            .unwrap();
        assert_eq!(with.status(), 200, "{backend:?}");
        let nginx_style = app
            .verify(reports)
            .header("Cookie", app.cookie(&fin))
            .header(
                "X-SSL-Client-Fingerprint",
                FINGERPRINT.replace(':', "").to_lowercase(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(nginx_style.status(), 200, "{backend:?}");
        let unknown = app
            .verify(reports)
            .header("Cookie", app.cookie(&fin))
            .header("X-Client-Cert-Fingerprint", "00".repeat(32))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 403, "{backend:?}");
    }
}

#[tokio::test]
async fn fingerprints_from_untrusted_peers_are_ignored() {
    // A route on the verify path itself, so an untrusted peer's request line matches it.
    let dir = crate::helpers::bundle_dir(&[(
        "routes.yaml",
        "routes:\n  - name: managed-only\n    path: /auth/verify\n    cel: \"device.managed\"\n",
    )]);
    let mut options =
        crate::helpers::AppOptions::with_policies(crate::helpers::Backend::Sqlite, dir.path());
    options.extra_yaml = "trusted_proxies: [10.99.0.0/16]\n".into();
    let app = spawn_app_with(options).await;
    let fin = app
        .login(&Person {
            email: "fin@example.com",
            groups: &["finance"],
            tenant: None,
        })
        .await;
    let normalized = gatehouse::session::device::normalize_fingerprint(FINGERPRINT).unwrap();
    app.store
        .register_cert_device(&normalized, true, "high", None, chrono::Utc::now())
        .await
        .unwrap();
    let forged = app
        .client
        .get(format!("{}/auth/verify", app.base))
        .header("Cookie", app.cookie(&fin))
        .header("X-Client-Cert-Fingerprint", FINGERPRINT)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}
