"""A reader that draws answers from the ground truth with stated error rates.

It exists for dry runs and power analysis: its accuracy is known in advance.
With the error rate of the feature and strategy (:func:`error_rate`) an
answer is replaced by another category of that feature, drawn uniformly. A
feature whose sequences were not shown is answered ``indeterminate``. Under a
strategy that shows no images (``no_image``) every answer is a uniform guess
among the feature's categories, whatever the truth. The draw
is seeded by the reader's seed, the lesion, the strategy, the sequences and the
replicate, so it does not depend on the order in which cells run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from study.lirads import FEATURES, INDETERMINATE
from study.protocol import SimulatedReaderSpec
from study.readers.base import ReaderCallError, ReaderResponse, ReadRequest

DEFAULT_ERROR_RATE = 0.15


def error_rate(
    rates: Mapping[str, float | Mapping[str, float]], feature: str, strategy: str
) -> float:
    """Return the error rate of one feature under one strategy.

    The feature's entry (else ``default``) is either one rate or rates by
    strategy, where a missing strategy falls back to that entry's ``default``
    and then to the top-level ``default``.

    Examples
    --------
    >>> rates = {"default": 0.2, "aphe": {"zero_shot": 0.3, "default": 0.1}, "washout": 0.05}
    >>> error_rate(rates, "aphe", "zero_shot"), error_rate(rates, "aphe", "few_shot")
    (0.3, 0.1)
    >>> error_rate(rates, "washout", "few_shot"), error_rate(rates, "fat_in_mass", "few_shot")
    (0.05, 0.2)
    """
    top = rates.get("default", DEFAULT_ERROR_RATE)
    if isinstance(top, Mapping):
        fallback = top.get(strategy, top.get("default", DEFAULT_ERROR_RATE))
    else:
        fallback = top
    entry = rates.get(feature)
    if entry is None:
        return float(fallback)
    if isinstance(entry, Mapping):
        return float(entry.get(strategy, entry.get("default", fallback)))
    return float(entry)


class SimulatedReader:
    """Answers drawn from the ground truth; see the module docstring."""

    def __init__(self, spec: SimulatedReaderSpec) -> None:
        self.name = spec.name
        self.spec = spec

    def identity(self) -> dict[str, Any]:
        """Return the seed and error rates, which fix every answer."""
        return {"kind": "simulated", "seed": self.spec.seed, "error_rates": self.spec.error_rates}

    def _rng(self, request: ReadRequest) -> np.random.Generator:
        key = json.dumps(
            [request.lesion_id, request.strategy, list(request.sequences), request.replicate]
        )
        entropy = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
        return np.random.default_rng([self.spec.seed, entropy])

    def read(self, request: ReadRequest) -> ReaderResponse:
        """Draw one answer per feature and write it as a model would."""
        if request.truth is None:
            raise ReaderCallError(f"no ground truth for lesion {request.lesion_id}")
        started = time.perf_counter()
        rng = self._rng(request)
        answers = {}
        for name in request.features:
            feature = FEATURES[name]
            error_draw, other_draw, confidence_draw = rng.random(3)
            if not feature.judgeable(request.sequences):
                answers[name] = {"answer": INDETERMINATE, "confidence": 0}
                continue
            truth = request.truth.get(name)
            if truth is None:
                answers[name] = {"answer": INDETERMINATE, "confidence": 0}
                continue
            answer = truth
            if not request.prompt.shows_images:
                # Without images the reader can only guess: any category, uniformly.
                answer = feature.categories[int(other_draw * len(feature.categories))]
            elif error_draw < error_rate(self.spec.error_rates, name, request.strategy):
                others = [category for category in feature.categories if category != truth]
                answer = others[int(other_draw * len(others))]
            answers[name] = {"answer": answer, "confidence": int(50 + 50 * confidence_draw)}

        body = json.dumps({"features": answers}, sort_keys=True)
        if request.prompt.asks_reasoning:
            text = "Each feature was judged on the sequences shown.\n```json\n" + body + "\n```"
        else:
            text = body
        return ReaderResponse(text, "simulated", time.perf_counter() - started)
