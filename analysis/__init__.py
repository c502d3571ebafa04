"""Judge answers: agreement, accuracy, bootstrap intervals and the report.

This package reads only what ``study`` logged (the predictions table and the
run's metadata) and shares with it nothing but the vocabulary in
:mod:`study.lirads`.
"""

from analysis.accuracy import ProportionResult, diagnostic_accuracy, proportion_ci
from analysis.agreement import (
    FleissResult,
    KappaResult,
    UndefinedStatisticWarning,
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    pabak,
    percent_agreement,
)
from analysis.bootstrap import (
    BootstrapResult,
    DegenerateBootstrapWarning,
    NaNResampleWarning,
    cluster_bootstrap,
    cluster_bootstrap_many,
    jackknife_acceleration,
)
from analysis.gwet import ChanceCorrectedResult, conger_kappa, gwet_ac1, gwet_ac2
from analysis.icc import ICCResult, icc, icc_table
from analysis.krippendorff import AlphaResult, krippendorff_alpha
from analysis.multiplicity import adjust_pvalues
from analysis.paired_tests import TestResult, cochran_q, mcnemar
from analysis.roc import AUCResult, DeLongResult, delong_test, roc_auc

__all__ = [
    "AUCResult",
    "AlphaResult",
    "BootstrapResult",
    "ChanceCorrectedResult",
    "DeLongResult",
    "DegenerateBootstrapWarning",
    "FleissResult",
    "ICCResult",
    "KappaResult",
    "NaNResampleWarning",
    "ProportionResult",
    "TestResult",
    "UndefinedStatisticWarning",
    "adjust_pvalues",
    "cluster_bootstrap",
    "cluster_bootstrap_many",
    "cochran_q",
    "cohen_kappa",
    "cohen_kappa_table",
    "conger_kappa",
    "delong_test",
    "diagnostic_accuracy",
    "fleiss_kappa",
    "gwet_ac1",
    "gwet_ac2",
    "icc",
    "icc_table",
    "jackknife_acceleration",
    "krippendorff_alpha",
    "mcnemar",
    "pabak",
    "percent_agreement",
    "proportion_ci",
    "roc_auc",
]
