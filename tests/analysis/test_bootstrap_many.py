"""cluster_bootstrap_many: the same intervals as cluster_bootstrap, for many statistics at once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import DegenerateBootstrapWarning, cluster_bootstrap, cluster_bootstrap_many


@pytest.fixture(scope="module")
def lesions():
    rng = np.random.default_rng(20261204)
    patients = np.repeat(np.arange(60), rng.integers(1, 4, 60))
    reference = rng.random(patients.size) < 0.4
    answers = [
        np.where(rng.random(patients.size) < rate, ~reference, reference)
        for rate in (0.1, 0.25, 0.4)
    ]
    cells = np.stack(
        [np.eye(4)[2 * reference.astype(int) + answer.astype(int)] for answer in answers], axis=1
    )
    return patients, cells


def kappas(cells):
    def statistic(weights):
        tables = np.einsum("mu,usc->msc", weights, cells).reshape(weights.shape[0], -1, 2, 2)
        return kappa_from_tables(tables)

    return statistic


@pytest.mark.parametrize("method", ["percentile", "basic", "bca"])
def test_many_matches_single(lesions, method):
    patients, cells = lesions
    table = cluster_bootstrap_many(
        kappas(cells), patients, ["a", "b", "c"], n_resamples=400, seed=5, method=method
    )
    for column, name in enumerate(["a", "b", "c"]):
        single = cluster_bootstrap(
            lambda w, column=column: kappas(cells)(w)[:, column],
            patients,
            n_resamples=400,
            seed=5,
            method=method,
        )
        row = table.set_index("statistic").loc[name]
        assert row["estimate"] == pytest.approx(single.estimate, abs=1e-15)
        assert row["ci_low"] == pytest.approx(single.ci_low, abs=1e-15)
        assert row["ci_high"] == pytest.approx(single.ci_high, abs=1e-15)
        assert row["se"] == pytest.approx(single.se, abs=1e-15)


def test_many_columns(lesions):
    patients, cells = lesions
    table = cluster_bootstrap_many(kappas(cells), patients, ["a", "b", "c"], n_resamples=50, seed=1)
    assert list(table.columns) == [
        "statistic",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "n_resamples",
        "method",
        "confidence",
    ]
    assert table["statistic"].tolist() == ["a", "b", "c"]


def test_many_names_degenerate_statistic():
    x = np.array([1.0, 2.0, 3.0, 4.0])

    def statistic(weights):
        return np.column_stack([(weights @ x) / weights.sum(axis=1), np.ones(weights.shape[0])])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = cluster_bootstrap_many(
            statistic, [1, 2, 3, 4], ["mean", "constant"], n_resamples=100, seed=3
        )
    messages = [str(w.message) for w in caught if w.category is DegenerateBootstrapWarning]
    assert len(messages) == 1
    assert messages[0].startswith("constant: ")
    assert np.isnan(table.loc[1, "ci_low"])
    assert np.isfinite(table.loc[0, "ci_low"])


def test_many_rejects_wrong_width():
    with pytest.raises(ValueError, match="statistic must return shape"):
        cluster_bootstrap_many(
            lambda w: np.ones((w.shape[0], 3)), [1, 2, 3], ["a", "b"], n_resamples=10, seed=1
        )
