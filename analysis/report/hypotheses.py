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
``versus``
    Mapping of cell keys, as in ``contrast``, that names a comparator for each
    selected cell: the cell with the same keys except those given here. The
    hypothesis then tests the paired difference, selected cell minus
    comparator, of ``kappa`` or ``accuracy`` (no other endpoint), on the
    lesions both cells judged. ``{strategy: zero_shot}`` with
    ``contrast: {strategy: few_shot}`` tests few-shot minus zero-shot for
    every reader, sequence set and replicate.
``test``
    The test's name in words; default from the endpoint.
``alpha``
    Significance level of the adjusted p-value (default 0.05).
``direction``
    ``greater`` (default), ``less`` or ``two-sided``, against ``null_value``.
``null_value``
    Value under the null hypothesis for ``kappa``, ``ac1`` and ``accuracy``, and
    for the difference when ``versus`` is given (default 0).
``margin``
    Kappa margin for ``noninferiority``; the default is ``analysis.noninferiority_margin``.

Multiplicity: the p-values of confirmatory tests are adjusted together, and
those of exploratory tests apart, with ``analysis.multiplicity`` (default Holm).
The rows of a ``versus`` hypothesis enter its family like any other rows.

A selected cell without a comparator raises ``ValueError`` rather than giving a
"not evaluable" row, because a missing test would also loosen the multiplicity
adjustment of the rest of its family. The cause is a ``versus`` value that is
not in the grid, or a run whose comparator cells are missing.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats

from analysis.multiplicity import adjust_pvalues
from analysis.noninferiority import POOLED
from analysis.report.document import Section, interval, table
from analysis.report.inputs import Inputs
from analysis.report.paired import PAIRED_ENDPOINTS, paired_difference, paired_lesions
from study.lirads import FEATURES
from study.protocol import CELL_KEYS

logger = logging.getLogger(__name__)

HYPOTHESIS_KEYS = (
    "id statement confirmatory endpoint features contrast versus test alpha direction "
    "null_value margin"
).split()
"""Keys read from each entry of the protocol's ``hypotheses`` list."""

VERSUS_TEST = "z test on the bootstrap SE of the paired difference"
"""Default ``test`` of a hypothesis with ``versus``."""

ENDPOINTS = {
    "kappa": ("kappa", "kappa_ci_low", "kappa_ci_high", "kappa_se", "z test on the bootstrap SE"),
    "ac1": ("ac1", "ac1_ci_low", "ac1_ci_high", "ac1_se", "z test on the SE of Gwet's AC1"),
    "accuracy": (
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "accuracy_se",
        "z test on the bootstrap SE",
    ),
    "noninferiority": (
        "difference",
        "ci_low",
        "ci_high",
        "se",
        "one-sided z test of the kappa difference against minus the margin",
    ),
}
"""Per endpoint: estimate, interval and SE columns, and the default name of the test."""

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


def _cell_rows(
    entry: dict, per_cell: pd.DataFrame, ni: pd.DataFrame, default_margin: float
) -> list[dict]:
    """Test one hypothesis without ``versus`` on each selected cell's own interval."""
    endpoint = str(entry.get("endpoint", "kappa"))
    if endpoint not in ENDPOINTS:
        raise ValueError(
            f"hypothesis {entry.get('id')!r}: endpoint {endpoint!r} is not one of "
            f"{sorted(ENDPOINTS)}"
        )
    estimate_column, low_column, high_column, se_column, default_test = ENDPOINTS[endpoint]
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
    rows = []
    for _, row in selected.iterrows():
        estimate, low, high, se = (
            float(row[c]) for c in (estimate_column, low_column, high_column, se_column)
        )
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
    return rows


def _cell_value(key: str, value) -> str:
    """Return a ``contrast`` or ``versus`` value in the form the ``answers`` table stores."""
    if key == "sequences" and isinstance(value, list | tuple):
        return "+".join(value)
    return str(value)


def _checked_versus(entry: dict) -> dict[str, str]:
    """Return the hypothesis's ``versus`` mapping with values as text, or raise if it is invalid."""
    name = entry.get("id")
    endpoint = str(entry.get("endpoint", "kappa"))
    versus = entry["versus"]
    if endpoint not in PAIRED_ENDPOINTS:
        raise ValueError(
            f"hypothesis {name!r}: 'versus' compares cells on {' or '.join(PAIRED_ENDPOINTS)}, "
            f"not on endpoint {endpoint!r}"
        )
    if not isinstance(versus, dict) or not versus:
        raise ValueError(
            f"hypothesis {name!r}: 'versus' must be a non-empty mapping of cell keys "
            f"{list(CELL_KEYS)}, got {versus!r}"
        )
    unknown = sorted(set(versus) - set(CELL_KEYS))
    if unknown:
        raise ValueError(
            f"hypothesis {name!r}: 'versus' keys {unknown} are not cell keys. Use {list(CELL_KEYS)}"
        )
    return {key: _cell_value(key, value) for key, value in versus.items()}


