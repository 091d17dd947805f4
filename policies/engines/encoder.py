"""The semantic tier: a fine-tuned sentence encoder, run with onnxruntime (no torch at run time).

The n-gram models learn the vocabulary of their training sources; an encoder pretrained on a
billion sentence pairs and fine-tuned on the corpora (``policies.training.train_semantic``)
generalises to paraphrases and to wordings no source had: a bribe for the password, a claim
to be the model's maintainer, the same request in another language. It is slower (a few
milliseconds per 128 tokens on one core), so detectors ask it only when the first tier
cannot decide (see ``policies.checks.detector.DetectorCheck``).

The artefact (``policies/models/semantic/``): ``model.onnx`` (int8, dynamic quantisation),
the tokenizer of the base model, and a manifest. It has one output per head (``attack``,
``indirect``); each is a logit. A text longer than one window is scored in windows of
``MAX_TOKENS`` tokens (overlapping by a quarter), at most ``MAX_WINDOWS`` of them (the first
and the last ones when there are more), and the highest logit counts.

Loading takes ~0.3 s and ~60 MB; the gateway does it in its background warm-up, and a
request that needs it first waits for it, as for any check.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEMANTIC_DIR = Path(__file__).resolve().parent.parent / "models" / "semantic"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
HEADS = ("attack", "indirect")
MAX_TOKENS = 128
MAX_WINDOWS = 8
_CLS, _SEP = 101, 102

IntArray = npt.NDArray[np.int64]


def mean_pool_inputs(seqs: Sequence[Sequence[int]]) -> tuple[IntArray, IntArray]:
    """Token id rows padded to one length, and their attention mask."""
    width = max((len(s) for s in seqs), default=1) or 1
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return ids, mask


def windows(ids: Sequence[int], size: int = MAX_TOKENS, limit: int = MAX_WINDOWS) -> list[list[int]]:
    """``[CLS] ... [SEP]`` windows of at most ``size`` tokens over the body of ``ids`` (which
    the tokenizer framed with CLS and SEP); the first and last ones when there are too many."""
    body = list(ids[1:-1]) if len(ids) >= 2 and ids[0] == _CLS and ids[-1] == _SEP else list(ids)
    room = size - 2
    if len(body) <= room:
        return [[_CLS, *body, _SEP]]
    step = room * 3 // 4
    starts = list(range(0, len(body) - room + step, step))
    if len(starts) > limit:
        starts = starts[: limit // 2] + starts[-(limit - limit // 2) :]
    return [[_CLS, *body[s : s + room], _SEP] for s in starts]


@dataclass(frozen=True, slots=True)
class SemanticModel:
    session: Any
    tokenizer: Any
    heads: tuple[str, ...]

    def logits(self, text: str, head: str) -> float:
        """The highest logit of ``head`` over the text's windows."""
        column = self.heads.index(head)
        encoded = self.tokenizer.encode(text)
        ids, mask = mean_pool_inputs(windows(encoded.ids))
        out = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return float(np.max(out[:, column]))


_LOCK = threading.Lock()


def available(directory: Path = SEMANTIC_DIR) -> bool:
    return (directory / MODEL_FILE).exists() and (directory / TOKENIZER_FILE).exists()


@cache
def load_semantic(directory: Path = SEMANTIC_DIR) -> SemanticModel:
    """Load (once per process) the ONNX model and its tokenizer."""
    with _LOCK:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # One thread: the gateway runs several requests at once, and a second thread on a
        # 2-core machine buys little latency for a lot of contention.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(directory / MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        heads = HEADS
        manifest = directory / "manifest.json"
        if manifest.exists():
            heads = tuple(json.loads(manifest.read_text(encoding="utf-8")).get("heads", HEADS))
        return SemanticModel(session, tokenizer, heads)
