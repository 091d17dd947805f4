"""presidio's pattern recognizers as data, so pattern-only PII checks start without presidio.

Importing presidio-analyzer imports spaCy (about two seconds and 100 MB here, even when no
NER runs). The pattern path needs from presidio only data (each predefined recognizer's
regexes, scores, context words, flags) until a candidate shows up that a recognizer's
checksum must confirm. So the data lives in ``policies/data/presidio_patterns.json``,
exported from the installed presidio by this module, and ``presidio_adapter`` imports a
recognizer class only the first time its ``validate_result`` is needed (or when the
gateway warms up in the background).

The file must match the installed presidio: ``tests/policies/test_check_pii.py`` compares them, and
after upgrading presidio-analyzer the fix is::

    python -m policies.presidio_catalogue        # rewrites policies/data/presidio_patterns.json
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, cast

CATALOGUE = Path(__file__).resolve().parent / "data" / "presidio_patterns.json"
#: what presidio's own registry gives every recognizer: without IGNORECASE a lower-case IBAN
#: ("gb42nawi...") is missed
REGISTRY_FLAGS = re.DOTALL | re.MULTILINE | re.IGNORECASE


def export() -> dict[str, Any]:
    """The catalogue as the installed presidio-analyzer defines it (imports presidio)."""
    from presidio_analyzer import PatternRecognizer
    from presidio_analyzer import predefined_recognizers as predefined

    recognizers = []
    for attr in predefined.__all__:
        klass: Any = getattr(predefined, attr)
        if not (isinstance(klass, type) and issubclass(klass, PatternRecognizer)):
            continue
        rec: Any = cast(Any, klass)()  # every predefined recognizer has defaults
        recognizers.append(
            {
                "entity": rec.supported_entities[0],
                "class": f"{klass.__module__}:{klass.__qualname__}",
                "name": rec.name,
                "patterns": [{"name": p.name, "regex": p.regex, "score": p.score} for p in rec.patterns],
                "context": [c for c in rec.context or () if c.strip()],
                "validates": klass.validate_result is not PatternRecognizer.validate_result,
                "invalidates": klass.invalidate_result is not PatternRecognizer.invalidate_result,
            }
        )
    phone: Any = predefined.PhoneRecognizer
    return {
        "presidio_analyzer": importlib.metadata.version("presidio-analyzer"),
        "flags": REGISTRY_FLAGS,
        "recognizers": recognizers,
        "phone": {
            "regions": list(phone.DEFAULT_SUPPORTED_REGIONS),
            "score": phone.SCORE,
            "context": list(phone.CONTEXT),
        },
    }


def dumps(catalogue: dict[str, Any]) -> str:
    return json.dumps(catalogue, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


@cache
def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return data


def main() -> None:
    CATALOGUE.write_text(dumps(export()), encoding="utf-8")
    print(f"wrote {CATALOGUE}")


if __name__ == "__main__":
    main()
