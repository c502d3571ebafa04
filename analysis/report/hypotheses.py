"""Report section answering the preregistered hypotheses, confirmatory apart from exploratory.

The protocol lists hypotheses under ``hypotheses``; each entry is a mapping read
with these keys (all but ``id`` optional):

``id``
    Short name, such as ``H1``.
``statement``
    The hypothesis in words.
``confirmatory``
    True (default) for a confirmatory test, False for an exploratory one.
``endpoint``
    ``kappa`` (with the reference), ``ac1``, ``accuracy`` or ``noninferiority``.
``features``
    Feature names; one test per feature and selected cell. Default: every feature.
``contrast``
    Mapping that selects the cells tested, by ``reader``, ``strategy``,
    ``sequences`` (a list or a ``+``-joined string) and ``replicate``. Default: every cell.
``test``
    The test's name in words; default from the endpoint.
``alpha``
    Significance level of the adjusted p-value (default 0.05).
``direction``
    ``greater`` (default), ``less`` or ``two-sided``, against ``null_value``.
``null_value``
    Value under the null hypothesis for ``kappa``, ``ac1`` and ``accuracy`` (default 0).
``margin``
    Kappa margin for ``noninferiority``; the default is ``analysis.noninferiority_margin``.

Multiplicity: the p-values of confirmatory tests are adjusted together, and
those of exploratory tests apart, with ``analysis.multiplicity`` (default Holm).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.multiplicity import adjust_pvalues
from analysis.noninferiority import POOLED
from analysis.report.document import Section, interval, table
from analysis.report.inputs import Inputs

HYPOTHESIS_KEYS = (
    "id statement confirmatory endpoint features contrast test alpha direction null_value margin"
).split()
"""Keys read from each entry of the protocol's ``hypotheses`` list."""

ENDPOINTS = {
    "kappa": ("kappa", "kappa_ci_low", "kappa_ci_high", "z test on the bootstrap SE"),
    "ac1": ("ac1", "ac1_ci_low", "ac1_ci_high", "z test on the SE of Gwet's AC1"),
    "accuracy": ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "z test on the bootstrap SE"),
    "noninferiority": (
        "difference",
        "ci_low",
        "ci_high",
        "one-sided z test of the kappa difference against minus the margin",
    ),
}

COLUMNS = [
    "id",
    "family",
    "feature",
    "cell",
    "endpoint",
    "test",
    "estimate",
    "ci_low",
    "ci_high",
    "null",
    "p_value",
    "p_adjusted",
    "alpha",
    "decision",
    "statement",
]


def _selected(rows: pd.DataFrame, contrast: dict) -> pd.DataFrame:
    for key in ("reader", "strategy", "replicate"):
        if key in contrast:
            rows = rows[rows[key].astype(str) == str(contrast[key])]
    if "sequences" in contrast:
        combination = contrast["sequences"]
        if isinstance(combination, list | tuple):
            combination = "+".join(combination)
        rows = rows[rows["sequences"].astype(str) == str(combination)]
    return rows


def _p_value(estimate: float, null: float, se: float, direction: str) -> float:
    if not (np.isfinite(estimate) and np.isfinite(se)) or se <= 0:
        return float("nan")
    z = (estimate - null) / se
    if direction == "less":
        return float(stats.norm.cdf(z))
    if direction == "two-sided":
        return float(2 * stats.norm.sf(abs(z)))
    return float(stats.norm.sf(z))


def _decision(p_adjusted: float, alpha: float) -> str:
    if not np.isfinite(p_adjusted):
        return "not evaluable"
    if p_adjusted < alpha:
        return "H0 rejected"
    return "not rejected"


