"""Validates a Compose file against the Compose Specification JSON schema.

    python3 tests/compose/validate.py compose.yaml tests/compose/compose_spec.json

Prints one line per problem (path: message) and exits 1 if there is any. The schema is the
compose-spec schema shipped in docker-compose 1.29.2 (Apache-2.0), vendored so the check
runs offline.
"""
import json
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # the test turns this into an install hint
    print(f"missing Python module: {e.name} (pip install jsonschema pyyaml)")
    sys.exit(3)

with open(sys.argv[1]) as f:
    document = yaml.safe_load(f)
with open(sys.argv[2]) as f:
    schema = json.load(f)

errors = sorted(
    jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path)
)
for error in errors:
    print("/".join(str(p) for p in error.path) or "(top)", ":", error.message)
sys.exit(1 if errors else 0)
