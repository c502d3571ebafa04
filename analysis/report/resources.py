"""Report sections on what the run used: cost, tokens, runtime, snapshots, dates and the prompts."""

from __future__ import annotations

import pandas as pd

from analysis.report.document import Details, Section, table
from analysis.report.inputs import Inputs


def resources_section(inputs: Inputs) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the cost, token, runtime, snapshot and query-date section."""
    records = inputs.records
    predictions = records.predictions.assign(cell=inputs.answers["cell"].to_numpy())
    # One call answers every feature of a lesion, so calls are counted by distinct request.
    calls = predictions.drop_duplicates(["cell_id", "request_sha256"])
    per_cell = (
        calls.groupby(["cell_id", "cell"], sort=True)
        .agg(
            model_snapshot=("model_snapshot", "first"),
            n_calls=("request_sha256", "size"),
            n_cached=("cached", lambda c: int(c.astype(bool).sum())),
            input_tokens=("input_tokens", "sum"),
            output_tokens=("output_tokens", "sum"),
            cost_usd=("cost_usd", "sum"),
            latency_s_total=("latency_s", "sum"),
            latency_s_median=("latency_s", "median"),
        )
        .reset_index()
    )
    runs = records.cell_runs
    if len(runs):
        per_cell = per_cell.merge(
            runs[["cell_id", "start_time", "end_time"]], on="cell_id", how="left"
        )
        dates = (
            f"Cells ran (UTC) from {runs['start_time'].min()} to {runs['end_time'].max()}; "
            "`start_time` and `end_time` are each cell's MLflow child run, the query dates."
        )
    else:
        dates = "Query dates are not recorded in these records (no cell run times were loaded)."
    totals = per_cell[
        ["n_calls", "n_cached", "input_tokens", "output_tokens", "cost_usd", "latency_s_total"]
    ].sum()
    protocol = records.protocol
    decoding = protocol.get("decoding", {}) or {}
    grid = protocol.get("grid", {}) or {}
    snapshots = sorted(records.predictions["model_snapshot"].astype(str).unique())
    blocks = (
        f"Model snapshots: {', '.join(f'`{s}`' for s in snapshots)}. {dates}",
        "Decoding settings: "
        + (
            ", ".join(f"`{key}` = {value}" for key, value in sorted(decoding.items()))
            or "not set in the protocol"
        )
        + f". Replicates per cell: {grid.get('replicates', 'not set')}.",
        f"Totals: {int(totals['n_calls'])} calls ({int(totals['n_cached'])} served from the "
        f"response store), {int(totals['input_tokens'])} input and "
        f"{int(totals['output_tokens'])} output tokens, cost USD {totals['cost_usd']:.4f}, "
        f"summed latency {totals['latency_s_total']:.1f} s. Costs are the readers' estimates "
        "from token counts and list prices, not invoices.",
        table(per_cell, "Calls, tokens, cost (USD) and latency (s) per cell", "resources.csv"),
    )
    return Section("resources", "Cost, tokens, runtime, model snapshots and query dates", blocks), {
        "resources": per_cell
    }


def prompts_section(inputs: Inputs) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the appendix with every exact prompt, one collapsed block per cell."""
    prompts = inputs.records.prompts
    if prompts.empty:
        blocks = (
            "The records contain no prompts (`prompts.jsonl` of the cell runs was not "
            "loaded), so the exact prompts cannot be shown.",
        )
        return Section("prompts", "Appendix: the exact prompts", blocks), {}
    cells = inputs.answers.groupby("cell_id")["cell"].first()
    blocks: list = [
        f"{len(prompts)} prompts as logged by each cell run, one per cell and lesion; images "
        "appear as their SHA-256. The responses and the parser's repairs are in "
        "`tables/prompts.csv`."
    ]
    for cell_id, group in prompts.groupby("cell_id", sort=True):
        text = "\n\n".join(
            f"===== lesion {row.lesion_id} =====\n{row.prompt}" for row in group.itertuples()
        )
        blocks.append(Details(f"{cells.get(cell_id, cell_id)} ({len(group)} prompts)", text))
    return Section("prompts", "Appendix: the exact prompts", tuple(blocks)), {"prompts": prompts}
