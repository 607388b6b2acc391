"""Protocol Buffers message definitions, read from .proto files, and a check of a YAML/JSON
document against them as protobuf's JSON mapping reads it (the way Envoy reads its YAML
configuration and istiod its mesh config): every key must be a field of the message at that
place (snake_case or lowerCamelCase), enums take one of their value names, scalars their
type, `google.protobuf.Any` its `@type` message, well-known types their JSON form.

Used by validate.py (Istio's mesh config) and envoy_check.py (deploy/envoy/envoy.yaml).
Not a full protobuf parser: enough of the grammar for the message, enum, oneof and map
declarations of Envoy's and Istio's API files.
"""
import os
import re

SCALARS = {
    "string": str,
    "bytes": str,
    "bool": bool,
    "double": (int, float),
    "float": (int, float),
}
INTEGERS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64"}
WRAPPERS = {
    "google.protobuf.BoolValue": bool,
    "google.protobuf.StringValue": str,
    "google.protobuf.UInt32Value": int,
    "google.protobuf.UInt64Value": int,
    "google.protobuf.Int32Value": int,
    "google.protobuf.Int64Value": int,
    "google.protobuf.DoubleValue": (int, float),
    "google.protobuf.FloatValue": (int, float),
}
DURATION = re.compile(r"-?\d+(\.\d+)?s")


