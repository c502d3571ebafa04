"""Benchmark the Laplace GLMM on a simulated sweep beside lme4's glmer.

The sweep has 168,000 answers: 1,000 patients (one lesion each) read by
24 cells (2 models x 3 prompt strategies x 4 sequence combinations) for
7 features, with a random intercept per patient. The model is
``correct ~ model + strategy + sequences + feature + (1|patient_id)``.

Run from the repository root::

    .venv/bin/python benchmarks/glmm.py

With ``Rscript`` and lme4 on the PATH the same data is fitted by
``benchmarks/glmm_lme4.R`` in the same run, and the ratios of wall and CPU times
are printed with the largest estimate difference. Other work on the machine
slows wall time, so the CPU-time ratio is the steadier figure. Without R the baseline is
statsmodels' ``BinomialBayesMixedGLM.fit_vb`` (a variational fit, so its
estimates are not expected to agree within 1e-3).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.mixed import glmer

FORMULA = "correct ~ model + strategy + sequences + feature + (1|patient_id)"
SEED = 20261204


def simulate_sweep(n_patients: int = 1000, seed: int = SEED) -> pd.DataFrame:
    """Simulate one correct/incorrect answer per patient, cell and feature."""
    rng = np.random.default_rng(seed)
    models = ["model_a", "model_b"]
    strategies = ["chain_of_thought", "few_shot", "zero_shot"]
    sequences = ["all", "dynamic", "dynamic_dwi", "t2_dwi"]
    features = [
        "aphe",
        "capsule",
        "fat",
        "restricted_diffusion",
        "t2",
        "threshold_growth",
        "washout",
    ]
    grid = pd.MultiIndex.from_product(
        [range(n_patients), models, strategies, sequences, features],
        names=["patient_id", "model", "strategy", "sequences", "feature"],
    ).to_frame(index=False)

    patient_effect = rng.normal(0.0, 1.0, n_patients)
    effects = {
        "model": dict(zip(models, [0.0, 0.4], strict=True)),
        "strategy": dict(zip(strategies, [0.3, 0.15, 0.0], strict=True)),
        "sequences": dict(zip(sequences, [0.5, 0.0, 0.2, -0.3], strict=True)),
        "feature": dict(zip(features, [0.0, -0.6, -0.9, 0.2, -0.2, -1.2, -0.4], strict=True)),
    }
    eta = 0.5 + patient_effect[grid["patient_id"].to_numpy()]
    for column, table in effects.items():
        eta = eta + grid[column].map(table).to_numpy()
    grid["correct"] = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return grid


def _estimates(fit) -> pd.Series:
    fixed = fit.fixed_effects.set_index("term")["estimate"]
    variance = pd.Series({"patient_id": float(fit.variance_components["variance"].iloc[0])})
    return pd.concat([fixed, variance])


def _lme4_names(term: str) -> str:
    # patsy "strategy[T.few_shot]" is R's "strategyfew_shot"; "Intercept" is "(Intercept)".
    if term == "Intercept":
        return "(Intercept)"
    return term.replace("[T.", "").replace("]", "")


def run_lme4(sweep: pd.DataFrame, folder: Path) -> pd.Series | None:
    if shutil.which("Rscript") is None:
        return None
    data_path, out_path = folder / "sweep.csv", folder / "lme4.csv"
    sweep.to_csv(data_path, index=False)
    script = Path(__file__).with_name("glmm_lme4.R")
    subprocess.run(["Rscript", str(script), str(data_path), str(out_path)], check=True)
    return pd.read_csv(out_path).set_index("term")["estimate"]


def run_statsmodels_vb(sweep: pd.DataFrame) -> tuple[float, float, pd.Series]:
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    start, cpu_start = time.perf_counter(), time.process_time()
    model = BinomialBayesMixedGLM.from_formula(
        "correct ~ model + strategy + sequences + feature", {"patient": "0 + C(patient_id)"}, sweep
    )
    fit = model.fit_vb()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    values = pd.Series(fit.fe_mean, index=[_lme4_names(n) for n in model.exog_names])
    values["patient_id"] = float(np.exp(fit.vcp_mean[0]) ** 2)
    return seconds, cpu_seconds, values


def main() -> None:
    sweep = simulate_sweep()
    print(f"sweep: {len(sweep)} answers, {sweep['patient_id'].nunique()} patients")

    start, cpu_start = time.perf_counter(), time.process_time()
    fit = glmer(FORMULA, sweep)
    ours_seconds = time.perf_counter() - start
    ours_cpu = time.process_time() - cpu_start
    ours = _estimates(fit)
    ours.index = [_lme4_names(term) for term in ours.index]
    print(
        f"vlmstudy glmer: {ours_seconds:.2f} s ({ours_cpu:.2f} s CPU), "
        f"{fit.n_evaluations} deviance evaluations, "
        f"log-likelihood {fit.log_likelihood:.4f}"
    )

    with tempfile.TemporaryDirectory() as folder:
        reference = run_lme4(sweep, Path(folder))
    if reference is not None:
        baseline = "lme4 glmer"
        baseline_seconds = float(reference.pop(".seconds"))
        baseline_cpu = float(reference.pop(".cpu_seconds"))
        loglik = float(reference.pop(".loglik"))
        print(
            f"lme4 glmer: {baseline_seconds:.2f} s ({baseline_cpu:.2f} s CPU), "
            f"log-likelihood {loglik:.4f}"
        )
    else:
        baseline = "statsmodels BinomialBayesMixedGLM.fit_vb (R not found)"
        baseline_seconds, baseline_cpu, reference = run_statsmodels_vb(sweep)
        print(f"{baseline}: {baseline_seconds:.2f} s")

    difference = (ours - reference.reindex(ours.index)).abs()
    print(difference.rename("abs_difference").to_string())
    print(f"baseline: {baseline}")
    print(
        f"speed-up: {baseline_seconds / ours_seconds:.1f}x wall, "
        f"{baseline_cpu / ours_cpu:.1f}x CPU; "
        f"max |estimate difference|: {difference.max():.2e}"
    )


if __name__ == "__main__":
    sys.exit(main())
