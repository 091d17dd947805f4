"""Fitting one hashed-n-gram logistic head with scikit-learn (training time only).

The features come from :func:`policies.engines.classifier.featurize`, the very function the
checks call at scan time. After fitting, the bias is shifted so that a score of 0.5 is the
operating point chosen on validation (the score at which the false-positive rate on benign
validation rows is the head's target): a policy's ``threshold: 0.5`` means "as measured".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression

from policies.engines.classifier import FeatureConfig, LinearTextModel, featurize


@dataclass(frozen=True, slots=True)
class FitSettings:
    c: float = 8.0
    # 1e-3 instead of liblinear's 1e-4: same validation figures, a third less time.
    tol: float = 1e-3
    max_iter: int = 2000


class FeatureCache:
    """Featurises each distinct text once, however many heads and folds use it."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._cache: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}

    def matrix(self, texts: Sequence[str]) -> csr_matrix:
        indptr = [0]
        indices: list[npt.NDArray[np.int64]] = []
        data: list[npt.NDArray[np.float32]] = []
        for text in texts:
            feats = self._cache.get(text)
            if feats is None:
                feats = self._cache[text] = featurize(text, self.config)
            indices.append(feats[0])
            data.append(feats[1])
            indptr.append(indptr[-1] + feats[0].size)
        return csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0, np.float32),
                np.concatenate(indices) if indices else np.zeros(0, np.int64),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(texts), 1 << self.config.bits),
        )


def fit_head(
    cache: FeatureCache,
    texts: Sequence[str],
    labels: Sequence[int],
    weights: Sequence[float],
    settings: FitSettings,
) -> LinearTextModel:
    """Fit on ``texts``; ``weights`` balance the sources (see ``train_classifiers``)."""
    model = LogisticRegression(
        C=settings.c, solver="liblinear", tol=settings.tol, max_iter=settings.max_iter, random_state=0
    )
    model.fit(cache.matrix(texts), np.asarray(labels), sample_weight=np.asarray(weights))
    return LinearTextModel(
        weights=model.coef_[0].astype(np.float32),
        bias=float(model.intercept_[0]),
        config=cache.config,
    )


#: benign sources with fewer validation rows than this are pooled for calibration
MIN_CALIBRATION_ROWS = 100


def calibrate(model: LinearTextModel, benign: Mapping[str, Sequence[str]], target_fpr: float) -> LinearTextModel:
    """Shift the bias so that score 0.5 fires on at most ``target_fpr`` of *each* benign source.

    Per source, not pooled: thousands of easy chit-chat lines would otherwise hide a high
    false-positive rate on the instructions that look most like attacks. Sources too
    small to estimate a rate on their own are pooled into one group.
    """
    groups: list[Sequence[str]] = []
    small: list[str] = []
    for texts in benign.values():
        if len(texts) >= MIN_CALIBRATION_ROWS:
            groups.append(texts)
        else:
            small.extend(texts)
    if small:
        groups.append(small)
    cut = -math.inf
    for texts in groups:
        logits = np.sort(np.array([model.max_logit(t) for t in texts]))
        allowed = math.floor(target_fpr * logits.size)
        # Fire strictly above the (allowed+1)-th highest benign logit of this group.
        cut = max(cut, float(logits[logits.size - allowed - 1]) + 1e-6)
    if cut == -math.inf:
        return model
    return LinearTextModel(
        weights=model.weights,
        bias=model.bias - cut,
        config=model.config,
        window=model.window,
        stride=model.stride,
    )
