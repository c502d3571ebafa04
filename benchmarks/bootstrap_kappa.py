"""Benchmark: patient-clustered BCa bootstrap of Cohen's kappa for a whole simulated sweep.

The sweep has 24 cells x 7 features = 168 kappas (model answer against the
reference read) on 1,000 lesions from 600 patients. The vectorised path,
:func:`analysis.bootstrap.cluster_bootstrap_many`, computes all 168 BCa
intervals from 2,000 shared resamples of patients. The baseline is a plain
loop: for each kappa, each resample draws patients with ``Generator.integers``,
gathers their lesions, builds the 2x2 table and computes kappa, then a
leave-one-patient-out jackknife for the acceleration. The baseline runs on a
subset of the kappas (``--baseline-kappas``) and its time is scaled to all 168,
because its cost is the same for every kappa.

Run from the repository root::

    .venv/bin/python benchmarks/bootstrap_kappa.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import cluster_bootstrap_many

N_CELLS = 24
N_FEATURES = 7
N_LESIONS = 1000
N_PATIENTS = 600


def simulate(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return patient ids, reference answers (lesions x features) and answers (cells x ...)."""
    rng = np.random.default_rng(seed)
    # Every patient has at least one lesion; the other 400 lesions go to random patients.
    patients = np.concatenate(
        [np.arange(N_PATIENTS), rng.integers(0, N_PATIENTS, N_LESIONS - N_PATIENTS)]
    )
    patients.sort()
    prevalence = rng.beta(2.0, 3.0, size=(N_PATIENTS, N_FEATURES))
    reference = rng.random((N_LESIONS, N_FEATURES)) < prevalence[patients]
    error_rate = rng.uniform(0.05, 0.35, size=(N_CELLS, 1, N_FEATURES))
    flipped = rng.random((N_CELLS, N_LESIONS, N_FEATURES)) < error_rate
    answers = reference[None, :, :] ^ flipped
    return patients, reference, answers


def cell_indicators(reference: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """One-hot 2x2 cell of every lesion for every kappa: shape (lesions, kappas * 4)."""
    cell = 2 * reference[None, :, :].astype(int) + answers.astype(int)  # (cells, lesions, features)
    cell = np.moveaxis(cell, 1, 0).reshape(N_LESIONS, N_CELLS * N_FEATURES)
    return np.eye(4)[cell].reshape(N_LESIONS, -1)


def vectorised(patients: np.ndarray, indicators: np.ndarray, n_resamples: int, seed: int):
    names = [f"cell{c}-feature{f}" for c in range(N_CELLS) for f in range(N_FEATURES)]

    def kappas(weights: np.ndarray) -> np.ndarray:
        tables = (weights @ indicators).reshape(weights.shape[0], len(names), 2, 2)
        return kappa_from_tables(tables)

    return cluster_bootstrap_many(
        kappas, patients, names, n_resamples=n_resamples, seed=seed, method="bca"
    )


def kappa_2x2(reference: np.ndarray, answer: np.ndarray) -> float:
    table = np.bincount(2 * reference + answer, minlength=4).reshape(2, 2) / reference.size
    observed = table[0, 0] + table[1, 1]
    expected = table.sum(axis=1) @ table.sum(axis=0)
    return (observed - expected) / (1.0 - expected)


def plain_loop(
    patients: np.ndarray, reference: np.ndarray, answers: np.ndarray, n_resamples: int, seed: int
) -> tuple[float, float]:
    """BCa interval of one kappa with one resample (and one jackknife value) per iteration."""
    rng = np.random.default_rng(seed)
    lesions_of = [np.flatnonzero(patients == p) for p in range(N_PATIENTS)]
    estimate = kappa_2x2(reference, answers)
    resampled = np.empty(n_resamples)
    for b in range(n_resamples):
        drawn = rng.integers(0, N_PATIENTS, N_PATIENTS)
        lesions = np.concatenate([lesions_of[p] for p in drawn])
        resampled[b] = kappa_2x2(reference[lesions], answers[lesions])
    jackknife = np.empty(N_PATIENTS)
    for p in range(N_PATIENTS):
        kept = patients != p
        jackknife[p] = kappa_2x2(reference[kept], answers[kept])
    bias = stats.norm.ppf(np.mean(resampled < estimate))
    deviation = jackknife.mean() - jackknife
    acceleration = (deviation**3).sum() / (6 * (deviation**2).sum() ** 1.5)
    z = stats.norm.ppf([0.025, 0.975])
    levels = stats.norm.cdf(bias + (bias + z) / (1 - acceleration * (bias + z)))
    low, high = np.quantile(resampled, levels)
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument(
        "--baseline-kappas", type=int, default=12, help="kappas the plain loop runs on (of 168)"
    )
    parser.add_argument("--seed", type=int, default=20261204)
    options = parser.parse_args()

    patients, reference, answers = simulate(options.seed)
    indicators = cell_indicators(reference, answers)
    n_kappas = N_CELLS * N_FEATURES

    start = time.perf_counter()
    table = vectorised(patients, indicators, options.resamples, options.seed)
    vectorised_seconds = time.perf_counter() - start

    start = time.perf_counter()
    differences = []
    for index in range(options.baseline_kappas):
        column = index * 13 % n_kappas
        cell, feature = divmod(column, N_FEATURES)
        low, high = plain_loop(
            patients,
            reference[:, feature].astype(int),
            answers[cell, :, feature].astype(int),
            options.resamples,
            options.seed + index,
        )
        differences += [
            abs(low - table["ci_low"].iloc[column]),
            abs(high - table["ci_high"].iloc[column]),
        ]
    loop_seconds = (time.perf_counter() - start) / options.baseline_kappas * n_kappas

    finite = int(np.isfinite(table["ci_low"]).sum())
    print(
        f"kappas: {n_kappas} ({N_CELLS} cells x {N_FEATURES} features), lesions {N_LESIONS}, "
        f"patients {N_PATIENTS}, resamples {options.resamples}, method BCa"
    )
    print(
        f"vectorised cluster_bootstrap_many: {vectorised_seconds:.2f} s "
        f"({finite} of {n_kappas} intervals finite)"
    )
    print(
        f"plain per-resample loop: {loop_seconds:.1f} s for {n_kappas} kappas "
        f"(measured on {options.baseline_kappas}, scaled)"
    )
    print(f"speed-up: {loop_seconds / vectorised_seconds:.0f}x")
    # The two paths draw different resamples, so their bounds differ by Monte Carlo error only.
    print(f"largest bound difference, loop vs vectorised: {max(differences):.4f}")


if __name__ == "__main__":
    main()
