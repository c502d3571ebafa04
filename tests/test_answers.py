"""The answer schema and the tolerant parser: real response shapes and their outcomes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_openai_refusal_field():
    parsed = parse_answer("", FEATURES, refusal="I'm sorry, I can't help with that request.")
    assert parsed.outcome == "refusal"
    assert parsed.answers == {}


def test_feature_repairs_per_answer():
    text = '{"features": {"aphe": "nonrim", "washout": {"answer": "absent", "confidence": 60}}}'
    parsed = parse_answer(text, FEATURES)
    assert parsed.feature_repairs["aphe"] == ("bare_answer",)
    assert parsed.feature_repairs["washout"] == ()


def test_computed_category_beside_model_category():
    text = (
        '{"features": {"aphe": {"answer": "nonrim", "confidence": 80}, '
        '"washout": {"answer": "nonperipheral", "confidence": 70}, '
        '"enhancing_capsule": {"answer": "absent", "confidence": 60}}, "lirads_category": "LR-4"}'
    )
    parsed = parse_answer(text, FEATURES)
    assert parsed.lirads_category == "LR-4"
    assert parsed.computed_category(15) == "LR-5"
    assert parse_answer("no answer", FEATURES).computed_category(15) is None


def test_evidence_kept():
    text = '{"features": {"aphe": {"answer": "rim", "confidence": 70, "evidence": " thin ring "}}}'
    assert parse_answer(text, FEATURES).evidence == {"aphe": "thin ring"}


def test_schema_with_reasoning_first():
    schema = answer_schema(["aphe"], reasoning=True)
    assert list(schema["properties"])[:2] == ["reasoning", "features"]
    assert schema["required"] == ["reasoning", "features"]


JSON_CHARACTERS = "{}[]\"':,` \naphewsoutnrimabsent0123456789.%"
JSON_LIKE = st.text(alphabet=st.sampled_from(JSON_CHARACTERS), max_size=80)


@settings(max_examples=300, deadline=None)
@given(JSON_LIKE)
def test_parser_never_raises(text):
    parsed = parse_answer(text, FEATURES)
    assert parsed.outcome in {"valid", "parse_failure", "refusal"}
    if parsed.outcome != "valid":
        assert parsed.answers == {}


def test_truncation_never_changes_answers():
    full = (
        '{"reasoning": "nonrim {rim} \\"quoted\\"", "features": {"aphe": {"answer": "nonrim", '
        '"confidence": 85}, "washout": "nonperipheral", "enhancing_capsule": {"answer": '
        '"absent", "confidence": 60}}, "lirads_category": "LR-5"}'
    )
    expected = parse_answer(full, FEATURES).answers
    assert len(expected) == 3
    for cut in range(len(full)):
        parsed = parse_answer(full[:cut], FEATURES)
        for name, value in parsed.answers.items():
            assert expected[name] == value, (cut, name)
