"""Report sections that compare: reader versus model non-inferiority and the mixed-effects model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.mixed import glmer, odds_ratios
from analysis.noninferiority import POOLED, reader_model_noninferiority
from analysis.report.document import Figure, Section, Table, interval, table
from analysis.report.inputs import Inputs
from study.errors import UserInputError

DEFAULT_MARGIN = 0.1
"""Kappa margin used when the protocol sets no ``analysis.noninferiority_margin``."""


def noninferiority_margin(protocol: dict) -> tuple[float, bool]:
    """Return the margin and whether the protocol set ``analysis.noninferiority_margin``."""
    plan = protocol.get("analysis", {}) or {}
    if plan.get("noninferiority_margin") is None:
        return DEFAULT_MARGIN, False
    return float(plan["noninferiority_margin"]), True


def noninferiority_table(inputs: Inputs, margin: float) -> pd.DataFrame:
    """Run the reader-versus-model non-inferiority comparison per feature, each cell a model."""
    radiologist_names = sorted(inputs.radiologists["reader"].astype(str).unique())
    results = []
    for feature_name, answers in inputs.answers.dropna(subset=["analysed"]).groupby(
        "feature", sort=False
    ):
        if len(radiologist_names) < 2:
            break
        reads = inputs.radiologists[inputs.radiologists["feature"] == feature_name]
        long = pd.concat(
            [
                pd.DataFrame(
                    {
                        "reader": reads["reader"].astype(str),
                        "label": reads["answer"],
                        "lesion_id": reads["lesion_id"],
                        "patient_id": reads["patient"],
                    }
                ),
                pd.DataFrame(
                    {
                        "reader": answers["cell"],
                        "label": answers["analysed"],
                        "lesion_id": answers["lesion_id"],
                        "patient_id": answers["patient"],
                    }
                ),
            ],
            ignore_index=True,
        ).dropna(subset=["label", "patient_id"])
        models = sorted(answers["cell"].unique())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table_ = reader_model_noninferiority(
                long,
                radiologists=radiologist_names,
                models=models,
                categories=inputs.categories(feature_name),
                margin=margin,
                seed=inputs.seed,
                n_resamples=inputs.n_resamples,
                confidence=inputs.confidence,
            )
        results.append(table_.assign(feature=feature_name))
    if not results:
        return pd.DataFrame()
    return pd.concat(results, ignore_index=True).rename(columns={"model": "cell"})


def noninferiority_section(
    inputs: Inputs, ni: pd.DataFrame, margin: float, registered: bool, figure_dir: Path
) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the reader-versus-model section from the non-inferiority table."""
    level = inputs.percent
    source = (
        f"The protocol registered the margin {margin:g} (`analysis.noninferiority_margin`)."
        if registered
        else f"The protocol registers no margin (`analysis.noninferiority_margin`), so this "
        f"report uses {margin:g} on the kappa scale and every result here is exploratory."
    )
    blocks: list = [
        "Can a model see each feature like a radiologist? For each feature and cell the model "
        "takes the place of one radiologist: the difference is the model's mean Cohen's kappa "
        "with the radiologists minus the radiologists' mean pairwise kappa, on lesions read by "
        f"everyone, with a {level} percentile interval from {inputs.n_resamples} resamples of "
        "patients. The model is non-inferior when the lower bound exceeds minus the margin. "
        + source,
    ]
    if ni.empty:
        blocks.append("Not computed: the reads contain fewer than two radiologists.")
        return Section("reader-vs-model", "Reader versus model", tuple(blocks)), {}
    pooled = ni[ni["radiologist"] == POOLED]
    shown = pd.DataFrame(
        {
            "feature": pooled["feature"],
            "cell": pooled["cell"],
            "model kappa": pooled["model_kappa"],
            "radiologists' kappa": pooled["human_kappa"],
            "difference": pooled["difference"],
            f"{level} CI": [interval(a, b) for a, b in pooled[["ci_low", "ci_high"]].to_numpy()],
            "non-inferior": pooled["noninferior"].map({True: "yes", False: "no"}),
            "n": pooled["n_lesions"],
        }
    )
    counts = pooled.groupby("feature", sort=False)["noninferior"].agg(["sum", "size"])
    blocks.append(
        "Cells non-inferior per feature: "
        + "; ".join(
            f"`{name}` {int(row['sum'])} of {int(row['size'])}" for name, row in counts.iterrows()
        )
        + ". Rows against each single radiologist are in `tables/noninferiority.csv`."
    )
    blocks.append(
        Table(
            *_parts(table(shown, "Pooled comparison per feature and cell")),
            "noninferiority.csv",
            collapsed=len(shown) > 30,
        )
    )
    for feature_name, rows in pooled.groupby("feature", sort=False):
        figure = figures.forest_plot(
            rows,
            label="cell",
            estimate="difference",
            low="ci_low",
            high="ci_high",
            xlabel=f"model kappa minus radiologists' kappa (unitless), {level} CI",
            title=f"Non-inferiority for {feature_name}",
            reference=-margin,
            reference_label=f"minus the margin ({-margin:g})",
            xlim=(-1.0, 1.0),
        )
        name = f"noninferiority_{feature_name}"
        png = figures.save(figure, figure_dir, name)
        blocks.append(
            Figure(
                name,
                f"Non-inferiority of each cell for `{feature_name}`: a cell "
                "is non-inferior when its whole interval lies right of the dashed "
                "line.",
                png,
            )
        )
    return Section("reader-vs-model", "Reader versus model", tuple(blocks)), {"noninferiority": ni}


