"""The answer schema and the tolerant parser: real response shapes and their outcomes."""

from __future__ import annotations

import pytest

from study.answers import answer_model, answer_schema, parse_answer

FEATURES = ("aphe", "washout", "enhancing_capsule")

# (response text, expected outcome, expected answers)
CASES = [
    (
        '{"features": {"aphe": {"answer": "nonrim", "confidence": 90}, '
        '"washout": {"answer": "absent", "confidence": 70}, '
        '"enhancing_capsule": {"answer": "present", "confidence": 60}}}',
        "valid",
        {"aphe": "nonrim", "washout": "absent", "enhancing_capsule": "present"},
    ),
    (
        "Here is my read.\n```json\n"
        '{"features": {"aphe": {"answer": "rim", "confidence": 80}}}\n```',
        "valid",
        {"aphe": "rim"},
    ),
    (
        "The lesion enhances. {'features': {'aphe': {'answer': 'Yes', 'confidence': 50},}}",
        "parse_failure",  # 'yes' is not a category of aphe, so nothing is read
        {},
    ),
    (
        '{"FEATURES": {"WASHOUT": {"answer": "Non-peripheral", "confidence": 40}, '
        '"enhancing_capsule": {"answer": "yes", "confidence": 40}}}',
        "valid",
        {"washout": "nonperipheral", "enhancing_capsule": "present"},
    ),
    ('{"features": {"aphe": {"answer": "nonrim", "confidence": 9', "parse_failure", {}),
    ("I'm sorry, but I can't provide a medical diagnosis from these images.", "refusal", {}),
    ("The images are too small to judge.", "parse_failure", {}),
    (
        '{"features": {"aphe": {"answer": "unsure", "confidence": 10}}}',
        "valid",
        {"aphe": "indeterminate"},
    ),
    ('{"features": {"aphe": {"answer": 3, "confidence": 10}}}', "parse_failure", {}),
    (
        '{"aphe": "absent", "washout": "absent", "extra": 1}',
        "valid",
        {"aphe": "absent", "washout": "absent"},
    ),
]


@pytest.mark.parametrize(("text", "outcome", "answers"), CASES)
def test_parser_cases(text, outcome, answers):
    parsed = parse_answer(text, FEATURES)
    assert parsed.outcome == outcome
    assert {name: value[0] for name, value in parsed.answers.items()} == answers


def test_failure_has_no_answers():
    for text, outcome, _ in CASES:
        parsed = parse_answer(text, FEATURES)
        if outcome != "valid":
            assert parsed.answers == {}


def test_repairs_recorded():
    parsed = parse_answer(CASES[1][0], FEATURES)
    assert "json_in_code_fence" in parsed.repairs
    trailing = parse_answer('{"features": {"aphe": {"answer": "rim", "confidence": 5},}}', FEATURES)
    assert trailing.outcome == "valid"
    assert "trailing_comma" in trailing.repairs


def test_schema_lists_categories():
    schema = answer_schema(["washout"])
    washout = schema["$defs"]["Answer_washout"]["properties"]["answer"]
    assert washout["enum"] == ["absent", "nonperipheral", "peripheral", "indeterminate"]


def test_model_rejects_out_of_range_confidence():
    model = answer_model(["aphe"])
    with pytest.raises(ValueError):
        model.model_validate({"features": {"aphe": {"answer": "rim", "confidence": 101}}})
