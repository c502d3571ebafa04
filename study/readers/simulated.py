"""A reader that draws answers from the ground truth with stated error rates.

It exists for dry runs and power analysis: its accuracy is known in advance.
With probability ``error_rates[feature]`` (or ``error_rates["default"]``) an
answer is replaced by another category of that feature, drawn uniformly. A
feature whose sequences were not shown is answered ``indeterminate``. The draw
is seeded by the reader's seed, the lesion, the strategy, the sequences and the
replicate, so it does not depend on the order in which cells run.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

from study.lirads import FEATURES, INDETERMINATE
from study.protocol import SimulatedReaderSpec
from study.readers.base import ReaderCallError, ReaderResponse, ReadRequest


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
        default_rate = self.spec.error_rates.get("default", 0.15)
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
            if error_draw < self.spec.error_rates.get(name, default_rate):
                others = [category for category in feature.categories if category != truth]
                answer = others[int(other_draw * len(others))]
            answers[name] = {"answer": answer, "confidence": int(50 + 50 * confidence_draw)}

        body = json.dumps({"features": answers}, sort_keys=True)
        if request.strategy == "chain_of_thought":
            text = "Each feature was judged on the sequences shown.\n```json\n" + body + "\n```"
        else:
            text = body
        return ReaderResponse(text, "simulated", time.perf_counter() - started)
