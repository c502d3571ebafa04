"""Power by simulation: closed-form agreement, type I error at alpha, the record and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from study.errors import UserInputError
from study.power import read_power_record, resolve, run_power
from study.power.population import Population
from study.power.simulation import EFFECT, NO_EFFECT, build_scenarios
from study.protocol import load_protocol
from study.readers.simulated import draw_answers
from tests.conftest import REPOSITORY, run_cli

SEQUENCES = ["t1_pre", "arterial", "portal_venous", "delayed"]


def two_proportion_mapping(**power) -> dict:
    """A few-shot versus zero-shot accuracy comparison with a perfect reference.

    With radiologists who always copy the truth, the majority read is the truth,
    so each cell's answer is correct with probability one minus its error rate,
    independently of the other cell: a comparison of two independent proportions.
    """
    return {
        "id": "twoprop",
        "title": "Few-shot against zero-shot accuracy",
        "cohort": {"path": "cohort"},
        "features": ["aphe"],
        "grid": {
            "readers": [
                {
                    "kind": "simulated",
                    "name": "sim",
                    "error_rates": {"aphe": {"few_shot": 0.2, "zero_shot": 0.3}},
                }
            ],
            "strategies": ["zero_shot", "few_shot"],
            "sequences": [SEQUENCES],
        },
        "hypotheses": [
            {
                "id": "H",
                "statement": "Few-shot prompting is more accurate than zero-shot on APHE.",
                "endpoint": "accuracy",
                "features": ["aphe"],
                "contrast": {"strategy": "few_shot"},
                "versus": {"strategy": "zero_shot"},
            }
        ],
        "analysis": {"seed": 5},
        "power": {
            "lesions": [150],
            "n_sim": 400,
            "seed": 2,
            "lesions_per_patient": 1.0,
            "radiologist_kappa": {"aphe": 1.0},
            "bootstrap_resamples": 500,
            **power,
        },
    }


def write_protocol(folder: Path, mapping: dict) -> Path:
    path = folder / f"{mapping['id']}.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    return path


def monte_carlo_tolerance(rate: float, n_sim: int) -> float:
    """Three Monte Carlo standard errors of a simulated rejection rate."""
    return 3 * np.sqrt(rate * (1 - rate) / n_sim)


@pytest.fixture(scope="module")
def two_proportion(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twoprop")
    design = resolve(load_protocol(write_protocol(folder, two_proportion_mapping())))
    return run_power(design, lesions=[150], n_sim=400, workers=2)


def test_two_proportion_power_matches_closed_form(two_proportion):
    # One-sided two-proportion z test with unpooled variance (Chow, Shao & Wang,
    # Sample Size Calculations in Clinical Research, 2nd ed., section 4.2):
    # power = Phi((p1 - p2) / sqrt((p1 q1 + p2 q2) / n) - z_{1 - alpha}).
    p1, p2, n, alpha = 0.8, 0.7, 150, 0.05
    sd = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    expected = stats.norm.cdf((p1 - p2) / sd - stats.norm.ppf(1 - alpha))
    assert expected == pytest.approx(0.6437, abs=1e-4)
    row = two_proportion.table.query("scenario == @EFFECT").iloc[0]
    assert row["n_sim"] == 400
    assert abs(row["rate"] - expected) <= monte_carlo_tolerance(expected, 400)
    assert row["ci_low"] < expected < row["ci_high"]
    # The population difference the assumptions imply is p1 - p2.
    assert row["endpoint_min"] == pytest.approx(0.1, abs=0.005)
    assert row["endpoint_max"] == row["endpoint_min"]


def test_two_proportion_type_one_error_is_alpha(two_proportion):
    row = two_proportion.table.query("scenario == @NO_EFFECT").iloc[0]
    assert abs(row["rate"] - 0.05) <= monte_carlo_tolerance(0.05, 400)
    # No effect means the few-shot cell is as accurate as the zero-shot one.
    test = two_proportion.tests.query("scenario == @NO_EFFECT").iloc[0]
    assert test["error_rate"] == pytest.approx(0.3, abs=0.005)
    assert test["endpoint_value"] == pytest.approx(0.0, abs=1e-5)


def test_type_one_error_of_demo_hypotheses_is_alpha():
    protocol = load_protocol(REPOSITORY / "protocols" / "demo.yaml")
    design = resolve(protocol)
    # At 400 lesions; on smaller cohorts the kappa z tests drift above alpha (docs/power.md).
    n_sim = 1000
    result = run_power(design, lesions=[400], n_sim=n_sim, workers=2, scenarios=[NO_EFFECT])
    table = result.table
    assert sorted(table["hypothesis"]) == ["H1", "H2"]
    for row in table.itertuples():
        assert row.n_sim == n_sim
        assert abs(row.rate - row.alpha) <= monte_carlo_tolerance(row.alpha, n_sim), row
    values = result.tests.set_index("hypothesis")["endpoint_value"]
    assert values["H1"] == pytest.approx(0.4, abs=1e-4)
    assert values["H2"] == pytest.approx(-protocol.analysis.noninferiority_margin, abs=1e-4)


def test_null_rate_of_kappa_matches_its_formula(tmp_path):
    # Perfect reference, equal prevalence over K = 3 categories and uniform errors keep
    # both margins uniform, so p_e = 1/3 and kappa = (1 - e - 1/3) / (2/3) = 1 - 1.5 e.
    mapping = two_proportion_mapping()
    mapping["hypotheses"] = [
        {
            "id": "K",
            "statement": "Kappa exceeds 0.4.",
            "endpoint": "kappa",
            "features": ["aphe"],
            "contrast": {"strategy": "zero_shot"},
            "null_value": 0.4,
        }
    ]
    design = resolve(load_protocol(write_protocol(tmp_path, mapping)))
    population = Population(design, seed=4)
    test = design.tests[0]
    assert population.value(test, design.rates) == pytest.approx(1 - 1.5 * 0.3, abs=0.005)
    assert population.null_rate(test, design.rates) == pytest.approx(0.4, abs=0.004)


def test_stated_effect_sets_error_rate(tmp_path):
    # Zero-shot stays at accuracy 0.7; a stated difference of 0.15 needs few-shot at 0.85.
    mapping = two_proportion_mapping(effects={"H": 0.15})
    design = resolve(load_protocol(write_protocol(tmp_path, mapping)))
    _, tests = build_scenarios(design, Population(design, seed=6))
    assumed = tests.query("scenario == @EFFECT").iloc[0]
    assert assumed["error_rate"] == pytest.approx(0.15, abs=0.005)
    assert assumed["endpoint_value"] == pytest.approx(0.15, abs=1e-5)
    null = tests.query("scenario == @NO_EFFECT").iloc[0]
    assert null["error_rate"] == pytest.approx(0.3, abs=0.005)


def test_effects_name_known_hypotheses(tmp_path):
    mapping = two_proportion_mapping(effects={"H9": 0.1})
    with pytest.raises(UserInputError, match=r"power.effects: unknown hypothesis id\(s\) \['H9'\]"):
        load_protocol(write_protocol(tmp_path, mapping))


def test_seeded_result_does_not_depend_on_workers(tmp_path):
    design = resolve(load_protocol(write_protocol(tmp_path, two_proportion_mapping())))
    alone = run_power(design, lesions=[40, 60], n_sim=12, workers=1, chunk=5)
    shared = run_power(design, lesions=[40, 60], n_sim=12, workers=2, chunk=3)
    assert alone.table.equals(shared.table)
    again = run_power(design, lesions=[40, 60], n_sim=12, workers=1, chunk=12)
    assert again.table.equals(alone.table)


def test_draw_answers_errs_at_the_stated_rate():
    rng = np.random.default_rng(8)
    categories = ("absent", "nonrim", "rim")
    truth = rng.choice(categories, size=40_000)
    answers = draw_answers(
        truth,
        categories,
        rate=0.25,
        shows_images=True,
        error_draws=rng.random(truth.size),
        other_draws=rng.random(truth.size),
    )
    wrong = answers != truth
    assert wrong.mean() == pytest.approx(0.25, abs=0.01)
    # An error picks each other category equally often.
    given_absent = answers[wrong & (truth == "absent")]
    assert np.mean(given_absent == "nonrim") == pytest.approx(0.5, abs=0.03)


def test_resolve_needs_error_rates_of_tested_readers(tmp_path):
    mapping = two_proportion_mapping()
    mapping["grid"]["readers"].append({"kind": "quantitative", "name": "quant"})
    mapping["hypotheses"][0]["contrast"] = {"reader": "quant", "strategy": "few_shot"}
    with pytest.raises(UserInputError, match="power.error_rates has no entry for reader 'quant'"):
        resolve(load_protocol(write_protocol(tmp_path, mapping)))


def test_resolve_needs_hypotheses(tmp_path):
    mapping = two_proportion_mapping()
    del mapping["hypotheses"]
    with pytest.raises(UserInputError, match="registers no hypotheses"):
        resolve(load_protocol(write_protocol(tmp_path, mapping)))


def quick_power(protocol_file: Path, lesions: str):
    """Run ``vlmstudy power`` with ten studies per size in one process, and check it succeeded."""
    finished = run_cli(
        "power",
        protocol_file.name,
        "--n-sim",
        "10",
        "--lesions",
        lesions,
        "--workers",
        "1",
        cwd=protocol_file.parent,
    )
    assert finished.returncode == 0, finished.stderr
    return finished


def test_power_cli_writes_record_and_registration_takes_it(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    protocol_file = write_protocol(folder, two_proportion_mapping())
    finished = quick_power(protocol_file, "40,30")
    assert "assumed effect" in finished.stdout
    assert "no effect" in finished.stdout
    assert "80% power" in finished.stdout
    record = read_power_record(protocol_file, "twoprop")
    assert record["settings"]["lesions"] == [30, 40]
    assert record["settings"]["n_sim"] == 10
    assert {row["scenario"] for row in record["results"]} == {EFFECT, NO_EFFECT}
    assert not list(folder.glob("*.partial"))

    phantom = run_cli("data", "phantom", "--out", "cohort", "--patients", "8", cwd=folder)
    assert phantom.returncode == 0, phantom.stderr
    registered = run_cli("register", protocol_file.name, cwd=folder)
    assert registered.returncode == 0, registered.stderr
    assert "power analysis: included" in registered.stdout
    saved = json.loads((folder / "twoprop.registration.json").read_text())
    assert saved["power"]["results"] == record["results"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--lesions", "abc"], "cohort sizes from 10 to 20000 lesions"),
        (["--lesions", "5"], "cohort sizes from 10 to 20000 lesions"),
        (["--lesions", "50,99999999999"], "cohort sizes from 10 to 20000 lesions"),
        (["--n-sim", "3"], "--n-sim"),
    ],
)
def test_power_cli_rejects_bad_options(tmp_path, arguments, message):
    protocol_file = write_protocol(tmp_path, two_proportion_mapping())
    finished = run_cli("power", protocol_file.name, *arguments, cwd=tmp_path)
    assert finished.returncode == 2
    assert message in finished.stderr
    assert not (tmp_path / "twoprop.power.json").exists()


def test_corrupt_power_record_stops_registration(tmp_path):
    protocol_file = write_protocol(tmp_path, two_proportion_mapping())
    (tmp_path / "twoprop.power.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserInputError, match="twoprop.power.json: not a power record"):
        read_power_record(protocol_file, "twoprop")


def hypothesis_change(**changes) -> dict:
    mapping = two_proportion_mapping()
    mapping["hypotheses"][0].update(changes)
    return mapping


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (hypothesis_change(versus={"strategi": "zero_shot"}), r"versus key\(s\) \['strategi'\]"),
        (hypothesis_change(contrast={"raeder": "sim"}), r"contrast key\(s\) \['raeder'\]"),
        (hypothesis_change(features=["washout"]), "not among the protocol's features"),
        (
            hypothesis_change(endpoint="noninferiority", versus=None, direction="less"),
            "one-sided by definition",
        ),
        (two_proportion_mapping(lesions=[50, 30000]), "less than or equal to 20000"),
        (
            two_proportion_mapping(error_rates={"sim": {"aphe": {"zero_shoot": 0.5}}}),
            r"unknown strategy\(ies\) \['zero_shoot'\]",
        ),
        (two_proportion_mapping(error_rates={"sim": {}}), "error rates of reader 'sim' are empty"),
        (two_proportion_mapping(seed=-1), "greater than or equal to 0"),
        (two_proportion_mapping(n_sim=10**6), "less than or equal to 100000"),
        (hypothesis_change(features=["aphe", "aphe"]), "listed twice"),
    ],
)
def test_protocol_rejects_untestable_power_settings(tmp_path, mapping, message):
    with pytest.raises(UserInputError, match=message):
        load_protocol(write_protocol(tmp_path, mapping))


def test_duplicate_sizes_counted_once(tmp_path):
    protocol = load_protocol(
        write_protocol(tmp_path, two_proportion_mapping(lesions=[100, 50, 50]))
    )
    assert protocol.power.lesions == [50, 100]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"versus": {"strategy": "few_shot"}}, "selects the contrast cell"),
        ({"contrast": {"sequences": ["t2"]}}, "selects no grid cell"),
    ],
)
def test_resolve_rejects_bad_cells(tmp_path, changes, message):
    with pytest.raises(UserInputError, match=message):
        resolve(load_protocol(write_protocol(tmp_path, hypothesis_change(**changes))))


def test_resolve_rejects_cell_without_needed_sequences(tmp_path):
    mapping = two_proportion_mapping()
    mapping["features"] = ["aphe", "fat_in_mass"]
    mapping["hypotheses"][0]["features"] = ["fat_in_mass"]
    with pytest.raises(UserInputError, match="does not show the sequences fat_in_mass needs"):
        resolve(load_protocol(write_protocol(tmp_path, mapping)))


def test_multi_test_hypothesis_counting(tmp_path):
    mapping = two_proportion_mapping()
    mapping["features"] = ["aphe", "washout"]
    mapping["hypotheses"][0]["features"] = ["aphe", "washout"]
    design = resolve(load_protocol(write_protocol(tmp_path, mapping)))
    result = run_power(design, lesions=[60], n_sim=20, workers=1)
    for row in result.table.itertuples():
        assert row.n_tests == 2
        counted = row.rejected_all if row.scenario == EFFECT else row.rejected_any
        assert row.rejected == counted
        assert row.rate == counted / row.n_sim
        assert row.rejected_all <= row.rejected_any


def test_incomplete_power_record_rejected(tmp_path):
    protocol_file = write_protocol(tmp_path, two_proportion_mapping())
    record = {"protocol_id": "twoprop", "protocol_sha256": "x", "results": [], "tests": []}
    (tmp_path / "twoprop.power.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(UserInputError, match="missing computed_at, settings"):
        read_power_record(protocol_file, "twoprop")


def test_register_stops_on_power_of_another_version(tmp_path):
    protocol_file = write_protocol(tmp_path, two_proportion_mapping())
    quick_power(protocol_file, "30")
    protocol_file.write_text(
        yaml.safe_dump(two_proportion_mapping(seed=9), sort_keys=False), encoding="utf-8"
    )
    phantom = run_cli("data", "phantom", "--out", "cohort", "--patients", "8", cwd=tmp_path)
    assert phantom.returncode == 0, phantom.stderr
    registered = run_cli("register", protocol_file.name, cwd=tmp_path)
    assert registered.returncode == 2
    assert "computed for another version of the protocol" in registered.stderr
    assert not (tmp_path / "twoprop.registration.json").exists()


def test_duplicate_hypothesis_ids_rejected(tmp_path):
    mapping = two_proportion_mapping()
    mapping["hypotheses"].append(dict(mapping["hypotheses"][0]))
    with pytest.raises(UserInputError, match=r"hypothesis id\(s\) \['H'\] are used twice"):
        load_protocol(write_protocol(tmp_path, mapping))


def test_unreachable_effect_rejected(tmp_path):
    design = resolve(
        load_protocol(write_protocol(tmp_path, two_proportion_mapping(effects={"H": 0.9})))
    )
    with pytest.raises(UserInputError, match=r"power.effects.H = 0.9 cannot be reached"):
        build_scenarios(design, Population(design, seed=1, n_lesions=20_000))


def test_stated_rates_must_cover_tested_features(tmp_path):
    mapping = two_proportion_mapping(error_rates={"sim": {"washout": 0.1}})
    with pytest.raises(UserInputError, match="give none for aphe under strategy"):
        resolve(load_protocol(write_protocol(tmp_path, mapping)))


def test_malformed_power_record_rejected(tmp_path):
    protocol_file = write_protocol(tmp_path, two_proportion_mapping())
    quick_power(protocol_file, "30")
    record = read_power_record(protocol_file, "twoprop")
    record["results"] = "x"
    (tmp_path / "twoprop.power.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(UserInputError, match="results must be lists"):
        read_power_record(protocol_file, "twoprop")


def test_record_never_overwrites_protocol(tmp_path):
    mapping = two_proportion_mapping()
    mapping["id"] = "twoprop"
    protocol_file = tmp_path / "twoprop.power.json"
    protocol_file.write_text(json.dumps(mapping), encoding="utf-8")
    finished = run_cli("power", protocol_file.name, "--n-sim", "10", cwd=tmp_path)
    assert finished.returncode == 2
    assert "would be written over the protocol itself" in finished.stderr
    assert json.loads(protocol_file.read_text(encoding="utf-8")) == mapping
