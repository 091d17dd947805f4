from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from policies.checks.json_schema import JsonSchemaCheck
from policies.schema import CheckSpec

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "format": "email"},
        "status": {"enum": ["open", "closed"]},
    },
    "required": ["id", "status"],
    "additionalProperties": False,
}


def check(**options: Any) -> JsonSchemaCheck:
    return JsonSchemaCheck(JsonSchemaCheck.Options.model_validate(options))


def test_matching_json_passes() -> None:
    assert not check(schema=ORDER).scan('{"id": 7, "status": "open"}').fired
    assert not check(schema=ORDER).scan('  \n{"id": 7, "status": "closed"}\n').fired


def test_schema_errors_name_path_and_rule_but_never_the_value() -> None:
    result = check(schema=ORDER).scan('{"id": "4111 1111 1111 1111", "status": "pending"}')
    assert result.fired
    assert result.score == 1.0
    assert result.detail["reason"] == "schema"
    errors = result.detail["errors"]
    assert {"path": "$.id", "rule": 'type: "integer"'} in errors
    assert {"path": "$.status", "rule": 'enum: ["open", "closed"]'} in errors
    assert "4111" not in json.dumps(result.detail)
    assert "pending" not in json.dumps(result.detail)


def test_missing_and_extra_keys_fire() -> None:
    result = check(schema=ORDER).scan('{"id": 1, "status": "open", "note": "x"}')
    assert result.detail["errors"] == [{"path": "$", "rule": "additionalProperties: false"}]
    result = check(schema=ORDER).scan('{"id": 1}')
    assert result.detail["errors"] == [{"path": "$", "rule": 'required: ["id", "status"]'}]


def test_invalid_json_fires_with_position() -> None:
    result = check(schema=ORDER).scan('{"id": 1, "status": "open"')
    assert result.fired
    assert result.detail["reason"] == "invalid_json"
    assert result.detail["line"] == 1
    assert isinstance(result.detail["column"], int)


def test_without_a_schema_the_text_must_be_a_json_object() -> None:
    c = check()
    assert not c.scan('{"anything": [1, 2]}').fired
    assert c.scan("[1, 2]").fired
    assert c.scan("Sure! Here is the JSON you asked for").fired


def test_code_fence_only_when_allowed() -> None:
    fenced = '```json\n{"id": 7, "status": "open"}\n```'
    assert check(schema=ORDER).scan(fenced).fired
    assert not check(schema=ORDER, allow_code_fence=True).scan(fenced).fired


def test_formats_are_checked_only_when_asked() -> None:
    text = '{"id": 7, "status": "open", "email": "not an address"}'
    assert not check(schema=ORDER).scan(text).fired
    result = check(schema=ORDER, check_formats=True).scan(text)
    assert result.detail["errors"] == [{"path": "$.email", "rule": 'format: "email"'}]


def test_max_errors_caps_the_list() -> None:
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcdef"}}
    text = json.dumps(dict.fromkeys("abcdef", "x"))
    assert len(check(schema=schema).scan(text).detail["errors"]) == 5
    assert len(check(schema=schema, max_errors=2).scan(text).detail["errors"]) == 2


def test_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(ORDER), encoding="utf-8")
    c = check(schema_file=str(path))
    assert c.options.schema_ == ORDER
    assert not c.scan('{"id": 1, "status": "open"}').fired
    assert c.scan('{"id": 1}').fired


def test_schema_file_errors_are_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        check(schema_file=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ValidationError, match="not JSON"):
        check(schema_file=str(bad))
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(ValidationError, match="JSON object"):
        check(schema_file=str(bad))
    good = tmp_path / "good.json"
    good.write_text("{}", encoding="utf-8")
    with pytest.raises(ValidationError, match="not both"):
        check(schema=ORDER, schema_file=str(good))


def test_invalid_schema_is_rejected_when_the_policy_loads() -> None:
    with pytest.raises(ValidationError, match="invalid JSON schema"):
        CheckSpec.model_validate({"check": "json_schema", "schema": {"type": "integr"}})
    spec = CheckSpec.model_validate({"check": "json_schema", "schema": ORDER, "action": "block"})
    assert isinstance(spec.options, JsonSchemaCheck.Options)


def test_for_schema_builds_a_check_for_one_request() -> None:
    c = JsonSchemaCheck.for_schema({"type": "array", "items": {"type": "number"}}, allow_code_fence=True)
    assert not c.scan("```\n[1, 2.5]\n```").fired
    assert c.scan('["x"]').fired


def test_a_check_without_a_schema_follows_the_response_format() -> None:
    plain = check(max_errors=3)
    followed = plain.for_response_format({"type": "json_schema", "json_schema": {"schema": ORDER}})
    assert isinstance(followed, JsonSchemaCheck) and followed is not plain
    assert followed.options.max_errors == 3
    assert followed.scan('{"id": "x", "status": "open"}').fired
    assert plain.for_response_format({"type": "json_object"}) is plain
    assert plain.for_response_format({"type": "text"}) is None
    assert plain.for_response_format(None) is None
    with pytest.raises(ValueError, match="invalid JSON schema"):
        plain.for_response_format({"type": "json_schema", "json_schema": {"schema": {"type": 5}}})


def test_a_check_with_its_own_schema_ignores_the_response_format() -> None:
    own = check(schema=ORDER)
    assert own.for_response_format({"type": "text"}) is own
    assert own.for_response_format({"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}) is own
