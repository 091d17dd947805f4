"""Combine the tiers and choose the operating points on data the models never saw.

    python -m policies.training.operating_point          # after train_semantic; ~1 minute

Input: the out-of-family scores that ``train_semantic`` wrote (every row scored by an
encoder and an n-gram model trained without its family), plus each row's cue score. For
each check with a semantic tier it fits a logistic *stacker* over (n-gram logit, cue score,
encoder logit), and sets the stacker's bias so that the combined score reaches 0.5 on at
most ``TARGET_FPR`` of *every* benign source: the worst source decides, not the pooled
average. The stackers go to ``policies/models/semantic/tiers.json`` (read by
``policies.engines.tiers``).

The figures it reports are honest twice over: a row's scores come from models that never
saw its family, and the stacker and threshold that judge a fold's rows are fitted on the
other folds only. The cascade (the encoder asked only when the first tier cannot decide)
is applied exactly as at run time, so the figures are the check's own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from policies.engines.classifier import load_model, model_path, normalize
from policies.engines.encoder import SEMANTIC_DIR
from policies.engines.heuristics import cue_score
from policies.engines.tiers import TIERS_FILE, Stacker, logit_of
from policies.training.corpora import corpora_dir
from policies.training.train_semantic import Example, attack_examples, indirect_examples

#: false-positive rate allowed on each benign source at the operating point
TARGET_FPR = 0.04
#: checks that always ship their stacker (no first tier to fall back on)
SHIP = frozenset({"indirect_injection"})
#: check -> (head index, cue families, whether the n-gram tier takes part)
CHECKS: dict[str, tuple[int, frozenset[str], bool]] = {
    "prompt_injection": (0, frozenset({"injection", "jailbreak"}), True),
    "indirect_injection": (1, frozenset({"indirect", "injection"}), False),
}


@dataclass(frozen=True, slots=True)
class Scored:
    source: str
    label: int
    fold: str
    test: bool
    ngram: float
    cues: float
    semantic: float

    def features(self, use_ngram: bool) -> list[float]:
        return [self.ngram if use_ngram else 0.0, self.cues, self.semantic]


def load_scores(directory: Path) -> dict[str, dict[str, object]]:
    with gzip.open(directory / "loso_scores.json.gz", "rt", encoding="utf-8") as fh:
        data: dict[str, dict[str, object]] = json.load(fh)
    return data


def scored_rows(
    examples: Sequence[Example], scores: dict[str, dict[str, object]], head: int, families: frozenset[str]
) -> list[Scored]:
    ngram_model = load_model(model_path("prompt_attack"))
    out = []
    seen: set[str] = set()
    for e in examples:
        key = f"{e.head}:{e.key}"
        if e.head != head or key not in scores or key in seen:
            continue
        seen.add(key)
        row = scores[key]
        ngram = row.get("ng")
        # Rows scored by the shipped encoder (never trained on them) take the shipped
        # n-gram model's logit, which never trained on them either (validation, test,
        # measurement-only rows).
        ng = float(ngram) if isinstance(ngram, int | float) else ngram_model.max_logit(e.text)
        out.append(
            Scored(
                source=e.source,
                label=e.label,
                fold=str(row["f"]),
                test=bool(row.get("test")),
                ngram=ng,
                cues=cue_score(normalize(e.text), families)[0],
                semantic=float(row["sem"]),  # type: ignore[arg-type]
            )
        )
    return out


def fit_stacker(rows: Sequence[Scored], use_ngram: bool) -> tuple[np.ndarray, float]:
    """Weights and intercept of a logistic stacker; sources and labels balanced."""
    sizes: dict[tuple[str, int], int] = defaultdict(int)
    for r in rows:
        sizes[(r.source, r.label)] += 1
    weights = np.array([sizes[(r.source, r.label)] ** -0.5 for r in rows])
    for label in (0, 1):
        mask = np.array([r.label == label for r in rows])
        if mask.any():
            weights[mask] *= len(rows) / 2 / weights[mask].sum()
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(np.array([r.features(use_ngram) for r in rows]), np.array([r.label for r in rows]), sample_weight=weights)
    return model.coef_[0].astype(float), float(model.intercept_[0])


def threshold_for(logits: np.ndarray, rows: Sequence[Scored], target: float) -> float:
    """The lowest cut at which every benign source (sources under 100 rows pooled) fires on at
    most ``target`` of its rows."""
    groups: dict[str, list[float]] = defaultdict(list)
    for z, r in zip(logits, rows, strict=True):
        if r.label == 0:
            groups[r.source].append(float(z))
    small = [z for g in groups.values() if len(g) < 100 for z in g]
    cut = -math.inf
    for values in [g for g in groups.values() if len(g) >= 100] + ([small] if small else []):
        ordered = np.sort(np.array(values))
        allowed = math.floor(target * ordered.size)
        cut = max(cut, float(ordered[ordered.size - allowed - 1]) + 1e-6)
    return cut


def stacker_for(rows: Sequence[Scored], use_ngram: bool, target: float) -> Stacker:
    coef, intercept = fit_stacker(rows, use_ngram)
    logits = np.array([intercept + float(np.dot(coef, r.features(use_ngram))) for r in rows])
    cut = threshold_for(logits, rows, target)
    semantic = np.array([r.semantic for r in rows])
    return Stacker(
        head="",
        bias=intercept - cut,
        ngram=float(coef[0]) if use_ngram else 0.0,
        cues=float(coef[1]),
        semantic=float(coef[2]),
        semantic_range=(float(np.percentile(semantic, 1)), float(np.percentile(semantic, 99))),
    )


def decide(stacker: Stacker, r: Scored, threshold: float = 0.5) -> tuple[bool, bool]:
    """(fired, encoder asked) as ``DetectorCheck`` decides at run time."""
    cut = logit_of(threshold)
    lo, hi = stacker.bounds(r.ngram, r.cues)
    if hi < cut:
        return False, False
    if lo >= cut:
        return True, False
    return stacker.logit(r.ngram, r.cues, r.semantic) >= cut, True


def cross_fold(rows: Sequence[Scored], use_ngram: bool, target: float) -> list[tuple[Scored, bool, bool]]:
    """Each fold's rows judged by a stacker and threshold fitted on the other folds."""
    out = []
    folds = sorted({r.fold for r in rows if r.fold != "shipped"})
    for fold in folds:
        rest = [r for r in rows if r.fold not in (fold, "shipped")]
        stacker = stacker_for(rest, use_ngram, target)
        out += [(r, *decide(stacker, r)) for r in rows if r.fold == fold]
    return out


