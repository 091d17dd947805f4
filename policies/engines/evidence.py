"""Why an n-gram model scored a text as it did: the words and phrases that weighed most.

A linear model over hashed character n-grams is a sum of per-n-gram weights, so its score
can be read back onto the text: each n-gram's share of the logit is spread over its
characters, characters add up to words, and neighbouring words that both push the score up
form a phrase. A reviewer sees "ignore all previous instructions" (+2.1) rather than a
probability, and can write an ``allow`` entry from it.
"""

from __future__ import annotations

import re

import numpy as np

from policies.engines.classifier import LinearTextModel, featurize, ngram_hashes, normalize

#: longer texts are explained on the window the model scored highest
EVIDENCE_CHARS = 2000
#: evidence goes into the audit record, which keeps no raw values: only words made of
#: letters (no digits, @, dots or other marks that values such as e-mails, keys or
#: numbers carry) and short phrases of them
_WORDLIKE = re.compile(r"^[^\W\d_]+(?:['’-][^\W\d_]+)*$")
MAX_PHRASE_WORDS = 5


def top_phrases(model: LinearTextModel, text: str, k: int = 5) -> list[dict[str, object]]:
    """The ``k`` phrases of ``text`` that raise the model's logit most, highest first."""
    if len(text) > EVIDENCE_CHARS:
        text = _best_window(model, text)
    norm = normalize(text)
    config = model.config
    hashes = ngram_hashes(text, config).astype(np.int64)
    buckets, values = featurize(text, config)
    if not hashes.size:
        return []
    # Each bucket's share of the logit, split evenly over its occurrences.
    share = model.weights[buckets] * values
    _, counts = np.unique(hashes, return_counts=True)
    per_occurrence = share / counts
    lookup = np.searchsorted(buckets, hashes)
    contrib = per_occurrence[lookup]
    chars = np.zeros(len(norm), dtype=np.float64)
    offset = 0
    for n in range(1, config.max_n + 1):
        count = len(norm) - n + 1
        if count <= 0:
            break
        if n >= config.min_n:
            part = contrib[offset : offset + count] / n
            for j in range(n):
                chars[j : j + count] += part
            offset += count
    return _phrases(norm, chars, k)


def _best_window(model: LinearTextModel, text: str) -> str:
    best, best_logit = text[:EVIDENCE_CHARS], -np.inf
    step = EVIDENCE_CHARS // 2
    for start in range(0, max(1, len(text) - step), step):
        window = text[start : start + EVIDENCE_CHARS]
        logit = model.logit(window)
        if logit > best_logit:
            best, best_logit = window, logit
    return best


def _phrases(norm: str, chars: np.ndarray, k: int) -> list[dict[str, object]]:
    words: list[tuple[int, int, float]] = []
    start = None
    for i, ch in enumerate(norm + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            weight = float(chars[start:i].sum())
            # A value-like token (digits, @, dots) is never shown: it ends a phrase instead.
            words.append((start, i, weight if _WORDLIKE.match(norm[start:i].strip(".,;:!?()\"'")) else -1.0))
            start = None
    if not words:
        return []
    top = max(w[2] for w in words)
    if top <= 0:
        return []
    # A word joins a phrase when it pushes the score up by at least a fifth of the strongest word.
    floor = top / 5
    phrases: list[tuple[int, int, float]] = []
    for s, e, weight in words:
        if weight < floor:
            continue
        if phrases and s - phrases[-1][1] <= 1 and len(norm[phrases[-1][0] : e].split()) <= MAX_PHRASE_WORDS:
            ps, _, pw = phrases[-1]
            phrases[-1] = (ps, e, pw + weight)
        else:
            phrases.append((s, e, weight))
    phrases.sort(key=lambda p: -p[2])
    return [{"text": norm[s:e], "weight": round(w, 3)} for s, e, w in phrases[:k]]
