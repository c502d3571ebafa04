"""Tests of the cohort loader: round trip, table checks, CSV parsing and the cohort hash."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from study.data import build_phantom, cohort_sha256, load_cohort
from study.data.cohort import parse_box, read_cohort_tables
from study.errors import UserInputError

MANIFEST_HEADER = "patient_id,lesion_id,split,sequence,image,mask,box"


def _write_cohort(root, manifest_rows, reads_rows=(), pathology_rows=(), newline="\n"):
    """Write a small cohort with empty placeholder volumes; rows are CSV lines without header."""
    root.mkdir(parents=True, exist_ok=True)
    tables = {
        "manifest.csv": [MANIFEST_HEADER, *manifest_rows],
        "reads.csv": ["lesion_id,reader,feature,answer", *reads_rows],
        "pathology.csv": ["lesion_id,diagnosis,method", *pathology_rows],
    }
    for name, lines in tables.items():
        (root / name).write_bytes((newline.join(lines) + newline).encode())
    for path in ("a.nii.gz", "b.nii.gz", "m.nii.gz"):
        (root / path).write_bytes(b"")
    return root


VALID_MANIFEST = [
    "P1,L1,evaluation,arterial,a.nii.gz,m.nii.gz,",
    "P1,L1,evaluation,t1_pre,b.nii.gz,m.nii.gz,",
    'P2,L2,exemplar,arterial,a.nii.gz,,"1,2,3,4,5,6"',
]
VALID_READS = ["L1,R1,aphe,nonrim", "L1,R2,aphe,rim", "L2,R1,washout,absent"]
VALID_PATHOLOGY = ["L1,HCC,histopathology", "L2,FNH,imaging follow-up"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return build_phantom(tmp_path_factory.mktemp("cohort"), patients=3, exemplar_patients=1)


def test_phantom_round_trip(phantom):
    cohort = load_cohort(phantom)
    lesions = pd.read_csv(phantom / "lesions.csv")
    assert list(cohort.lesions) == sorted(lesions["lesion_id"])
    assert cohort.truth is not None
    assert len(cohort.truth) == len(lesions) * 7
    assert len(cohort.pathology) == len(lesions)
    assert cohort.reads["size_mm"].dtype == float

    lesion = cohort.lesions["P001-L1"]
    assert lesion.patient_id == "P001"
    assert lesion.split == "evaluation"
    assert lesion.images["arterial"].image == phantom / "images" / "P001" / "arterial.nii.gz"
    assert lesion.images["arterial"].mask.is_file()
    assert lesion.images["arterial"].box is None


def test_split_and_patients(phantom):
    cohort = load_cohort(phantom)
    exemplars = cohort.split("exemplar")
    assert {lesion.patient_id for lesion in exemplars} == {"P003"}
    table = cohort.patients()
    assert list(table.columns) == ["lesion_id", "patient_id", "split"]
    assert table["lesion_id"].tolist() == list(cohort.lesions)
    with pytest.raises(UserInputError, match="use one of evaluation, exemplar, development"):
        cohort.split("test")


def test_small_cohort_loads(tmp_path):
    root = _write_cohort(tmp_path, VALID_MANIFEST, VALID_READS, VALID_PATHOLOGY)
    cohort = load_cohort(root)
    assert list(cohort.lesions) == ["L1", "L2"]
    # Sequences come in the vocabulary's order, not the manifest's.
    assert cohort.lesions["L1"].sequences == ("t1_pre", "arterial")
    assert cohort.lesions["L2"].images["arterial"].box == (1, 2, 3, 4, 5, 6)
    assert cohort.lesions["L2"].images["arterial"].mask is None
    assert cohort.truth is None


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"], ids=["cr", "crlf", "lf"])
def test_any_line_ending_loads(tmp_path, newline):
    root = _write_cohort(tmp_path, VALID_MANIFEST, VALID_READS, VALID_PATHOLOGY, newline=newline)
    cohort = load_cohort(root)
    assert len(cohort.lesions) == 2
    assert cohort.reads["answer"].tolist() == ["nonrim", "rim", "absent"]
    assert cohort.pathology["method"].tolist() == ["histopathology", "imaging follow-up"]


def test_broken_tables_one_message(tmp_path):
    manifest = [
        *VALID_MANIFEST,
        "P1,L1,evaluation,t3,a.nii.gz,m.nii.gz,",  # line 5: unknown sequence
        "P1,L1,evaluation,t1_pre,a.nii.gz,m.nii.gz,",  # line 6: repeats line 3
        "P2,L3,development,t2,a.nii.gz,m.nii.gz,",  # line 7: P2 is also in exemplar
        "P3,L1,evaluation,t2,a.nii.gz,m.nii.gz,",  # line 8: L1 also belongs to P1
        "P4,L4,holdout,t2,a.nii.gz,,",  # line 9: unknown split, no mask or box
    ]
    reads = [*VALID_READS, "L9,R1,aphe,nonrim", "L1,R1,capsule,present", "L1,R3,aphe,yes"]
    pathology = [*VALID_PATHOLOGY, "L2,carcinoid,histopathology"]
    root = _write_cohort(tmp_path, manifest, reads, pathology)

    with pytest.raises(UserInputError) as raised:
        load_cohort(root)
    message = str(raised.value)
    assert "manifest.csv line 5: unknown sequence 't3'" in message
    assert "manifest.csv lines 3, 6: lesion 'L1' has 2 rows for sequence 't1_pre'" in message
    assert "patient 'P2' is in splits 'exemplar' (line 4), 'development' (line 7)" in message
    assert "lesion 'L1' belongs to patients 'P1' (line 2), 'P3' (line 8)" in message
    assert "manifest.csv line 9: unknown split 'holdout'" in message
    assert "manifest.csv line 9: neither mask nor box is given" in message
    assert "reads.csv line 5: lesion 'L9' is not in manifest.csv" in message
    assert "reads.csv line 6: unknown feature 'capsule'" in message
    assert "reads.csv line 7: answer 'yes' is not a category of aphe" in message
    assert "pathology.csv lines 3, 4: lesion 'L2' has 2 diagnoses" in message
    assert "pathology.csv line 4: unknown diagnosis 'carcinoid'" in message
    assert "has 11 problem(s)" in message


def test_unknown_lesion_one_message_per_lesion(tmp_path):
    # 14 rows of one missing lesion: one message, ten line numbers and a count of the rest.
    features = ["aphe", "washout", "enhancing_capsule", "restricted_diffusion", "fat_in_mass"]
    extra = [f"L9,R{r},{f},absent" for r in (1, 2, 3) for f in features][:14]
    root = _write_cohort(tmp_path, VALID_MANIFEST, [*VALID_READS, *extra], VALID_PATHOLOGY)
    with pytest.raises(UserInputError) as raised:
        load_cohort(root)
    message = str(raised.value)
    assert message.count("lesion 'L9' is not in manifest.csv") == 1
    assert "reads.csv lines 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 and 4 more: lesion 'L9'" in message
    assert "has 1 problem(s)" in message


def test_missing_columns_and_tables(tmp_path):
    (tmp_path / "manifest.csv").write_text("patient_id,lesion_id,sequence,image\nP1,L1,t2,a.nii\n")
    with pytest.raises(UserInputError) as raised:
        load_cohort(tmp_path)
    message = str(raised.value)
    assert "manifest.csv: missing column(s) split" in message
    assert "manifest.csv: missing column mask or box" in message
    assert "reads.csv: not found" in message
    assert "pathology.csv: not found" in message


def test_missing_volume_reported(tmp_path):
    root = _write_cohort(tmp_path, VALID_MANIFEST, VALID_READS, VALID_PATHOLOGY)
    (root / "b.nii.gz").unlink()
    with pytest.raises(UserInputError, match="line 3: image 'b.nii.gz' not found"):
        load_cohort(root)
    assert len(load_cohort(root, require_files=False).lesions) == 2


def test_bad_paths_and_boxes(tmp_path):
    manifest = [
        "P1,L1,evaluation,t2,/data/a.nii.gz,m.nii.gz,",
        "P1,L1,evaluation,t1_pre,a.png,m.nii.gz,",
        'P1,L1,evaluation,dwi,a.nii.gz,,"4,4,4,1,1,1"',
    ]
    _, problems = read_cohort_tables(_write_cohort(tmp_path, manifest), require_files=False)
    assert any("line 2: image '/data/a.nii.gz' is an absolute path" in p for p in problems)
    assert any("line 3: image 'a.png' is not a NIfTI file" in p for p in problems)
    assert any(
        "line 4: box '4,4,4,1,1,1' has a start index above its end index" in p for p in problems
    )


def test_empty_table_rejected(tmp_path):
    root = _write_cohort(tmp_path, VALID_MANIFEST, VALID_READS, VALID_PATHOLOGY)
    (root / "reads.csv").write_bytes(b"")
    with pytest.raises(UserInputError, match="reads.csv: the file is empty"):
        load_cohort(root)


def test_parse_box():
    assert parse_box("1, 2, 3, 4, 5, 6") == (1, 2, 3, 4, 5, 6)
    assert parse_box("1;2;3;4;5;6") == (1, 2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="six non-negative integers"):
        parse_box("1,2,3,4,5")
    with pytest.raises(ValueError, match="six non-negative integers"):
        parse_box("-1,2,3,4,5,6")


def test_hash_ignores_location(phantom, tmp_path):
    copy = shutil.copytree(phantom, tmp_path / "elsewhere")
    assert cohort_sha256(copy) == cohort_sha256(phantom)


def test_hash_ignores_line_endings(phantom, tmp_path):
    copy = shutil.copytree(phantom, tmp_path / "crlf")
    manifest = copy / "manifest.csv"
    manifest.write_bytes(manifest.read_bytes().replace(b"\n", b"\r\n"))
    assert cohort_sha256(copy) == cohort_sha256(phantom)


def test_hash_covers_volumes(phantom, tmp_path):
    copy = shutil.copytree(phantom, tmp_path / "changed")
    shutil.copy(copy / "images" / "P002" / "t2.nii.gz", copy / "images" / "P001" / "t2.nii.gz")
    assert cohort_sha256(copy) != cohort_sha256(phantom)


def test_hash_ignores_unreferenced_files(phantom, tmp_path):
    copy = shutil.copytree(phantom, tmp_path / "extra")
    (copy / "notes.txt").write_text("not part of the cohort")
    assert cohort_sha256(copy) == cohort_sha256(phantom)