def figures(judged: Sequence[tuple[Scored, bool, bool]]) -> dict[str, dict[str, float | int]]:
    by_source: dict[str, list[tuple[int, bool, bool]]] = defaultdict(list)
    for r, fired, asked in judged:
        by_source[r.source].append((r.label, fired, asked))
    out: dict[str, dict[str, float | int]] = {}
    for source, items in sorted(by_source.items()):
        positives = [f for y, f, _ in items if y == 1]
        negatives = [f for y, f, _ in items if y == 0]
        entry: dict[str, float | int] = {
            "n": len(items),
            "encoder_asked": round(sum(a for *_, a in items) / len(items), 3),
        }
        if positives:
            entry["recall"] = round(sum(positives) / len(positives), 4)
        if negatives:
            entry["fpr"] = round(sum(negatives) / len(negatives), 4)
        out[source] = entry
    return out


def summary(
    per_source: dict[str, dict[str, float | int]], judged: Sequence[tuple[Scored, bool, bool]]
) -> dict[str, object]:
    attacks = [f for r, f, _ in judged if r.label == 1]
    benign = [f for r, f, _ in judged if r.label == 0]
    recalls = {s: v["recall"] for s, v in per_source.items() if "recall" in v}
    fprs = {s: v["fpr"] for s, v in per_source.items() if "fpr" in v}
    return {
        "pooled_recall": round(sum(attacks) / max(1, len(attacks)), 4),
        "pooled_fpr": round(sum(benign) / max(1, len(benign)), 4),
        "worst_recall": min(recalls.items(), key=lambda kv: kv[1]) if recalls else None,
        "worst_fpr": max(fprs.items(), key=lambda kv: kv[1]) if fprs else None,
        "encoder_asked": round(sum(a for *_, a in judged) / max(1, len(judged)), 3),
    }


