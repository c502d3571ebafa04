"""Formula interface for mixed models: lme4-style random terms, patsy fixed effects.

A formula such as ``correct ~ strategy + sequences + feature + (1|patient_id)``
splits into the response, the fixed-effect part (any patsy formula, with
treatment coding against the first sorted level as R's default contrasts) and
random terms ``(slopes | group)``. :func:`glmer` fits a logistic GLMM with
:func:`analysis.glmm.fit_glmm`; :func:`lmer` fits a linear mixed model on one
grouping factor with statsmodels ``MixedLM``, whose REML and ML fits agree with
lme4's ``lmer`` on ``sleepstudy``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats

from analysis.glmm import GlmmResult, fit_glmm
from study.errors import UserInputError

_RANDOM_TERM = re.compile(r"\(\s*([^()|]+?)\s*\|\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)")


@dataclass(frozen=True)
class RandomTerm:
    """A random-effect term ``(slopes | group)``: ``slopes`` is ``"1"`` for an intercept only."""

    slopes: str
    group: str

    @property
    def intercept_only(self) -> bool:
        """Whether the term is a random intercept with no slopes."""
        return self.slopes.replace(" ", "") == "1"


@dataclass(frozen=True)
class MixedFormula:
    """A parsed mixed-model formula."""

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]


def parse_formula(formula: str) -> MixedFormula:
    """Split an lme4-style formula into response, fixed part and random terms.

    The syntax is lme4's (Bates et al. 2015, J Stat Softw 67(1), doi:10.18637/jss.v067.i01):
    each ``(expr | group)`` is a random term, and everything else is the fixed part.

    Parameters
    ----------
    formula : str
        For example ``"correct ~ strategy + feature + (1|patient_id)"``.

    Returns
    -------
    MixedFormula

    Raises
    ------
    study.errors.UserInputError
        When there is no ``~``, no response, or no random term.

    Examples
    --------
    >>> parsed = parse_formula("correct ~ strategy + sequences + (1|patient_id)")
    >>> parsed.response, parsed.fixed, parsed.random[0].group
    ('correct', 'strategy + sequences', 'patient_id')
    """
    if formula.count("~") != 1:
        raise UserInputError(f"formula {formula!r} must contain exactly one '~'")
    left, right = (part.strip() for part in formula.split("~"))
    if not left:
        raise UserInputError(f"formula {formula!r} has no response left of '~'")
    random = tuple(RandomTerm(slopes, group) for slopes, group in _RANDOM_TERM.findall(right))
    if not random:
        raise UserInputError(
            f"formula {formula!r} has no random term; add one such as (1|patient_id)"
        )
    fixed = _RANDOM_TERM.sub("", right)
    fixed = re.sub(r"\+\s*(\+\s*)+", "+ ", fixed).strip().strip("+").strip() or "1"
    if "|" in fixed:
        raise UserInputError(f"formula {formula!r} has a random term that could not be parsed")
    return MixedFormula(response=left, fixed=fixed, random=random)


def _fixed_design(fixed: str, data: pd.DataFrame) -> pd.DataFrame:
    return _design_matrix(fixed, data, f"fixed part {fixed!r}")


def _design_matrix(formula: str, data: pd.DataFrame, part: str) -> pd.DataFrame:
    # patsy codes pandas categoricals from their integer codes, much faster than strings;
    # the levels stay sorted, so the reference level is unchanged.
    text = data.select_dtypes(include=["object", "string"]).columns
    frame = data.astype({column: "category" for column in text}) if len(text) else data
    try:
        design = patsy.dmatrix(formula, frame, return_type="dataframe", NA_action="raise")
    except patsy.PatsyError as error:
        raise UserInputError(f"{part} could not be built from the data: {error}") from None
    return design


def _require_columns(data: pd.DataFrame, columns: list[str]) -> None:
    missing = [column for column in columns if column not in data.columns]
    if missing:
        raise UserInputError(
            f"columns {missing} are missing from the data; available: {list(data.columns)}"
        )


def glmer(
    formula: str,
    data: pd.DataFrame,
    *,
    trials: str | None = None,
    confidence: float = 0.95,
) -> GlmmResult:
    """Fit a logistic GLMM from an lme4-style formula with random intercepts.

    Equivalent to ``lme4::glmer(formula, family = binomial)`` with the default
    Laplace approximation (``nAGQ = 1``); see :mod:`analysis.glmm` for the criterion.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (1|group) [+ (1|group2) ...]``. The response is 0/1
        (or boolean) per row, or a count of successes with ``trials``.
    data : pandas.DataFrame
        One row per answer (or per binomial count).
    trials : str, optional
        Column of trials per row, as ``cbind(successes, trials - successes)`` in R.
    confidence : float
        Level of the Wald intervals.

    Returns
    -------
    GlmmResult

    Raises
    ------
    study.errors.UserInputError
        For a random slope (only intercepts are supported), missing columns or
        values, or a response outside ``[0, trials]``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> data = pd.DataFrame({"patient_id": np.repeat(np.arange(30), 8),
    ...                      "strategy": np.tile(["few_shot", "zero_shot"], 120)})
    >>> effect = rng.normal(0, 0.8, 30)[data["patient_id"]]
    >>> data["correct"] = rng.binomial(1, 1 / (1 + np.exp(-(0.5 + effect))))
    >>> fit = glmer("correct ~ strategy + (1|patient_id)", data)
    >>> list(fit.fixed_effects["term"])
    ['Intercept', 'strategy[T.zero_shot]']
    """
    parsed = parse_formula(formula)
    for term in parsed.random:
        if not term.intercept_only:
            raise UserInputError(
                f"random term ({term.slopes}|{term.group}) has slopes; glmer here fits random "
                "intercepts only, so write (1|group)"
            )
    groups = [term.group for term in parsed.random]
    needed = [parsed.response, *groups] + ([trials] if trials else [])
    _require_columns(data, needed)
    design = _fixed_design(parsed.fixed, data)
    rows = design.index
    response = data.loc[rows, parsed.response]
    if response.isna().any():
        raise UserInputError(
            f"response column {parsed.response!r} has missing values; drop those rows"
        )
    try:
        values = response.to_numpy(dtype=float)
        counts = None if trials is None else data.loc[rows, trials].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise UserInputError(
            f"response {parsed.response!r} and trials must be numeric or boolean (1 = correct)"
        ) from None
    return fit_glmm(
        values,
        design.to_numpy(),
        {group: data.loc[rows, group].to_numpy() for group in groups},
        trials=counts,
        term_names=list(design.columns),
        confidence=confidence,
    )


@dataclass(frozen=True)
class LmmResult:
    """A fitted linear mixed model.

    Attributes
    ----------
    fixed_effects
        ``term``, ``estimate``, ``se``, ``t``, ``ci_low``, ``ci_high`` (Wald, normal quantile).
    variance_components
        lme4's ``as.data.frame(VarCorr(fit))`` layout: ``group``, ``var1``, ``var2``
        (empty unless a covariance), ``vcov``, ``sdcor`` (SD, or correlation for a
        covariance row); the last row is the residual. Each random term has its own
        rows, and there are no covariance rows between terms.
    covariance
        Covariance matrix of the fixed effects, in the order of ``fixed_effects``.
    log_likelihood
        REML or ML log-likelihood, as fitted.
    criterion
        ``-2 * log_likelihood``: lme4's REML criterion or ML deviance.
    aic, bic
        Information criteria counting the fixed effects, the estimated covariance
        parameters (none between terms) and the residual variance, as lme4 does.
    reml
        Whether the fit is REML.
    n_obs, n_groups
        Rows and levels of the grouping factor.
    converged
        Whether statsmodels' optimiser met its gradient tolerance.
    """

    fixed_effects: pd.DataFrame
    variance_components: pd.DataFrame
    covariance: np.ndarray
    log_likelihood: float
    criterion: float
    aic: float
    bic: float
    reml: bool
    n_obs: int
    n_groups: int
    converged: bool


def lmer(
    formula: str, data: pd.DataFrame, *, reml: bool = True, confidence: float = 0.95
) -> LmmResult:
    """Fit a linear mixed model from an lme4-style formula with statsmodels ``MixedLM``.

    The random part is one or more terms on the same grouping factor. As in lme4,
    the effects inside one term share a full covariance matrix, and effects in
    different terms are independent: ``(Days | Subject)`` estimates a correlation,
    ``(1 | Subject) + (0 + Days | Subject)`` fixes it at zero. statsmodels maximises
    the same REML and ML criteria as lme4, and the tests compare both fits with
    lme4 1.1-31 on ``sleepstudy``.

    Parameters
    ----------
    formula : str
        ``y ~ fixed + (effects | group) [+ (effects | group) ...]``, for example
        ``Reaction ~ Days + (Days | Subject)``. Inside a term, ``0 +`` or ``- 1``
        drops the random intercept, as in lme4.
    data : pandas.DataFrame
    reml : bool
        REML (lme4's default) or maximum likelihood.
    confidence : float
        Level of the Wald intervals.

    Returns
    -------
    LmmResult

    Raises
    ------
    study.errors.UserInputError
        For random terms on more than one grouping factor, an effect repeated in
        two terms, a term with no effect, missing columns or missing values.

    Notes
    -----
    Crossed or nested grouping factors, such as ``(1 | subject) + (1 | item)``,
    are not supported because statsmodels ``MixedLM`` takes a single grouping
    factor. The variance table names the second term's group ``Subject.1``, the
    third's ``Subject.2``, and so on, as lme4's ``VarCorr`` does.

    statsmodels' default BFGS stops when the gradient norm is below 1e-5, which
    leaves the REML intercept SD of ``sleepstudy`` 1.3e-4 from the optimum. Each fit is
    therefore refined from there by BFGS with a gradient tolerance of 1e-8, and
    the refined fit is kept unless its log-likelihood is lower.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> data = pd.DataFrame({"g": np.repeat(np.arange(12), 5), "x": np.tile(np.arange(5.0), 12)})
    >>> data["y"] = 2 + 0.5 * data["x"] + rng.normal(0, 1, 12)[data["g"]] + rng.normal(0, 0.5, 60)
    >>> fit = lmer("y ~ x + (1|g)", data)
    >>> list(fit.variance_components["group"])
    ['g', 'Residual']
    >>> fit = lmer("y ~ x + (1|g) + (0 + x|g)", data)
    >>> list(fit.variance_components["group"])
    ['g', 'g.1', 'Residual']
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    parsed = parse_formula(formula)
    group = _single_grouping_factor(parsed.random)
    _require_columns(data, [parsed.response, group])
    for column in (parsed.response, group):
        if data[column].isna().any():
            raise UserInputError(f"column {column!r} has missing values. Drop those rows first.")

    fixed_design = _fixed_design(parsed.fixed, data)
    random_design, blocks = _random_design(parsed.random, data)
    try:
        response = data[parsed.response].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise UserInputError(f"response {parsed.response!r} must be numeric") from None

    model = MixedLM(response, fixed_design, data[group].to_numpy(), exog_re=random_design)
    # statsmodels estimates the Cholesky-factor entries marked 1 and keeps the others at
    # their value in the identity start, 0, so effects in different terms stay independent.
    pattern = np.zeros((random_design.shape[1], random_design.shape[1]))
    for block in blocks:
        pattern[np.ix_(block, block)] = 1.0
    free = MixedLMParams.from_components(np.ones(fixed_design.shape[1]), cov_re=pattern)
    fit, converged = _fit_mixedlm(model, reml, free)

    names = list(fixed_design.columns)
    estimate = fit.fe_params.to_numpy()
    se = fit.bse_fe.to_numpy()
    critical = stats.norm.ppf(0.5 + confidence / 2.0)
    fixed = pd.DataFrame(
        {
            "term": names,
            "estimate": estimate,
            "se": se,
            "t": estimate / se,
            "ci_low": estimate - critical * se,
            "ci_high": estimate + critical * se,
        }
    )
    components = _variance_table(fit.cov_re, float(fit.scale), group, blocks)

    n_covariance = sum(len(block) * (len(block) + 1) // 2 for block in blocks)
    n_params = len(names) + n_covariance + 1
    n_obs = int(fit.nobs)
    log_likelihood = float(fit.llf)
    return LmmResult(
        fixed_effects=fixed,
        variance_components=components,
        covariance=np.asarray(fit.cov_params().loc[names, names]),
        log_likelihood=log_likelihood,
        criterion=-2.0 * log_likelihood,
        aic=-2.0 * log_likelihood + 2 * n_params,
        bic=-2.0 * log_likelihood + np.log(n_obs) * n_params,
        reml=reml,
        n_obs=n_obs,
        n_groups=len(model.group_labels),
        converged=converged,
    )


def _single_grouping_factor(terms: tuple[RandomTerm, ...]) -> str:
    groups = list(dict.fromkeys(term.group for term in terms))
    if len(groups) > 1:
        raise UserInputError(
            f"random terms use the grouping factors {groups}, but lmer fits terms on one "
            "grouping factor only, such as (1|g) + (0 + x|g). Crossed or nested factors are "
            "not supported by statsmodels MixedLM, so fit that model with lme4 in R."
        )
    return groups[0]


def _random_design(
    terms: tuple[RandomTerm, ...], data: pd.DataFrame
) -> tuple[pd.DataFrame, list[list[int]]]:
    """Build the random-effects design, one patsy design per term, and each term's columns."""
    designs = []
    for term in terms:
        text = f"({term.slopes}|{term.group})"
        design = _design_matrix(term.slopes, data, f"random term {text}")
        if design.shape[1] == 0:
            raise UserInputError(
                f"random term {text} contains no effect. Write (1|{term.group}) for a "
                "random intercept."
            )
        designs.append(design)

    columns = [column for design in designs for column in design.columns]
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        effects = ["(Intercept)" if column == "Intercept" else column for column in repeated]
        raise UserInputError(
            f"random effects {effects} appear in more than one term on {terms[0].group!r}. "
            "Put each effect in one term, for example (1|g) + (0 + x|g)."
        )

    blocks = []
    start = 0
    for design in designs:
        blocks.append(list(range(start, start + design.shape[1])))
        start += design.shape[1]
    return pd.concat(designs, axis=1), blocks


def _fit_mixedlm(model, reml: bool, free) -> tuple[Any, bool]:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = model.fit(reml=reml, free=free)
        refined = model.fit(
            reml=reml,
            free=free,
            start_params=fit.params_object,
            method=["bfgs"],
            gtol=1e-8,
        )
    if refined.llf < fit.llf:
        return fit, bool(fit.converged)

    # BFGS can stop on a line-search failure just short of 1e-8 (the ML sleepstudy fit
    # does), but already at a higher log-likelihood than the first fit.
    return refined, bool(fit.converged or refined.converged)


def _variance_table(
    cov_re: pd.DataFrame, scale: float, group: str, blocks: list[list[int]]
) -> pd.DataFrame:
    names = ["(Intercept)" if name == "Intercept" else name for name in cov_re.index]
    matrix = cov_re.to_numpy()
    rows = []
    for number, block in enumerate(blocks):
        label = group if number == 0 else f"{group}.{number}"
        for i in block:
            rows.append((label, names[i], "", matrix[i, i], np.sqrt(matrix[i, i])))
        for position, i in enumerate(block):
            for j in block[position + 1 :]:
                correlation = matrix[i, j] / np.sqrt(matrix[i, i] * matrix[j, j])
                rows.append((label, names[i], names[j], matrix[i, j], correlation))
    rows.append(("Residual", "", "", scale, np.sqrt(scale)))
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])


