"""Validates Kubernetes manifests offline, the way the API server would check their shape.

    python3 tests/k8s/validate.py CRD_DIR FILE... (or - for a multi-document stream on stdin)

Each document is checked against:
- built-in kinds: the Kubernetes OpenAPI schemas shipped by PyPI's `kubernetes-validate`,
  strict (an unknown field is an error, as `kubectl apply` with server-side field validation
  makes it), for the oldest and the newest Kubernetes release named below;
- custom resources: the openAPIV3Schema of the served version of their CRD, found in
  CRD_DIR (tests/k8s/crds, vendored from the projects' releases, see its README), also
  strict: an object with `properties` accepts no other field unless the CRD marks it
  `x-kubernetes-preserve-unknown-fields` (the API server prunes or refuses those);
- Istio's mesh configuration (the `mesh` key of the `istio` ConfigMap): the fields of
  `MeshConfig.ExtensionProvider` in Istio's mesh/v1alpha1/config.proto (in CRD_DIR).

CEL rules of CRDs (`x-kubernetes-validations`) are evaluated by cel_rules.rs.

Prints one line per document (`OK kind/name (schema)`) or per problem, and exits 1 if any
document is invalid, 3 if a Python module is missing.
"""
import copy
import os
import re
import sys

import protos  # beside this file

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # the test turns this into an install hint
    print(f"missing Python module: {e.name} (pip install kubernetes-validate pyyaml jsonschema)")
    sys.exit(3)

# The oldest Kubernetes minor release still maintained upstream when this was written, and
# the newest `kubernetes-validate` knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def load_crds(crd_dir):
    """(group, version, kind) -> the served version's openAPIV3Schema."""
    crds = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(crd_dir, name)) as f:
            # libyaml's loader when PyYAML has it: the CRDs are megabytes of YAML.
            for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served"):
                        schema = version["schema"]["openAPIV3Schema"]
                        key = (spec["group"], version["name"], spec["names"]["kind"])
                        crds[key] = (strict(schema), name)
    return crds


def strict(schema):
    """The schema with unknown fields refused wherever the API server would not keep them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # Every object may carry apiVersion, kind and metadata, whether its CRD's schema names
    # them or not (Istio's do not); metadata is checked by the API server's own ObjectMeta
    # rules, which the CRD leaves as `type: object`.
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})
    walk(schema)
    return schema


def validate(doc, crds, messages):
    """Returns (schema description, [errors])."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    group, _, version = api_version.rpartition("/")
    if (group, version, kind) in crds:
        schema, source = crds[(group, version, kind)]
        # OpenAPI 3.0 schemas follow JSON Schema draft 4 (a boolean exclusiveMaximum).
        validator = jsonschema.Draft4Validator(schema)
        errors = [
            f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        ]
        return f"CRD {source}", errors
    if "." in group and not group.endswith(".k8s.io"):
        return None, [f"no CRD for {api_version} {kind} in the CRD directory"]
    errors = []
    for k8s in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path) or "(top)"
            errors.append(f"Kubernetes {k8s}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"Kubernetes {k8s} has no {api_version} {kind}")
    if kind == "ConfigMap" and doc.get("metadata", {}).get("name") == "istio":
        mesh = yaml.safe_load(doc.get("data", {}).get("mesh", "")) or {}
        messages.check(mesh, "istio.mesh.v1alpha1.MeshConfig", "data.mesh", errors)
        return f"Kubernetes {', '.join(KUBERNETES_VERSIONS)} + Istio MeshConfig", errors
    return f"Kubernetes {', '.join(KUBERNETES_VERSIONS)}", errors


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    crd_dir, files = sys.argv[1], sys.argv[2:]
    crds = load_crds(crd_dir)
    messages = protos.Schema().read_file(os.path.join(crd_dir, "istio-mesh-config.proto"))
    grpc_provider = "istio.mesh.v1alpha1.MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider"
    if "fail_open" not in messages.messages.get(grpc_provider, {}):
        print(f"istio-mesh-config.proto: {grpc_provider} not read")
        sys.exit(1)
    failed = False
    for name in files:
        text = sys.stdin.read() if name == "-" else open(name).read()
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            label = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            schema, errors = validate(doc, crds, messages)
            for error in errors:
                print(f"{label}: {error}")
            if errors:
                failed = True
            else:
                print(f"OK {label} ({schema})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
