"""Report section on sample size: the power simulation registered with the protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.report.document import Figure, Section, interval, table
from analysis.report.inputs import Inputs

TITLE = "Sample size and power"

POWER_TARGET = 0.8
"""The conventional power a study is planned for."""


def powered_sizes(results: pd.DataFrame, target: float = POWER_TARGET) -> dict[str, int | None]:
    """Return per hypothesis the smallest simulated cohort whose power reaches ``target``.

    None when no simulated size reaches it.

    Examples
    --------
    >>> results = pd.DataFrame({"hypothesis": ["H1", "H1", "H2"], "scenario": "assumed effect",
    ...                         "lesions": [50, 100, 50], "rate": [0.7, 0.9, 0.3]})
    >>> powered_sizes(results)
    {'H1': 100, 'H2': None}
    """
    sizes: dict[str, int | None] = {}
    effect = results[results["scenario"] == "assumed effect"].sort_values("lesions")
    for hypothesis, rows in effect.groupby("hypothesis", sort=False):
        reached = rows[rows["rate"] >= target]
        sizes[str(hypothesis)] = int(reached["lesions"].iloc[0]) if len(reached) else None
    return sizes


def endpoint_span(low: float, high: float) -> str:
    """Return an endpoint value, or its range over a hypothesis's tests, for display.

    Examples
    --------
    >>> endpoint_span(0.4, 0.4), endpoint_span(0.0, 0.83), endpoint_span(float("nan"), 0.2)
    ('0.400', '0.000 to 0.830', 'NA')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "NA"
    if abs(high - low) < 5e-4:
        return f"{low:.3f}"
    return f"{low:.3f} to {high:.3f}"


def power_section(inputs: Inputs, figure_dir: Path) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Show the registered power simulation: assumptions, power curve and type I error.

    The record comes from the registration (``vlmstudy power`` run before
    ``vlmstudy register``); without one the section states that none was registered.
    """
    record = inputs.records.registration.get("power")
    n_lesions = inputs.answers["lesion_id"].nunique()
    if not record:
        text = (
            "The registration record holds no power analysis, so this study's sample size "
            f"({n_lesions} lesions) was not justified by simulation before registration. "
            "`vlmstudy power PROTOCOL` run before `vlmstudy register` would put one here."
        )
        return Section("power", TITLE, (text,)), {}

    settings = record["settings"]
    results = pd.DataFrame(record["results"])
    tests = pd.DataFrame(record["tests"])
    assumptions = settings["assumptions"]
    intro = (
        f"Before registration (computed {record['computed_at']}), `vlmstudy power` simulated "
        f"{settings['n_sim']} studies per cohort size and scenario at "
        f"{', '.join(str(size) for size in settings['lesions'])} lesions, "
        f"{assumptions['lesions_per_patient']:g} lesions per patient on average and "
        f"{assumptions['radiologists']} radiologists, and ran the registered tests on each with "
        f"{settings['bootstrap_resamples']} bootstrap resamples. Power is the share of studies "
        "whose analysis rejects under the assumed error rates; type I error the share under no "
        "effect, where each tested cell's error rate puts its endpoint exactly at the null. "
        f"Rule: {settings['rule']}. This study has {n_lesions} lesions."
    )
    reached = [
        f"{hypothesis} reaches 80% power from {size} lesions"
        if size is not None
        else f"{hypothesis} stays below 80% power at every simulated size"
        for hypothesis, size in powered_sizes(results).items()
    ]
    intro += " " + "; ".join(reached) + "."
    shown = results.assign(
        mc_ci=[interval(a, b) for a, b in results[["ci_low", "ci_high"]].to_numpy()],
        endpoint=[
            endpoint_span(low, high)
            for low, high in results[["endpoint_min", "endpoint_max"]].to_numpy()
        ],
    )[["hypothesis", "scenario", "lesions", "n_sim", "rate", "mc_ci", "endpoint", "null_value"]]
    shown = shown.rename(columns={"mc_ci": "Monte Carlo 95% CI"})
    assumed = tests[
        ["hypothesis", "scenario", "feature", "cell", "comparator", "error_rate", "endpoint_value"]
    ]
    png = figures.save(figures.power_curve(results), figure_dir, "power_curve")
    blocks = (
        intro,
        Figure(
            "power_curve",
            "Share of simulated studies rejecting each hypothesis by cohort size: power under "
            "the assumed effect (solid) and type I error under no effect (dashed), with Monte "
            "Carlo 95% intervals; dotted lines at alpha and at 0.8.",
            png,
        ),
        table(shown, "Power and type I error by cohort size", "power.csv"),
        table(
            assumed, "Error rate and endpoint value of each test per scenario", "power_tests.csv"
        ),
    )
    return Section("power", TITLE, blocks), {"power": results, "power_tests": tests}
