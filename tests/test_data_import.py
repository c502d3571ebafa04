"""Importers: wide reader tables (mLI-RADS), the LLD-MMRI layout and DICOM, through the CLI."""

from __future__ import annotations

import copy
import json
import shutil
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from analysis.baseline import MLIRADS_CSV, load_mlirads_reads
from study.cli import main
from study.data import load_cohort
from study.data.dicom import read_dicom_overlay, read_dicom_series
from study.data.validation import validate_cohort
from study.errors import UserInputError
from study.rendering import RenderSettings, render_lesion
from tests.conftest import run_cli

OVERLAY_FILE = "MR-SIEMENS-DICOM-WithOverlays.dcm"


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``vlmstudy`` in this process (as the subprocess tests do, but faster)."""

    def run(*arguments: str, cwd) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["vlmstudy", *arguments])
        code = 0
        try:
            main()
        except SystemExit as stop:
            code = stop.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# Wide reader tables ---------------------------------------------------------------------


def test_mlirads_imports_104_lesions_4_readers(tmp_path):
    finished = run_cli("data", "import", "reads-wide", str(MLIRADS_CSV), "--out", "out",
                       cwd=tmp_path)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "104 lesions, 4 readers" in finished.stdout

    observations = pd.read_csv(tmp_path / "out" / "observations.csv")
    assert observations["lesion_id"].nunique() == 104
    assert sorted(observations["reader"].unique()) == ["R1", "R2", "R3", "R4"]
    assert len(observations) == 104 * 4
    assert set(observations.loc[observations["lesion_id"] == "mlirads-53", "category_code"]) == {
        1, 2, 5,
    }  # fmt: skip

    reads = pd.read_csv(tmp_path / "out" / "reads.csv")
    # The analysis package parses the same file independently; the answers must agree.
    reference = load_mlirads_reads().dropna(subset=["answer"])
    assert len(reads) == len(reference)
    first = reads[(reads["lesion_id"] == "mlirads-1") & (reads["reader"] == "R1")]
    answers = dict(zip(first["feature"], first["answer"], strict=True))
    # Observation 1, first reader: ART_HYP 1, WASHOUT 0, CPS 0, TRESHOLD 0, MAX_DM_LR 12.
    assert answers == {"aphe": "nonrim", "washout": "absent", "enhancing_capsule": "absent",
                       "threshold_growth": "absent"}  # fmt: skip
    assert set(first["size_mm"]) == {12.0}


def test_mlirads_blank_means_not_scored(tmp_path, cli):
    cli("data", "import", "reads-wide", str(MLIRADS_CSV), "--out", "out", cwd=tmp_path)
    reads = pd.read_csv(tmp_path / "out" / "reads.csv")
    observations = pd.read_csv(tmp_path / "out" / "observations.csv")
    # Observation 2: every reader left the features blank (judged benign), but gave a size.
    assert reads[reads["lesion_id"] == "mlirads-2"].empty
    assert set(observations.loc[observations["lesion_id"] == "mlirads-2", "size_mm"]) == {
        53.0, 71.0, 77.0, 75.0,
    }  # fmt: skip


def _wide_table(rows: list[str]) -> bytes:
    # Bare carriage returns, an empty header cell and a junk total row, as spreadsheets export.
    header = "case,aphe_a,size_a,,aphe_b,size_b"
    return "\r".join([header, *rows]).encode()


MAPPING = """\
id_column: case
id_pattern: 'C\\d+'
readers:
  A: {aphe: aphe_a, size_mm: size_a}
  B: {aphe: aphe_b, size_mm: size_b}
values:
  aphe: {y: nonrim, n: absent, rim: rim}
