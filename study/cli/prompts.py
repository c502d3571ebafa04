"""``vlmstudy prompts``: show the exact messages a cell sends, without calling any reader."""

from __future__ import annotations

import json
from pathlib import Path

import click

from study.errors import UserInputError


@click.group()
def prompts() -> None:
    """Show the prompts a protocol's cells send."""


def _find_cell(cells, cell_id: str):
    matches = [cell for cell in cells if cell.cell_id == cell_id]
    if not matches:
        listing = "\n".join(
            f"  {cell.cell_id}  {cell.reader.name}, {cell.strategy}, {cell.sequences_label}, "
            f"replicate {cell.replicate}"
            for cell in cells
        )
        raise UserInputError(
            f"--cell {cell_id}: no such cell in this protocol; use one of these ids:\n{listing}"
        )
    return matches[0]


def _find_lesion(cohort, lesion_id: str):
    lesion = cohort.lesions.get(lesion_id)
    evaluation = [item.lesion_id for item in cohort.split("evaluation")]
    if lesion is None or lesion.split != "evaluation":
        problem = (
            "not found" if lesion is None else f"in the {lesion.split} split, which no cell reads"
        )
        shown = ", ".join(evaluation[:10]) + (" ..." if len(evaluation) > 10 else "")
        raise UserInputError(
            f"--lesion {lesion_id}: {problem}; give an evaluation lesion id, e.g. {shown}."
        )
    return lesion


@prompts.command("show")
@click.argument("protocol_file", type=click.Path(path_type=Path))
@click.option("--lesion", "lesion_id", required=True, help="Evaluation lesion id to read.")
@click.option("--cell", "cell_id", required=True, help="Cell id (an unknown id lists them all).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the keyed messages as JSON (images as sequence and SHA-256) instead of text.",
)
def show(protocol_file: Path, lesion_id: str, cell_id: str, as_json: bool) -> None:
    """Print the messages cell CELL sends for one lesion of PROTOCOL_FILE; nothing is called."""
    from functools import cache

    from study.data.cohort import load_cohort
    from study.grid import expand_grid
    from study.prompts import PromptBuilder
    from study.protocol import cohort_path, load_protocol
    from study.rendering import RenderSettings, render_lesion

    protocol = load_protocol(protocol_file)
    cell = _find_cell(expand_grid(protocol), cell_id)
    cohort = load_cohort(cohort_path(protocol, protocol_file))
    lesion = _find_lesion(cohort, lesion_id)

    rendering = protocol.rendering
    settings = RenderSettings(
        size=rendering.size,
        margin=rendering.margin,
        window=tuple(rendering.window),
        mark=rendering.mark,
    )

    @cache
    def render(lesion_key: str, sequence: str):
        return render_lesion(cohort.lesions[lesion_key], sequence, settings)

    builder = PromptBuilder(protocol, cohort, render)
    prompt = builder.build(cell.strategy, cell.sequences, lesion)
    if as_json:
        click.echo(json.dumps(prompt.keyed_messages(), indent=2, sort_keys=True))
        return

    spec = prompt.spec
    click.echo(
        f"cell {cell.cell_id}: reader {cell.reader.name}, strategy {cell.strategy}, "
        f"sequences {cell.sequences_label}, replicate {cell.replicate}"
    )
    click.echo(f"lesion {lesion.lesion_id} (patient {lesion.patient_id})")
    click.echo(f"strategy: {spec.description}")
    click.echo(f"settings: {json.dumps(spec.settings(), sort_keys=True)}")
    click.echo(
        f"images: {len(prompt.images)}, request size: {prompt.request_bytes()} bytes as JSON"
    )
    click.echo("")
    click.echo(prompt.text())
