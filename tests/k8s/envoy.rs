//! `deploy/envoy/envoy.yaml` without an Envoy binary (none installs here, so `envoy --mode
//! validate` cannot run): every field checked against Envoy's v3 protos by
//! `envoy_check.py`, then what the recipe depends on — the ext_authz filter before the
//! router, over gRPC (transport V3) to Gatehouse's grpc port with HTTP/2, failing closed,
//! without the body; Gatehouse's own pages not asked about; every route's cluster defined.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{repo_root, require_binary};

fn check(file: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(require_binary("python3", "python3"))
        .arg(repo_root().join("tests/k8s/envoy_check.py"))
        .arg(repo_root().join("tests/k8s/envoy-protos"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "envoy_check.py crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn envoy_path() -> PathBuf {
    repo_root().join("deploy/envoy/envoy.yaml")
}

#[test]
fn envoy_yaml_fields_are_envoys_v3_api() {
    let (code, out) = check(&envoy_path());
    assert_eq!(code, Some(0), "{out}");
    // The check does refuse: a misspelt field, an enum value that is not one, a bad type.
    let text = std::fs::read_to_string(envoy_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, named) in [
        (
            "failure_mode_allow: false",
            "failure_mode_alow: false",
            "failure_mode_alow",
        ),
        (
            "transport_api_version: V3",
            "transport_api_version: V4",
            "V4",
        ),
        ("port_value: 9191", "port_value: nine", "port_value"),
        ("disabled: true", "disable: true", "disable"),
    ] {
        assert!(text.contains(from), "envoy.yaml no longer has `{from}`");
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (code, out) = check(&path);
        assert_eq!(code, Some(1), "`{to}` passed: {out}");
        assert!(out.contains(named), "{out}");
    }
}

fn filter<'a>(hcm: &'a Value, name: &str) -> &'a Value {
    hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} filter"))
}

#[test]
fn envoy_asks_gatehouse_over_grpc_and_fails_closed() {
    let config: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(envoy_path()).unwrap()).unwrap();
    let k8s = crate::manifests::shipped_config();
    let port = crate::manifests::port_of;
    let hcm = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["use_remote_address"], true);
    let names: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["envoy.filters.http.ext_authz", "envoy.filters.http.router"],
        "ext_authz decides before the router forwards"
    );
    let authz = &filter(hcm, "envoy.filters.http.ext_authz")["typed_config"];
    assert_eq!(authz["transport_api_version"], "V3");
    assert_eq!(authz["failure_mode_allow"], false);
    assert!(authz.get("with_request_body").is_none());
    assert!(authz.get("http_service").is_none(), "gRPC, not HTTP");

    let clusters: Vec<&Value> = config["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let cluster = |name: &str| -> &Value {
        clusters
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    };
    let endpoint_port = |c: &Value| {
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"]
            .as_u64()
            .unwrap()
    };
    let grpc = cluster(
        authz["grpc_service"]["envoy_grpc"]["cluster_name"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(endpoint_port(grpc), port(&k8s["grpc_listen"]));
    assert!(
        grpc["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            ["explicit_http_config"]["http2_protocol_options"]
            .is_object(),
        "gRPC needs HTTP/2 to Gatehouse"
    );

    // Every route's cluster exists; Gatehouse's pages go to its HTTP listener unasked.
    let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    for route in routes {
        cluster(route["route"]["cluster"].as_str().unwrap());
    }
    for prefix in ["/auth/", "/oauth2/"] {
        let route = routes
            .iter()
            .find(|r| r["match"]["prefix"] == prefix)
            .unwrap_or_else(|| panic!("no route for {prefix}"));
        assert_eq!(
            route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"],
            true
        );
        let target = cluster(route["route"]["cluster"].as_str().unwrap());
        assert_eq!(endpoint_port(target), port(&k8s["listen"]));
    }
    // The app's route is asked about.
    let app = routes.iter().find(|r| r["match"]["prefix"] == "/").unwrap();
    assert!(app.get("typed_per_filter_config").is_none());
}

/// The fields of Envoy's ext_authz service Gatehouse's gRPC answers and questions are made
/// of (DESIGN §11 in the issue's words), present in the protos the server is built from.
#[test]
fn the_ext_authz_fields_gatehouse_speaks_exist_in_the_protos() {
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
import protos
s = protos.Schema().read_dir(sys.argv[2])
for spec in sys.argv[3:]:
    message, field = spec.rsplit(".", 1)
    print(spec, field in s.messages.get("envoy.service.auth.v3." + message, {}))
"#;
    let fields = [
        "CheckRequest.attributes",
        "AttributeContext.source",
        "AttributeContext.request",
        "AttributeContext.Peer.address",
        "AttributeContext.Request.http",
        "AttributeContext.HttpRequest.method",
        "AttributeContext.HttpRequest.host",
        "AttributeContext.HttpRequest.path",
        "AttributeContext.HttpRequest.scheme",
        "AttributeContext.HttpRequest.headers",
        "CheckResponse.status",
        "CheckResponse.ok_response",
        "CheckResponse.denied_response",
        "OkHttpResponse.headers",
        "OkHttpResponse.headers_to_remove",
        "DeniedHttpResponse.status",
        "DeniedHttpResponse.headers",
        "DeniedHttpResponse.body",
    ];
    let out = Command::new(require_binary("python3", "python3"))
        .arg("-c")
        .arg(script)
        .arg(repo_root().join("tests/k8s"))
        .arg(repo_root().join("tests/k8s/envoy-protos"))
        .args(fields)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in fields {
        assert!(text.contains(&format!("{field} True")), "{field}: {text}");
    }
}
