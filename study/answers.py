"""The answer schema readers are asked for, and a tolerant parser of their text.

Every reader returns text. The parser finds the JSON answer in it (in a code
fence, after prose, with single quotes or trailing commas), maps synonyms to
the feature's categories, and records each repair it applied so a strict
re-analysis can drop repaired answers. Text it cannot read yields the outcome
``parse_failure`` and no answer; it never guesses one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from study.lirads import ABSENT, DIAGNOSES, FEATURES, INDETERMINATE, PRESENT

LIRADS_CATEGORIES = ("LR-1", "LR-2", "LR-3", "LR-4", "LR-5", "LR-M", "LR-TIV", "LR-NC")

_SYNONYMS = {
    "yes": PRESENT,
    "true": PRESENT,
    "positive": PRESENT,
    "seen": PRESENT,
    "no": ABSENT,
    "false": ABSENT,
    "negative": ABSENT,
    "none": ABSENT,
    "not seen": ABSENT,
    "unsure": INDETERMINATE,
    "uncertain": INDETERMINATE,
    "unknown": INDETERMINATE,
    "cannot assess": INDETERMINATE,
    "cannot be assessed": INDETERMINATE,
    "not assessable": INDETERMINATE,
    "non-rim": "nonrim",
    "non rim": "nonrim",
    "non-peripheral": "nonperipheral",
    "non peripheral": "nonperipheral",
}

_REFUSAL = re.compile(
    r"\b(I(?:'m| am)? (?:sorry|unable)|I can(?:no|')t|I cannot|I won't|as an AI)\b",
    re.IGNORECASE,
)


def answer_model(
    features: list[str] | tuple[str, ...], *, reasoning: bool = False
) -> type[BaseModel]:
    """Build the pydantic model of a reader's answer for the requested features.

    With ``reasoning``, a free-text ``reasoning`` field comes first, so a
    chain-of-thought answer under structured output writes its reasoning
    before its answers.
    """
    config = ConfigDict(extra="forbid")
    per_feature = {}
    for name in features:
        answers = FEATURES[name].answers
        model = create_model(
            f"Answer_{name}",
            __config__=config,
            answer=(Literal[answers], ...),  # type: ignore[valid-type]
            confidence=(int, Field(..., ge=0, le=100)),
            evidence=(str | None, Field(None, max_length=200)),
        )
        per_feature[name] = (model, ...)
    feature_model = create_model("FeatureAnswers", __config__=config, **per_feature)
    leading = {"reasoning": (str, ...)} if reasoning else {}
    return create_model(
        "LesionAnswer",
        __config__=config,
        **leading,
        features=(feature_model, ...),
        lirads_category=(Literal[LIRADS_CATEGORIES] | None, None),  # type: ignore[valid-type]
        diagnosis=(Literal[DIAGNOSES] | None, None),  # type: ignore[valid-type]
    )


def answer_schema(
    features: list[str] | tuple[str, ...], *, reasoning: bool = False
) -> dict[str, Any]:
    """Return the JSON Schema of a reader's answer, as structured output requests it.

    Examples
    --------
    >>> schema = answer_schema(["aphe"])
    >>> schema["properties"]["features"]["$ref"]
    '#/$defs/FeatureAnswers'
    """
    return answer_model(features, reasoning=reasoning).model_json_schema()


@dataclass(frozen=True)
class ParsedAnswer:
    """What the parser read from one response.

    Attributes
    ----------
    outcome
        ``valid``, ``parse_failure`` or ``refusal``.
    answers
        Feature name to ``(answer, confidence)``; missing features are absent
        from the mapping, and the mapping is empty unless ``outcome`` is valid.
    repairs
        Names of the repair rules applied, in order.
    """

    outcome: str
    answers: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    repairs: tuple[str, ...] = ()
    lirads_category: str | None = None
    diagnosis: str | None = None


def _candidate_json(text: str, repairs: list[str]) -> str | None:
    fenced = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, flags=re.DOTALL | re.IGNORECASE)
    if fenced:
        if text.strip() != fenced[-1].strip():
            repairs.append("json_in_code_fence")
        return fenced[-1]
    start = text.find("{")
    if start < 0:
        return None
    if text[:start].strip():
        repairs.append("json_after_prose")
    end = text.rfind("}")
    return text[start : end + 1] if end > start else text[start:]


def _loads_tolerant(candidate: str, repairs: list[str]) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    repaired = re.sub(r",\s*([}\]])", r"\1", candidate)
    if repaired != candidate:
        repairs.append("trailing_comma")
    if "'" in repaired and '"' not in repaired:
        repaired = repaired.replace("'", '"')
        repairs.append("single_quotes")
    return json.loads(repaired)


def _normalise_answer(raw: Any, name: str, repairs: list[str]) -> str | None:
    allowed = FEATURES[name].answers
    if isinstance(raw, bool):
        repairs.append("boolean_answer")
        return PRESENT if raw and PRESENT in allowed else ABSENT if ABSENT in allowed else None
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    if text in allowed:
        if text != raw:
            repairs.append("case_or_space")
        return text
    mapped = _SYNONYMS.get(text)
    if mapped in allowed:
        repairs.append("synonym")
        return mapped
    return None


def parse_answer(text: str, features: list[str] | tuple[str, ...]) -> ParsedAnswer:
    """Parse a reader's response text into answers per feature and an outcome.

    Examples
    --------
    >>> parsed = parse_answer('{"features": {"aphe": {"answer": "Nonrim", "confidence": 80}}}',
    ...                       ["aphe", "washout"])
    >>> parsed.outcome, parsed.answers, parsed.repairs
    ('valid', {'aphe': ('nonrim', 80.0)}, ('case_or_space',))
    >>> parse_answer("I'm sorry, I can't provide a medical diagnosis.", ["aphe"]).outcome
    'refusal'
    """
    repairs: list[str] = []
    candidate = _candidate_json(text, repairs)
    if candidate is None:
        outcome = "refusal" if _REFUSAL.search(text) else "parse_failure"
        return ParsedAnswer(outcome)
    try:
        document = _loads_tolerant(candidate, repairs)
    except json.JSONDecodeError:
        return ParsedAnswer("parse_failure", repairs=tuple(repairs))
    if not isinstance(document, dict):
        return ParsedAnswer("parse_failure", repairs=tuple(repairs))

    lowered = {str(key).lower(): value for key, value in document.items()}
    per_feature = lowered.get("features", lowered)
    if not isinstance(per_feature, dict):
        return ParsedAnswer("parse_failure", repairs=tuple(repairs))
    per_feature = {str(key).lower(): value for key, value in per_feature.items()}

    answers: dict[str, tuple[str, float | None]] = {}
    for name in features:
        item = per_feature.get(name)
        if isinstance(item, dict):
            raw_answer = item.get("answer")
            raw_confidence = item.get("confidence")
        else:
            raw_answer, raw_confidence = item, None
        answer = _normalise_answer(raw_answer, name, repairs)
        if answer is None:
            continue
        confidence = (
            float(raw_confidence)
            if isinstance(raw_confidence, int | float) and 0 <= raw_confidence <= 100
            else None
        )
        answers[name] = (answer, confidence)

    if not answers:
        return ParsedAnswer("parse_failure", repairs=tuple(repairs))
    category = lowered.get("lirads_category")
    diagnosis = lowered.get("diagnosis")
    return ParsedAnswer(
        "valid",
        answers,
        tuple(dict.fromkeys(repairs)),
        category if category in LIRADS_CATEGORIES else None,
        diagnosis if diagnosis in DIAGNOSES else None,
    )
