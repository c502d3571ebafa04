"""Writing a lesion's rendered images to a folder, as ``vlmstudy data render`` does."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from study.data.cohort import Lesion
from study.rendering import RenderSettings, render_lesion, render_montage

__all__ = ["write_renders"]


def write_renders(
    lesion: Lesion,
    sequences: Sequence[str],
    settings: RenderSettings,
    out_dir: str | Path,
    *,
    montage: bool = False,
) -> list[Path]:
    """Render ``lesion`` in each sequence and write the PNGs and ``render.json``.

    Files are ``<lesion>_<sequence>.png`` (and ``<lesion>_montage.png``), and
    ``render.json`` records the lesion, the settings and each image's SHA-256 and
    slice. Everything is rendered into a temporary folder beside ``out_dir`` that is
    renamed to ``out_dir`` at the end, so an error leaves no partial output.

    Returns
    -------
    list of Path
        The files written, ``render.json`` last.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from study.data import build_phantom, load_cohort
    >>> cohort = load_cohort(build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1))
    >>> lesion = next(iter(cohort.lesions.values()))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "renders"
    >>> [p.name for p in write_renders(lesion, ["t2"], RenderSettings(size=64), out)]
    ['P001-L1_t2.png', 'render.json']
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        names, records = [], []
        images = [(s, render_lesion(lesion, s, settings)) for s in sequences]
        if montage:
            images.append(("montage", render_montage(lesion, sequences, settings)))
        for label, image in images:
            name = f"{lesion.lesion_id}_{label}.png"
            (staging / name).write_bytes(image.png)
            names.append(name)
            records.append(
                {"file": name, "sequence": image.sequence, "sha256": image.sha256,
                 "slice_index": image.slice_index}
            )  # fmt: skip
        record = {
            "lesion_id": lesion.lesion_id,
            "patient_id": lesion.patient_id,
            "settings": settings.to_dict(),
            "images": records,
        }
        (staging / "render.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # the caller checked that it is empty
        staging.replace(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out_dir / name for name in names] + [out_dir / "render.json"]