def _better(stacked: dict[str, object], first: dict[str, object]) -> bool:
    def worst_fpr(s: dict[str, object]) -> float:
        worst = s["worst_fpr"]
        return float(worst[1]) if isinstance(worst, tuple | list) else 0.0

    return float(stacked["pooled_recall"]) > float(first["pooled_recall"]) and worst_fpr(stacked) <= max(  # type: ignore[arg-type]
        worst_fpr(first), TARGET_FPR * 1.5
    )


def run(directory: Path, root: Path, target: float) -> dict[str, object]:
    scores = load_scores(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    settings = manifest["settings"]
    examples = attack_examples(root, settings["cap"]) + indirect_examples(root, settings["carrier_cap"])
    checks: dict[str, object] = {}
    report: dict[str, object] = {}
    for check, (head, families, use_ngram) in CHECKS.items():
        rows = scored_rows(examples, scores, head, families)
        folded = [r for r in rows if r.fold != "shipped"]
        stacker = stacker_for(folded, use_ngram, target)
        judged = cross_fold(rows, use_ngram, target)
        first = [(r, r.ngram >= 0 or r.cues >= 0.5, False) for r in rows if r.fold != "shipped"]
        # The stacker ships only where, out of fold, it beats the first tier alone: more of the
        # left-out attacks caught without a worse left-out benign source. Chosen on these
        # figures, never on rows the models trained on.
        ship = check in SHIP or _better(summary(figures(judged), judged), summary(figures(first), first))
        if ship:
            checks[check] = {
                "head": ("attack", "indirect")[head],
                "bias": round(stacker.bias, 5),
                "weights": {
                    "ngram": round(stacker.ngram, 5),
                    "cues": round(stacker.cues, 5),
                    "semantic": round(stacker.semantic, 5),
                },
                "semantic_range": [round(v, 4) for v in stacker.semantic_range],
            }
        held = [(r, *decide(stacker, r)) for r in rows if r.fold == "shipped"]
        stacked = figures(judged)
        if not ship:
            # What runs instead: the first tier, max(n-gram, cues) at 0.5 (logit 0).
            judged = [(r, r.ngram >= 0 or r.cues >= 0.5, False) for r in rows if r.fold != "shipped"]
            held = [(r, r.ngram >= 0 or r.cues >= 0.5, False) for r in rows if r.fold == "shipped"]
        loso = figures(judged)
        summary_ = summary(loso, judged)
        report[check] = {
            "shipped": ship,
            "rule": "stacker" if ship else "max(n-gram, cues); the stacker below is not shipped",
            "stacker_figures": stacked,
            "leave_one_family_out": loso,
            "summary": summary_,
            # never-trained rows (validation split, measurement-only sets, held-out test
            # instructions) judged by the shipped stacker and models
            "held_out": figures(held),
            "held_out_test_only": figures([j for j in judged if j[0].test] + [h for h in held if h[0].test]),
        }
        print(check, json.dumps(summary_), file=sys.stderr)
    tiers = {
        "description": "stackers over (n-gram logit, cue score, encoder logit); bias puts the operating point at 0.5",
        "target_fpr_per_benign_source": target,
        "checks": checks,
        "report": report,
    }
    (directory / TIERS_FILE).write_text(json.dumps(tiers, indent=1) + "\n")
    return tiers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=SEMANTIC_DIR)
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--target-fpr", type=float, default=TARGET_FPR)
    args = parser.parse_args(argv)
    run(args.dir, args.corpora or corpora_dir(), args.target_fpr)


if __name__ == "__main__":
    main()
