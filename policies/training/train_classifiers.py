"""Train the detection heads and write the artefacts plus their manifest.

    python -m policies.training.train_classifiers            # everything, ~2 minutes on 2 cores
    python -m policies.training.train_classifiers --limit 40 --out /tmp/m --no-loso   # smoke run

For each head (``datasets.HEADS``): rows are split by group (``split.py``); the model is
fitted on the training rows of every source whose licence allows a shipped model, its
operating point is set on the validation rows (``fit.calibrate``), and it is measured on
the validation rows of every source and, leaving each source out of training entirely, on
all rows of that source ("attacks from sources it never saw"). The manifest records the
script, each data file's sha256 and licence, the split, the settings and every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from policies.checks.detector import DetectorCheck, DetectorOptions
from policies.engines.classifier import (
    MODELS_DIR,
    FeatureConfig,
    LinearTextModel,
    file_sha256,
    normalize,
    save_model,
)
from policies.engines.heuristics import cue_score
from policies.registry import check_class, check_names
from policies.training.corpora import OWN_DATA_DIR, REPO_ROOT, Row, corpora_dir, load_source, source_files
from policies.training.datasets import HEADS, SOURCES, Head
from policies.training.fit import FeatureCache, FitSettings, calibrate, fit_head
from policies.training.lexicon import build_lexicon
from policies.training.metrics import Metrics, binary_metrics
from policies.training.split import SEED, VALIDATION_FRACTION, is_validation

MANIFEST = "manifest.json"
LEXICON_SOURCES = ("toxicity_lexicons/surge_profanity_en", "toxicity_lexicons/ldnoobw_en")


@dataclass(frozen=True, slots=True)
class Example:
    row: Row
    label: int
    validation: bool


def examples_for(head: Head, rows: dict[str, list[Row]]) -> list[Example]:
    out = []
    for source in head.sources():
        by_label: dict[int, list[Example]] = defaultdict(list)
        for row in rows.get(source, ()):
            label = head.label(row)
            if label is not None:
                by_label[label].append(Example(row, label, is_validation(row)))
        for examples in by_label.values():
            out += _capped(examples, head.cap_per_source)
    return out


def _capped(examples: list[Example], cap: int | None) -> list[Example]:
    """A fixed subset of at most ``cap`` rows, chosen by a hash of the text (order-independent)."""
    if cap is None or len(examples) <= cap:
        return examples
    ranked = sorted(examples, key=lambda e: hashlib.sha256(f"{SEED}:{e.row.text}".encode()).digest())
    keep = {id(e) for e in ranked[:cap]}
    return [e for e in examples if id(e) in keep]


def trainable(example: Example) -> bool:
    return not SOURCES[example.row.source].measure_only


def source_weights(examples: Sequence[Example]) -> list[float]:
    """Each source weighs in with sqrt(its size), and both classes weigh the same in total.

    Without this the 20k Davidson tweets, or the 4k chit-chat lines, would decide alone.
    """
    sizes = Counter((e.row.source, e.label) for e in examples)
    raw = [sizes[(e.row.source, e.label)] ** -0.5 for e in examples]
    totals: dict[int, float] = defaultdict(float)
    for e, w in zip(examples, raw, strict=True):
        totals[e.label] += w
    return [w / totals[e.label] * len(examples) / 2 for e, w in zip(examples, raw, strict=True)]


def train(
    cache: FeatureCache, head: Head, train_set: Sequence[Example], calib_set: Sequence[Example]
) -> LinearTextModel:
    model = fit_head(
        cache,
        [e.row.text for e in train_set],
        [e.label for e in train_set],
        source_weights(train_set),
        FitSettings(),
    )
    benign: dict[str, list[str]] = defaultdict(list)
    for e in calib_set:
        if e.label == 0:
            benign[e.row.source].append(e.row.text)
    return calibrate(model, benign, head.target_fpr)


def measure(
    model: LinearTextModel, examples: Sequence[Example], cues: frozenset[str] = frozenset()
) -> dict[str, Metrics]:
    """Metrics per source at the calibrated operating point (score >= 0.5), plus ``all``.

    With ``cues`` (heuristic families), a row also fires when the cues score >= 0.5, as
    in the check, so the figure is the check's own on data its model never saw.
    """

    def fired(text: str) -> bool:
        return model.score(text) >= 0.5 or (bool(cues) and cue_score(normalize(text), cues)[0] >= 0.5)

    return per_source(examples, fired)


def per_source(examples: Sequence[Example], fired: Callable[[str], bool]) -> dict[str, Metrics]:
    """Metrics per source of a verdict on each row's text, plus ``all``."""
    by_source: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for e in examples:
        pair = (e.label, fired(e.row.text))
        by_source[e.row.source].append(pair)
        by_source["all"].append(pair)
    return {
        source: binary_metrics([y for y, _ in pairs], [f for _, f in pairs])
        for source, pairs in sorted(by_source.items())
    }


