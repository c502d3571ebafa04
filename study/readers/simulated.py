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


def draw_answers(
    truth: np.ndarray,
    categories: tuple[str, ...],
    *,
    rate: float,
    shows_images: bool,
    error_draws: np.ndarray,
    other_draws: np.ndarray,
) -> np.ndarray:
    """Apply the simulated reader's rule to many lesions of one feature at once.

    With images, an answer is the truth unless its error draw falls below
    ``rate``; then it is the other category picked by the other draw, in the
    order of ``categories`` without the truth. Without images it is a uniform
    guess among ``categories`` picked by the other draw. :meth:`SimulatedReader.read`
    answers each lesion by the same rule, and ``vlmstudy power`` draws whole
    cohorts with it.

    Parameters
    ----------
    truth
        True category per lesion; each one of ``categories``.
    categories
        The feature's categories, in their fixed order.
    rate
        Probability of a wrong answer when images are shown.
    shows_images
        Whether the strategy shows images.
    error_draws, other_draws
        Uniform draws in [0, 1), one per lesion each.

    Returns
    -------
    numpy.ndarray
        The answers, an object array.

    Examples
    --------
    >>> draw_answers(np.array(["absent", "present"]), ("absent", "present"), rate=0.5,
    ...              shows_images=True, error_draws=np.array([0.9, 0.1]),
    ...              other_draws=np.array([0.0, 0.0])).tolist()
    ['absent', 'absent']
    """
    choices = np.asarray(categories, dtype=object)
    position = {category: index for index, category in enumerate(categories)}
    true_index = np.array([position.get(value, -1) for value in truth], dtype=int)
    drawn = draw_answer_indices(
        true_index,
        len(categories),
        rate=rate,
        shows_images=shows_images,
        error_draws=error_draws,
        other_draws=other_draws,
    )
    # A truth outside the categories (such as indeterminate) is kept when no error is drawn.
    return np.where(drawn >= 0, choices[np.maximum(drawn, 0)], np.asarray(truth, dtype=object))


def draw_answer_indices(
    true_index: np.ndarray,
    k: int,
    *,
    rate: float,
    shows_images: bool,
    error_draws: np.ndarray,
    other_draws: np.ndarray,
) -> np.ndarray:
    """Apply :func:`draw_answers` to category indices 0 to ``k - 1``.

    A true index of -1 stands for a truth outside the categories: every
    category is then wrong, and a correct answer stays -1.

    Examples
    --------
    >>> draw_answer_indices(np.array([0, 1, 2]), 3, rate=1.0, shows_images=True,
    ...                     error_draws=np.zeros(3), other_draws=np.array([0.0, 0.0, 0.9])).tolist()
    [1, 0, 1]
    """
    if not shows_images:
        return np.minimum((other_draws * k).astype(int), k - 1)
    known = true_index >= 0
    others = np.where(known, k - 1, k)
    other = np.minimum((other_draws * others).astype(int), others - 1)
    wrong = other + (known & (other >= true_index))
    return np.where(error_draws < rate, wrong, true_index)


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
            answer = draw_answers(
                np.array([truth], dtype=object),
                feature.categories,
                rate=error_rate(self.spec.error_rates, name, request.strategy),
                shows_images=request.prompt.shows_images,
                error_draws=np.array([error_draw]),
                other_draws=np.array([other_draw]),
            )[0]
            answers[name] = {"answer": answer, "confidence": int(50 + 50 * confidence_draw)}

        body = json.dumps({"features": answers}, sort_keys=True)
        if request.prompt.asks_reasoning:
            text = "Each feature was judged on the sequences shown.\n```json\n" + body + "\n```"
        else:
            text = body
        return ReaderResponse(text, "simulated", time.perf_counter() - started)
