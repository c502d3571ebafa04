"""``vlmstudy data``: build, check, import and render cohort folders."""

from __future__ import annotations

from pathlib import Path

import click

from study.errors import UserInputError


@click.group()
def data() -> None:
    """Build, check, import and render cohort folders."""


def _require_new_folder(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserInputError(f"--out {out_dir}: the folder is not empty; give a new folder.")


@data.command("phantom")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the cohort into (created; must be empty or absent).",
)
@click.option(
    "--patients",
    default=16,
    show_default=True,
    type=click.IntRange(min=2),
    help="Number of patients, exemplar patients included.",
)
@click.option(
    "--exemplar-patients",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many of the patients form the exemplar split for few-shot prompts; "
    "must be fewer than --patients.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of every random choice.",
)
@click.option(
    "--kappa",
    "kappas",
    multiple=True,
    metavar="FEATURE=KAPPA",
    help="Target inter-reader kappa of one feature, e.g. aphe=0.8 (repeatable) "
    "[default: the published radiologist agreement].",
)
def data_phantom(
    out_dir: Path, patients: int, exemplar_patients: int, seed: int, kappas: tuple[str, ...]
) -> None:
    """Write a deterministic phantom cohort with known ground truth."""
    from study.data.phantom import build_phantom
    from study.data.simulated_reads import parse_kappas

    if exemplar_patients >= patients:
        raise UserInputError(
            f"--exemplar-patients {exemplar_patients} leaves no evaluation patient among "
            f"--patients {patients}; give fewer exemplar patients or more patients."
        )
    target_kappa = parse_kappas(kappas)
    _require_new_folder(out_dir)
    build_phantom(
        out_dir,
        patients=patients,
        seed=seed,
        exemplar_patients=exemplar_patients,
        target_kappa=target_kappa,
    )
    click.echo(f"wrote phantom cohort to {out_dir}")


@data.command("validate")
@click.argument("cohort_dir", type=click.Path(path_type=Path))
def data_validate(cohort_dir: Path) -> None:
    """Check COHORT_DIR's tables and volumes and report every problem at once."""
    from study.data.cohort import cohort_sha256, load_cohort
    from study.data.validation import raise_for_problems, validate_cohort

    raise_for_problems(cohort_dir, validate_cohort(cohort_dir))
    cohort = load_cohort(cohort_dir)
    click.echo(
        f"{cohort_dir}: {len(cohort.lesions)} lesions in "
        f"{cohort.patients()['patient_id'].nunique()} patients; sha256 {cohort_sha256(cohort_dir)}"
    )


@data.command("render")
@click.argument("cohort_dir", type=click.Path(path_type=Path))
@click.option("--lesion", "lesion_id", required=True, help="lesion_id to render.")
@click.option(
    "--sequences",
    default=None,
    help="Comma-separated sequences to render [default: every sequence of the lesion].",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the PNGs and render.json (created; must be empty or absent).",
)
@click.option("--size", default=256, show_default=True, help="Image width and height, pixels.")
@click.option(
    "--margin", default=1.0, show_default=True, help="Margin around the lesion, lesion radii."
)
@click.option(
    "--window",
    default="1,99",
    show_default=True,
    help="Lower and upper percentile of the crop's voxels mapped to black and white.",
)
@click.option(
    "--mark",
    type=click.Choice(["none", "box", "arrow"]),
    default="none",
    show_default=True,
    help="Lesion mark drawn on each image.",
)
@click.option(
    "--montage", is_flag=True, help="Also write the sequences tiled into <lesion>_montage.png."
)
def data_render(
    cohort_dir: Path,
    lesion_id: str,
    sequences: str | None,
    out_dir: Path,
    size: int,
    margin: float,
    window: str,
    mark: str,
    montage: bool,
) -> None:
    """Write the images a model would see for one lesion, one PNG per sequence."""
    from study.data.cohort import load_cohort
    from study.data.render_files import write_renders
    from study.rendering import RenderSettings

    _require_new_folder(out_dir)
    try:
        low, high = (float(value) for value in window.split(","))
    except ValueError:
        raise UserInputError(f"--window {window!r}: give two percentiles, e.g. 1,99.") from None
    settings = RenderSettings(size=size, margin=margin, window=(low, high), mark=mark)
    cohort = load_cohort(cohort_dir)
    lesion = cohort.lesions.get(lesion_id)
    if lesion is None:
        known = ", ".join(list(cohort.lesions)[:10])
        raise UserInputError(
            f"--lesion {lesion_id!r}: not in {cohort_dir}; lesions include {known}."
        )
    names = tuple(s.strip() for s in sequences.split(",")) if sequences else lesion.sequences
    written = write_renders(lesion, names, settings, out_dir, montage=montage)
    for path in written:
        click.echo(str(path))


