"""Validates the sandbox contract against the JSON Schema generated from the zod source.

A small interpreter of exactly the JSON Schema keywords that zod emits for this contract;
an unknown keyword is an error at load time, so the two sides cannot drift silently.
"""
from __future__ import annotations

import json
import os
import re

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contract.schema.json")
_KNOWN = {"$schema", "$comment", "type", "const", "enum", "minLength", "maxLength", "pattern", "minimum",
          "maximum", "minItems", "maxItems", "items", "properties", "required", "additionalProperties",
          "propertyNames", "oneOf", "anyOf", "default", "description"}


class ContractError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path or '(root)'}: {message}")
        self.path = path


def _check_keywords(schema: object) -> None:
    if isinstance(schema, dict):
        unknown = set(schema) - _KNOWN
        if unknown:
            raise ValueError(f"unsupported JSON Schema keywords {sorted(unknown)}")
        for key, value in schema.items():
            if key == "properties":
                for sub in value.values():
                    _check_keywords(sub)
            elif key in ("items", "additionalProperties", "propertyNames") and isinstance(value, dict):
                _check_keywords(value)
            elif key in ("oneOf", "anyOf"):
                for sub in value:
                    _check_keywords(sub)


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def validate(schema: dict, value: object, path: str = "") -> object:
    """Return value (with defaults filled in) or raise ContractError."""
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema.get("anyOf")
        matches = []
        for option in options:
            try:
                matches.append(validate(option, value, path))
            except ContractError:
                continue
        if not matches or ("oneOf" in schema and len(matches) > 1):
            raise ContractError(path, "matches none of the allowed shapes" if not matches else "is ambiguous")
        return matches[0]
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if kinds and not any(_TYPES[k](value) for k in kinds):
        raise ContractError(path, f"expected {' or '.join(kinds)}")
    if "const" in schema and value != schema["const"]:
        raise ContractError(path, f"must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ContractError(path, f"must be one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise ContractError(path, "too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ContractError(path, f"longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise ContractError(path, "has characters that are not allowed")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ContractError(path, f"below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ContractError(path, f"above {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            raise ContractError(path, "wrong number of items")
        if "items" in schema:
            value = [validate(schema["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out = {}
        for name in schema.get("required", []):
            if name not in value:
                raise ContractError(f"{path}.{name}".lstrip("."), "is required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = f"{path}.{name}".lstrip(".")
            if "propertyNames" in schema:
                validate(schema["propertyNames"], name, sub)
            if name in props:
                out[name] = validate(props[name], item, sub)
            elif extra is False:
                raise ContractError(sub, "is not allowed")
            elif isinstance(extra, dict):
                out[name] = validate(extra, item, sub)
            else:
                out[name] = item
        for name, sub_schema in props.items():
            if name not in out and "default" in sub_schema:
                out[name] = sub_schema["default"]
        value = out
    return value


def _load() -> dict:
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    _check_keywords(schema["payload"])
    _check_keywords(schema["result"])
    return schema


SCHEMA = _load()


def validate_payload(event: object) -> dict:
    return validate(SCHEMA["payload"], event)  # type: ignore[return-value]


def validate_result(result: object) -> dict:
    return validate(SCHEMA["result"], result)  # type: ignore[return-value]