def fold_check(head: Head, model: LinearTextModel) -> DetectorCheck | None:
    """The check that runs ``head``'s model, with ``model`` in its place: its cues, its reading
    of quotes and of encoded text included, at threshold 0.5 and without the encoder (whose
    own leave-out figures are by family: ``operating_point.py``). None: no check runs it."""
    for name in check_names():
        klass = check_class(name)
        if klass is not None and issubclass(klass, DetectorCheck) and klass.model_name == head.name:
            return _with_model(klass, model)(DetectorOptions(threshold=0.5, semantic=False))
    return None


def _with_model(klass: type[DetectorCheck], fitted: LinearTextModel) -> type[DetectorCheck]:
    class Fold(klass):  # type: ignore[valid-type,misc]
        def model(self) -> LinearTextModel:
            return fitted

    return Fold


def measure_check(check: DetectorCheck, examples: Sequence[Example]) -> dict[str, Metrics]:
    """Metrics per source of the check's own verdict (``scan``), as the gateway reaches it."""
    return per_source(examples, lambda text: check.scan(text).fired)


def loso_sources(examples: Sequence[Example]) -> list[str]:
    """Trainable sources that can be left out with both classes still in training."""
    out = []
    for source in sorted({e.row.source for e in examples if trainable(e)}):
        rest = {e.label for e in examples if e.row.source != source and trainable(e) and not e.validation}
        if len(rest) == 2:
            out.append(source)
    return out


def fit_fold(cache: FeatureCache, head: Head, examples: Sequence[Example], held_out: str | None) -> LinearTextModel:
    """The shipped model (``held_out`` None) or one trained and calibrated without a source."""
    rest = [e for e in examples if e.row.source != held_out and trainable(e)]
    return train(cache, head, [e for e in rest if not e.validation], [e for e in rest if e.validation])


# Set before the worker processes fork, so they share the featurised texts copy-on-write.
_STATE: dict[str, tuple[FeatureCache, Head, list[Example]]] = {}


Outcome = LinearTextModel | tuple[Metrics, Metrics, Metrics | None]


def _job(key: tuple[str, str | None]) -> tuple[tuple[str, str | None], Outcome]:
    """The shipped model, or a held-out source's metrics: the model alone, with the check's
    cues, and as the check itself (cues, quotes, decoding)."""
    head_name, held_out = key
    cache, head, examples = _STATE[head_name]
    model = fit_fold(cache, head, examples, held_out)
    if held_out is None:
        return key, model
    held = [e for e in examples if e.row.source == held_out]
    check = fold_check(head, model)
    as_check = measure_check(check, held)[held_out] if check is not None else None
    return key, (measure(model, held)[held_out], measure(model, held, head.cue_families)[held_out], as_check)


def run_jobs(keys: Sequence[tuple[str, str | None]], jobs: int) -> dict[tuple[str, str | None], Outcome]:
    if jobs <= 1 or "fork" not in mp.get_all_start_methods():
        return dict(_job(k) for k in keys)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as pool:
        return dict(pool.map(_job, keys))


def model_entry(
    head: Head,
    model: LinearTextModel,
    examples: Sequence[Example],
    held: dict[str, Outcome],
    path: Path,
) -> dict[str, object]:
    """The manifest's record of one head: artefact, rows used, and every measured figure."""
    counts = Counter(f"{e.row.source}:{'validation' if e.validation else 'train'}:{e.label}" for e in examples)
    validation = [e for e in examples if e.validation]
    loso = {k: m for k, m in sorted(held.items()) if isinstance(m, tuple)}
    entry: dict[str, object] = {
        "file": path.name,
        "sha256": file_sha256(path),
        "description": head.description,
        "operating_point": f"score 0.5 = false-positive rate {head.target_fpr} on each benign "
        "validation source (small ones pooled)",
        "rows": dict(sorted(counts.items())),
        "validation": {k: m.as_dict() for k, m in measure(model, validation).items()},
        "leave_one_source_out": {k: m[0].as_dict() for k, m in loso.items()},
    }
    if head.cue_families:
        entry["cues"] = sorted(head.cue_families)
        entry["validation_with_cues"] = {
            k: m.as_dict() for k, m in measure(model, validation, head.cue_families).items()
        }
        entry["leave_one_source_out_with_cues"] = {k: m[1].as_dict() for k, m in loso.items()}
    as_check = {k: m[2].as_dict() for k, m in loso.items() if m[2] is not None}
    if as_check:
        entry["leave_one_source_out_as_check"] = as_check
    return entry


