"""The tolerant parser on a corpus of realistic reader responses (tests/parser_corpus.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.answers import REPAIRS, parse_answer

CORPUS = yaml.safe_load((Path(__file__).parent / "parser_corpus.yaml").read_text())
DEFAULT_FEATURES = ("aphe", "washout", "enhancing_capsule")


def _parse(case: dict):
    return parse_answer(case["text"], tuple(case.get("features", DEFAULT_FEATURES)))


def test_corpus_size_and_ids():
    ids = [case["id"] for case in CORPUS]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_corpus_case(case):
    parsed = _parse(case)
    expected = {name: tuple(value) for name, value in case["answers"].items()}

    assert parsed.outcome == case["outcome"]
    assert parsed.answers == expected
    for repair in case.get("repairs", []):
        assert repair in parsed.repairs
    assert set(parsed.unreadable) == set(case.get("unreadable", []))
    assert parsed.lirads_category == case.get("category")
    assert parsed.diagnosis == case.get("diagnosis")


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_corpus_repairs_are_documented(case):
    parsed = _parse(case)
    assert set(parsed.repairs) <= set(REPAIRS)
    for name, notes in parsed.feature_repairs.items():
        assert name in parsed.answers
        assert set(notes) <= set(parsed.repairs)


def test_unrepaired_cases_record_nothing():
    for case in CORPUS:
        if case.get("repairs") == [] and case["outcome"] == "valid":
            assert _parse(case).repairs == (), case["id"]


def test_failures_read_no_answer():
    for case in CORPUS:
        parsed = _parse(case)
        if parsed.outcome != "valid":
            assert parsed.answers == {}, case["id"]
            assert parsed.lirads_category is None, case["id"]


def test_corpus_covers_each_outcome_kind():
    outcomes = {case["outcome"] for case in CORPUS}
    assert outcomes == {"valid", "parse_failure", "refusal"}
