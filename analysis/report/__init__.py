"""The statistical report of one run: hypotheses, agreement, models, figures and checklists.

:func:`build_report` writes ``report.md``, a self-contained ``report.html``,
``figures/`` and ``tables/``; each section is built in its own module.
"""

from analysis.reference import NO_ANSWER
from analysis.report.build import ReportPaths, build_report, log_report
from analysis.report.tables import (
    CELL_COLUMNS,
    PREDICTION_COLUMNS,
    agreement_table,
    flow_table,
)

__all__ = [
    "CELL_COLUMNS",
    "NO_ANSWER",
    "PREDICTION_COLUMNS",
    "ReportPaths",
    "agreement_table",
    "build_report",
    "flow_table",
    "log_report",
]
