"""A corpus of broken cohorts, one defect each, every one rejected by ``data validate``.

Each case starts from the same small valid cohort (two patients, one lesion each,
an arterial volume with a mask and a T2 volume with a box), breaks one thing and
runs the real command line in process. The command must exit 2, name the broken
file and say what to do, and leave the folder exactly as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from study.cli import main
from study.data.validation import validate_cohort
from tests.conftest import run_cli

SHAPE = (12, 12, 6)


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(data, np.diag([2.0, 2.0, 4.0, 1.0]) if affine is None else affine), path
    )


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[4:8, 4:8, 2:4] = 1
    return mask


def _build(root: Path) -> Path:
    rng = np.random.default_rng(0)
    manifest, reads, pathology = [], [], []
    for patient, split in (("P1", "evaluation"), ("P2", "exemplar")):
        lesion = f"{patient}-L1"
        _save(root / f"images/{patient}/arterial.nii.gz", rng.normal(100, 5, SHAPE).astype("f4"))
        _save(root / f"images/{patient}/t2.nii.gz", rng.normal(100, 5, SHAPE).astype("f4"))
        _save(root / f"masks/{lesion}.nii.gz", _mask())
        manifest.append(
            (
                patient,
                lesion,
                split,
                "arterial",
                f"images/{patient}/arterial.nii.gz",
                f"masks/{lesion}.nii.gz",
                "",
            )
        )
        manifest.append(
            (patient, lesion, split, "t2", f"images/{patient}/t2.nii.gz", "", "4,4,2,7,7,3")
        )
        reads += [(lesion, reader, "aphe", "nonrim") for reader in ("R1", "R2")]
        pathology.append((lesion, "HCC", "histopathology"))
    tables = {
        "manifest.csv": (manifest, "patient_id,lesion_id,split,sequence,image,mask,box"),
        "reads.csv": (reads, "lesion_id,reader,feature,answer"),
        "pathology.csv": (pathology, "lesion_id,diagnosis,method"),
    }
    for name, (rows, header) in tables.items():
        pd.DataFrame(rows, columns=header.split(",")).to_csv(root / name, index=False)
    return root


def _edit_table(root: Path, name: str, change) -> None:
    table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    change(table)
    table.to_csv(root / name, index=False)


def _append_row(root: Path, name: str, row: dict) -> None:
    _edit_table(root, name, lambda t: t.loc.__setitem__(len(t), [row.get(c, "") for c in t]))


def _set(root: Path, name: str, row: int, column: str, value: str) -> None:
    _edit_table(root, name, lambda t: t.loc.__setitem__((row, column), value))


def _replace_volume(root: Path, relative: str, data: np.ndarray, affine=None) -> None:
    (root / relative).unlink()
    _save(root / relative, data, affine)


def _truncate(root: Path, relative: str) -> None:
    payload = (root / relative).read_bytes()
    (root / relative).write_bytes(payload[: len(payload) * 2 // 3])


def _corrupt_gzip(root: Path, relative: str) -> None:
    payload = bytearray((root / relative).read_bytes())
    middle = len(payload) // 2
    payload[middle : middle + 64] = bytes(64)
    (root / relative).write_bytes(bytes(payload))


def _save_singular(root: Path, relative: str) -> None:
    # nibabel refuses to build a qform from a singular matrix, so write only the sform rows.
    image = nib.Nifti1Image(np.ones(SHAPE, "f4"), None)
    image.header["srow_x"] = [2.0, 0.0, 0.0, 0.0]
    image.header["srow_y"] = [0.0, 0.0, 0.0, 0.0]
    image.header["srow_z"] = [0.0, 0.0, 4.0, 0.0]
    image.header["sform_code"] = 1
    image.header["qform_code"] = 0
    (root / relative).unlink()
    nib.save(image, root / relative)


def _with_nan(value: float):
    data = np.full(SHAPE, 100.0, dtype=np.float32)
    data[0, 0, 0] = value
    return data


IMAGE = "images/P1/arterial.nii.gz"
T2 = "images/P1/t2.nii.gz"
MASK = "masks/P1-L1.nii.gz"

# (case id, how to break the cohort, a text the message must contain, a word of the fix)
DEFECTS = [
    ("missing_image", lambda r: (r / IMAGE).unlink(), IMAGE, "fix the path"),
    ("missing_mask", lambda r: (r / MASK).unlink(), MASK, "fix the path"),
    ("unreadable_image", lambda r: (r / T2).write_bytes(b"not a volume"), T2, "export"),
    ("truncated_gzip", lambda r: _truncate(r, IMAGE), IMAGE, "copy or export"),
    ("corrupt_gzip", lambda r: _corrupt_gzip(r, IMAGE), IMAGE, "export the file again"),
    ("truncated_mask", lambda r: _truncate(r, MASK), MASK, "again"),
    (
        "volume_4d",
        lambda r: _replace_volume(r, IMAGE, np.zeros((*SHAPE, 2), "f4")),
        IMAGE,
        "one 3D volume",
    ),
    ("volume_2d", lambda r: _replace_volume(r, T2, np.zeros(SHAPE[:2], "f4")), T2, "one 3D volume"),
    ("nan_voxels", lambda r: _replace_volume(r, IMAGE, _with_nan(np.nan)), IMAGE, "replace them"),
    ("inf_voxels", lambda r: _replace_volume(r, T2, _with_nan(np.inf)), T2, "replace them"),
    (
        "empty_mask",
        lambda r: _replace_volume(r, MASK, np.zeros(SHAPE, np.uint8)),
        MASK,
        "draw the lesion",
    ),
    (
        "box_outside",
        lambda r: _set(r, "manifest.csv", 1, "box", "4,4,2,7,7,6"),
        "line 3",
        "inclusive",
    ),
    (
        "mask_other_shape",
        lambda r: _replace_volume(r, MASK, np.ones((12, 12, 5), np.uint8)),
        MASK,
        "resample the mask",
    ),
    (
        "mask_other_affine",
        lambda r: _replace_volume(r, MASK, _mask(), np.diag([3.0, 2.0, 4.0, 1.0])),
        MASK,
        "resample the mask",
    ),
    ("singular_affine", lambda r: _save_singular(r, T2), T2, "non-invertible affine"),
    (
        "duplicate_manifest_row",
        lambda r: _append_row(
            r,
            "manifest.csv",
            {
                "patient_id": "P1",
                "lesion_id": "P1-L1",
                "split": "evaluation",
                "sequence": "t2",
                "image": T2,
                "box": "1,1,1,2,2,2",
            },
        ),
        "manifest.csv lines",
        "keep one",
    ),
    (
        "duplicate_pathology",
        lambda r: _append_row(
            r,
            "pathology.csv",
            {"lesion_id": "P1-L1", "diagnosis": "FNH", "method": "histopathology"},
        ),
        "pathology.csv lines",
        "keep one",
    ),
    (
        "duplicate_read",
        lambda r: _append_row(
            r,
            "reads.csv",
            {"lesion_id": "P1-L1", "reader": "R1", "feature": "aphe", "answer": "absent"},
        ),
        "reads.csv lines",
        "keep one",
    ),
    (
        "read_unknown_lesion",
        lambda r: _append_row(
            r,
            "reads.csv",
            {"lesion_id": "P9-L1", "reader": "R1", "feature": "aphe", "answer": "absent"},
        ),
        "reads.csv line",
        "add the lesion",
    ),
    (
        "pathology_unknown_lesion",
        lambda r: _append_row(
            r,
            "pathology.csv",
            {"lesion_id": "P9-L1", "diagnosis": "FNH", "method": "histopathology"},
        ),
        "pathology.csv line",
        "add the lesion",
    ),
    (
        "unknown_sequence",
        lambda r: _set(r, "manifest.csv", 0, "sequence", "arterial_late"),
        "manifest.csv line 2",
        "use one of",
    ),
    (
        "unknown_feature",
        lambda r: _set(r, "reads.csv", 0, "feature", "hyperenhancement"),
        "reads.csv line 2",
        "use one of",
    ),
    (
        "invalid_answer",
        lambda r: _set(r, "reads.csv", 0, "answer", "yes"),
        "reads.csv line 2",
        "use one of",
    ),
    (
        "patient_in_two_splits",
        lambda r: _set(r, "manifest.csv", 1, "split", "exemplar"),
        "manifest.csv",
        "one split",
    ),
    (
        "lesion_in_two_patients",
        lambda r: _set(r, "manifest.csv", 3, "lesion_id", "P1-L1"),
        "manifest.csv",
        "distinct ids",
    ),
    (
        "unknown_split",
        lambda r: _set(r, "manifest.csv", 0, "split", "test"),
        "manifest.csv line 2",
        "use one of",
    ),
    (
        "malformed_box",
        lambda r: _set(r, "manifest.csv", 1, "box", "4,4,2,7,7"),
        "manifest.csv line 3",
        "inclusive voxel indices",
    ),
    (
        "absolute_path",
        lambda r: _set(r, "manifest.csv", 0, "image", "/data/P1/arterial.nii.gz"),
        "manifest.csv line 2",
        "relative",
    ),
    ("missing_manifest", lambda r: (r / "manifest.csv").unlink(), "manifest.csv", "needs"),
    ("missing_reads", lambda r: (r / "reads.csv").unlink(), "reads.csv", "needs"),
    ("missing_pathology", lambda r: (r / "pathology.csv").unlink(), "pathology.csv", "needs"),
    (
        "no_mask_no_box",
        lambda r: _set(r, "manifest.csv", 1, "box", ""),
        "manifest.csv line 3",
        "give one",
    ),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def _validate_in_process(root: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["vlmstudy", "data", "validate", str(root)])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def valid_cohort(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("valid"))


def test_corpus_size():
    assert len(DEFECTS) >= 25
    assert len({case for case, *_ in DEFECTS}) == len(DEFECTS)


def test_valid_cohort_passes(valid_cohort):
    assert validate_cohort(valid_cohort) == []


@pytest.mark.parametrize(("case", "breaker", "names", "fix"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_defect_rejected(case, breaker, names, fix, tmp_path, monkeypatch, capsys):
    root = _build(tmp_path / case)
    breaker(root)
    before = _snapshot(root)

    code, message = _validate_in_process(root, monkeypatch, capsys)

    assert code == 2
    assert "Traceback" not in message
    assert names in message
    assert fix in message
    assert _snapshot(root) == before


def test_every_problem_reported_at_once(tmp_path, monkeypatch, capsys):
    root = _build(tmp_path / "many")
    _replace_volume(root, IMAGE, _with_nan(np.nan))
    _replace_volume(root, MASK, np.zeros(SHAPE, np.uint8))
    _set(root, "reads.csv", 0, "feature", "hyperenhancement")

    code, message = _validate_in_process(root, monkeypatch, capsys)

    assert code == 2
    assert "3 problem(s)" in message
    assert "NaN" in message
    assert "is empty" in message
    assert "hyperenhancement" in message


def test_shared_volume_reported_once(tmp_path):
    root = _build(tmp_path / "shared")
    _append_row(
        root,
        "manifest.csv",
        {
            "patient_id": "P1",
            "lesion_id": "P1-L2",
            "split": "evaluation",
            "sequence": "arterial",
            "image": IMAGE,
            "box": "1,1,1,2,2,2",
        },
    )
    _replace_volume(root, IMAGE, _with_nan(np.inf))
    problems = validate_cohort(root)
    assert len([p for p in problems if "infinite" in p]) == 1


def test_validate_subprocess_exit_codes(valid_cohort, tmp_path):
    passed = run_cli("data", "validate", str(valid_cohort), cwd=tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert "2 lesions in 2 patients" in passed.stdout

    broken = _build(tmp_path / "broken")
    _truncate(broken, IMAGE)
    failed = run_cli("data", "validate", str(broken), cwd=tmp_path)
    assert failed.returncode == 2
    assert IMAGE in failed.stderr


def test_empty_manifest_rejected(tmp_path):
    cohort = tmp_path / "empty"
    cohort.mkdir()
    (cohort / "manifest.csv").write_text("patient_id,lesion_id,split,sequence,image,mask,box\n")
    (cohort / "reads.csv").write_text("lesion_id,reader,feature,answer\n")
    (cohort / "pathology.csv").write_text("lesion_id,diagnosis,method\n")
    finished = run_cli("data", "validate", str(cohort), cwd=tmp_path)
    assert finished.returncode == 2
    assert "manifest.csv: no rows" in finished.stderr


def test_phantom_too_few_patients_names_option(tmp_path):
    refused = run_cli("data", "phantom", "--out", str(tmp_path / "a"), "--patients", "3",
                      cwd=tmp_path)
    assert refused.returncode == 2
    assert "--exemplar-patients" in refused.stderr
    assert not (tmp_path / "a").exists()
    built = run_cli("data", "phantom", "--out", str(tmp_path / "b"), "--patients", "3",
                    "--exemplar-patients", "1", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
