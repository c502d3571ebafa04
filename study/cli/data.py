"""``vlmstudy data``: build and check cohort folders."""

from __future__ import annotations

from pathlib import Path

import click

from study.errors import UserInputError


@click.group()
def data() -> None:
    """Build and check cohort folders."""


@data.command("phantom")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the cohort into (created; must be empty or absent).",
)
@click.option("--patients", default=16, show_default=True, help="Number of patients.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random choice.")
def data_phantom(out_dir: Path, patients: int, seed: int) -> None:
    """Write a deterministic phantom cohort with known ground truth."""
    from study.data.phantom import build_phantom

    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserInputError(f"--out {out_dir}: the folder is not empty; give a new folder.")
    build_phantom(out_dir, patients=patients, seed=seed)
    click.echo(f"wrote phantom cohort to {out_dir}")


@data.command("validate")
@click.argument("cohort_dir", type=click.Path(path_type=Path))
def data_validate(cohort_dir: Path) -> None:
    """Check COHORT_DIR's tables and report every problem at once."""
    from study.data.cohort import cohort_sha256, load_cohort

    cohort = load_cohort(cohort_dir)
    click.echo(
        f"{cohort_dir}: {len(cohort.lesions)} lesions in "
        f"{cohort.patients()['patient_id'].nunique()} patients; sha256 {cohort_sha256(cohort_dir)}"
    )
