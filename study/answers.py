"""The answer schema readers are asked for, and a tolerant parser of their text.

Every reader returns text. The parser finds the JSON answer in it, maps
synonyms to the feature's categories, and records each rule it applied (see
:data:`REPAIRS`) so a strict re-analysis can drop repaired answers. Text it
cannot read yields ``parse_failure`` or ``refusal`` and no answer; it never
guesses one. A hedged answer such as ``"probably present"`` is not read,
because mapping a hedge to a category would be a guess.

Confidence rule: a number from 0 to 100 is kept. When every numeric
confidence in one response lies in [0, 1] and at least one is not a whole
number, the response is taken to use a 0-1 scale and each is multiplied by 100
(``confidence_fraction``); so ``0.8`` becomes 80, but a lone ``1`` stays 1.
A string such as ``"80%"`` or ``"80"`` is read as that number
(``confidence_string``). Anything else leaves the confidence missing while the
answer stays valid (``confidence_unreadable``).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from study.lirads import (
    ABSENT,
    DIAGNOSES,
    FEATURES,
    INDETERMINATE,
    LIRADS_CATEGORIES,
    PRESENT,
    category_from_answers,
)

__all__ = [
    "LIRADS_CATEGORIES",
    "REPAIRS",
    "ParsedAnswer",
    "answer_model",
    "answer_schema",
    "parse_answer",
]

REPAIRS: dict[str, str] = {
    "json_in_code_fence": "the JSON was read from a Markdown code fence",
    "json_after_prose": "prose came before the JSON",
    "prose_after_json": "prose came after the JSON",
    "multiple_json_objects": "several JSON objects; the last with feature answers was read",
    "trailing_comma": "trailing commas were removed",
    "single_quotes": "single quotes were read as double quotes",
    "python_literal": "the object was read as a Python literal (single quotes, True/False/None)",
    "double_encoded": "the JSON was a string holding JSON",
    "truncated_json": "the output was cut off; only complete feature objects were read",
    "key_case": "keys were not lower case",
    "key_alias": "a feature was named by its LI-RADS term or an alias, not its name",
    "no_features_key": "feature answers were at the top level, not under 'features'",
    "feature_list": "feature answers came as a list of objects with a 'feature' key",
    "extra_keys": "keys outside the schema were ignored",
    "bare_answer": "a feature's answer was a bare value, not an object with 'answer'",
    "case_or_space": "an answer differed from its category in case or spacing",
    "synonym": "an answer was a synonym of a category (yes, no, unsure, ...)",
    "boolean_answer": "an answer was true or false",
    "confidence_missing": "an answer had no confidence",
    "confidence_string": "a confidence was a string such as '80%'",
    "confidence_fraction": "confidences on a 0-1 scale were multiplied by 100",
    "confidence_unreadable": "a confidence was not a number from 0 to 100 and was dropped",
    "category_format": "the LI-RADS category was written another way (5, LR5, LI-RADS 5)",
    "category_unreadable": "the LI-RADS category was not a v2018 category and was dropped",
    "diagnosis_synonym": "the diagnosis was a synonym or differed in case",
    "diagnosis_unreadable": "the diagnosis was not in the fixed list and was dropped",
}
"""Every rule the parser may apply, by the name recorded in ``repairs``."""

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
    "not present": ABSENT,
    "unsure": INDETERMINATE,
    "not sure": INDETERMINATE,
    "uncertain": INDETERMINATE,
    "unknown": INDETERMINATE,
    "equivocal": INDETERMINATE,
    "cannot assess": INDETERMINATE,
    "can't assess": INDETERMINATE,
    "cannot be assessed": INDETERMINATE,
    "cannot be determined": INDETERMINATE,
    "not assessable": INDETERMINATE,
    "non-rim": "nonrim",
    "non rim": "nonrim",
    "non-peripheral": "nonperipheral",
    "non peripheral": "nonperipheral",
}

_KEY_ALIASES = {
    "capsule": "enhancing_capsule",
    "arterial_hyperenhancement": "aphe",
    "washout_appearance": "washout",
    "dwi_restriction": "restricted_diffusion",
    "diffusion_restriction": "restricted_diffusion",
}
_KEY_ALIASES.update({re.sub(r"[\s,-]+", "_", f.label.lower()): f.name for f in FEATURES.values()})

_DIAGNOSIS_SYNONYMS = {
    "hepatocellular carcinoma": "HCC",
    "cholangiocarcinoma": "intrahepatic cholangiocarcinoma",
    "icc": "intrahepatic cholangiocarcinoma",
    "icca": "intrahepatic cholangiocarcinoma",
    "metastases": "metastasis",
    "liver metastasis": "metastasis",
    "haemangioma": "hemangioma",
    "focal nodular hyperplasia": "FNH",
    "hepatocellular adenoma": "adenoma",
    "hepatic adenoma": "adenoma",
    "simple cyst": "cyst",
    "hepatic cyst": "cyst",
    "liver abscess": "abscess",
}

_TOP_LEVEL = {"reasoning", "features", "lirads_category", "diagnosis"}
_ITEM_KEYS = {"answer", "confidence", "evidence"}

_REFUSAL = re.compile(
    r"\bI(?:'m|’m| am) (?:sorry|unable|not able)\b"
    r"|\bI (?:can(?:'|’|no)t|cannot|won't|will not) (?:help|assist|provide|offer|give|"
    r"analy[sz]e|interpret|diagnose|comply|make)\b"
    r"|\bas an AI\b"
    r"|\b(?:consult|speak with) (?:a|your) (?:qualified )?(?:radiologist|physician|doctor|"
    r"medical professional|healthcare)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def answer_model(
    features: list[str] | tuple[str, ...], *, reasoning: bool = False
) -> type[BaseModel]:
    """Build the pydantic model of a reader's answer for the requested features.

    Per feature: an ``answer`` from its categories or ``indeterminate``, a
    ``confidence`` from 0 to 100 and an optional ``evidence`` phrase. Then an
    optional LI-RADS category and an optional diagnosis from
    :data:`study.lirads.DIAGNOSES`. With ``reasoning``, a free-text
    ``reasoning`` field comes first, so a chain-of-thought answer under
    structured output writes its reasoning before its answers.
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
    >>> list(answer_schema(["aphe"], reasoning=True)["properties"])[:2]
    ['reasoning', 'features']
    """
    return answer_model(features, reasoning=reasoning).model_json_schema()


@dataclass(frozen=True)
class ParsedAnswer:
    """The answers, outcome and repairs the parser read from one response.

    Attributes
    ----------
    outcome
        ``valid``, ``parse_failure`` or ``refusal``.
    answers
        Feature name to ``(answer, confidence)``; missing and unreadable
        features are absent from the mapping, which is empty unless
        ``outcome`` is valid.
    repairs
        Names of the rules applied (keys of :data:`REPAIRS`), in order.
    lirads_category, diagnosis
        The reader's own category and diagnosis, when it gave readable ones.
    feature_repairs
        Per answered feature, the rules that touched its answer.
    unreadable
        Requested features the response held but the parser could not read.
    evidence
        Per answered feature, the reader's evidence phrase when it gave one.
    """

    outcome: str
    answers: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    repairs: tuple[str, ...] = ()
    lirads_category: str | None = None
    diagnosis: str | None = None
    feature_repairs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()
    evidence: dict[str, str] = field(default_factory=dict)

    def computed_category(self, size_mm: float) -> str | None:
        """Compute the v2018 category from this reader's own features.

        Kept beside :attr:`lirads_category` so the analysis can report how
        consistent a reader is with itself. The rules are those of
        :func:`study.lirads.category_from_answers`.
        """
        if self.outcome != "valid":
            return None
        answers = {name: answer for name, (answer, _) in self.answers.items()}
        return category_from_answers(answers, size_mm)


# --------------------------------------------------------------------------- JSON finding


def _loads_tolerant(candidate: str, repairs: list[str]) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    repaired = re.sub(r",\s*([}\]])", r"\1", candidate)
    if repaired != candidate:
        try:
            value = json.loads(repaired)
            repairs.append("trailing_comma")
            return value
        except json.JSONDecodeError:
            pass
    if "'" in repaired and '"' not in repaired:
        try:
            value = json.loads(repaired.replace("'", '"'))
            repairs.extend(["trailing_comma"] * (repaired != candidate) + ["single_quotes"])
            return value
        except json.JSONDecodeError:
            pass
    if len(candidate) < 100_000:
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = None
        if isinstance(value, dict | list):
            repairs.append("python_literal")
            return value
    raise ValueError("not JSON")


def _value_end(text: str, start: int) -> int | None:
    """Return the index just past the JSON value at ``start``, or None if it is cut off."""
    opening = text[start]
    if opening in "\"'":
        position = start + 1
        while position < len(text):
            if text[position] == "\\":
                position += 2
                continue
            if text[position] == opening:
                return position + 1
            position += 1
        return None
    if opening in "{[":
        depth, quote, position = 0, None, start
        while position < len(text):
            char = text[position]
            if quote:
                if char == "\\":
                    position += 1
                elif char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return position + 1
            position += 1
        return None
    match = re.compile(r"[^,}\]]*(?=[,}\]])").match(text, start)
    return match.end() if match else None


def _complete_members(text: str, start: int) -> tuple[dict[str, str], bool]:
    """Split the object opening at ``start`` into member texts that are complete.

    Returns the complete members and whether the object was cut off.
    """
    members: dict[str, str] = {}
    member = re.compile(r"\s*,?\s*([\"'])((?:\\.|(?!\1).)*)\1\s*:\s*", re.DOTALL)
    position = start + 1
    while True:
        if re.compile(r"\s*}").match(text, position):
            return members, False
        match = member.match(text, position)
        if not match or match.end() >= len(text):
            return members, True
        end = _value_end(text, match.end())
        if end is None:
            return members, True
        members[match.group(2)] = text[match.end() : end].strip()
        position = end


def _recover_truncated(text: str, repairs: list[str]) -> dict | None:
    """Read the complete members of an object that was cut off, or None if nothing is complete."""
    members, _ = _complete_members(text, 0)
    recovered: dict[str, Any] = {}
    for key, value_text in members.items():
        try:
            recovered[key] = _loads_tolerant(value_text, [])
        except ValueError:
            continue
    features_key = re.compile(r"[\"']features[\"']\s*:\s*\{", re.IGNORECASE).search(text)
    if features_key and not any(_normal_key(key) == "features" for key in recovered):
        inner, _ = _complete_members(text, features_key.end() - 1)
        readable = {}
        for key, value_text in inner.items():
            try:
                readable[key] = _loads_tolerant(value_text, [])
            except ValueError:
                continue
        if readable:
            recovered["features"] = readable
    if not recovered:
        return None
    repairs.append("truncated_json")
    return recovered


def _has_answers(value: Any) -> bool:
    if isinstance(value, list):
        return True
    if not isinstance(value, dict):
        return False
    keys = {_normal_key(key) for key in value}
    return bool(keys & ({"features"} | set(FEATURES) | set(_KEY_ALIASES)))


def _find_document(text: str, repairs: list[str]) -> Any:
    """Return the JSON document in ``text`` (dict or list), or None if there is none."""
    stripped = text.strip()
    if stripped.startswith("{") and "```" not in stripped:
        # Fast path for the common case, a response that is one JSON object and nothing else;
        # the search below would find the same object and record no repair.
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            return whole
    if stripped.startswith('"'):
        try:
            inner = json.loads(stripped)
        except json.JSONDecodeError:
            inner = None
        if isinstance(inner, str):
            repairs.append("double_encoded")
            return _find_document(inner, repairs)

    fences = [body for body in _FENCE.findall(text) if "{" in body or "[" in body]
    region = fences[-1] if fences else text
    if fences:
        repairs.append("json_in_code_fence")

    # Bracket matching delimits each candidate object before it is parsed tolerantly.
    # An object that never closes was cut off, so only its complete members are read.
    found: list[tuple[int, int, Any, list[str]]] = []
    position = region.find("[") if region.lstrip().startswith("[") else region.find("{")
    while position >= 0:
        notes: list[str] = []
        end = _value_end(region, position)
        if end is None:
            value = _recover_truncated(region[position:], notes)
            if value is not None:
                found.append((position, len(region), value, notes))
                break
            position = region.find("{", position + 1)
            continue
        try:
            value = _loads_tolerant(region[position:end], notes)
        except ValueError:
            position = region.find("{", position + 1)
            continue
        found.append((position, end, value, notes))
        position = region.find("{", end)

    with_answers = [item for item in found if _has_answers(item[2])]
    if len(with_answers) > 1:
        repairs.append("multiple_json_objects")
    chosen = (with_answers or found or [None])[-1]
    if chosen is None:
        return None
    start, end, document, notes = chosen
    repairs.extend(notes)
    if not fences and region[:start].strip():
        repairs.append("json_after_prose")
    if not fences and region[end:].strip():
        repairs.append("prose_after_json")
    return document


# --------------------------------------------------------------------------- reading answers


def _normal_key(key: Any) -> str:
    return _normal_key_text(str(key))


@lru_cache(maxsize=4096)
def _normal_key_text(key: str) -> str:
    return re.sub(r"[\s-]+", "_", key.strip().lower())


def _feature_items(document: Any, repairs: list[str]) -> dict[str, Any] | None:
    """Map feature names to the raw item the response gave for each."""
    if isinstance(document, dict):
        if any(str(key) != str(key).lower() for key in document):
            repairs.append("key_case")
        top = {_normal_key(key): value for key, value in document.items()}
        if "features" in top:
            container = top["features"]
            if set(top) - _TOP_LEVEL:
                repairs.append("extra_keys")
        else:
            container = {k: v for k, v in top.items() if k not in _TOP_LEVEL}
            repairs.append("no_features_key")
    else:
        container = document
    if isinstance(container, list):
        repairs.append("feature_list")
        pairs = []
        for item in container:
            if not isinstance(item, dict):
                continue
            lowered = {_normal_key(key): value for key, value in item.items()}
            name = lowered.pop("feature", lowered.pop("name", None))
            if name is not None:
                pairs.append((name, lowered))
    elif isinstance(container, dict):
        if any(str(key) != str(key).lower() for key in container):
            repairs.append("key_case")
        pairs = list(container.items())
    else:
        return None

    items: dict[str, Any] = {}
    conflicting: set[str] = set()
    for key, value in pairs:
        normal = _normal_key(key)
        name = normal if normal in FEATURES else _KEY_ALIASES.get(normal)
        if name is None:
            repairs.append("extra_keys")
            continue
        if name != normal:
            repairs.append("key_alias")
        if name in items and items[name] != value:
            conflicting.add(name)
        items[name] = value
    return {name: (None if name in conflicting else value) for name, value in items.items()}


def _normalise_answer(raw: Any, name: str, notes: list[str]) -> str | None:
    allowed = FEATURES[name].answers
    if isinstance(raw, bool):
        notes.append("boolean_answer")
        mapped = PRESENT if raw else ABSENT
        return mapped if mapped in allowed else None
    if not isinstance(raw, str):
        return None
    text = " ".join(raw.strip().lower().split())
    if text in allowed:
        if text != raw:
            notes.append("case_or_space")
        return text
    mapped = _SYNONYMS.get(text)
    if mapped in allowed:
        notes.append("synonym")
        return mapped
    return None


def _number(raw: Any) -> tuple[float | None, bool]:
    """Read a confidence as a number; the flag is True for a percentage string."""
    if isinstance(raw, bool):
        return None, False
    if isinstance(raw, int | float):
        return float(raw), False
    if isinstance(raw, str):
        text = raw.strip()
        percent = text.endswith("%")
        try:
            return float(text.rstrip("%").strip()), percent
        except ValueError:
            return None, False
    return None, False


def _confidence(raw: Any, fraction_scale: bool, notes: list[str]) -> float | None:
    if raw is None:
        notes.append("confidence_missing")
        return None
    value, percent = _number(raw)
    if isinstance(raw, str) and value is not None:
        notes.append("confidence_string")
    if value is not None and fraction_scale and not percent:
        value *= 100
        notes.append("confidence_fraction")
    if value is None or not math.isfinite(value) or not 0 <= value <= 100:
        notes.append("confidence_unreadable")
        return None
    return value


def _uses_fraction_scale(items: dict[str, Any]) -> bool:
    values = []
    for item in items.values():
        if isinstance(item, dict):
            value, percent = _number({_normal_key(k): v for k, v in item.items()}.get("confidence"))
            if value is not None and not percent:
                values.append(value)
    return bool(values) and all(0 <= v <= 1 for v in values) and any(v % 1 for v in values)


def _category(raw: Any, repairs: list[str]) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip().upper()
    text = re.sub(r"^(?:LI-?RADS|LR)[\s_-]*", "", text)
    candidate = f"LR-{text}"
    if candidate in LIRADS_CATEGORIES:
        if candidate != raw:
            repairs.append("category_format")
        return candidate
    repairs.append("category_unreadable")
    return None


def _diagnosis(raw: Any, repairs: list[str]) -> str | None:
    if raw is None or raw in DIAGNOSES:
        return raw
    text = " ".join(str(raw).strip().lower().split())
    by_lower = {item.lower(): item for item in DIAGNOSES}
    mapped = by_lower.get(text) or _DIAGNOSIS_SYNONYMS.get(text)
    repairs.append("diagnosis_synonym" if mapped else "diagnosis_unreadable")
    return mapped


def parse_answer(
    text: str,
    features: list[str] | tuple[str, ...],
    *,
    refusal: str | None = None,
) -> ParsedAnswer:
    """Parse a reader's response text into answers per feature and an outcome.

    Parameters
    ----------
    text : str
        The response text (the message content).
    features : sequence of str
        The requested features; other features in the response are ignored.
    refusal : str, optional
        The ``refusal`` field of an OpenAI chat-completions message, which
        structured output fills instead of the content when the model declines.

    Returns
    -------
    ParsedAnswer
        ``valid`` when at least one requested feature was read; otherwise
        ``refusal`` when the text declines to answer, else ``parse_failure``.

    Examples
    --------
    >>> parsed = parse_answer('{"features": {"aphe": {"answer": "Nonrim", "confidence": 80}}}',
    ...                       ["aphe", "washout"])
    >>> parsed.outcome, parsed.answers, parsed.repairs
    ('valid', {'aphe': ('nonrim', 80.0)}, ('case_or_space',))
    >>> parse_answer("I'm sorry, I can't provide a medical diagnosis.", ["aphe"]).outcome
    'refusal'
    >>> cut = '{"features": {"aphe": {"answer": "rim", "confidence": 70}, "washout": {"ans'
    >>> parse_answer(cut, ["aphe", "washout"]).answers
    {'aphe': ('rim', 70.0)}
    """
    if refusal and refusal.strip():
        return ParsedAnswer("refusal")

    repairs: list[str] = []
    document = _find_document(text, repairs)
    items = _feature_items(document, repairs) if document is not None else None

    answers: dict[str, tuple[str, float | None]] = {}
    feature_repairs: dict[str, tuple[str, ...]] = {}
    evidence: dict[str, str] = {}
    unreadable: list[str] = []
    fraction_scale = _uses_fraction_scale(items or {})
    for name in features:
        if not items or name not in items:
            continue
        notes: list[str] = []
        item = items[name]
        if isinstance(item, dict):
            fields = {_normal_key(key): value for key, value in item.items()}
            if set(fields) - _ITEM_KEYS:
                notes.append("extra_keys")
            answer = _normalise_answer(fields.get("answer"), name, notes)
            confidence = _confidence(fields.get("confidence"), fraction_scale, notes)
            phrase = fields.get("evidence")
        else:
            notes.append("bare_answer")
            answer = _normalise_answer(item, name, notes)
            confidence, phrase = None, None
        if answer is None:
            unreadable.append(name)
            continue
        answers[name] = (answer, confidence)
        feature_repairs[name] = tuple(dict.fromkeys([*repairs, *notes]))
        if isinstance(phrase, str) and phrase.strip():
            evidence[name] = phrase.strip()

    all_repairs = [*repairs, *(note for notes in feature_repairs.values() for note in notes)]
    if not answers:
        declined = _REFUSAL.search(text) or (
            isinstance(document, dict)
            and any(_normal_key(key) == "refusal" and value for key, value in document.items())
        )
        outcome = "refusal" if declined else "parse_failure"
        return ParsedAnswer(
            outcome, repairs=tuple(dict.fromkeys(all_repairs)), unreadable=tuple(unreadable)
        )

    top = {_normal_key(k): v for k, v in document.items()} if isinstance(document, dict) else {}
    category = _category(top.get("lirads_category"), all_repairs)
    diagnosis = _diagnosis(top.get("diagnosis"), all_repairs)
    return ParsedAnswer(
        "valid",
        answers,
        tuple(dict.fromkeys(all_repairs)),
        category,
        diagnosis,
        feature_repairs,
        tuple(unreadable),
        evidence,
    )
