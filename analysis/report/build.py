"""Assemble the report: compute every section, write the tables, figures, Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from analysis.checklists import checklist_table
from analysis.records import RunRecords
from analysis.report.comparisons import (
    glmm_section,
    noninferiority_margin,
    noninferiority_section,
    noninferiority_table,
)
from analysis.report.document import Section, table, to_html, to_markdown, write_tables
from analysis.report.flow_cohort import (
    baseline_section,
    cohort_fleiss,
    cohort_section,
    flow_section,
)
from analysis.report.hypotheses import hypotheses_section, hypothesis_table
from analysis.report.inputs import prepare
from analysis.report.per_feature import per_feature_section
from analysis.report.power import power_section
from analysis.report.resources import prompts_section, resources_section
from analysis.report.sensitivity import sensitivity_section
from analysis.report.tables import agreement_table

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`build_report`."""

    html: Path
    markdown: Path


def _single(predictions, column: str) -> str:
    values = sorted(predictions[column].astype(str).unique())
    if len(values) != 1:
        raise ValueError(f"predictions must contain exactly one {column}, found {values}")
    return values[0]


def build_report(
    records: RunRecords, out_dir: Path, *, n_resamples: int = 1000, seed: int = 20261204
) -> ReportPaths:
    """Write the run's report as Markdown and self-contained HTML, with figures and CSV tables.

    Sections in order: the question, registration and deviations (header);
    hypotheses; sample size and power; flow of cases and calls; cohort; human
    baseline; agreement and accuracy per feature and cell; reader versus model; mixed-effects model;
    sensitivity analyses; cost and query dates; the checklists; the prompts
    appendix. ``out_dir`` receives ``report.md``, ``report.html`` (CSS inline,
    figures as PNG data URIs), ``figures/`` (PNG and SVG) and ``tables/`` (CSV
    at full precision). The output is a pure function of the records,
    ``n_resamples`` and ``seed``: it holds no generation time, so the same
    records give byte-identical files.

    Examples
    --------
    >>> ReportPaths(Path("r/report.html"), Path("r/report.md")).markdown.name
    'report.md'
    """
    out_dir = Path(out_dir)
    plan = records.protocol.get("analysis", {}) or {}
    confidence = float(plan.get("confidence", 0.95))
    indeterminate_as = plan.get("indeterminate_as", "absent")
    failures_as = plan.get("failures_as", "wrong")
    protocol_id = _single(records.predictions, "protocol_id")
    if "id" in records.protocol and str(records.protocol["id"]) != protocol_id:
        raise ValueError(
            f"protocol id {records.protocol['id']!r} differs from the predictions' {protocol_id!r}"
        )
    inputs = prepare(
        records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        indeterminate_as=indeterminate_as,
        failures_as=failures_as,
    )
    agreement = agreement_table(
        records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        indeterminate_as=indeterminate_as,
        failures_as=failures_as,
    )
    figure_dir = out_dir / "figures"
    frames = {"agreement": agreement}

    own_baseline = cohort_fleiss(inputs)
    flow, flow_frames = flow_section(inputs)
    cohort, cohort_frames = cohort_section(inputs)
    baseline, baseline_frames = baseline_section(inputs, own_baseline)
    per_feature, feature_frames = per_feature_section(inputs, agreement, own_baseline, figure_dir)
    margin, registered = noninferiority_margin(records.protocol)
    ni = noninferiority_table(inputs, margin)
    reader_model, ni_frames = noninferiority_section(inputs, ni, margin, registered, figure_dir)
    mixed, mixed_frames = glmm_section(inputs, figure_dir)
    sensitivity, sensitivity_frames = sensitivity_section(inputs, agreement)
    resources, resources_frames = resources_section(inputs)
    prompts, prompt_frames = prompts_section(inputs)
    tested = hypothesis_table(inputs, feature_frames["per_cell"], ni, margin)
    hypotheses, hypothesis_frames = hypotheses_section(inputs, tested)
    power, power_frames = power_section(inputs, figure_dir)
    for part in (
        flow_frames,
        cohort_frames,
        baseline_frames,
        feature_frames,
        ni_frames,
        mixed_frames,
        sensitivity_frames,
        resources_frames,
        prompt_frames,
        hypothesis_frames,
        power_frames,
    ):
        frames.update(part)

    sections = [
        hypotheses,
        power,
        flow,
        cohort,
        baseline,
        per_feature,
        reader_model,
        mixed,
        sensitivity,
        resources,
    ]
    numbers = {s.anchor: (i + 2, s.title) for i, s in enumerate([*sections, prompts])}
    numbers[prompts.anchor] = (len(sections) + 3, prompts.title)
    checklist = checklist_table(numbers)
    frames["checklists"] = checklist
    sections.append(
        Section(
            "checklists",
            "Reporting checklists",
            (
                "Items of TRIPOD-LLM, MI-CLEAR-LLM and STARD 2015 that this run's records can "
                "answer, "
                "with the section that answers each. Items marked as not answered need text in the "
                "paper.",
                table(checklist, "Checklist items and where they are answered", "checklists.csv"),
            ),
        )
    )
    sections.append(prompts)
    write_tables(frames, out_dir / "tables")

    context = {
        "title": records.protocol.get("title", protocol_id),
        "question": str(records.protocol.get("question", records.protocol.get("title", ""))),
        "run_id": records.run_id,
        "protocol_id": protocol_id,
        "protocol_sha256": _single(records.predictions, "protocol_sha256"),
        "registered_at": str(records.registration.get("registered_at", "not recorded")),
        "registered_sha256": str(records.registration.get("protocol_sha256", "not recorded")),
        "registered_commit": str(records.registration.get("git_commit", "not recorded")),
        "cohort_sha256": str(records.registration.get("cohort_sha256", "not recorded")),
        "deviations": list(records.registration.get("deviations", [])),
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence_percent": f"{100 * confidence:g}",
        "contents": [(i + 2, s.anchor, s.title) for i, s in enumerate(sections)],
        "markdown_sections": [to_markdown(s, i + 2) for i, s in enumerate(sections)],
        "html_sections": [to_html(s, i + 2) for i, s in enumerate(sections)],
    }
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    paths = ReportPaths(html=out_dir / "report.html", markdown=out_dir / "report.md")
    for path, template in [(paths.markdown, "report.md.j2"), (paths.html, "report.html.j2")]:
        text = environment.get_template(template).render(**context)
        path.write_text(text, encoding="utf-8", newline="\n")
    return paths


def log_report(run_id: str, out_dir: Path, *, tracking_uri: str | None = None) -> None:
    """Log every file under ``out_dir`` as artifacts of parent run ``run_id``, under ``report/``.

    The tracking URI is resolved as :func:`analysis.records.load_run_records`
    resolves it, so the report goes to the store its records came from.
    """
    from analysis.records import _client

    client, _ = _client(tracking_uri)
    client.log_artifacts(run_id, str(out_dir), "report")
