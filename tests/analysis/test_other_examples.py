"""The statistics on the further published examples: values where published, else identities."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.agreement import cohen_kappa, cohen_kappa_table, fleiss_kappa, pabak
from analysis.gwet import conger_kappa, gwet_ac1, gwet_ac2
from analysis.icc import icc_table
from analysis.krippendorff import LEVELS, krippendorff_alpha

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


def expand_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per case from a k x k count table (rows rater 1, columns rater 2)."""
    rows = []
    for first in table.index:
        for second in table.columns:
            rows += [(first, second)] * int(table.loc[first, second])
    return pd.DataFrame(rows, columns=["rater1", "rater2"])


@pytest.fixture(scope="module", params=["gwet_cont3x3abstractors.csv", "gwet_cont4x4diagnosis.csv"])
def gwet_table(request) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / request.param, index_col=0)


def test_gwet_table_kappa_matches_scikit_learn(gwet_table):
    pairs = expand_table(gwet_table)
    categories = list(gwet_table.columns)
    ours = cohen_kappa(pairs["rater1"], pairs["rater2"], categories=categories)
    assert ours.estimate == pytest.approx(
        cohen_kappa_score(pairs["rater1"], pairs["rater2"]), abs=1e-12
    )
    assert ours.estimate == pytest.approx(cohen_kappa_table(gwet_table.to_numpy()).estimate)


def test_gwet_table_coefficients_below_agreement(gwet_table):
    pairs = expand_table(gwet_table)
    categories = list(gwet_table.columns)
    observed = np.trace(gwet_table.to_numpy()) / gwet_table.to_numpy().sum()
    for function in (fleiss_kappa, gwet_ac1, conger_kappa):
        result = function(pairs, categories=categories)
        assert -1 <= result.estimate <= observed
        assert result.ci_low <= result.estimate <= result.ci_high


def test_gwet_table_alpha_from_scott_pi(gwet_table):
    # Two coders, no missing values: alpha = 1 - (1 - pi)(2N - 1)/(2N), pi = Scott's pi,
    # which is Fleiss' kappa for two raters (Krippendorff 2011).
    pairs = expand_table(gwet_table)
    n = len(pairs)
    scott_pi = fleiss_kappa(pairs, categories=list(gwet_table.columns)).estimate
    alpha = krippendorff_alpha(pairs, categories=list(gwet_table.columns)).estimate
    assert alpha == pytest.approx(1 - (1 - scott_pi) * (2 * n - 1) / (2 * n), abs=1e-12)


def test_gwet_table_two_raters_conger_is_cohen(gwet_table):
    # Conger's kappa for two raters is Cohen's kappa (Conger 1980).
    pairs = expand_table(gwet_table)
    categories = list(gwet_table.columns)
    assert conger_kappa(pairs, categories=categories).estimate == pytest.approx(
        cohen_kappa(pairs["rater1"], pairs["rater2"], categories=categories).estimate, abs=1e-12
    )


@pytest.fixture(scope="module")
def paradox() -> dict[str, pd.DataFrame]:
    data = pd.read_csv(REFERENCE / "feinstein_cicchetti1990_kappa_paradox.csv")
    tables = {}
    for name, rows in data.groupby("table"):
        table = rows.pivot(index="raterA", columns="raterB", values="count").loc[["+", "-"]]
        tables[name] = expand_table(table[["+", "-"]])
    return tables


def test_paradox_equal_agreement_unequal_kappa(paradox):
    # Feinstein & Cicchetti (1990): both tables agree on 85 of 100 cases, kappa 0.70 and 0.32.
    kappas = {}
    for name, pairs in paradox.items():
        agreement = (pairs["rater1"] == pairs["rater2"]).mean()
        assert agreement == pytest.approx(0.85)
        kappas[name] = cohen_kappa(pairs["rater1"], pairs["rater2"], categories=["+", "-"]).estimate
    assert kappas["A"] == pytest.approx(0.70, abs=5e-3)
    assert kappas["B"] == pytest.approx(0.32, abs=5e-3)


def test_paradox_pabak_and_ac1_resist_prevalence(paradox):
    values = {
        name: (
            pabak(pairs["rater1"], pairs["rater2"], categories=["+", "-"]),
            gwet_ac1(pairs, categories=["+", "-"]).estimate,
            cohen_kappa(pairs["rater1"], pairs["rater2"], categories=["+", "-"]).estimate,
        )
        for name, pairs in paradox.items()
    }
    # PABAK = 2 * 0.85 - 1 for both tables.
    assert values["A"][0] == pytest.approx(0.7)
    assert values["B"][0] == pytest.approx(0.7)
    # AC1 stays high on the unbalanced table B where kappa collapses.
    assert values["B"][1] > values["B"][2] + 0.3


