"""JSON schema: the text must be JSON that matches a schema.

Meant for answers to requests that asked for ``response_format`` JSON. The schema is given
inline (``schema: {...}``) or as a file (``schema_file: schemas/order.json``, resolved from the
working directory), and is checked when the policy loads. With neither, the text must be a
JSON object, which is what ``response_format: {type: json_object}`` promises. For a request
that carries its own ``json_schema``, the pipeline builds a check with ``for_schema``.

Catches: text that is not JSON, and JSON that breaks the schema (missing or extra keys, wrong
types, enums, ranges; ``format`` too when ``check_formats`` is on). The detail lists the first
errors by JSON path and the schema rule broken, never the offending values (they may be
personal data). Misses: anything the schema does not say; ``$ref`` to remote URLs is never
fetched (such a schema errors at scan time, and the policy's ``on_error`` applies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from jsonschema import FormatChecker, ValidationError  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from pydantic import Field, model_validator

from policies.checks.base import Check, CheckOptions, CheckResult, Detail

_FENCE = re.compile(r"\A\s*```[\w-]*[ \t]*\n(?P<body>.*?)\n?[ \t]*```\s*\Z", re.DOTALL)
_DEFAULT_SCHEMA: dict[str, Any] = {"type": "object"}


class JsonSchemaOptions(CheckOptions):
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_file: str | None = None
    #: accept a JSON body wrapped in a Markdown code fence (```json ... ```)
    allow_code_fence: bool = False
    #: validate ``format`` keywords (email, date-time, ...); off by default, as in JSON Schema
    check_formats: bool = False
    max_errors: int = Field(default=5, ge=1, le=50)

    @model_validator(mode="before")
    @classmethod
    def _load_file(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("schema_file") is None:
            return data
        if data.get("schema") is not None:
            raise ValueError("give either 'schema' or 'schema_file', not both")
        path = Path(str(data["schema_file"]))
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"schema_file {str(path)!r}: cannot read: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"schema_file {str(path)!r}: not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"schema_file {str(path)!r}: a schema must be a JSON object")
        return {**data, "schema": loaded}

    @model_validator(mode="after")
    def _valid_schema(self) -> JsonSchemaOptions:
        schema = self.schema_ if self.schema_ is not None else _DEFAULT_SCHEMA
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"invalid JSON schema at {exc.json_path}: {exc.message}") from None
        return self


class JsonSchemaCheck(Check[JsonSchemaOptions]):
    name = "json_schema"

    @classmethod
    def for_schema(cls, schema: Mapping[str, Any], **options: Any) -> JsonSchemaCheck:
        """A check for one request's own ``response_format.json_schema.schema``."""
        return cls(JsonSchemaOptions.model_validate({**options, "schema": dict(schema)}))

    def for_response_format(self, response_format: Mapping[str, Any] | None) -> Check[Any] | None:
        """Without a schema of its own, the check follows the request's ``response_format``: the
        schema the client sent, a JSON object for ``json_object``, nothing for plain text. An
        invalid client schema is a ``ValueError``."""
        if self.options.schema_ is not None:
            return self
        fmt = response_format or {}
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if isinstance(schema, dict):
                options = self.options.model_dump(exclude={"schema_", "schema_file"})
                return JsonSchemaCheck.for_schema(schema, **options)
            return self
        return self if fmt.get("type") == "json_object" else None

    def __init__(self, options: JsonSchemaOptions) -> None:
        super().__init__(options)
        schema = self.options.schema_ if self.options.schema_ is not None else _DEFAULT_SCHEMA
        checker = FormatChecker() if self.options.check_formats else None
        # Built once per policy version; iter_errors keeps no state, so requests can share it.
        self._validator: Any = validator_for(schema)(schema, format_checker=checker)

    def scan(self, text: str) -> CheckResult:
        body = text
        if self.options.allow_code_fence and (fenced := _FENCE.match(text)):
            body = fenced.group("body")
        try:
            instance = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            detail: Detail = {"reason": "invalid_json", "message": exc.msg, "line": exc.lineno, "column": exc.colno}
            return CheckResult(fired=True, score=1.0, detail=detail)
        errors = []
        for error in self._validator.iter_errors(instance):
            errors.append(_describe(error))
            if len(errors) >= self.options.max_errors:
                break
        if not errors:
            return CheckResult(fired=False)
        return CheckResult(fired=True, score=1.0, detail={"reason": "schema", "errors": errors})


def _describe(error: ValidationError) -> dict[str, str]:
    """Where and which rule, from the schema's side only: the instance may hold personal data."""
    rule = json.dumps(error.validator_value, ensure_ascii=False, default=str)
    if len(rule) > 80:
        rule = rule[:77] + "..."
    return {"path": error.json_path, "rule": f"{error.validator}: {rule}"}
