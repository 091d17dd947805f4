"""Load a YAML file into a pydantic model, reporting every error with file, line and field.

Both policy files and the gateway config go through here, so a user sees one error
format everywhere: ``policies/default.yaml:14: input[1].threshold: Input should be ...``.
ruamel's round-trip loader keeps the line of every key and item; it builds only plain
maps, lists and scalars (no arbitrary Python objects), so loading is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class FieldError:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class YamlModelError(ValueError):
    """A file that does not parse or does not validate; carries every error found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def parse_yaml(text: str, file: str) -> Any:
    yaml = YAML(typ="rt", pure=True)
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlModelError([FieldError(file, line, "", f"invalid YAML: {exc.problem}")]) from None
    except YAMLError as exc:
        raise YamlModelError([FieldError(file, None, "", f"invalid YAML: {exc}")]) from None


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(doc: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node of ``loc`` that exists in the document."""
    node, line = doc, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
        line = node.lc.line + 1  # (an empty document is a map made here, with no position)
    return line


def validation_errors(exc: ValidationError, doc: Any, file: str) -> list[FieldError]:
    errors = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        errors.append(FieldError(file, line_of(doc, loc), format_loc(loc), err["msg"]))
    return errors


def load_model(model: type[M], text: str, file: str, context: dict[str, Any] | None = None) -> M:
    doc = parse_yaml(text, file)
    if doc is None:
        doc = CommentedMap()
    try:
        return model.model_validate(doc, context=context)
    except ValidationError as exc:
        raise YamlModelError(validation_errors(exc, doc, file)) from None


def load_model_file(model: type[M], path: Path, context: dict[str, Any] | None = None) -> M:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlModelError([FieldError(str(path), None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise YamlModelError([FieldError(str(path), None, "", "not valid UTF-8")]) from None
    return load_model(model, text, str(path), context)
