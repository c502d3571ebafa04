"""Hypotheses with ``versus``: paired differences between two cells, from synthetic records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.agreement import cohen_kappa
from analysis.bootstrap import cluster_bootstrap
from analysis.multiplicity import adjust_pvalues
from analysis.records import RunRecords
from analysis.report import NO_ANSWER, PREDICTION_COLUMNS
from analysis.report.hypotheses import VERSUS_TEST, hypotheses_section, hypothesis_table
from analysis.report.inputs import Inputs, prepare

LESIONS = [f"L{i:02d}" for i in range(12)]
# Patients P0..P7; the first four have two lesions each, so the bootstrap resamples real clusters.
PATIENTS = ["P0", "P0", "P1", "P1", "P2", "P2", "P3", "P3", "P4", "P5", "P6", "P7"]
PATIENT_OF = dict(zip(LESIONS, PATIENTS, strict=True))
TRUTH = ["absent", "nonrim", "rim", "nonrim"] * 3
FULL = "t1_pre+arterial+portal_venous"
CATEGORIES = ["absent", "nonrim", "rim", NO_ANSWER]
N_RESAMPLES = 200
SEED = 3


def wrong_on(*positions: int) -> list[str]:
    """Return the reference answers with a wrong category at the given lesion positions."""
    answers = list(TRUTH)
    for position in positions:
        answers[position] = "rim" if TRUTH[position] == "absent" else "absent"
    return answers


def _reads(no_majority: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for lesion, answer in zip(LESIONS, TRUTH, strict=True):
        if lesion in no_majority:
            # A 1-1-1 split leaves the lesion without a reference.
            split = zip("ABC", ["absent", "nonrim", "rim"], strict=True)
            rows += [(lesion, reader, "aphe", answer) for reader, answer in split]
        else:
            rows += [(lesion, reader, "aphe", answer) for reader in "ABC"]
    return pd.DataFrame(rows, columns=["lesion_id", "reader", "feature", "answer"])


def make_inputs(
    cells: dict[tuple[str, str, str], list[str]],
    hypotheses: list[dict],
    *,
    seed: int = SEED,
    indeterminate_as: str = "absent",
    no_majority: tuple[str, ...] = (),
) -> Inputs:
    """Prepare inputs with one aphe answer per lesion for each (reader, strategy, sequences)."""
    rows = []
    for (reader, strategy, sequences), answers in cells.items():
        cell_id = f"{reader}-{strategy}-{sequences}"
        for lesion, answer in zip(LESIONS, answers, strict=True):
            rows.append(
                {
                    **dict.fromkeys(PREDICTION_COLUMNS, ""),
                    "protocol_id": "demo",
                    "run_id": "run-1",
                    "cell_id": cell_id,
                    "reader": reader,
                    "model_snapshot": f"{reader}-1",
                    "strategy": strategy,
                    "sequences": sequences,
                    "replicate": 0,
                    "patient_id": PATIENT_OF[lesion],
                    "lesion_id": lesion,
                    "feature": "aphe",
                    "answer": answer,
                    "outcome": "valid",
                }
            )
    records = RunRecords(
        run_id="run-1",
        protocol={"id": "demo", "hypotheses": hypotheses},
        registration={},
        predictions=pd.DataFrame(rows, columns=PREDICTION_COLUMNS),
        reads=_reads(no_majority),
        pathology=pd.DataFrame(),
        patients=pd.DataFrame({"lesion_id": LESIONS, "patient_id": PATIENTS, "split": "test"}),
    )
    return prepare(
        records,
        n_resamples=N_RESAMPLES,
        seed=seed,
        confidence=0.95,
        indeterminate_as=indeterminate_as,
        failures_as="wrong",
    )


def few_versus_zero(endpoint: str = "accuracy", **extra) -> dict:
    return {
        "id": "H3",
        "statement": "Few-shot beats zero-shot.",
        "endpoint": endpoint,
        "features": ["aphe"],
        "contrast": {"reader": "vlm", "strategy": "few_shot"},
        "versus": {"strategy": "zero_shot"},
        **extra,
    }


def run_hypotheses(inputs: Inputs) -> pd.DataFrame:
    # Versus rows never read per_cell or ni, so empty tables are enough.
    return hypothesis_table(inputs, pd.DataFrame(), pd.DataFrame(), 0.1)


def direct_accuracy_bootstrap(first: list[str], second: list[str], seed: int):
    """Bootstrap the accuracy difference by hand, on all twelve lesions in lesion order."""
    difference = np.array(
        [(a == t) - (b == t) for a, b, t in zip(first, second, TRUTH, strict=True)], dtype=float
    )
    return cluster_bootstrap(
        lambda w: (w @ difference) / w.sum(axis=1),
        np.array(PATIENTS),
        n_resamples=N_RESAMPLES,
        seed=seed,
        confidence=0.95,
    )


def test_accuracy_difference_exact_share():
    zero_shot = wrong_on(1, 4, 9)
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): zero_shot},
        [few_versus_zero()],
    )
    row = run_hypotheses(inputs).iloc[0]

    # Few-shot is right on 12 of 12 lesions, zero-shot on 9 of 12: 1 - 9/12 = 0.25.
    assert row["estimate"] == pytest.approx(0.25, abs=1e-12)
    assert row["cell"] == "vlm | few_shot | S1 | r0 vs vlm | zero_shot | S1 | r0"
    assert row["endpoint"] == "accuracy difference"
    assert row["test"] == VERSUS_TEST
    assert row["null"] == 0.0
    assert row["ci_low"] <= 0.25 <= row["ci_high"]
    # The z test's SE is the standard deviation of the same bootstrap distribution.
    se = direct_accuracy_bootstrap(TRUTH, zero_shot, SEED).se
    assert row["p_value"] == pytest.approx(stats.norm.sf(0.25 / se), abs=1e-12)


@pytest.mark.parametrize("seed", [3, 11])
def test_interval_matches_direct_bootstrap(seed):
    zero_shot = wrong_on(1, 4, 9)
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): zero_shot},
        [few_versus_zero()],
        seed=seed,
    )
    row = run_hypotheses(inputs).iloc[0]
    expected = direct_accuracy_bootstrap(TRUTH, zero_shot, seed)

    assert row["ci_low"] == pytest.approx(expected.ci_low, abs=1e-12)
    assert row["ci_high"] == pytest.approx(expected.ci_high, abs=1e-12)


def test_kappa_difference_matches_cohen_kappa():
    few_shot = wrong_on(2)
    zero_shot = wrong_on(0, 5, 6, 10)
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): few_shot, ("vlm", "zero_shot", FULL): zero_shot},
        [few_versus_zero("kappa")],
    )
    row = run_hypotheses(inputs).iloc[0]
    expected = (
        cohen_kappa(TRUTH, few_shot, categories=CATEGORIES).estimate
        - cohen_kappa(TRUTH, zero_shot, categories=CATEGORIES).estimate
    )

    assert expected > 0
    assert row["estimate"] == pytest.approx(expected, abs=1e-12)
    assert row["endpoint"] == "kappa difference"
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]


def test_identical_cells_not_evaluable():
    answers = wrong_on(1, 4)
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): answers, ("vlm", "zero_shot", FULL): answers},
        [few_versus_zero()],
    )
    row = run_hypotheses(inputs).iloc[0]

    # Every resample's difference is 0, so the interval and the SE are undefined.
    assert row["estimate"] == 0.0
    assert np.isnan(row["ci_low"])
    assert np.isnan(row["p_value"])
    assert row["decision"] == "not evaluable"


def test_offsetting_errors_give_half():
    # Each cell is wrong on one lesion that the other gets right: a difference of 0 with spread.
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): wrong_on(1), ("vlm", "zero_shot", FULL): wrong_on(8)},
        [few_versus_zero()],
    )
    row = run_hypotheses(inputs).iloc[0]

    assert row["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert row["ci_low"] < 0 < row["ci_high"]
    # z = 0, so the one-sided p-value is exactly one half.
    assert row["p_value"] == pytest.approx(0.5, abs=1e-12)
    assert row["decision"] == "not rejected"


@pytest.mark.parametrize("endpoint", ["accuracy", "kappa"])
def test_swap_is_antisymmetric(endpoint):
    swapped = {
        **few_versus_zero(endpoint),
        "id": "H4",
        "contrast": {"reader": "vlm", "strategy": "zero_shot"},
        "versus": {"strategy": "few_shot"},
    }
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): wrong_on(3), ("vlm", "zero_shot", FULL): wrong_on(0, 5, 7)},
        [few_versus_zero(endpoint), swapped],
    )
    table = run_hypotheses(inputs).set_index("id")
    forward, backward = table.loc["H3"], table.loc["H4"]

    assert forward["estimate"] > 0
    assert backward["estimate"] == pytest.approx(-forward["estimate"], abs=1e-12)
    assert backward["ci_low"] == pytest.approx(-forward["ci_high"], abs=1e-12)
    assert backward["ci_high"] == pytest.approx(-forward["ci_low"], abs=1e-12)
    # Both are one-sided "greater" tests of opposite differences with the same SE.
    assert forward["p_value"] + backward["p_value"] == pytest.approx(1.0, abs=1e-12)
    assert backward["cell"] == "vlm | zero_shot | S1 | r0 vs vlm | few_shot | S1 | r0"


def test_seeded_run_reproducible():
    cells = {("vlm", "few_shot", FULL): wrong_on(3), ("vlm", "zero_shot", FULL): wrong_on(0, 5)}
    first = run_hypotheses(make_inputs(cells, [few_versus_zero("kappa")]))
    second = run_hypotheses(make_inputs(cells, [few_versus_zero("kappa")]))

    pd.testing.assert_frame_equal(first, second)


def test_only_lesions_both_judged():
    # L11 has no majority reference. Zero-shot answers "indeterminate" on L00 and L01, which
    # indeterminate_as="missing" leaves out. Nine lesions remain, zero-shot wrong on three.
    zero_shot = wrong_on(4, 5, 6)
    zero_shot[0] = zero_shot[1] = "indeterminate"
    few_shot = list(TRUTH)
    few_shot[11] = "rim"
    inputs = make_inputs(
        {("vlm", "few_shot", FULL): few_shot, ("vlm", "zero_shot", FULL): zero_shot},
        [few_versus_zero()],
        indeterminate_as="missing",
        no_majority=("L11",),
    )
    row = run_hypotheses(inputs).iloc[0]

    assert row["estimate"] == pytest.approx(3 / 9, abs=1e-12)


def test_each_contrast_cell_paired():
    cells = {
        ("vlm", "few_shot", FULL): TRUTH,
        ("vlm", "zero_shot", FULL): wrong_on(1),
        ("gpt", "few_shot", FULL): wrong_on(2),
        ("gpt", "zero_shot", FULL): wrong_on(2, 3, 4),
    }
    hypothesis = {**few_versus_zero(), "contrast": {"strategy": "few_shot"}}
    table = run_hypotheses(make_inputs(cells, [hypothesis])).set_index("cell")

    assert table.loc["gpt | few_shot | S1 | r0 vs gpt | zero_shot | S1 | r0", "estimate"] == (
        pytest.approx(2 / 12, abs=1e-12)
    )
    assert table.loc["vlm | few_shot | S1 | r0 vs vlm | zero_shot | S1 | r0", "estimate"] == (
        pytest.approx(1 / 12, abs=1e-12)
    )
    assert len(table) == 2


def test_versus_sequences_as_list():
    cells = {("vlm", "few_shot", FULL): TRUTH, ("vlm", "few_shot", "t2"): wrong_on(0, 1, 2, 3)}
    hypothesis = {
        **few_versus_zero(),
        "contrast": {"sequences": FULL.split("+")},
        "versus": {"sequences": ["t2"]},
    }
    row = run_hypotheses(make_inputs(cells, [hypothesis])).iloc[0]

    # Sequence sets are labelled shortest first: t2 is S1, the three phases S2.
    assert row["cell"] == "vlm | few_shot | S2 | r0 vs vlm | few_shot | S1 | r0"
    assert row["estimate"] == pytest.approx(4 / 12, abs=1e-12)


def test_missing_comparator_raises():
    cells = {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): TRUTH}
    hypothesis = {**few_versus_zero(), "versus": {"strategy": "chain_of_thought"}}
    inputs = make_inputs(cells, [hypothesis])

    message = r"'H3'.*has no comparator cell.*strategy=chain_of_thought"
    with pytest.raises(ValueError, match=message):
        run_hypotheses(inputs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"versus": {"strategy": "few_shot"}}, "names cell .* itself"),
        ({"versus": {"model": "gpt"}}, r"keys \['model'\] are not cell keys"),
        ({"versus": {}}, "non-empty mapping"),
        ({"endpoint": "ac1"}, "not on endpoint 'ac1'"),
    ],
)
def test_invalid_versus_raises(change, message):
    cells = {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): TRUTH}
    inputs = make_inputs(cells, [{**few_versus_zero(), **change}])

    with pytest.raises(ValueError, match=message):
        run_hypotheses(inputs)


def test_versus_rows_adjusted_with_family():
    cells = {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): wrong_on(0, 1, 2, 3)}
    plain = {"id": "H1", "endpoint": "accuracy", "features": ["aphe"], "null_value": 0.5}
    inputs = make_inputs(cells, [plain, few_versus_zero(confirmatory=True)])
    per_cell = pd.DataFrame(
        {
            "cell": ["vlm | few_shot | S1 | r0", "vlm | zero_shot | S1 | r0"],
            "feature": "aphe",
            "reader": "vlm",
            "strategy": ["few_shot", "zero_shot"],
            "sequences": FULL,
            "replicate": 0,
            "accuracy": [0.9, 0.7],
            "accuracy_ci_low": [0.8, 0.55],
            "accuracy_ci_high": [1.0, 0.85],
            "accuracy_se": [0.05, 0.075],
        }
    )
    table = hypothesis_table(inputs, per_cell, pd.DataFrame(), 0.1)

    assert table["id"].tolist() == ["H1", "H1", "H3"]
    assert (table["family"] == "confirmatory").all()
    expected = adjust_pvalues(table["p_value"].to_numpy(), method="holm")
    np.testing.assert_allclose(table["p_adjusted"], expected, rtol=0, atol=1e-12)


def test_section_explains_versus_rows():
    cells = {("vlm", "few_shot", FULL): TRUTH, ("vlm", "zero_shot", FULL): wrong_on(1, 2)}
    inputs = make_inputs(cells, [few_versus_zero()])
    section, frames = hypotheses_section(inputs, run_hypotheses(inputs))
    text = " ".join(block for block in section.blocks if isinstance(block, str))

    assert "`A vs B` tests the paired difference" in text
    assert frames["hypotheses"]["endpoint"].tolist() == ["accuracy difference"]