def data_files(root: Path, names: set[str]) -> dict[str, dict[str, object]]:
    files = {name: path for name, path in source_files(root) if name in names}
    for name in names:
        if name.startswith("own/"):
            files[name] = OWN_DATA_DIR / f"{name.removeprefix('own/')}.jsonl"
    return {
        name: {
            "file": _display_path(path),
            "sha256": file_sha256(path),
            "licence": SOURCES[name].licence,
            "use": "measurement only" if SOURCES[name].measure_only else "training and measurement",
        }
        for name, path in sorted(files.items())
    }


def write_lexicon(root: Path, out_dir: Path) -> dict[str, object]:
    paths = dict(source_files(root))
    terms = build_lexicon(paths[LEXICON_SOURCES[0]], paths[LEXICON_SOURCES[1]])
    path = out_dir / "toxicity_lexicon.json"
    payload = {"sources": list(LEXICON_SOURCES), "terms": terms}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return {"file": path.name, "sha256": file_sha256(path), "terms": len(terms)}


def _display_path(path: Path) -> str:
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return str(path)


def _limit(rows: list[Row], limit: int | None) -> list[Row]:
    return rows if limit is None else rows[:limit]


def run(
    out_dir: Path, heads: Sequence[Head], limit: int | None, loso: bool, root: Path, jobs: int = 2
) -> dict[str, object]:
    started = time.monotonic()
    names = {s for head in heads for s in head.sources()}
    rows = {name: _limit(load_source(name, root), limit) for name in sorted(names)}
    cache = FeatureCache(FeatureConfig())
    keys: list[tuple[str, str | None]] = []
    for head in heads:
        examples = examples_for(head, rows)
        cache.matrix([e.row.text for e in examples])  # featurise once, before forking
        _STATE[head.name] = (cache, head, examples)
        keys += [(head.name, None)] + [(head.name, s) for s in (loso_sources(examples) if loso else [])]
    results = run_jobs(keys, jobs)
    print(f"fitted {len(keys)} models in {time.monotonic() - started:.0f}s", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Heads not retrained this run keep their entries (``--heads`` retrains some of them).
    previous = out_dir / MANIFEST
    models: dict[str, object] = {}
    old_data: dict[str, object] = {}
    if previous.exists():
        old = json.loads(previous.read_text())
        models = {k: v for k, v in old.get("models", {}).items() if k not in {h.name for h in heads}}
        old_data = old.get("data", {})
    for head in heads:
        _, _, examples = _STATE.pop(head.name)
        model = results[(head.name, None)]
        assert isinstance(model, LinearTextModel)
        path = out_dir / f"{head.name}.npz"
        save_model(path, model.weights, model.bias, model.config)
        held = {k[1]: v for k, v in results.items() if k[0] == head.name and k[1]}
        models[head.name] = model_entry(head, model, examples, held, path)
    if any(head.name == "toxicity" for head in heads):
        models["toxicity_lexicon"] = write_lexicon(root, out_dir)
        names.update(LEXICON_SOURCES)
    config = cache.config
    manifest: dict[str, object] = {
        "command": "python -m policies.training.train_classifiers",
        "script": "policies/training/train_classifiers.py",
        "split": {
            "seed": SEED,
            "validation_fraction": VALIDATION_FRACTION,
            "rule": "by group (corpus cluster, BIPIA context, JailbreakBench behaviour, else row); "
            "BIPIA keeps its own train/test split; our hard negatives marked split=test never train",
        },
        "features": {"kind": "hashed char n-grams", "bits": config.bits, "n": [config.min_n, config.max_n]},
        "fit": {
            "model": "LogisticRegression(liblinear)",
            "C": FitSettings().c,
            "tol": FitSettings().tol,
            "source_weighting": "each (source, label) weighs sqrt(its rows); classes weigh the same",
            "cap_per_source": {head.name: head.cap_per_source for head in heads},
        },
        "limit_rows_per_source": limit,
        "data": {**old_data, **data_files(root, names)},
        "models": models,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out_dir / MANIFEST} at {time.monotonic() - started:.0f}s", file=sys.stderr)
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--heads", nargs="*", default=[h.name for h in HEADS])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows of each source")
    parser.add_argument("--no-loso", dest="loso", action="store_false", help="skip leave-one-source-out")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (fork)")
    args = parser.parse_args(argv)
    heads = [h for h in HEADS if h.name in args.heads]
    run(args.out, heads, args.limit, args.loso, args.corpora or corpora_dir(), args.jobs)


if __name__ == "__main__":
    main()
