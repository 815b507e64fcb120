"""The admin API's OpenAPI document (docs/reference/openapi.json) as a check on real answers.

``check_answer`` fails when the server answers a path, method or status the document does not
describe, or a body that does not fit the documented schema: the document cannot drift from
the server while the admin API's tests pass. A small reader of the parts of JSON Schema the
document uses (type, required, properties, additionalProperties, items, enum, $ref).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "reference" / "openapi.json"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@cache
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text())  # type: ignore[no-any-return]


def _template(path: str) -> str | None:
    for template in document()["paths"]:
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return template  # type: ignore[no-any-return]
    return None


def check_answer(method: str, url: str, status: int, body: Any) -> list[str]:
    """What is wrong with this answer by the document; empty when it fits."""
    path = urlsplit(url).path
    template = _template(path)
    if template is None:
        return [] if status == 404 else [f"{path} is not in {DOCUMENT.name}, answered {status}"]
    item = document()["paths"][template]
    operation = item.get(method.lower())
    if operation is None:
        return [] if status == 405 else [f"{method} {template} is not documented ({status})"]
    answers = operation["responses"]
    if str(status) not in answers:
        return [f"{method} {template}: status {status} is not documented"]
    schema = answers[str(status)]["content"]["application/json"]["schema"]
    return _fits(body, schema, f"{method} {template} {status}")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _fits(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    schema = _resolve(schema)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        allowed = tuple(t for n in names for t in _TYPES[n])
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and "boolean" not in names):
            return [f"{where}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: {name!r} missing")
        for name, member in value.items():
            if name in properties:
                problems += _fits(member, properties[name], f"{where}.{name}")
            elif properties:  # a member the document does not name
                problems.append(f"{where}: {name!r} not documented")
    if isinstance(value, list) and "items" in schema:
        for n, member in enumerate(value):
            problems += _fits(member, schema["items"], f"{where}[{n}]")
    return problems
