"""The report built from synthetic run records: real numbers and byte-identical output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import cohen_kappa
from analysis.records import RunRecords
from analysis.report import NO_ANSWER, PREDICTION_COLUMNS, agreement_table, build_report

FEATURE_NAMES = ["aphe", "washout", "enhancing_capsule"]
LESIONS = [f"L{i:02d}" for i in range(12)]
# Patients P0..P7; the first four have two lesions each, so patients are real clusters.
PATIENTS = ["P0", "P0", "P1", "P1", "P2", "P2", "P3", "P3", "P4", "P5", "P6", "P7"]
PATIENT_OF = dict(zip(LESIONS, PATIENTS, strict=True))

# Majority answer per feature and lesion, cycling through each feature's categories.
TRUTH = {
    "aphe": ["absent", "nonrim", "rim", "nonrim"] * 3,
    "washout": ["absent", "nonperipheral", "peripheral", "absent"] * 3,
    "enhancing_capsule": ["present", "absent", "absent"] * 4,
}


def _reads() -> pd.DataFrame:
    rows = []
    for feature, answers in TRUTH.items():
        for lesion, answer in zip(LESIONS, answers, strict=True):
            rows += [(lesion, "A", feature, answer), (lesion, "B", feature, answer)]
            # Reader C disagrees on a few lesions, which leaves the majority unchanged.
            rows.append((lesion, "C", feature, "indeterminate" if lesion == "L03" else answer))
    reads = pd.DataFrame(rows, columns=["lesion_id", "reader", "feature", "answer"])

    # A 1-1-1 split on aphe for L11: no majority, so L11 is left out for aphe.
    split = (reads["lesion_id"] == "L11") & (reads["feature"] == "aphe")
    reads.loc[split, "answer"] = ["absent", "nonrim", "rim"]
    return reads


def _predictions(cell_id: str, sequences: str, answers: dict, outcomes: dict) -> list[dict]:
    rows = []
    for feature in FEATURE_NAMES:
        for position, lesion in enumerate(LESIONS):
            outcome = outcomes.get((feature, lesion), "valid")
            rows.append(
                {
                    "protocol_id": "demo",
                    "protocol_sha256": "ab" * 32,
                    "run_id": "run-1",
                    "cell_id": cell_id,
                    "reader": "simulated",
                    "model_snapshot": "sim-1",
                    "strategy": "zero_shot",
                    "sequences": sequences,
                    "replicate": 0,
                    "patient_id": PATIENT_OF[lesion],
                    "lesion_id": lesion,
                    "feature": feature,
                    "answer": answers[feature][position] if outcome == "valid" else "",
                    "confidence": 0.5,
                    "outcome": outcome,
                    "latency_s": 1.0,
                    "input_tokens": 100,
                    "output_tokens": 10,
                    "cost_usd": 0.0,
                    "cached": position % 3 == 0,
                    "request_sha256": f"{cell_id}-{lesion}",
                }
            )
    return rows


FAILURES = {
    ("aphe", "L00"): "parse_failure",
    ("aphe", "L05"): "refusal",
    ("washout", "L02"): "infra_failure",
}
# Cell "noisy": failures above, "indeterminate" for the washout of L01 (reference
# nonperipheral, so wrong once mapped to absent) and of L03 (reference absent, so right).
NOISY = {feature: list(answers) for feature, answers in TRUTH.items()}
NOISY["washout"][1] = "indeterminate"
NOISY["washout"][3] = "indeterminate"
NOISY["enhancing_capsule"][4] = "present"


def make_records() -> RunRecords:
    predictions = pd.DataFrame(
        _predictions("cell-perfect", "t1_pre+arterial+portal_venous", TRUTH, {})
        + _predictions("cell-noisy", "t1_pre+arterial+portal_venous", NOISY, FAILURES)
        + _predictions("cell-t2", "t2", TRUTH, {}),
        columns=PREDICTION_COLUMNS,
    )
    patients = pd.DataFrame(
        {"lesion_id": LESIONS, "patient_id": [PATIENT_OF[x] for x in LESIONS], "split": "test"}
    )
    return RunRecords(
        run_id="run-1",
        protocol={"id": "demo", "title": "Demo study"},
        registration={"registered_at": "2026-12-01T09:00:00+00:00"},
        predictions=predictions,
        reads=_reads(),
        pathology=pd.DataFrame({"lesion_id": LESIONS, "diagnosis": "HCC"}),
        patients=patients,
    )


@pytest.fixture(scope="module")
def agreement() -> pd.DataFrame:
    return agreement_table(make_records(), n_resamples=300, seed=7).set_index(
        ["cell_id", "feature"]
    )


def test_patients_are_clusters():
    assert len(set(PATIENT_OF.values())) == 8


def test_perfect_cell_kappa_and_accuracy_one(agreement):
    for feature in FEATURE_NAMES:
        row = agreement.loc[("cell-perfect", feature)]
        assert row["kappa"] == pytest.approx(1.0)
        assert row["accuracy"] == pytest.approx(1.0)
        assert row["n_no_answer"] == 0


def test_no_majority_lesion_excluded(agreement):
    assert agreement.loc[("cell-perfect", "aphe"), "n_lesions"] == 11
    assert agreement.loc[("cell-perfect", "aphe"), "n_without_reference"] == 1
    assert agreement.loc[("cell-perfect", "washout"), "n_lesions"] == 12


def test_noisy_cell_matches_cohen_kappa(agreement):
    # Expected values from cohen_kappa on the mapped answers: failures become NO_ANSWER and
    # "indeterminate" becomes "absent".
    categories = {
        "aphe": ["absent", "nonrim", "rim", NO_ANSWER],
        "washout": ["absent", "nonperipheral", "peripheral", NO_ANSWER],
    }
    expected_answers = {"aphe": [], "washout": []}
    # L11 has no aphe reference, so aphe is scored on the first eleven lesions.
    for lesion, answer in zip(LESIONS[:11], NOISY["aphe"][:11], strict=True):
        failed = ("aphe", lesion) in FAILURES
        expected_answers["aphe"].append(NO_ANSWER if failed else answer)
    for lesion, answer in zip(LESIONS, NOISY["washout"], strict=True):
        if ("washout", lesion) in FAILURES:
            answer = NO_ANSWER
        elif answer == "indeterminate":
            answer = "absent"
        expected_answers["washout"].append(answer)
    for feature, answers in expected_answers.items():
        reference = TRUTH[feature][: len(answers)]
        expected = cohen_kappa(reference, answers, categories=categories[feature]).estimate
        row = agreement.loc[("cell-noisy", feature)]
        assert row["kappa"] == pytest.approx(expected, abs=1e-12)
        correct = np.mean([a == b for a, b in zip(reference, answers, strict=True)])
        assert row["accuracy"] == pytest.approx(correct, abs=1e-12)


def test_noisy_cell_hand_counts(agreement):
    aphe = agreement.loc[("cell-noisy", "aphe")]
    washout = agreement.loc[("cell-noisy", "washout")]
    # aphe: 2 failures among 11 judged lesions; washout: 1 failure and 1 wrong indeterminate.
    assert aphe["accuracy"] == pytest.approx(9 / 11)
    assert aphe["n_no_answer"] == 2
    assert washout["accuracy"] == pytest.approx(10 / 12)
    assert washout["n_indeterminate"] == 2
    assert washout["n_no_answer"] == 1


def test_intervals_contain_estimates(agreement):
    noisy = agreement.loc["cell-noisy"]
    assert (noisy["kappa_ci_low"] <= noisy["kappa"]).all()
    assert (noisy["kappa"] <= noisy["kappa_ci_high"]).all()
    assert (noisy["accuracy_ci_low"] <= noisy["accuracy"]).all()


def test_unshown_sequences_flagged(agreement):
    assert not agreement.loc[("cell-t2", "aphe"), "sequences_shown"]
    assert not agreement.loc[("cell-t2", "washout"), "sequences_shown"]
    assert agreement.loc[("cell-perfect", "aphe"), "sequences_shown"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return folder, build_report(make_records(), folder, n_resamples=100, seed=5)


def test_report_files_and_sections(built):
    folder, paths = built
    markdown = paths.markdown.read_text(encoding="utf-8")
    html = paths.html.read_text(encoding="utf-8")

    for text in (markdown, html):
        assert "Human baseline" in text
        assert "doi:10.1016/j.ejrad.2016.11.004" in text
        assert "blank as absent" in text
        assert "2026-12-01T09:00:00+00:00" in text
        assert "ab" * 32 in text
        assert NO_ANSWER in text
    for name in ("agreement", "reference", "human_baseline", "flow"):
        assert (folder / "tables" / f"{name}.csv").is_file()


def test_html_has_no_external_resources(built):
    html = built[1].html.read_text()
    assert not re.search(r"<(script|link)\b", html)
    sources = re.findall(r"<img [^>]*src=\"([^\"]*)\"", html)
    assert sources
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http://" not in html
    assert "https://" not in html


def test_flow_counts(built):
    flow = pd.read_csv(built[0] / "tables" / "flow.csv").set_index("cell_id")
    assert flow.loc["cell-noisy", "parse_failure"] == 1
    assert flow.loc["cell-noisy", "refusal"] == 1
    assert flow.loc["cell-noisy", "infra_failure"] == 1
    assert flow.loc["cell-noisy", "valid"] == 33
    # Lesions L00, L03, L06, L09 are cached, for each of the three features.
    assert flow.loc["cell-perfect", "n_cached"] == 12
    assert flow.loc["cell-perfect", "n_requests"] == 12


def test_report_bytes_reproducible(built, tmp_path):
    first_folder, first = built
    second = build_report(make_records(), tmp_path, n_resamples=100, seed=5)
    assert first.markdown.read_bytes() == second.markdown.read_bytes()
    assert first.html.read_bytes() == second.html.read_bytes()
    written = sorted(
        path.relative_to(first_folder) for path in first_folder.rglob("*") if path.is_file()
    )
    assert Path("figures/forest_aphe.svg") in written
    assert Path("tables/agreement.csv") in written
    for relative in written:
        assert (first_folder / relative).read_bytes() == (tmp_path / relative).read_bytes(), (
            relative
        )


def test_unknown_answer_rejected():
    records = make_records()
    predictions = records.predictions.copy()
    predictions.loc[0, "answer"] = "maybe"
    broken = RunRecords(**{**records.__dict__, "predictions": predictions})
    with pytest.raises(ValueError, match="maybe"):
        agreement_table(broken, n_resamples=10, seed=1)
