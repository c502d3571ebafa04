"""The cluster bootstrap against scipy.stats.bootstrap and R boot, and its degenerate cases."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis.bootstrap as bootstrap_module
from analysis.bootstrap import DegenerateBootstrapWarning, NaNResampleWarning, cluster_bootstrap

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return pd.read_csv(REFERENCE / "boot_scipy_vs_R_16.csv")["x"].to_numpy()


def weighted_mean(x: np.ndarray):
    return lambda weights: (weights @ x) / weights.sum(axis=1)


@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_matches_scipy(values, method, scipy_method):
    ours = cluster_bootstrap(
        weighted_mean(values), np.arange(16), n_resamples=20000, seed=11, method=method
    )
    theirs = stats.bootstrap(
        (values,), np.mean, n_resamples=20000, method=scipy_method, rng=np.random.default_rng(12)
    ).confidence_interval
    # Both are Monte Carlo estimates from 20000 resamples: rtol 0.02.
    assert ours.ci_low == pytest.approx(theirs.low, rel=0.02)
    assert ours.ci_high == pytest.approx(theirs.high, rel=0.02)


def test_matches_r_boot(values):
    # R boot with 1e6 resamples: percentile (28.86, 84.21), BCa (32.31, 91.43); rtol 0.005.
    percentile = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=200000, seed=3)
    bca = cluster_bootstrap(
        weighted_mean(values), np.arange(16), n_resamples=200000, seed=3, method="bca"
    )
    assert percentile.ci_low == pytest.approx(28.86, rel=0.005)
    assert percentile.ci_high == pytest.approx(84.21, rel=0.005)
    assert bca.ci_low == pytest.approx(32.31, rel=0.005)
    assert bca.ci_high == pytest.approx(91.43, rel=0.005)
    assert bca.estimate == pytest.approx(values.mean())


def test_same_seed_same_result(values):
    first = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=500, seed=9)
    second = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=500, seed=9)
    assert first == second


def test_different_seed_different_result(values):
    first = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=500, seed=9)
    second = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=500, seed=10)
    assert first.ci_low != second.ci_low


def test_chunking_does_not_change_result(values, monkeypatch):
    whole = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=300, seed=4)
    # 40 elements per chunk means two resamples of 16 units per call of the statistic.
    monkeypatch.setattr(bootstrap_module, "_MAX_WEIGHT_ELEMENTS", 40)
    chunked = cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=300, seed=4)
    assert whole == chunked


def test_units_of_one_cluster_share_weight():
    seen = []

    def record(weights: np.ndarray) -> np.ndarray:
        seen.append(weights.copy())
        return weights[:, 0] + 0.1 * weights[:, 2]

    cluster_bootstrap(record, ["p1", "p1", "p2", "p3", "p3"], n_resamples=200, seed=2)
    resampled = np.vstack(seen[1:])
    assert np.array_equal(resampled[:, 0], resampled[:, 1])
    assert np.array_equal(resampled[:, 3], resampled[:, 4])
    # Three clusters are drawn per resample, so the cluster counts sum to 3.
    assert np.all(resampled[:, [0, 2, 3]].sum(axis=1) == 3)


def test_constant_statistic_degenerate():
    with pytest.warns(DegenerateBootstrapWarning, match="fewer than two distinct values"):
        result = cluster_bootstrap(lambda w: np.ones(len(w)), np.arange(5), n_resamples=100, seed=1)
    assert result.estimate == 1.0
    assert np.isnan(result.ci_low)
    assert np.isnan(result.ci_high)
    assert np.isnan(result.se)


def test_nan_estimate_degenerate():
    with pytest.warns(DegenerateBootstrapWarning, match="NaN on the original sample"):
        result = cluster_bootstrap(
            lambda w: np.full(len(w), np.nan), np.arange(5), n_resamples=100, seed=1
        )
    assert np.isnan(result.estimate)
    assert np.isnan(result.ci_high)


def test_nan_resamples_dropped():
    x = np.arange(6.0)

    def mean_unless_first_missing(weights: np.ndarray) -> np.ndarray:
        return np.where(weights[:, 0] > 0, (weights @ x) / weights.sum(axis=1), np.nan)

    with pytest.warns(NaNResampleWarning, match="resamples gave NaN and were dropped"):
        result = cluster_bootstrap(mean_unless_first_missing, np.arange(6), n_resamples=400, seed=1)
    # Unit 0 is left out with probability (5/6)^6, about a third of the resamples.
    assert 200 < result.n_resamples < 330
    assert np.isfinite(result.ci_low)


def test_bca_zero_acceleration_denominator():
    # Leaving out either cluster gives 0, so every jackknife value is equal.
    def product(weights: np.ndarray) -> np.ndarray:
        return weights[:, 0] * weights[:, 1]

    with pytest.warns(DegenerateBootstrapWarning, match="acceleration denominator is 0"):
        result = cluster_bootstrap(product, [1, 2], n_resamples=200, seed=1, method="bca")
    assert np.isnan(result.ci_low)
    assert np.isfinite(result.se)


def test_percentile_has_no_warning(values):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cluster_bootstrap(weighted_mean(values), np.arange(16), n_resamples=200, seed=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "studentized"}, "method must be one of"),
        ({"confidence": 1.0}, "confidence must be strictly between 0 and 1"),
        ({"n_resamples": 1}, "n_resamples must be an integer of at least 2"),
    ],
)
def test_bad_options_rejected(values, options, message):
    with pytest.raises(ValueError, match=message):
        cluster_bootstrap(weighted_mean(values), np.arange(16), seed=1, **options)


def test_wrong_statistic_shape_rejected():
    with pytest.raises(ValueError, match="statistic must return shape"):
        cluster_bootstrap(lambda w: np.ones(3), np.arange(4), n_resamples=10, seed=1)
