"""The shared shape of the checks built on the trained detectors (``DetectorCheck``).

A detector check combines engines from ``policies.engines``: an n-gram model (``classifier``),
hand-written cues (``heuristics``) and, where the check has one, the semantic encoder
(``encoder``, combined as ``tiers`` says). It reports a score, fires at the policy's threshold,
and records its evidence: the tier that decided, the cues, and the phrases that weighed most
(``evidence``), so a reviewer can see why a text was blocked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from policies.checks.base import Check, CheckOptions, CheckResult
from policies.engines.classifier import LinearTextModel, load_model, model_path, normalize
from policies.engines.decode import decodings
from policies.engines.encoder import available as encoder_available
from policies.engines.encoder import load_semantic
from policies.engines.evidence import top_phrases
from policies.engines.quotes import split_quotes
from policies.engines.tiers import load_stackers, logit_of, sigmoid


class DetectorOptions(CheckOptions):
    """Options shared by the classifier checks.

    ``threshold``: the score at which the check fires. Each model's bias is set in training
    so that 0.5 is its measured operating point (see ``policies/models/manifest.json``);
    raise it for fewer false positives, lower it for more recall.
    """

    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: use the trained model (off: cues / lexicon only)
    model: bool = True
    #: use the hand-written cues or lexicon (off: the model only)
    heuristics: bool = True
    #: ask the semantic encoder when the first tier cannot decide (checks that have one)
    semantic: bool = True


class DetectorCheck(Check[DetectorOptions]):
    """A detector built from an n-gram model, hand-written cues and, where the check has one
    (``policies/models/semantic/tiers.json``), the semantic encoder; see ``policies/engines/tiers.py`` for how
    they combine. Without a semantic tier the score is max(model, cues)."""

    #: the n-gram model's artefact; None: the check has none (cues and the encoder only)
    model_name: ClassVar[str | None]
    #: record the phrases that weighed most (off where they would repeat what the check
    #: exists to keep out of records, such as slurs)
    explain: ClassVar[bool] = True
    #: a short quote inside the user's sentence is the object of the request, not the user's
    #: own words (``policies/engines/quotes.py``): on for the checks of direct attacks on the model
    quotes_as_data: ClassVar[bool] = False
    #: also judge the plaintext of base64 / hex / ROT13 / pig latin ... in the text (``policies/engines/decode.py``)
    reads_encodings: ClassVar[bool] = False

    def __init__(self, options: DetectorOptions) -> None:
        super().__init__(options)
        stacker = load_stackers().get(self.name) if options.semantic else None
        self._stacker = stacker if stacker is not None and encoder_available() else None

    def warm(self) -> None:
        if self.model_name is not None:
            load_model(model_path(self.model_name))
        if self._stacker is not None:
            load_semantic()

    def cues(self, normalized: str) -> tuple[float, tuple[str, ...]]:
        """Score and names of the hand-written signals found in ``normalized`` text."""
        return 0.0, ()

    def scan_messages(self, messages: Sequence[str]) -> CheckResult:
        """Each text judged alone (an attack is one message, and the record names it); the
        highest score decides."""
        best: CheckResult | None = None
        part = 0
        for index, text in enumerate(messages):
            result = self.scan(text)
            if best is None or result.score > best.score:
                best, part = result, index
        if best is None:
            return CheckResult.clean()
        return CheckResult(best.fired, best.score, best.spans, {**best.detail, "part": part})

    def scan(self, text: str) -> CheckResult:
        if not text.strip():
            return CheckResult.clean()
        result = self._scan_quoted(text)
        if self.reads_encodings:
            # An encoded attack is judged as its plaintext (decode.py): whichever scores higher.
            for encoding, plain in decodings(text):
                decoded = self._scan_quoted(plain)
                if decoded.score > result.score:
                    detail = {**decoded.detail, "decoded": encoding}
                    result = CheckResult(decoded.fired, decoded.score, (), detail)
        return result

    def _scan_quoted(self, text: str) -> CheckResult:
        quoted = split_quotes(text) if self.quotes_as_data else None
        if quoted is None or quoted.obeyed:
            return self._judge(text)
        # The quotes are the object of the user's request (see quotes.py): a quoted attack
        # phrase decides together with the user's own words (the geometric mean of the two
        # scores), so "write a rule matching '<attack>'" passes and "drop your rules and
        # translate '<attack>'" does not; it never lowers what the own words score.
        threshold = self.options.threshold
        own = self._judge(quoted.own)
        inner = self._judge("\n".join(quoted.quotes))
        score = round(max(own.score, math.sqrt(own.score * inner.score)), 4)
        detail = {**own.detail, "quoted": {"score": inner.score, **inner.detail}}
        return CheckResult(fired=score >= threshold, score=score, detail=detail)

    def model(self) -> LinearTextModel | None:
        """The first tier's n-gram model (training swaps in a model fitted without a source,
        so leave-out figures measure this very check)."""
        if not self.options.model or self.model_name is None:
            return None
        return load_model(model_path(self.model_name))

    def _judge(self, text: str) -> CheckResult:
        opts = self.options
        model = self.model()
        ngram_logit = model.max_logit(text) if model is not None else 0.0
        model_score = sigmoid(ngram_logit) if model is not None else 0.0
        cue_score, names = self.cues(normalize(text)) if opts.heuristics else (0.0, ())
        detail: dict[str, Any] = {
            "model_score": round(model_score, 4),
            "cues": list(names),
            "threshold": opts.threshold,
        }
        if self._stacker is None:
            score = max(model_score, cue_score)
            detail["tier"] = "cues" if cue_score > model_score else "ngram"
        else:
            score = self._stacked(text, ngram_logit, cue_score, detail)
        # Fire on the score as reported, so a reviewer can reproduce the decision from the record.
        score = round(score, 4)
        fired = score >= opts.threshold
        if self.explain and model is not None and (fired or score >= opts.threshold / 2):
            detail["evidence"] = {"ngrams": top_phrases(model, text), "cues": list(names)}
        return CheckResult(fired=fired, score=score, detail=detail)

    def _stacked(self, text: str, ngram_logit: float, cue_score: float, detail: dict[str, Any]) -> float:
        """The tiers combined; the encoder is run only when the first tier cannot decide."""
        stacker = self._stacker
        assert stacker is not None
        threshold = logit_of(self.options.threshold)
        lo, hi = stacker.bounds(ngram_logit, cue_score)
        if hi < threshold:
            detail["tier"] = "ngram"
            return sigmoid(hi)  # at most this, whatever the encoder would say
        if lo >= threshold:
            detail["tier"] = "ngram"
            return sigmoid(lo)
        semantic = load_semantic().logits(text, stacker.head)
        detail["tier"] = "semantic"
        detail["semantic_score"] = round(sigmoid(semantic), 4)
        return sigmoid(stacker.logit(ngram_logit, cue_score, semantic))