class Schema:
    def __init__(self):
        self.messages = {}  # full name -> {field: (type, repeated, is_map)}
        self.enums = {}  # full name -> {value names}
        self.scope = {}  # full name -> package-qualified scope used for resolution

    def read_dir(self, root):
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                if name.endswith(".proto"):
                    self.read_file(os.path.join(dirpath, name))
        return self

    def read_file(self, path):
        with open(path) as f:
            text = re.sub(r"//[^\n]*", "", f.read())
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        package = ""
        m = re.search(r"\bpackage\s+([\w.]+)\s*;", text)
        if m:
            package = m.group(1)
        # Drop option blocks such as `option (x) = {...};` and field options `[ ... ]`.
        text = re.sub(r"\[[^\[\]]*(\[[^\[\]]*\][^\[\]]*)*\]", "", text)
        stack = []  # (kind, full name)
        pattern = re.compile(
            r"(?P<open>(?P<kind>message|enum|oneof|service|extend)\s+(?P<name>[\w.]+)\s*\{)"
            r"|(?P<rpc>rpc\s+[^{;]*\{)"
            r"|(?P<close>\})"
            r"|(?P<option>option\s+[^;]*;)"
            r"|(?P<reserved>(reserved|extensions)\s+[^;]*;)"
            r"|(?P<map>(repeated\s+)?map\s*<\s*(?P<k>[\w.]+)\s*,\s*(?P<v>[\w.]+)\s*>\s*(?P<mname>\w+)\s*=\s*\d+\s*;)"
            r"|(?P<field>(?P<label>repeated\s+|optional\s+)?(?P<type>[\w.]+)\s+(?P<fname>\w+)\s*=\s*\d+\s*;)"
            r"|(?P<value>(?P<vname>\w+)\s*=\s*-?\d+\s*;)"
        )
        for token in pattern.finditer(text):
            if token.group("open"):
                kind, name = token.group("kind"), token.group("name")
                owner = next((s[1] for s in reversed(stack) if s[0] == "message"), None)
                if kind in ("message", "enum"):
                    full = f"{owner}.{name}" if owner else (f"{package}.{name}" if package else name)
                    stack.append((kind, full))
                    if kind == "message":
                        self.messages[full] = {}
                    else:
                        self.enums[full] = set()
                    self.scope[full] = full
                elif kind == "oneof":
                    stack.append(("oneof", owner))
                else:
                    stack.append((kind, None))
            elif token.group("rpc"):
                stack.append(("rpc", None))
            elif token.group("close"):
                if stack:
                    stack.pop()
            elif not stack:
                continue
            elif token.group("map") and stack[-1][0] in ("message", "oneof"):
                self.messages[stack[-1][1]][token.group("mname")] = (token.group("v"), False, True)
            elif token.group("field") and stack[-1][0] in ("message", "oneof"):
                repeated = (token.group("label") or "").strip() == "repeated"
                self.messages[stack[-1][1]][token.group("fname")] = (token.group("type"), repeated, False)
            elif token.group("value") and stack[-1][0] == "enum":
                self.enums[stack[-1][1]].add(token.group("vname"))
        return self

    def resolve(self, type_, scope):
        """The full name of `type_` as referenced from message `scope` (protobuf's rule:
        innermost scope outwards)."""
        if type_.startswith("."):
            return type_[1:]
        parts = scope.split(".")
        while parts:
            candidate = ".".join(parts + [type_])
            if candidate in self.messages or candidate in self.enums:
                return candidate
            parts.pop()
        return type_

    def check(self, value, message, where, errors):
        fields = self.messages.get(message)
        if fields is None:
            errors.append(f"{where}: message {message} is not in the vendored protos")
            return
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object ({message})")
            return
        by_json = {}
        for name, spec in fields.items():
            by_json[name] = spec
            head, *rest = name.split("_")
            by_json[head + "".join(p.capitalize() for p in rest)] = spec
        for key, item in value.items():
            if key not in by_json:
                errors.append(f"{where}.{key}: no such field in {message}")
                continue
            type_, repeated, is_map = by_json[key]
            full = self.resolve(type_, message)
            if is_map:
                if not isinstance(item, dict):
                    errors.append(f"{where}.{key}: expected a map")
                    continue
                for k, v in item.items():
                    self.check_value(v, full, f"{where}.{key}[{k}]", errors)
            elif repeated:
                if not isinstance(item, list):
                    errors.append(f"{where}.{key}: expected a list")
                    continue
                for i, element in enumerate(item):
                    self.check_value(element, full, f"{where}.{key}[{i}]", errors)
            else:
                self.check_value(item, full, f"{where}.{key}", errors)

    def check_value(self, item, type_, where, errors):
        if type_ in SCALARS:
            if not isinstance(item, SCALARS[type_]) or (type_ != "bool" and isinstance(item, bool)):
                errors.append(f"{where}: expected {type_}")
        elif type_ in INTEGERS:
            if isinstance(item, bool) or not (isinstance(item, int) or (isinstance(item, str) and item.isdigit())):
                errors.append(f"{where}: expected an integer")
        elif type_ in WRAPPERS:
            if isinstance(item, bool) != (WRAPPERS[type_] is bool) or not isinstance(item, WRAPPERS[type_]):
                errors.append(f"{where}: expected {type_}")
        elif type_ == "google.protobuf.Duration":
            if not (isinstance(item, str) and DURATION.fullmatch(item)):
                errors.append(f"{where}: expected a duration such as 1s (protobuf JSON)")
        elif type_ in ("google.protobuf.Struct", "google.protobuf.Value"):
            pass
        elif type_ == "google.protobuf.Empty":
            if item != {}:
                errors.append(f"{where}: expected {{}}")
        elif type_ == "google.protobuf.Any":
            if not isinstance(item, dict) or "@type" not in item:
                errors.append(f"{where}: expected an object with @type")
                return
            url = item["@type"]
            prefix = "type.googleapis.com/"
            if not url.startswith(prefix):
                errors.append(f"{where}.@type: {url} is not type.googleapis.com/<message>")
                return
            rest = {k: v for k, v in item.items() if k != "@type"}
            self.check(rest, url[len(prefix):], where, errors)
        elif type_ in self.enums:
            if item not in self.enums[type_] and not isinstance(item, int):
                errors.append(f"{where}: {item!r} is not a value of {type_}")
        elif type_ in self.messages:
            self.check(item, type_, where, errors)
        else:
            errors.append(f"{where}: type {type_} is not in the vendored protos")
