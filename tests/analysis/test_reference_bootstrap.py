"""Bootstrap intervals and the BCa acceleration against R boot and scipy's reference values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import _jackknife_values, cluster_bootstrap, jackknife_acceleration

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return pd.read_csv(REFERENCE / "boot_scipy_vs_R_16.csv")["x"].to_numpy()


def test_basic_interval_matches_r_boot(values):
    # R boot.ci(type = "basic") with 1e6 resamples: (23.77, 79.12). Basic bounds are 2 * mean
    # minus the percentile bounds (28.86, 84.21), so they carry the percentile bounds' Monte
    # Carlo error: rtol 0.005 of those, as an absolute tolerance.
    result = cluster_bootstrap(
        lambda w: (w @ values) / w.sum(axis=1),
        np.arange(values.size),
        n_resamples=200000,
        seed=17,
        method="basic",
    )
    assert result.ci_low == pytest.approx(23.77, abs=0.005 * 84.21)
    assert result.ci_high == pytest.approx(79.12, abs=0.005 * 28.86)
    assert result.method == "basic"


def test_basic_mirrors_percentile(values):
    def mean(w):
        return (w @ values) / w.sum(axis=1)

    clusters = np.arange(values.size)
    basic = cluster_bootstrap(mean, clusters, n_resamples=2000, seed=5, method="basic")
    percentile = cluster_bootstrap(mean, clusters, n_resamples=2000, seed=5)
    centre = values.mean()
    assert basic.ci_low == pytest.approx(2 * centre - percentile.ci_high, rel=1e-12)
    assert basic.ci_high == pytest.approx(2 * centre - percentile.ci_low, rel=1e-12)


def test_efron_mouse_acceleration():
    # scipy test_BCa_acceleration_against_reference: 0.011008228344026734 (deterministic).
    mouse = pd.read_csv(REFERENCE / "efron_mouse.csv")
    treatment = mouse.loc[mouse["group"] == "treatment", "days"].to_numpy(float)
    control = mouse.loc[mouse["group"] == "control", "days"].to_numpy(float)
    leave_treatment = np.array(
        [np.delete(treatment, i).mean() - control.mean() for i in range(treatment.size)]
    )
    leave_control = np.array(
        [treatment.mean() - np.delete(control, i).mean() for i in range(control.size)]
    )
    acceleration = jackknife_acceleration(leave_treatment, leave_control)
    assert acceleration == pytest.approx(0.011008228344026734, abs=1e-12)


def test_one_group_acceleration_is_efron_formula():
    rng = np.random.default_rng(3)
    jackknife = rng.normal(size=25)
    deviation = jackknife.mean() - jackknife
    expected = (deviation**3).sum() / (6 * (deviation**2).sum() ** 1.5)
    assert jackknife_acceleration(jackknife) == pytest.approx(expected, rel=1e-12)


def test_equal_jackknife_acceleration_is_nan():
    assert np.isnan(jackknife_acceleration(np.ones(5)))


def test_cluster_jackknife_leaves_out_whole_patients():
    clusters = np.array([0, 0, 1, 2, 2, 2])
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    jackknife = _jackknife_values(lambda w: (w @ x) / w.sum(axis=1), clusters, 3)
    assert jackknife.tolist() == pytest.approx([(3 + 4 + 5 + 6) / 4, (1 + 2 + 15) / 5, 2.0])


def test_bca_kappa_against_scipy_when_clusters_are_single():
    # With one lesion per patient the cluster BCa is the ordinary BCa of scipy.
    rng = np.random.default_rng(11)
    truth = rng.random(120) < 0.4
    reader = np.where(rng.random(120) < 0.8, truth, ~truth)
    cells = np.zeros((120, 2, 2))
    cells[np.arange(120), truth.astype(int), reader.astype(int)] = 1.0

    def kappa(w):
        return kappa_from_tables(np.tensordot(w, cells, axes=1))

    ours = cluster_bootstrap(kappa, np.arange(120), n_resamples=20000, seed=2, method="bca")

    def scipy_kappa(index, axis=-1):
        tables = cells[np.asarray(index, dtype=int)].sum(axis=-3)
        return kappa_from_tables(tables)

    theirs = stats.bootstrap(
        (np.arange(120),),
        scipy_kappa,
        n_resamples=20000,
        method="BCa",
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert ours.ci_low == pytest.approx(theirs.low, abs=0.01)
    assert ours.ci_high == pytest.approx(theirs.high, abs=0.01)
