"""The full report from synthetic records: every section, hypotheses answered, prompts shown."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report_build import LESIONS, make_records

from analysis.checklists import ITEMS
from analysis.records import RunRecords
from analysis.report import build_report

SECTIONS = [
    "1. Question, registration and deviations",
    "2. Preregistered hypotheses",
    "3. Sample size and power",
    "4. Flow of cases and calls",
    "5. Cohort",
    "6. Human baseline",
    "7. Agreement and accuracy per feature and cell",
    "8. Reader versus model",
    "9. Mixed-effects model",
    "10. Sensitivity analyses",
    "11. Cost, tokens, runtime, model snapshots and query dates",
    "12. Reporting checklists",
    "13. Appendix: the exact prompts",
]

HYPOTHESES = [
    {
        "id": "H1",
        "statement": "The perfect cell agrees with the reference on aphe.",
        "endpoint": "kappa",
        "features": ["aphe"],
        "contrast": {"strategy": "zero_shot"},
        "null_value": 0.2,
        "alpha": 0.05,
    },
    {
        "id": "E1",
        "statement": "Accuracy on washout exceeds one half.",
        "confirmatory": False,
        "endpoint": "accuracy",
        "features": ["washout"],
        "null_value": 0.5,
    },
]


def full_records() -> RunRecords:
    records = make_records()
    reads = records.reads.copy()
    reads["size_mm"] = reads["lesion_id"].map(
        {lesion: 8.0 + 3 * i for i, lesion in enumerate(LESIONS)}
    )
    prompts = pd.DataFrame(
        {
            "cell_id": "cell-perfect",
            "lesion_id": LESIONS,
            "prompt": [f"Judge lesion {lesion} <on> the images." for lesion in LESIONS],
            "response": "{}",
            "repairs": "",
        }
    )
    cell_runs = pd.DataFrame(
        {
            "cell_id": ["cell-noisy", "cell-perfect", "cell-t2"],
            "run_id": ["a", "b", "c"],
            "start_time": "2026-12-01T10:00:00+00:00",
            "end_time": "2026-12-01T10:05:00+00:00",
        }
    )
    protocol = {
        **records.protocol,
        "hypotheses": HYPOTHESES,
        "analysis": {"noninferiority_margin": 0.2},
    }
    return RunRecords(
        **{
            **records.__dict__,
            "reads": reads,
            "prompts": prompts,
            "cell_runs": cell_runs,
            "protocol": protocol,
        }
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    paths = build_report(full_records(), folder, n_resamples=60, seed=2)
    return folder, paths.markdown.read_text(encoding="utf-8"), paths.html.read_text("utf-8")


def test_sections_in_order(report):
    _, markdown, html = report
    positions = [markdown.index(f"## {title}") for title in SECTIONS]
    assert positions == sorted(positions)
    for title in SECTIONS:
        assert f"{title}</h2>" in html


def test_hypotheses_answered(report):
    folder, markdown, _ = report
    tested = pd.read_csv(folder / "tables" / "hypotheses.csv").set_index("id")
    assert set(tested.index) == {"H1", "E1"}
    assert (tested.loc[["H1"], "family"] == "confirmatory").all()
    assert (tested.loc[["E1"], "family"] == "exploratory").all()
    # H1 selects the three zero_shot cells; E1 every cell.
    assert len(tested.loc[["H1"]]) == 3
    assert len(tested.loc[["E1"]]) == 3
    assert (tested.loc[["H1"], "feature"] == "aphe").all()
    evaluable = tested.dropna(subset=["p_value"])
    assert len(evaluable) == 2
    assert evaluable["p_adjusted"].ge(evaluable["p_value"]).all()
    assert (evaluable["decision"] == "H0 rejected").all()
    # The perfect cell's interval has no spread, so its SE and p-value are undefined.
    assert (tested[tested["p_value"].isna()]["decision"] == "not evaluable").all()
    assert "Confirmatory results" in markdown
    assert "Exploratory results" in markdown


def test_registered_margin_used(report):
    folder, markdown, _ = report
    ni = pd.read_csv(folder / "tables" / "noninferiority.csv")
    assert (ni["margin"] == 0.2).all()
    assert "registered the margin 0.2" in markdown


def test_cohort_sizes_and_categories(report):
    folder, _, _ = report
    groups = pd.read_csv(folder / "tables" / "cohort_size_groups.csv")
    # Sizes 8, 11, 14, ..., 41 mm: one below 10 mm, three from 10 to 19 mm, eight from 20 mm.
    assert groups[["< 10 mm", "10-19 mm", ">= 20 mm"]].sum().tolist() == [1, 3, 8]
    consistency = pd.read_csv(folder / "tables" / "category_consistency.csv").set_index("cell")
    assert consistency.loc["simulated | zero_shot | S1 | r0", "n_lesions"] > 0


def test_prompts_in_appendix(report):
    _, markdown, html = report
    assert "Judge lesion L05 <on> the images." in markdown
    assert "Judge lesion L05 &lt;on&gt; the images." in html


def test_query_dates_shown(report):
    _, markdown, _ = report
    assert "from 2026-12-01T10:00:00+00:00 to 2026-12-01T10:05:00+00:00" in markdown


def test_every_checklist_item_listed(report):
    folder, _, _ = report
    checklist = pd.read_csv(folder / "tables" / "checklists.csv")
    assert len(checklist) == len(ITEMS)
    answered = checklist[checklist["answered in"].str.startswith("section")]
    assert len(answered) == len([item for item in ITEMS if item.anchor not in ("", "registration")])
    assert re.search(r"section 13, Appendix", " ".join(checklist["answered in"]))


def test_figures_written(report):
    folder, markdown, _ = report
    for name in (
        "forest_aphe",
        "heatmap_feature_sequences",
        "confusion_simulated",
        "noninferiority_aphe",
    ):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 0
        assert (folder / "figures" / f"{name}.svg").stat().st_size > 0
        assert f"figures/{name}.png" in markdown