def _comparator(
    cells: pd.DataFrame, cell: pd.Series, versus: dict[str, str], name: object
) -> pd.Series:
    """Find the one cell that equals ``cell`` on every cell key except those ``versus`` sets."""
    expected = {key: str(cell[key]) for key in CELL_KEYS}
    if all(expected[key] == value for key, value in versus.items()):
        raise ValueError(
            f"hypothesis {name!r}: 'versus' {versus} names cell {cell['cell']!r} itself. "
            "Give 'versus' a value that differs from the contrast"
        )
    expected.update(versus)
    described = ", ".join(f"{key}={value}" for key, value in expected.items())

    matches = cells
    for key, value in expected.items():
        matches = matches[matches[key].astype(str) == value]
    if matches.empty:
        raise ValueError(
            f"hypothesis {name!r}: cell {cell['cell']!r} has no comparator cell ({described}) in "
            "the predictions. Check the 'versus' values against the protocol's grid, or finish "
            "the run's missing cells"
        )
    if len(matches) > 1:
        raise ValueError(
            f"hypothesis {name!r}: {len(matches)} cells match the comparator ({described}) of "
            f"cell {cell['cell']!r}: cell ids {sorted(matches['cell_id'])}"
        )
    return matches.iloc[0]


def _versus_rows(inputs: Inputs, entry: dict) -> list[dict]:
    """Test one hypothesis with ``versus``: the paired difference per feature and selected cell."""
    name = entry.get("id")
    versus = _checked_versus(entry)
    endpoint = str(entry.get("endpoint", "kappa"))
    direction = str(entry.get("direction", "greater"))
    null = float(entry.get("null_value", 0.0))
    answers = inputs.answers

    cells = answers[["cell_id", "cell", *CELL_KEYS, "sequence_set"]].drop_duplicates("cell_id")
    cells = cells.sort_values(["reader", "strategy", "sequence_set", "replicate"])
    selected = _selected(cells, entry.get("contrast") or {})
    pairs = [(cell, _comparator(cells, cell, versus, name)) for _, cell in selected.iterrows()]

    present = set(answers["feature"])
    features = entry.get("features") or [f for f in FEATURES if f in present]
    by_cell_feature = dict(tuple(answers.groupby(["cell_id", "feature"])))
    empty = answers.iloc[0:0]
    rows = []
    for feature_name in features:
        for cell, comparator in pairs:
            paired = paired_lesions(
                by_cell_feature.get((cell["cell_id"], feature_name), empty),
                by_cell_feature.get((comparator["cell_id"], feature_name), empty),
            )
            result = paired_difference(
                paired["reference"].to_numpy(),
                paired["first"].to_numpy(),
                paired["second"].to_numpy(),
                paired["patient"].to_numpy(),
                endpoint=endpoint,
                categories=inputs.categories(feature_name),
                n_resamples=inputs.n_resamples,
                seed=inputs.seed,
                confidence=inputs.confidence,
            )
            label = f"{cell['cell']} vs {comparator['cell']}"
            for note in result.notes:
                logger.warning("hypothesis %s, %s, %s: %s", name, feature_name, label, note)
            rows.append(
                {
                    "id": str(entry.get("id", "")),
                    "family": "confirmatory" if entry.get("confirmatory", True) else "exploratory",
                    "feature": feature_name,
                    "cell": label,
                    "endpoint": f"{endpoint} difference",
                    "test": str(entry.get("test", VERSUS_TEST)),
                    "estimate": result.estimate,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "null": null,
                    "p_value": _p_value(result.estimate, null, result.se, direction),
                    "alpha": float(entry.get("alpha", 0.05)),
                    "statement": str(entry.get("statement", "")),
                }
            )
    return rows