@pytest.fixture(scope="module")
def anxiety() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "irr_anxiety.csv").set_index("subject")


def test_anxiety_icc_spearman_brown(anxiety):
    # Every k-rater ICC is the Spearman-Brown step-up of its single-rater ICC.
    table = icc_table(anxiety).set_index("form")["estimate"]
    k = anxiety.shape[1]
    for single in ("ICC1", "ICC2", "ICC3"):
        stepped = k * table[single] / (1 + (k - 1) * table[single])
        assert table[f"{single}k"] == pytest.approx(stepped, abs=1e-12)


def test_anxiety_icc_intervals_contain_estimates(anxiety):
    table = icc_table(anxiety)
    assert (table["ci_low"] < table["estimate"]).all()
    assert (table["estimate"] < table["ci_high"]).all()
    assert table["n_targets"].eq(20).all()


def test_anxiety_agreement_is_low(anxiety):
    # Three raters who barely agree: kappa and alpha are near 0 and below the ICCs' upper bounds.
    categories = [1, 2, 3, 4, 5, 6]
    upper = icc_table(anxiety).set_index("form").loc["ICC1", "ci_high"]
    for result in (
        fleiss_kappa(anxiety, categories=categories),
        krippendorff_alpha(anxiety, level="nominal"),
        krippendorff_alpha(anxiety, level="interval"),
    ):
        assert -0.2 < result.estimate < upper
    # AC2's chance agreement does not follow the raters' marginals, so it stays higher.
    ac2 = gwet_ac2(anxiety, categories=categories, weights="quadratic")
    assert ac2.estimate > krippendorff_alpha(anxiety, level="interval").estimate


@pytest.fixture(scope="module")
def wiki() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "krippendorff_wiki_3coders_15units.csv").set_index("coder").T


@pytest.mark.parametrize(("level", "expected"), [("nominal", 0.691358), ("interval", 0.810845)])
def test_wiki_alpha_fast_krippendorff(wiki, level, expected):
    # pln-fing-udelar/fast-krippendorff tests/test_krippendorff.py, 6 decimals.
    assert krippendorff_alpha(wiki, level=level).estimate == pytest.approx(expected, abs=5e-7)


def test_wiki_units_without_pairs_ignored(wiki):
    result = krippendorff_alpha(wiki)
    # Units 2 and 14 have no value, and unit 1 has a single value.
    assert result.n_units == 12


def test_string_labels_nominal_fast_krippendorff():
    data = [["pos", "neg", "neu", None], ["pos", "neg", "neu", "pos"], ["pos", "neg", "pos", "pos"]]
    table = pd.DataFrame(data).T
    assert krippendorff_alpha(table).estimate == pytest.approx(0.722222, abs=5e-7)


def test_string_labels_ordinal_with_domain_fast_krippendorff():
    words = {1: "very low", 2: "low", 3: "mid", 4: "high", 5: "very high"}
    numeric = pd.read_csv(REFERENCE / "krippendorff2011_4coders_12units.csv").set_index("unit")
    labelled = numeric.map(lambda value: words.get(value))
    result = krippendorff_alpha(labelled, level="ordinal", categories=list(words.values()))
    assert result.estimate == pytest.approx(0.815, abs=5e-4)


def test_ratio_with_zeros_is_one():
    assert krippendorff_alpha([[0, 0], [1, 1], [2, 2]], level="ratio").estimate == 1.0


@pytest.mark.parametrize(
    "name", ["gwet_raw5observers.csv", "gwet_raw_gender.csv", "gwet_ben_gerry.csv"]
)
def test_gwet_raw_examples_consistent(name):
    ratings = pd.read_csv(REFERENCE / name).set_index("unit")
    categories = sorted(set(ratings.stack().dropna()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fleiss = fleiss_kappa(ratings, categories=categories)
        ac1 = gwet_ac1(ratings, categories=categories)
        conger = conger_kappa(ratings, categories=categories)
        alpha = krippendorff_alpha(ratings, categories=categories)
    # All share the observed agreement; they differ only in chance agreement.
    assert ac1.percent_agreement == pytest.approx(conger.percent_agreement, abs=1e-15)
    for result in (fleiss, ac1, conger, alpha):
        assert -1 <= result.estimate <= 1
    assert ac1.chance_agreement <= 1 / (len(categories) - 1)
    # Alpha corrects Fleiss' kappa for small samples; the two stay close.
    assert alpha.estimate == pytest.approx(fleiss.estimate, abs=0.1)


@pytest.mark.parametrize("level", LEVELS)
def test_all_levels_on_anxiety_finite(anxiety, level):
    assert np.isfinite(krippendorff_alpha(anxiety, level=level).estimate)