def odds_ratios(result: GlmmResult) -> pd.DataFrame:
    """Tabulate the fixed effects of a logistic GLMM as odds ratios with Wald intervals.

    :math:`OR = e^{\\hat\\beta}` with interval :math:`e^{\\hat\\beta \\pm z SE}` at the
    fit's confidence level (conditional on the random effects, so a patient-specific
    odds ratio, not a population-average one as from :func:`analysis.gee.gee`).

    Parameters
    ----------
    result : GlmmResult

    Returns
    -------
    pandas.DataFrame
        ``term``, ``odds_ratio``, ``ci_low``, ``ci_high``, ``p_value``.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> data = pd.DataFrame({"patient_id": np.repeat(np.arange(25), 6),
    ...                      "strategy": np.tile(["a", "b", "c"], 50)})
    >>> data["correct"] = rng.binomial(1, 0.6, 150)
    >>> table = odds_ratios(glmer("correct ~ strategy + (1|patient_id)", data))
    >>> list(table.columns)
    ['term', 'odds_ratio', 'ci_low', 'ci_high', 'p_value']
    """
    fixed = result.fixed_effects
    return pd.DataFrame(
        {
            "term": fixed["term"],
            "odds_ratio": np.exp(fixed["estimate"]),
            "ci_low": np.exp(fixed["ci_low"]),
            "ci_high": np.exp(fixed["ci_high"]),
            "p_value": fixed["p_value"],
        }
    )