@data.group("import")
def data_import() -> None:
    """Import a cohort, or its reads, from another layout."""


@data_import.command("lld-mmri")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Cohort folder to write (created; must be empty or absent).")  # fmt: skip
@click.option(
    "--z-order",
    type=click.Choice(["superior_first", "as_stored"]),
    default="superior_first",
    show_default=True,
    help="How annotation z indices count slices; see docs/data.md for the z-flip rule.",
)
@click.option(
    "--split",
    type=click.Choice(["evaluation", "exemplar", "development"]),
    default="evaluation",
    show_default=True,
    help="Split of every imported lesion.",
)
def import_lld_mmri(source: Path, out_dir: Path, z_order: str, split: str) -> None:
    """Import an LLD-MMRI 2023 tree (images/ and labels/Annotation.json) from SOURCE."""
    from study.data.lldmmri import import_lld_mmri as run_import

    _require_new_folder(out_dir)
    counts = run_import(source, out_dir, split=split, z_order=z_order)
    click.echo(
        f"wrote {out_dir}: {counts.patients} patients, {counts.lesions} lesions, "
        f"{counts.rows} manifest rows, {counts.flipped_boxes} boxes z-flipped"
    )


@data_import.command("reads-wide")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder to write reads.csv and observations.csv into.")  # fmt: skip
@click.option(
    "--mapping",
    "mapping_file",
    default=None,
    type=click.Path(path_type=Path),
    help="YAML or JSON column mapping [default: the mLI-RADS table's layout].",
)
def import_reads_wide(source: Path, out_dir: Path, mapping_file: Path | None) -> None:
    """Import a wide reader table (a column group per reader) from the CSV file SOURCE."""
    from study.data.reads_wide import MLIRADS_MAPPING, import_wide_reads, load_mapping

    mapping = load_mapping(mapping_file) if mapping_file else MLIRADS_MAPPING
    imported = import_wide_reads(source, out_dir, mapping)
    observations = imported.observations
    click.echo(
        f"wrote {out_dir / 'reads.csv'}: {observations['lesion_id'].nunique()} lesions, "
        f"{observations['reader'].nunique()} readers, {len(imported.reads)} answers; "
        f"skipped {imported.skipped_rows} row(s) without a valid id"
    )


@data_import.command("dicom")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Cohort folder to write (created; must be empty or absent).")  # fmt: skip
@click.option("--patient", "patient_id", required=True, help="patient_id of the lesion.")
@click.option("--lesion", "lesion_id", required=True, help="lesion_id to give the lesion.")
@click.option("--sequence", required=True, help="Sequence name of the series, e.g. arterial.")
@click.option(
    "--box",
    default=None,
    help="Lesion box x0,y0,z0,x1,y1,z1 (inclusive voxels) for a series folder without overlay.",
)
@click.option(
    "--split",
    type=click.Choice(["evaluation", "exemplar", "development"]),
    default="evaluation",
    show_default=True,
    help="Split of the imported lesion.",
)
def import_dicom(
    source: Path,
    out_dir: Path,
    patient_id: str,
    lesion_id: str,
    sequence: str,
    box: str | None,
    split: str,
) -> None:
    """Import SOURCE, a DICOM file whose overlay outlines the lesion or a series folder."""
    from study.data.dicom import read_dicom_overlay, read_dicom_series, write_dicom_cohort
    from study.data.tables import parse_box

    _require_new_folder(out_dir)
    if not source.exists():
        raise UserInputError(f"{source}: not found; give a DICOM file or a series folder.")
    volume = read_dicom_series(source) if source.is_dir() else read_dicom_overlay(source)
    parsed = None
    if box:
        try:
            parsed = parse_box(box)
        except ValueError as error:
            raise UserInputError(f"--box: {error}; e.g. 10,12,3,20,22,6.") from None
    write_dicom_cohort(
        volume, out_dir, patient_id=patient_id, lesion_id=lesion_id, sequence=sequence,
        split=split, box=parsed,
    )  # fmt: skip
    click.echo(f"wrote {out_dir}: 1 lesion, sequence {sequence}, grid {volume.data.shape}")
