"""Checks an Envoy configuration file against Envoy's v3 API protos, field by field.

    python3 tests/k8s/envoy_check.py PROTO_DIR envoy.yaml

No Envoy binary can be installed where these tests run, so `envoy --mode validate` is not
available: this reads the file as Envoy does — YAML as protobuf JSON into
envoy.config.bootstrap.v3.Bootstrap, each `typed_config` as the message its `@type` names —
and refuses any key that is not a field there, any enum value that is not one, any scalar
of the wrong type. PROTO_DIR holds the .proto files of Envoy's data-plane API that the file
uses, vendored from the envoy-types crate (tests/k8s/envoy-protos/README.md). Field
constraints (protoc-gen-validate rules) and cross-references (cluster names) are checked by
tests/k8s/envoy.rs.

Exits 1 with one line per problem, 0 with `OK`.
"""
import sys

import protos  # beside this file

try:
    import yaml
except ImportError as e:
    print(f"missing Python module: {e.name} (pip install pyyaml)")
    sys.exit(3)

schema = protos.Schema().read_dir(sys.argv[1])
with open(sys.argv[2]) as f:
    config = yaml.safe_load(f)
errors = []
schema.check(config, "envoy.config.bootstrap.v3.Bootstrap", "(bootstrap)", errors)
for error in errors:
    print(error)
print("OK" if not errors else f"{len(errors)} problem(s)")
sys.exit(1 if errors else 0)