def hypothesis_table(
    inputs: Inputs, per_cell: pd.DataFrame, ni: pd.DataFrame, default_margin: float
) -> pd.DataFrame:
    """Test every registered hypothesis on the computed tables and adjust for multiplicity.

    A hypothesis without ``versus`` reads each selected cell's estimate and
    interval from ``per_cell`` (or, for ``noninferiority``, from ``ni``). A
    hypothesis with ``versus`` computes, for each feature and selected cell,
    the paired difference of kappa or accuracy between that cell and its
    comparator (see :func:`analysis.report.paired.paired_difference`). It uses
    the lesions both cells judged and ``inputs.seed``, ``inputs.n_resamples``
    and ``inputs.confidence``. Its ``cell`` column reads ``A vs B``. Two cells
    that give the same answer on every paired lesion have a difference of 0
    in every resample, so their interval and p-value are NaN and the decision
    is "not evaluable". Every
    p-value is a z test of the estimate against ``null_value`` with the
    standard error (CI width) / (2 z), z being the normal quantile of the
    interval level.

    Parameters
    ----------
    inputs : Inputs
        The prepared records; the protocol's ``hypotheses`` list is read from them.
    per_cell : DataFrame
        The per-cell agreement table with the readable ``cell`` label.
    ni : DataFrame
        The non-inferiority table.
    default_margin : float
        Kappa margin for a ``noninferiority`` hypothesis without ``margin``.

    Returns
    -------
    DataFrame
        One row per hypothesis, feature and selected cell, columns :data:`COLUMNS`.

    Raises
    ------
    ValueError
        For an unknown endpoint, an invalid ``versus``, or a selected cell
        with no comparator or with more than one.

    Examples
    --------
    Few-shot answers every lesion right and zero-shot one of four, so the
    accuracy difference is 0.75:

    >>> from analysis.records import RunRecords
    >>> from analysis.report.inputs import prepare
    >>> from analysis.report.tables import PREDICTION_COLUMNS
    >>> lesions, truth = ["L0", "L1", "L2", "L3"], ["absent", "rim", "nonrim", "rim"]
    >>> rows = [{**dict.fromkeys(PREDICTION_COLUMNS, ""), "cell_id": strategy, "reader": "vlm",
    ...          "strategy": strategy, "sequences": "arterial", "replicate": 0,
    ...          "lesion_id": lesion, "feature": "aphe", "outcome": "valid", "answer": answer}
    ...         for strategy, answers in [("few_shot", truth), ("zero_shot", ["absent"] * 4)]
    ...         for lesion, answer in zip(lesions, answers)]
    >>> reads = pd.DataFrame({"lesion_id": lesions, "reader": "A", "feature": "aphe",
    ...                       "answer": truth})
    >>> patients = pd.DataFrame({"lesion_id": lesions, "patient_id": lesions, "split": "test"})
    >>> protocol = {"hypotheses": [{"id": "H3", "endpoint": "accuracy", "features": ["aphe"],
    ...                             "contrast": {"strategy": "few_shot"},
    ...                             "versus": {"strategy": "zero_shot"}}]}
    >>> records = RunRecords("r", protocol, {}, pd.DataFrame(rows), reads, pd.DataFrame(),
    ...                      patients)
    >>> inputs = prepare(records, n_resamples=200, seed=1, confidence=0.95,
    ...                  indeterminate_as="absent", failures_as="wrong")
    >>> row = hypothesis_table(inputs, pd.DataFrame(), pd.DataFrame(), 0.1).iloc[0]
    >>> row["cell"], row["endpoint"], float(row["estimate"])
    ('vlm | few_shot | S1 | r0 vs vlm | zero_shot | S1 | r0', 'accuracy difference', 0.75)
    """
    plan = inputs.records.protocol.get("analysis", {}) or {}
    method = str(plan.get("multiplicity", "holm"))
    rows = []
    for entry in inputs.records.protocol.get("hypotheses", []) or []:
        if entry.get("versus") is None:
            rows += _cell_rows(entry, per_cell, ni, default_margin)
        else:
            rows += _versus_rows(inputs, entry)

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
        "whose standard error is the standard deviation of the patient-clustered bootstrap "
        "distribution (for AC1, Gwet's variance); p-values are adjusted with "
        f"`{method}` within the "
        "confirmatory family and, apart, within the exploratory family. Decision: `H0 "
        "rejected` when the adjusted p-value is below the hypothesis's alpha.",
    ]
    if tested["endpoint"].str.endswith(" difference").any():
        blocks.append(
            "A row whose cell reads `A vs B` tests the paired difference A minus B of kappa or "
            "accuracy with the reference, on the lesions both cells judged. Its "
            f"{inputs.percent} interval comes from one patient-clustered bootstrap that "
            "resamples both cells together."
        )
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
    # NOTE: a z test assumes the estimate is close to normal. `vlmstudy power` measures how
    # far its type I error strays from alpha at a given cohort size.
    return Section("hypotheses", "Preregistered hypotheses", tuple(blocks)), {"hypotheses": tested}
