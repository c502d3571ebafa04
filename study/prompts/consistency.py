"""Self-consistency: combining several sampled answers to one answer per feature."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from study.lirads import FEATURES, INDETERMINATE


def aggregate_samples(
    parsed_answers: Sequence[Mapping[str, tuple[str | None, float | None]]],
    features: Sequence[str],
) -> tuple[dict[str, str | None], dict[str, float]]:
    """Combine sampled answers by majority vote per feature.

    Each sample is a mapping from feature name to ``(answer, confidence)``, as in
    :attr:`study.answers.ParsedAnswer.answers`; pass only samples whose outcome
    is ``valid``. A feature missing from a sample, or answered ``None``, is no
    vote. The answer is the category with the most votes. A tie is broken
    towards ``indeterminate`` when it is among the tied categories, and
    otherwise towards the category listed first in the feature's categories
    (:data:`study.lirads.FEATURES`), which puts ``absent`` first. So a tied vote
    never invents a finding.

    The confidence is the agreement among samples: the winning category's votes
    divided by all samples given, from 0 to 1. A feature with no vote gets
    answer ``None`` and confidence 0.

    Parameters
    ----------
    parsed_answers
        One mapping per sample.
    features
        Feature names to combine, in order.

    Returns
    -------
    answers, confidence
        Dictionaries keyed by feature name.

    Examples
    --------
    >>> samples = [{"aphe": ("nonrim", 80)}, {"aphe": ("nonrim", 60)}, {"aphe": ("absent", 90)}]
    >>> aggregate_samples(samples, ["aphe"])
    ({'aphe': 'nonrim'}, {'aphe': 0.6666666666666666})
    >>> aggregate_samples([{"aphe": ("rim", 50)}, {"aphe": ("absent", 50)}], ["aphe"])
    ({'aphe': 'absent'}, {'aphe': 0.5})
    """
    answers: dict[str, str | None] = {}
    confidence: dict[str, float] = {}
    for name in features:
        votes = Counter(
            sample[name][0] for sample in parsed_answers if sample.get(name, (None,))[0] is not None
        )
        if not votes or not parsed_answers:
            answers[name], confidence[name] = None, 0.0
            continue

        top = max(votes.values())
        tied = [category for category, count in votes.items() if count == top]
        answers[name] = min(tied, key=lambda category: _tie_rank(name, category))
        confidence[name] = top / len(parsed_answers)
    return answers, confidence


def _tie_rank(feature: str, category: str) -> tuple[int, int, str]:
    if category == INDETERMINATE:
        return (0, 0, category)
    order = FEATURES[feature].categories if feature in FEATURES else ()
    position = order.index(category) if category in order else len(order)
    return (1, position, category)