def _parts(shown: Table) -> tuple:
    return shown.caption, shown.headers, shown.rows


def glmm_section(inputs: Inputs, figure_dir: Path) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Fit the logistic GLMM of a correct answer and tabulate its odds ratios."""
    data = inputs.answers.dropna(subset=["reference", "analysed"]).copy()
    data["correct"] = (data["analysed"] == data["reference"]).astype(int)
    data["patient_id"] = data["patient"].astype(str)
    data = data[["correct", "strategy", "sequence_set", "reader", "patient_id", "feature"]]
    data = data.astype({"strategy": str, "reader": str, "feature": str})
    blocks: list = [
        "A logistic generalised linear mixed model (Laplace approximation, as lme4's `glmer`) "
        "of a correct answer (equal to the reference) on strategy, sequence set and reader as "
        "fixed effects, with random intercepts for patient and feature. Odds ratios above 1 "
        "favour the named level over the reference level (the first in alphabetical order), "
        f"with {inputs.percent} Wald intervals conditional on the random effects. The random "
        "intercepts absorb differences between patients and between features.",
    ]
    terms = [name for name in ("strategy", "sequence_set", "reader") if data[name].nunique() > 1]
    if not terms or data["correct"].nunique() < 2:
        blocks.append(
            "Not fitted: the run has a single strategy, sequence set and reader, or "
            "every answer is correct (or every answer is wrong)."
        )
        return Section("mixed-model", "Mixed-effects model", tuple(blocks)), {}
    formula = f"correct ~ {' + '.join(terms)} + (1|patient_id) + (1|feature)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = glmer(formula, data, confidence=inputs.confidence)
    except (UserInputError, ValueError, np.linalg.LinAlgError, FloatingPointError) as error:
        blocks.append(f"The model `{formula}` could not be fitted: {error}")
        return Section("mixed-model", "Mixed-effects model", tuple(blocks)), {}
    with np.errstate(over="ignore"):
        # An unbounded estimate (complete separation) overflows to an odds ratio of inf.
        ratios = odds_ratios(fit)
    blocks.append(
        f"Fitted `{formula}` on {fit.n_obs} answers; converged: "
        f"{'yes' if fit.converged else 'NO, so read the estimates with caution'}."
    )
    blocks.append(table(ratios, "Odds ratios of a correct answer", "glmm_odds_ratios.csv"))
    blocks.append(
        table(fit.variance_components, "Random-effect variance components", "glmm_variance.csv")
    )
    shown = ratios[ratios["term"] != "Intercept"]
    figure = figures.forest_plot(
        shown,
        label="term",
        estimate="odds_ratio",
        low="ci_low",
        high="ci_high",
        xlabel=f"odds ratio of a correct answer (log scale), {inputs.percent} CI",
        title="Mixed-effects model",
        reference=1.0,
        reference_label="no effect (OR = 1)",
        xlim=None,
        log=True,
    )
    png = figures.save(figure, figure_dir, "glmm_odds_ratios")
    blocks.append(Figure("glmm_odds_ratios", "Odds ratios of the mixed-effects model.", png))
    frames = {"glmm_odds_ratios": ratios, "glmm_variance": fit.variance_components}
    return Section("mixed-model", "Mixed-effects model", tuple(blocks)), frames