def hypothesis_table(
    inputs: Inputs, per_cell: pd.DataFrame, ni: pd.DataFrame, default_margin: float
) -> pd.DataFrame:
    """Test every registered hypothesis on the computed tables and adjust for multiplicity."""
    plan = inputs.records.protocol.get("analysis", {}) or {}
    method = str(plan.get("multiplicity", "holm"))
    critical = stats.norm.ppf(0.5 + inputs.confidence / 2)
    rows = []
    for entry in inputs.records.protocol.get("hypotheses", []) or []:
        endpoint = str(entry.get("endpoint", "kappa"))
        if endpoint not in ENDPOINTS:
            raise ValueError(
                f"hypothesis {entry.get('id')!r}: endpoint {endpoint!r} is not one of "
                f"{sorted(ENDPOINTS)}"
            )
        estimate_column, low_column, high_column, default_test = ENDPOINTS[endpoint]
        direction = str(entry.get("direction", "greater"))
        margin = float(entry.get("margin", default_margin))
        null = -margin if endpoint == "noninferiority" else float(entry.get("null_value", 0.0))
        source = per_cell
        if endpoint == "noninferiority":
            source = (
                ni[ni["radiologist"] == POOLED].merge(
                    per_cell[["cell", "feature", "reader", "strategy", "sequences", "replicate"]],
                    on=["cell", "feature"],
                )
                if not ni.empty
                else per_cell.iloc[0:0]
            )
            direction = "greater"
        features = entry.get("features") or sorted(set(source["feature"]))
        selected = _selected(source[source["feature"].isin(features)], entry.get("contrast") or {})
        for _, row in selected.iterrows():
            estimate, low, high = (
                float(row[c]) for c in (estimate_column, low_column, high_column)
            )
            se = (high - low) / (2 * critical)
            rows.append(
                {
                    "id": str(entry.get("id", "")),
                    "family": "confirmatory" if entry.get("confirmatory", True) else "exploratory",
                    "feature": row["feature"],
                    "cell": row["cell"],
                    "endpoint": endpoint,
                    "test": str(entry.get("test", default_test)),
                    "estimate": estimate,
                    "ci_low": low,
                    "ci_high": high,
                    "null": null,
                    "p_value": _p_value(estimate, null, se, direction),
                    "alpha": float(entry.get("alpha", 0.05)),
                    "statement": str(entry.get("statement", "")),
                }
            )
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_adjusted", "decision")])
    frame["p_adjusted"] = np.nan
    for _family, index in frame.groupby("family").groups.items():
        frame.loc[index, "p_adjusted"] = adjust_pvalues(
            frame.loc[index, "p_value"].to_numpy(dtype=float), method=method
        )
    frame["decision"] = [
        _decision(p, alpha) for p, alpha in frame[["p_adjusted", "alpha"]].to_numpy(dtype=float)
    ]
    return frame[COLUMNS]


def hypotheses_section(inputs: Inputs, tested: pd.DataFrame) -> tuple[Section, dict]:
    """Build the hypotheses section, confirmatory results first and exploratory apart."""
    plan = inputs.records.protocol.get("analysis", {}) or {}
    method = str(plan.get("multiplicity", "holm"))
    if tested.empty:
        blocks = (
            "The protocol registers no hypotheses (no `hypotheses` list), so this report tests "
            "none and every result below is descriptive. A hypothesis would be read from the "
            "keys " + ", ".join(f"`{key}`" for key in HYPOTHESIS_KEYS) + ".",
        )
        return Section("hypotheses", "Preregistered hypotheses", blocks), {"hypotheses": tested}
    blocks: list = [
        "Each hypothesis is tested on every selected feature and cell. The p-value is a z test "
        f"with the standard error read off the {inputs.percent} interval (its width divided by "
        f"twice the normal quantile); p-values are adjusted with `{method}` within the "
        "confirmatory family and, apart, within the exploratory family. Decision: `H0 "
        "rejected` when the adjusted p-value is below the hypothesis's alpha.",
    ]
    for family in ("confirmatory", "exploratory"):
        rows = tested[tested["family"] == family]
        if rows.empty:
            blocks.append(f"No {family} hypotheses.")
            continue
        shown = rows.assign(ci=[interval(a, b) for a, b in rows[["ci_low", "ci_high"]].to_numpy()])
        shown = shown[
            [
                "id",
                "feature",
                "cell",
                "endpoint",
                "estimate",
                "ci",
                "null",
                "p_value",
                "p_adjusted",
                "decision",
            ]
        ]
        statements = "; ".join(
            f"{key}: {text}" for key, text in rows.groupby("id")["statement"].first().items()
        )
        blocks += [
            f"{family.capitalize()} hypotheses. {statements}",
            table(shown, f"{family.capitalize()} results", "hypotheses.csv"),
        ]
    # NOTE: the SE is derived from a percentile interval, which assumes the bootstrap
    # distribution is close to normal; a skewed distribution makes the p-value approximate.
    return Section("hypotheses", "Preregistered hypotheses", tuple(blocks)), {"hypotheses": tested}
