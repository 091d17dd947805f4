"""Loading and scoring of the trained text classifiers (no scikit-learn at scan time).

A model is a linear classifier over *hashed character n-grams*: the text is normalised
(NFKC, case-folded, whitespace collapsed), every character n-gram of the configured
lengths is hashed into one of ``2**bits`` buckets with a rolling polynomial hash that
numpy computes for the whole text at once, and the score is
``sigmoid(w · x + b)`` where ``x`` holds the sublinear counts ``1 + log(count)`` of the
buckets, scaled to unit length. Training (``policies.training``) calls the same
:func:`featurize`, so the features seen at scan time are exactly the trained ones.

Long texts are also scored in windows (:func:`LinearTextModel.score`), so an injection
hidden in the middle of a long document is not diluted by the text around it.

The artefact is an ``.npz`` holding the weights as float16 plus the bias and the
featuriser settings; it loads in a few milliseconds and is cached per path.

The checks built on these models are in ``policies/checks/detector.py``.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

# Odd 64-bit multipliers: one for the rolling hash, one to spread each n-gram's hash
# (mixed with its length) over the high bits that pick the bucket.
_ROLL = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SPACES = re.compile(r"\s+")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How text becomes hashed features; stored in the artefact beside the weights."""

    bits: int = 18
    min_n: int = 1
    max_n: int = 5


#: zero-width and other format characters: invisible, so an attack can hide between them
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def normalize(text: str) -> str:
    """NFKC, case-folded, invisible characters dropped, runs of whitespace as one space,
    padded so edges form n-grams."""
    if len(text) <= CACHE_CHARS:
        return _normalize_cached(text)
    return _normalize(text)


@lru_cache(maxsize=32)
def _normalize_cached(text: str) -> str:
    # Every detector of a policy normalizes the same prompt (for its cues and its n-grams).
    return _normalize(text)


def _normalize(text: str) -> str:
    folded = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()
    return " " + _SPACES.sub(" ", folded).strip() + " "


def ngram_hashes(text: str, config: FeatureConfig) -> npt.NDArray[np.uint64]:
    """Bucket ids (as uint64) of every character n-gram of the normalised ``text``, in order.

    The result is laid out n-gram length by n-gram length; within one length, entry ``i``
    is the n-gram that starts at character ``i``.
    """
    codes = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    shift = np.uint64(64 - config.bits)
    parts = []
    rolling = np.zeros(codes.size, dtype=np.uint64)
    for n in range(1, config.max_n + 1):
        if codes.size < n:
            break
        # uint64 arithmetic wraps around, which is what a rolling hash wants.
        rolling = rolling[: codes.size - n + 1] * _ROLL + codes[n - 1 :]
        if n >= config.min_n:
            parts.append(((rolling + np.uint64(n)) * _MIX) >> shift)
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate(parts)


#: texts up to this long have their features cached (several detectors score one prompt)
CACHE_CHARS = 16_384


def featurize(text: str, config: FeatureConfig) -> tuple[IntArray, FloatArray]:
    """Sparse feature vector of ``text``: sorted bucket ids and their unit-length values."""
    if len(text) <= CACHE_CHARS:
        return _featurize_cached(text, config)
    return _featurize(text, config)


@lru_cache(maxsize=32)
def _featurize_cached(text: str, config: FeatureConfig) -> tuple[IntArray, FloatArray]:
    buckets, values = _featurize(text, config)
    buckets.flags.writeable = values.flags.writeable = False  # shared between callers
    return buckets, values


def _featurize(text: str, config: FeatureConfig) -> tuple[IntArray, FloatArray]:
    buckets, counts = np.unique(ngram_hashes(text, config), return_counts=True)
    values = (1.0 + np.log(counts)).astype(np.float32)
    norm = float(np.sqrt(np.dot(values, values))) or 1.0
    return buckets.astype(np.int64), values / np.float32(norm)


@dataclass(frozen=True, slots=True)
class LinearTextModel:
    """A trained hashed-n-gram logistic model; ``score`` gives a probability in [0, 1]."""

    weights: FloatArray
    bias: float
    config: FeatureConfig
    #: texts longer than window + stride/2 are also scored in windows of this many characters
    window: int = 1000
    stride: int = 500

    def logit(self, text: str) -> float:
        buckets, values = featurize(text, self.config)
        return float(np.dot(self.weights[buckets], values)) + self.bias

    def max_logit(self, text: str) -> float:
        """The whole text's logit, or for a long text the highest of it and its windows'."""
        best = self.logit(text)
        if len(text) > self.window + self.stride // 2:
            for start in range(0, len(text) - self.stride, self.stride):
                best = max(best, self.logit(text[start : start + self.window]))
        return best

    def score(self, text: str) -> float:
        """Probability of the positive class (see :meth:`max_logit`)."""
        return sigmoid(self.max_logit(text))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def save_model(path: Path, weights: npt.NDArray[np.floating], bias: float, config: FeatureConfig) -> None:
    """Write an artefact; float16 weights keep it small (the loss is far below model noise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(
            fh,
            weights=np.asarray(weights, dtype=np.float16),
            bias=np.float64(bias),
            feature=np.array([config.bits, config.min_n, config.max_n], dtype=np.int64),
        )


@cache
def load_model(path: Path) -> LinearTextModel:
    """Load (once per path) an artefact written by :func:`save_model`."""
    with np.load(path) as data:
        bits, min_n, max_n = (int(v) for v in data["feature"])
        config = FeatureConfig(bits=bits, min_n=min_n, max_n=max_n)
        weights = data["weights"].astype(np.float32)
        bias = float(data["bias"])
    if weights.shape != (1 << config.bits,):
        raise ValueError(f"{path}: {weights.shape[0]} weights for {config.bits} hash bits")
    return LinearTextModel(weights=weights, bias=bias, config=config)


def model_path(name: str) -> Path:
    """Where the committed artefact of model ``name`` lives."""
    return MODELS_DIR / f"{name}.npz"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
