"""Calibration: how often the patient-clustered bootstrap 95% CI of kappa covers the true kappa.

Each simulated study has 150 patients with 1 to 4 lesions (1 + Poisson(1),
capped at 4). A patient's lesions share a prevalence drawn from Beta(2, 3) and
a difficulty (hard with probability 0.3), so answers are correlated within
patients. The reference read and the model answer are conditionally
independent given the true finding, with sensitivity and specificity 0.90/0.92
(reference) and 0.80/0.85 (model) on easy patients and 0.70/0.75 and
0.60/0.65 on hard ones.

The true kappa is the kappa of the expected 2x2 table of one lesion, which is
what the pooled-table kappa converges to as patients grow, because the lesion
count is independent of prevalence and difficulty. Each study's percentile and
BCa intervals come from the same resamples of patients.

Run from the repository root::

    .venv/bin/python benchmarks/kappa_coverage.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import cluster_bootstrap_many

N_PATIENTS = 150
PREVALENCE = (2.0, 3.0)
HARD_SHARE = 0.3
# (sensitivity, specificity) of the reference and the model on easy and hard patients.
REFERENCE = {False: (0.90, 0.92), True: (0.70, 0.75)}
MODEL = {False: (0.80, 0.85), True: (0.60, 0.65)}


def true_kappa() -> float:
    """Kappa of the expected 2x2 table (reference rows, model columns) of one lesion."""
    prevalence = PREVALENCE[0] / sum(PREVALENCE)
    table = np.zeros((2, 2))
    for hard, share in ((False, 1 - HARD_SHARE), (True, HARD_SHARE)):
        for truth, p_truth in ((1, prevalence), (0, 1 - prevalence)):
            ref_sens, ref_spec = REFERENCE[hard]
            mod_sens, mod_spec = MODEL[hard]
            ref_positive = ref_sens if truth else 1 - ref_spec
            mod_positive = mod_sens if truth else 1 - mod_spec
            ref = np.array([1 - ref_positive, ref_positive])
            mod = np.array([1 - mod_positive, mod_positive])
            table += share * p_truth * np.outer(ref, mod)
    return float(kappa_from_tables(table))


def simulate_study(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return each lesion's patient and its one-hot 2x2 cell (lesions x 4)."""
    lesions_per_patient = np.minimum(1 + rng.poisson(1.0, N_PATIENTS), 4)
    patients = np.repeat(np.arange(N_PATIENTS), lesions_per_patient)
    prevalence = rng.beta(*PREVALENCE, N_PATIENTS)[patients]
    hard = (rng.random(N_PATIENTS) < HARD_SHARE)[patients]
    truth = rng.random(patients.size) < prevalence

    def read(rates: dict[bool, tuple[float, float]]) -> np.ndarray:
        sensitivity = np.where(hard, rates[True][0], rates[False][0])
        specificity = np.where(hard, rates[True][1], rates[False][1])
        positive = np.where(truth, sensitivity, 1 - specificity)
        return rng.random(patients.size) < positive

    cell = 2 * read(REFERENCE).astype(int) + read(MODEL).astype(int)
    return patients, np.eye(4)[cell]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per study")
    parser.add_argument("--seed", type=int, default=20261204)
    options = parser.parse_args()

    target = true_kappa()
    rng = np.random.default_rng(options.seed)
    covered = {"percentile": 0, "bca": 0}
    counted = {"percentile": 0, "bca": 0}
    start = time.perf_counter()
    for study in range(options.studies):
        patients, cells = simulate_study(rng)

        def kappa(weights: np.ndarray, cells: np.ndarray = cells) -> np.ndarray:
            return kappa_from_tables((weights @ cells).reshape(-1, 1, 2, 2))

        for method in covered:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = cluster_bootstrap_many(
                    kappa,
                    patients,
                    ["kappa"],
                    n_resamples=options.resamples,
                    seed=options.seed + study,
                    method=method,
                ).iloc[0]
            if np.isfinite(row["ci_low"]):
                counted[method] += 1
                covered[method] += int(row["ci_low"] <= target <= row["ci_high"])
    seconds = time.perf_counter() - start

    print(
        f"true kappa {target:.4f}; {options.studies} studies of {N_PATIENTS} patients, "
        f"{options.resamples} resamples each, {seconds:.0f} s"
    )
    for method in covered:
        share = covered[method] / counted[method]
        # Binomial Monte Carlo error of the coverage estimate.
        error = np.sqrt(share * (1 - share) / counted[method])
        print(
            f"{method}: 95% CI covered the true kappa in {covered[method]} of "
            f"{counted[method]} studies = {share:.3f} (Monte Carlo SE {error:.3f})"
        )


if __name__ == "__main__":
    main()
