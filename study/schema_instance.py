"""Deterministic JSON values that satisfy (or deliberately break) a JSON Schema.

This module contains :func:`build_schema_instance`, which walks a JSON Schema
and picks every enum value, number and word from a SHA-256 of a caller's key,
so the same schema and key always give the same value. The local
OpenAI-compatible server in :mod:`study.local_server` uses it to build the
content of structured-output responses and to inject schema violations.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_SCHEMA_DEPTH", "build_schema_instance"]

MAX_SCHEMA_DEPTH = 8  # below this depth only required properties are built, so recursion ends

_WORDS = ("smooth", "enhancing", "peripheral", "lobulated", "hypointense", "central", "uniform")


def build_schema_instance(
    schema: Mapping[str, Any], key: bytes = b"", *, violate: bool = False
) -> Any:
    """Build a JSON value that satisfies a JSON Schema, chosen deterministically from `key`.

    Parameters
    ----------
    schema : mapping
        A JSON Schema. Supported: ``type`` (also a list), ``properties``,
        ``required``, ``items``, ``prefixItems``, ``enum``, ``const``,
        ``anyOf``, ``oneOf``, ``allOf``, local ``$ref`` into ``$defs`` or
        ``definitions``, ``minimum``, ``maximum``, their exclusive forms,
        ``minItems``, ``maxItems``, ``minLength``, ``maxLength`` and the string
        formats ``date``, ``date-time`` and ``uuid``.
    key : bytes
        Seed of every choice. The same schema and key always give the same value.
    violate : bool
        If true, break the schema on purpose: the first ``enum`` gets a value
        outside it, or, without any ``enum``, the first typed scalar gets a
        value of another type.

    Returns
    -------
    object
        A JSON-serialisable value. Every property is present above a nesting
        depth of 8 and required properties are present at any depth.

    Raises
    ------
    ValueError
        If a ``$ref`` is not local or not found, or integer bounds leave no value.

    Notes
    -----
    ``pattern``, ``multipleOf`` and ``uniqueItems`` are ignored, so a schema
    that relies on them may get a value that breaks it.

    Examples
    --------
    >>> schema = {"type": "object", "properties": {
    ...     "answer": {"enum": ["absent", "present"]},
    ...     "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
    ...     "required": ["answer", "confidence"]}
    >>> value = build_schema_instance(schema, b"lesion-1")
    >>> value["answer"] in ("absent", "present"), 0 <= value["confidence"] <= 100
    (True, True)
    >>> value == build_schema_instance(schema, b"lesion-1")
    True
    >>> build_schema_instance(schema, b"lesion-1", violate=True)["answer"]
    'not-a-valid-option'
    """
    if not violate:
        return _InstanceBuilder(schema, key, violation=None).build(schema, "#", 0)

    for violation in ("enum", "type"):
        builder = _InstanceBuilder(schema, key, violation=violation)
        instance = builder.build(schema, "#", 0)
        if builder.violated:
            return instance

    # NOTE: a schema without enums or typed scalars (say, an object with no
    # properties) is broken only if its root type is not "string".
    return "not-a-valid-value"


class _InstanceBuilder:
    """One walk over a schema, with the state of an optional deliberate violation."""

    def __init__(self, root: Mapping[str, Any], key: bytes, violation: str | None) -> None:
        self.root = root
        self.key = key
        self.violation = violation
        self.violated = False

    def pick(self, path: str, count: int) -> int:
        digest = hashlib.sha256(self.key + b"\x00" + path.encode()).digest()
        return int.from_bytes(digest[:8], "big") % count

    def resolve(self, schema: Mapping[str, Any] | bool) -> Mapping[str, Any]:
        if schema is True or schema is False:
            return {}
        hops = 0
        while "$ref" in schema:
            reference = schema["$ref"]
            if not isinstance(reference, str) or not reference.startswith("#"):
                raise ValueError(f"$ref must be local (start with '#'), got {reference!r}.")
            target: Any = self.root
            for token in reference[1:].split("/")[1:]:
                token = token.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or token not in target:
                    raise ValueError(f"$ref {reference!r} not found in the schema.")
                target = target[token]

            # Keywords beside a $ref apply too (JSON Schema 2019-09 and later).
            siblings = {name: value for name, value in schema.items() if name != "$ref"}
            schema = {**target, **siblings}
            hops += 1
            if hops > 64:
                raise ValueError(f"$ref {reference!r} is circular.")
        return schema

    def build(self, schema: Mapping[str, Any] | bool, path: str, depth: int) -> Any:
        schema = self.resolve(schema)

        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = list(schema["enum"])
            if self.violation == "enum" and not self.violated:
                self.violated = True
                return _value_outside(options)
            return options[self.pick(path, len(options))]

        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                # Prefer a non-null branch so that optional fields still carry a value.
                branches = [self.resolve(branch) for branch in schema[keyword]]
                non_null = [branch for branch in branches if branch.get("type") != "null"]
                candidates = non_null or branches
                branch = candidates[self.pick(path + "/" + keyword, len(candidates))]
                rest = {name: value for name, value in schema.items() if name != keyword}
                return self.build({**rest, **branch}, path, depth)
        if "allOf" in schema:
            return self.build(_merge_all_of(self, schema), path, depth)

        return self.build_typed(schema, _schema_type(schema), path, depth)

    def build_typed(self, schema: Mapping[str, Any], type_: str, path: str, depth: int) -> Any:
        if type_ == "object":
            return self.build_object(schema, path, depth)
        if type_ == "array":
            return self.build_array(schema, path, depth)
        if type_ == "null":
            return None

        if self.violation == "type" and not self.violated:
            self.violated = True
            return 0 if type_ == "string" else f"not-a-{type_}"

        if type_ == "integer":
            low, high = _integer_bounds(schema)
            return low + self.pick(path, high - low + 1)
        if type_ == "number":
            low, high = _number_bounds(schema)
            steps = 1000
            return low + (high - low) * (self.pick(path, steps) + 1) / (steps + 1)
        if type_ == "boolean":
            return self.pick(path, 2) == 1
        return self.build_string(schema, path)

    def build_object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        instance: dict[str, Any] = {}
        for name, subschema in properties.items():
            if depth >= MAX_SCHEMA_DEPTH and name not in required:
                continue
            instance[name] = self.build(subschema, f"{path}/{name}", depth + 1)
        for name in required:
            if name not in instance:
                instance[name] = self.build_string({}, f"{path}/{name}")
        return instance

    def build_array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", {})
        count = max(int(schema.get("minItems", 0)), 1 if depth < MAX_SCHEMA_DEPTH else 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        if items is False:
            count = min(count, len(prefix))

        instance = []
        for index in range(count):
            subschema = prefix[index] if index < len(prefix) else items
            instance.append(self.build(subschema, f"{path}/{index}", depth + 1))
        return instance

    def build_string(self, schema: Mapping[str, Any], path: str) -> str:
        string_format = schema.get("format")
        if string_format == "date":
            text = "2026-01-01"
        elif string_format == "date-time":
            text = "2026-01-01T00:00:00Z"
        elif string_format == "uuid":
            digest = hashlib.sha256(self.key + path.encode()).hexdigest()
            text = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"
        else:
            first = _WORDS[self.pick(path + "/0", len(_WORDS))]
            second = _WORDS[self.pick(path + "/1", len(_WORDS))]
            text = f"{first} {second}"

        minimum = int(schema.get("minLength", 0))
        while len(text) < minimum:
            text += " " + text
        if "maxLength" in schema:
            text = text[: int(schema["maxLength"])]
        return text


def _schema_type(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [name for name in declared if name != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge_all_of(builder: _InstanceBuilder, schema: Mapping[str, Any]) -> dict[str, Any]:
    # NOTE: the merge is shallow, so a keyword set in two branches keeps the later value.
    merged = {name: value for name, value in schema.items() if name != "allOf"}
    for branch in schema["allOf"]:
        branch = builder.resolve(branch)
        properties = {**merged.get("properties", {}), **branch.get("properties", {})}
        required = list(dict.fromkeys([*merged.get("required", []), *branch.get("required", [])]))
        merged = {**merged, **branch, "properties": properties, "required": required}
    if not merged["properties"]:
        del merged["properties"]
    return merged


def _integer_bounds(schema: Mapping[str, Any]) -> tuple[int, int]:
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
        schema["exclusiveMinimum"], bool
    ):
        floor = math.floor(schema["exclusiveMinimum"]) + 1
        low = max(low if low is not None else -math.inf, floor)
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
        schema["exclusiveMaximum"], bool
    ):
        ceiling = math.ceil(schema["exclusiveMaximum"]) - 1
        high = min(high if high is not None else math.inf, ceiling)

    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    if low > high:
        raise ValueError(f"No integer satisfies the bounds of {dict(schema)!r}.")
    return int(low), int(high)


def _number_bounds(schema: Mapping[str, Any]) -> tuple[float, float]:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    low = float(low) if isinstance(low, int | float) and not isinstance(low, bool) else None
    high = float(high) if isinstance(high, int | float) and not isinstance(high, bool) else None
    if low is None:
        low = 0.0 if high is None or high >= 0 else high - 1.0
    if high is None:
        high = low + 1.0
    return low, high


def _value_outside(options: Sequence[Any]) -> str:
    value = "not-a-valid-option"
    while value in options:
        value += "-x"
    return value