"""


def test_custom_mapping_and_junk_rows(tmp_path, cli):
    (tmp_path / "table.csv").write_bytes(
        _wide_table(["C1,y,20,x,n,21", "C2,,15,,rim,16", "total,2,,,,", ",,#REF!,,,"])
    )
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    code, out, err = cli("data", "import", "reads-wide", "table.csv", "--out", "out",
                       "--mapping", "mapping.yaml", cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert "skipped 2 row(s)" in out
    reads = pd.read_csv(tmp_path / "out" / "reads.csv")
    assert list(zip(reads["lesion_id"], reads["reader"], reads["answer"], strict=True)) == [
        ("C1", "A", "nonrim"), ("C1", "B", "absent"), ("C2", "B", "rim"),
    ]  # fmt: skip


def test_ref_error_in_kept_row_rejected(tmp_path, cli):
    (tmp_path / "table.csv").write_bytes(_wide_table(["C1,#REF!,20,,n,21", "C2,maybe,15,,y,16"]))
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    code, out, err = cli("data", "import", "reads-wide", "table.csv", "--out", "out",
                       "--mapping", "mapping.yaml", cwd=tmp_path)  # fmt: skip
    assert code == 2
    assert "line 2 (case C1): column aphe_a has '#REF!'" in err
    assert "line 3 (case C2): column aphe_a has 'maybe'" in err
    assert not (tmp_path / "out").exists()


def test_mapping_with_unknown_column_rejected(tmp_path, cli):
    (tmp_path / "table.csv").write_bytes(_wide_table(["C1,y,20,,n,21"]))
    (tmp_path / "mapping.yaml").write_text(MAPPING.replace("aphe_b", "aphe_c"))
    code, out, err = cli("data", "import", "reads-wide", "table.csv", "--out", "out",
                       "--mapping", "mapping.yaml", cwd=tmp_path)  # fmt: skip
    assert code == 2
    assert "aphe_c not found" in err


# LLD-MMRI ------------------------------------------------------------------------------

PHASES = ("T2WI", "In Phase", "Out Phase", "C-pre", "C+A", "C+V", "C+Delay", "DWI")


def _phase_volume(shape, spacing, superior_first: bool, lesion_voxels):
    """A noisy volume with a bright cube, stored top-down when ``superior_first``."""
    rng = np.random.default_rng(len(lesion_voxels))
    data = rng.normal(100, 3, shape).astype(np.float32)
    x0, y0, z0, x1, y1, z1 = lesion_voxels
    data[x0 : x1 + 1, y0 : y1 + 1, z0 : z1 + 1] = 300
    affine = np.diag([*spacing, 1.0])
    if superior_first:
        affine[2, 2] = -spacing[2]
        affine[2, 3] = spacing[2] * (shape[2] - 1)
    return data, affine


def _lld_tree(root):
    """Two patients, eight phases each, every phase on its own grid, half of them top-down."""
    info, stored_boxes = {}, {}
    for number, patient in enumerate(("MR-0001", "MR-0002")):
        entries = []
        for index, phase in enumerate(PHASES):
            shape = (40 + 4 * index, 36 + 2 * index, 12 + index % 3)
            spacing = (1.0 + 0.1 * index, 1.0 + 0.1 * index, 3.0 + index % 2)
            superior_first = index % 2 == 1
            stored = (8 + index, 10, 3 + number, 14 + index, 17, 6 + number)
            data, affine = _phase_volume(shape, spacing, superior_first, stored)
            study, series = f"study{number}", f"series{index}"
            path = root / "images" / patient / study / f"{series}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), path)
            depth = shape[2]
            # The annotation counts z from the top slice: flipped where the volume points up.
            z_min, z_max = stored[2], stored[5]
            if not superior_first:
                z_min, z_max = depth - 1 - stored[5], depth - 1 - stored[2]
            box = {"x_min": stored[0], "y_min": stored[1], "z_min": z_min,
                   "x_max": stored[3], "y_max": stored[4], "z_max": z_max}  # fmt: skip
            entries.append({
                "phase": phase, "studyUID": study, "seriesUID": series,
                "pixel_spacing": list(spacing[:2]), "slice_thickness": spacing[2],
                "annotation": {"num_targets": 1, "lesion": {"0": {
                    "category": 6 - number, "bbox": {"3D_box": box, "2D_box": []}}}},
            })  # fmt: skip
            stored_boxes[(patient, phase)] = stored
        info[patient] = entries
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "Annotation.json").write_text(json.dumps({"Annotation_info": info}))
    return stored_boxes


@pytest.fixture(scope="module")
def lld(tmp_path_factory):
    root = tmp_path_factory.mktemp("lld")
    boxes = _lld_tree(root / "source")
    finished = run_cli("data", "import", "lld-mmri", "source", "--out", "cohort", cwd=root)
    assert finished.returncode == 0, finished.stderr
    return root, boxes, finished.stdout


def test_lld_import_counts(lld):
    root, _, stdout = lld
    assert "2 patients, 2 lesions, 16 manifest rows, 8 boxes z-flipped" in stdout
    assert validate_cohort(root / "cohort") == []
    pathology = pd.read_csv(root / "cohort" / "pathology.csv")
    assert list(pathology["diagnosis"]) == ["HCC", "FNH"]


def test_lld_phase_names_and_boxes(lld):
    root, boxes, _ = lld
    manifest = pd.read_csv(root / "cohort" / "manifest.csv", keep_default_na=False)
    assert sorted(manifest["sequence"].unique()) == sorted(
        ["t2", "in_phase", "opposed_phase", "t1_pre", "arterial", "portal_venous", "delayed",
         "dwi"]
    )  # fmt: skip
    phase_of = {"t2": "T2WI", "in_phase": "In Phase", "opposed_phase": "Out Phase",
                "t1_pre": "C-pre", "arterial": "C+A", "portal_venous": "C+V",
                "delayed": "C+Delay", "dwi": "DWI"}  # fmt: skip
    for row in manifest.itertuples():
        expected = boxes[(row.patient_id, phase_of[row.sequence])]
        assert tuple(int(v) for v in row.box.split(",")) == expected, row


def test_lld_renders_lesion_in_every_phase(lld):
    root, _, _ = lld
    cohort = load_cohort(root / "cohort")
    for lesion in cohort.lesions.values():
        for sequence in lesion.sequences:
            rendered = render_lesion(lesion, sequence, RenderSettings(size=64))
            inside = rendered.pixels[rendered.mask].mean()
            outside = rendered.pixels[~rendered.mask].mean()
            # The bright cube fills the box in every phase, so the flip rule put it right.
            assert inside > outside + 100, (lesion.lesion_id, sequence)


def test_lld_as_stored_keeps_z(lld, tmp_path, cli):
    root, _, _ = lld
    code, out, err = cli("data", "import", "lld-mmri", str(root / "source"), "--out", "raw",
                       "--z-order", "as_stored", cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert "0 boxes z-flipped" in out


def test_lld_broken_tree_rejected(lld, tmp_path, cli):
    root, _, _ = lld
    source = tmp_path / "source"
    shutil.copytree(root / "source", source)
    annotation = json.loads((source / "labels" / "Annotation.json").read_text())
    annotation["Annotation_info"]["MR-0001"][0]["phase"] = "T1 map"
    annotation["Annotation_info"]["MR-0002"][1]["seriesUID"] = "missing"
    annotation["Annotation_info"]["MR-0002"][2]["annotation"]["lesion"]["0"]["category"] = 9
    (source / "labels" / "Annotation.json").write_text(json.dumps(annotation))
    code, out, err = cli("data", "import", "lld-mmri", "source", "--out", "cohort", cwd=tmp_path)
    assert code == 2
    assert "3 problem(s)" in err
    assert "unknown phase" in err
    assert "missing.nii.gz not found" in err
    assert "unknown category 9" in err
    assert not (tmp_path / "cohort").exists()


# DICOM ---------------------------------------------------------------------------------


def test_overlay_lesion_mask():
    volume = read_dicom_overlay(get_testdata_file(OVERLAY_FILE))
    assert volume.data.shape == (484, 484, 1)
    assert volume.mask.sum() == 920
    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    centre = np.argwhere(volume.mask).mean(axis=0)
    world = nib.affines.apply_affine(volume.affine, centre)
    # The outlined lesion is in the right liver lobe, and RAS x grows towards the patient's right.
    assert world[0] > 50


def test_dicom_overlay_imports_and_renders(tmp_path, cli):
    code, out, err = cli(
        "data", "import", "dicom", get_testdata_file(OVERLAY_FILE), "--out", "cohort",
        "--patient", "siemens", "--lesion", "siemens-L1", "--sequence", "portal_venous",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert validate_cohort(tmp_path / "cohort") == []

    code, out, err = cli("data", "render", "cohort", "--lesion", "siemens-L1", "--out", "png",
                       "--mark", "box", "--montage", cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    record = json.loads((tmp_path / "png" / "render.json").read_text())
    assert [image["sequence"] for image in record["images"]] == ["portal_venous", "portal_venous"]
    assert record["settings"]["mark"] == "box"
    assert (tmp_path / "png" / "siemens-L1_portal_venous.png").read_bytes()[:4] == b"\x89PNG"


def _series(tmp_path, slices: int = 3):
    source = pydicom.dcmread(get_testdata_file(OVERLAY_FILE))
    series_uid = generate_uid()
    folder = tmp_path / "series"
    folder.mkdir()
    # Written in reverse order of position, so the reader has to sort them.
    for index in reversed(range(slices)):
        dataset = copy.deepcopy(source)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        x, y, z = (float(v) for v in source.ImagePositionPatient)
        dataset.ImagePositionPatient = [x, y, z + 5.0 * index]
        dataset.PixelData = (source.pixel_array + 100 * index).astype(np.uint16).tobytes()
        dataset.save_as(folder / f"image{slices - index}.dcm")
    return folder


def test_dicom_series_sorted_by_position(tmp_path):
    volume = read_dicom_series(_series(tmp_path))
    assert volume.data.shape == (484, 484, 3)
    assert volume.affine[2, 2] == pytest.approx(5.0)
    # Slice k was given 100 * k more signal, so sorting by position restores that order.
    means = volume.data.mean(axis=(0, 1))
    assert means[0] < means[1] < means[2]


def test_dicom_series_with_box_renders(tmp_path, cli):
    _series(tmp_path)
    code, out, err = cli(
        "data", "import", "dicom", "series", "--out", "cohort", "--patient", "P1",
        "--lesion", "P1-L1", "--sequence", "arterial", "--box", "50,220,0,100,270,2",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert validate_cohort(tmp_path / "cohort") == []
    lesion = load_cohort(tmp_path / "cohort").lesions["P1-L1"]
    assert render_lesion(lesion, "arterial", RenderSettings(size=64)).slice_index == 1


def test_dicom_mixed_series_rejected(tmp_path):
    folder = _series(tmp_path)
    other = pydicom.dcmread(folder / "image1.dcm")
    other.SeriesInstanceUID = generate_uid()
    other.save_as(folder / "other.dcm")
    with pytest.raises(UserInputError, match="2 series"):
        read_dicom_series(folder)
