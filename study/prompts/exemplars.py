"""Drawing few-shot exemplars from the ``exemplar`` split by a seeded, named rule."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from study.prompts.spec import EXEMPLAR_RULES


def _generator(seed: int, lesion_id: str) -> np.random.Generator:
    lesion_key = int.from_bytes(hashlib.sha256(lesion_id.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed, lesion_key])


def draw_exemplars(
    candidates: Sequence[str],
    lesion_id: str,
    *,
    k: int,
    seed: int,
    rule: str = "random",
    answers: Mapping[str, Mapping[str, str]] | None = None,
    lesion_types: Mapping[str, str] | None = None,
) -> list[str]:
    """Draw ``k`` exemplar lesion ids for one evaluation lesion, reproducibly.

    The draw depends only on the seed, the lesion id, the candidate set and the
    rule's inputs, never on the order of ``candidates``, so every cell shows a
    lesion the same exemplars. The caller passes only lesions of the
    ``exemplar`` split as candidates. The rules:

    ``random``
        ``k`` candidates drawn uniformly without replacement.
    ``balanced``
        Greedy: in a seeded random order, repeatedly take the candidate whose
        reference answers are rarest among those already chosen, scoring each
        feature's answer ``1 / (1 + times chosen so far)`` and summing over
        features. The examples then cover each feature's answers as evenly as
        ``k`` allows. Needs ``answers``.
    ``nearest_type``
        Candidates of the same lesion type as the lesion read first, then the
        others, each group in a seeded random order. Needs ``lesion_types``,
        with an entry for ``lesion_id``; without one the rule falls back to
        ``random``. NOTE: the type is the reference diagnosis of the lesion
        being read, so this rule lets the reference standard choose the
        examples; it measures a best case, not a rule a clinic could apply.

    Returns the chosen ids sorted, so the prompt order does not depend on the rule.

    Examples
    --------
    >>> draw_exemplars(["E1", "E2", "E3"], "L7", k=2, seed=1) == draw_exemplars(
    ...     ["E3", "E1", "E2"], "L7", k=2, seed=1)
    True
    >>> types = {"E1": "HCC", "E2": "cyst", "E3": "cyst", "L7": "cyst"}
    >>> draw_exemplars(["E1", "E2", "E3"], "L7", k=2, seed=1, rule="nearest_type",
    ...                lesion_types=types)
    ['E2', 'E3']
    """
    if rule not in EXEMPLAR_RULES:
        raise ValueError(f"unknown exemplar rule {rule!r}; use one of {', '.join(EXEMPLAR_RULES)}")
    pool = sorted(set(candidates))
    count = min(k, len(pool))
    rng = _generator(seed, lesion_id)

    if rule == "balanced":
        if answers is None:
            raise ValueError("missing answers: the 'balanced' rule needs each candidate's answers")
        return sorted(_balanced(pool, count, rng, answers))

    if rule == "nearest_type" and lesion_types and lesion_id in lesion_types:
        order = [pool[index] for index in rng.permutation(len(pool))]
        target = lesion_types[lesion_id]
        same = [item for item in order if lesion_types.get(item) == target]
        others = [item for item in order if lesion_types.get(item) != target]
        return sorted((same + others)[:count])

    chosen = rng.choice(len(pool), size=count, replace=False)
    return [pool[index] for index in sorted(chosen)]


def _balanced(
    pool: list[str], count: int, rng: np.random.Generator, answers: Mapping[str, Mapping[str, str]]
) -> list[str]:
    order = [pool[index] for index in rng.permutation(len(pool))]
    seen: Counter[tuple[str, str]] = Counter()
    chosen: list[str] = []
    for _ in range(count):
        remaining = [item for item in order if item not in chosen]

        def score(item: str) -> float:
            pairs = answers.get(item, {}).items()
            return sum(1.0 / (1 + seen[(feature, answer)]) for feature, answer in pairs)

        # max() keeps the first of equal scores, so ties follow the seeded order.
        best = max(remaining, key=score)
        chosen.append(best)
        seen.update(answers.get(best, {}).items())
    return chosen
