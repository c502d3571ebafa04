"""Tests of lesion rendering: centring, contrast, orientation, aspect ratio and PNG hashing."""

from __future__ import annotations

import base64
import io
from types import MappingProxyType

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from study.data import build_phantom, load_cohort
from study.data.cohort import Lesion, SequenceImage
from study.errors import UserInputError
from study.rendering import (
    RenderSettings,
    SequenceWindow,
    encode_png_data_url,
    render_lesion,
    render_montage,
)

SMALL = RenderSettings(size=128)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_cohort(
        build_phantom(tmp_path_factory.mktemp("render"), patients=6, exemplar_patients=1)
    )


def _answers(cohort, feature: str, answer: str) -> list[str]:
    truth = cohort.truth
    chosen = truth[(truth["feature"] == feature) & (truth["answer"] == answer)]
    return chosen["lesion_id"].tolist()


def _contrast(rendered) -> float:
    """Mean inside the lesion minus mean of a ring 3-8 pixels outside it."""
    near = binary_dilation(rendered.mask, iterations=3)
    ring = binary_dilation(rendered.mask, iterations=8) & ~near
    pixels = rendered.pixels.astype(float)
    return float(pixels[rendered.mask].mean() - pixels[ring].mean())


def _single_lesion(tmp_path, data, mask, affine, *, box=None) -> Lesion:
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), tmp_path / "t2.nii.gz")
    mask_path = None
    if mask is not None:
        mask_path = tmp_path / "mask.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_path)
    image = SequenceImage("t2", tmp_path / "t2.nii.gz", mask_path, box)
    return Lesion("P1", "L1", "evaluation", MappingProxyType({"t2": image}))


def _sphere(shape, spacing, centre_voxel, radius_mm):
    grids = np.indices(shape, dtype=float)
    distance = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre_voxel, spacing, strict=True))
    return np.sqrt(distance) <= radius_mm


def test_lesion_in_centre(cohort):
    for lesion in list(cohort.lesions.values())[:4]:
        rendered = render_lesion(lesion, "portal_venous", SMALL)
        rows, columns = np.nonzero(rendered.mask)
        assert abs(rows.mean() - 63.5) < 3, lesion.lesion_id
        assert abs(columns.mean() - 63.5) < 3, lesion.lesion_id


def test_aphe_brighter_in_arterial(cohort):
    lesion_ids = _answers(cohort, "aphe", "nonrim")
    assert lesion_ids, "the phantom should contain a nonrim APHE lesion"
    for lesion_id in lesion_ids:
        lesion = cohort.lesions[lesion_id]
        arterial = _contrast(render_lesion(lesion, "arterial", SMALL))
        pre = _contrast(render_lesion(lesion, "t1_pre", SMALL))
        assert arterial > 10, lesion_id
        assert arterial > pre + 20, lesion_id


def test_washout_darker_in_portal_venous(cohort):
    lesion_ids = _answers(cohort, "washout", "nonperipheral")
    assert lesion_ids
    for lesion_id in lesion_ids:
        rendered = render_lesion(cohort.lesions[lesion_id], "portal_venous", SMALL)
        assert _contrast(rendered) < -10, lesion_id


def test_png_hash_stable(cohort):
    lesion = next(iter(cohort.lesions.values()))
    first = render_lesion(lesion, "t2", SMALL)
    second = render_lesion(lesion, "t2", SMALL)
    assert first.sha256 == second.sha256
    assert first.png == second.png
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first.png))), first.pixels)


def test_png_has_no_metadata(cohort):
    png = render_lesion(next(iter(cohort.lesions.values())), "t2", SMALL).png
    chunks, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        chunks.append(png[offset + 4 : offset + 8].decode("ascii"))
        offset += length + 12
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}


def test_rendered_record(cohort):
    lesion = next(iter(cohort.lesions.values()))
    rendered = render_lesion(lesion, "dwi", SMALL)
    assert rendered.pixels.shape == (128, 128)
    assert rendered.pixels.dtype == np.uint8
    assert rendered.mask.dtype == bool
    assert rendered.sequence == "dwi"
    assert rendered.settings["size"] == 128
    assert not rendered.pixels.flags.writeable
    mask = np.asanyarray(nib.load(lesion.images["dwi"].mask).dataobj)
    assert rendered.slice_index == int(np.argmax(mask.sum(axis=(0, 1))))


def test_box_mark_changes_pixels(cohort):
    lesion = next(iter(cohort.lesions.values()))
    plain = render_lesion(lesion, "t2", SMALL)
    marked = render_lesion(lesion, "t2", RenderSettings(size=128, mark="box"))
    assert marked.sha256 != plain.sha256
    assert (marked.pixels == 255).sum() > (plain.pixels == 255).sum()


def test_anisotropic_spacing_keeps_aspect(tmp_path):
    spacing = (0.8, 2.0, 4.0)
    shape = (100, 40, 7)
    lesion_mask = _sphere(shape, spacing, (50, 20, 3), radius_mm=12.0)
    data = np.where(lesion_mask, 900, 300)
    lesion = _single_lesion(tmp_path, data, lesion_mask, np.diag([*spacing, 1.0]))

    rendered = render_lesion(lesion, "t2", SMALL)
    rows, columns = np.nonzero(rendered.mask)
    height = rows.max() - rows.min() + 1
    width = columns.max() - columns.min() + 1
    # A round lesion stays round: 24 mm across in both directions of the display.
    assert abs(height - width) <= 0.08 * width
    assert rendered.slice_index == 3


@pytest.mark.parametrize("axis_signs", [(1, 1), (-1, -1)], ids=["RAS", "LPS"])
def test_radiological_orientation(tmp_path, axis_signs):
    shape = (60, 60, 5)
    affine = np.diag([2.0 * axis_signs[0], 2.0 * axis_signs[1], 3.0, 1.0])
    lesion_mask = _sphere(shape, (2.0, 2.0, 3.0), (30, 30, 2), radius_mm=10.0)
    data = np.full(shape, 300)
    data[lesion_mask] = 600

    # A marker in the patient's right anterior quadrant: the largest world x and y.
    right = slice(40, 48) if axis_signs[0] > 0 else slice(12, 20)
    anterior = slice(40, 48) if axis_signs[1] > 0 else slice(12, 20)
    data[right, anterior, :] = 2000
    lesion = _single_lesion(tmp_path, data, lesion_mask, affine)

    pixels = render_lesion(lesion, "t2", RenderSettings(size=128, margin=3.0)).pixels
    quadrants = {
        "top_left": pixels[:64, :64].mean(),
        "top_right": pixels[:64, 64:].mean(),
        "bottom_left": pixels[64:, :64].mean(),
        "bottom_right": pixels[64:, 64:].mean(),
    }
    # Patient right is on the image left and anterior is at the top.
    assert max(quadrants, key=quadrants.get) == "top_left"


def test_box_only_lesion(tmp_path):
    shape = (50, 50, 6)
    data = np.full(shape, 200)
    data[20:31, 15:26, 1:4] = 800
    lesion = _single_lesion(
        tmp_path, data, None, np.diag([1.0, 1.0, 5.0, 1.0]), box=(20, 15, 1, 30, 25, 3)
    )
    rendered = render_lesion(lesion, "t2", SMALL)
    assert rendered.slice_index == 2
    rows, columns = np.nonzero(rendered.mask)
    assert abs(rows.mean() - 63.5) < 2
    assert abs(columns.mean() - 63.5) < 2
    assert rendered.pixels[rendered.mask].mean() > 200


def test_lesion_at_edge_padded(tmp_path):
    shape = (40, 40, 3)
    lesion_mask = _sphere(shape, (1.0, 1.0, 5.0), (2, 2, 1), radius_mm=4.0)
    # A gradient keeps the tissue above the lower window percentile, so only padding is black.
    data = 300 + 10 * np.indices(shape).sum(axis=0)
    data[lesion_mask] = 900
    lesion = _single_lesion(tmp_path, data, lesion_mask, np.diag([1.0, 1.0, 5.0, 1.0]))
    rendered = render_lesion(lesion, "t2", SMALL)
    assert rendered.pixels.shape == (128, 128)
    # Voxel (0, 0) is the patient's left posterior corner, which the display puts at the
    # bottom right, so the padding beyond it fills the bottom rows and right columns.
    assert rendered.pixels[-5:, :].max() == 0
    assert rendered.pixels[:, -5:].max() == 0
    assert rendered.pixels[:40, :40].min() > 0


def test_empty_mask_rejected(tmp_path):
    shape = (20, 20, 3)
    lesion = _single_lesion(tmp_path, np.ones(shape), np.zeros(shape), np.eye(4))
    with pytest.raises(UserInputError, match=r"mask\.nii\.gz: the mask is empty"):
        render_lesion(lesion, "t2", SMALL)


def test_unreadable_volume_rejected(tmp_path):
    shape = (20, 20, 3)
    lesion = _single_lesion(tmp_path, np.ones(shape), np.ones(shape), np.eye(4))
    (tmp_path / "t2.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(UserInputError, match=r"t2\.nii\.gz: cannot be read as NIfTI"):
        render_lesion(lesion, "t2", SMALL)


def test_mask_on_other_grid_rejected(tmp_path):
    lesion = _single_lesion(tmp_path, np.ones((20, 20, 3)), np.ones((20, 20, 3)), np.eye(4))
    nib.save(nib.Nifti1Image(np.ones((10, 10, 3), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    with pytest.raises(UserInputError, match="resample the mask"):
        render_lesion(lesion, "t2", SMALL)


def test_missing_sequence_rejected(cohort):
    lesion = next(iter(cohort.lesions.values()))
    with pytest.raises(UserInputError, match="has no 'hepatobiliary' volume"):
        render_lesion(lesion, "hepatobiliary", SMALL)


@pytest.mark.parametrize(
    "arguments, field",
    [
        ({"size": 4}, "size"),
        ({"margin": -1.0}, "margin"),
        ({"window": (99, 1)}, "window"),
        ({"mark": "circle"}, "mark"),
        ({"sequence_windows": {"t3": (1, 99)}}, "sequence_windows"),
    ],
)
def test_invalid_settings_rejected(arguments, field):
    with pytest.raises(UserInputError, match=f"Invalid render settings: {field}"):
        RenderSettings(**arguments)


def test_png_data_url_round_trip():
    png = b"\x89PNG\r\n\x1a\nrest"
    url = encode_png_data_url(png)
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == png


def test_arrow_mark_outside_lesion(cohort):
    lesion = next(iter(cohort.lesions.values()))
    plain = render_lesion(lesion, "t2", SMALL)
    marked = render_lesion(lesion, "t2", RenderSettings(size=128, mark="arrow"))
    changed = plain.pixels != marked.pixels
    assert changed.sum() > 20
    # The arrow stops before the lesion and comes from its upper left.
    assert not (changed & plain.mask).any()
    rows, columns = np.nonzero(changed)
    lesion_rows, lesion_columns = np.nonzero(plain.mask)
    assert rows.mean() < lesion_rows.mean()
    assert columns.mean() < lesion_columns.mean()


def test_montage_tiles_each_sequence(cohort):
    lesion = next(iter(cohort.lesions.values()))
    sequences = ["t1_pre", "arterial", "portal_venous", "delayed", "t2"]
    montage = render_montage(lesion, sequences, RenderSettings(size=64))
    assert montage.sequence == "t1_pre+arterial+portal_venous+delayed+t2"
    assert montage.pixels.shape == (128, 192)
    assert montage.slice_index == -1
    # Each tile's mask is the single render's mask; the sixth place stays empty.
    single = render_lesion(lesion, "arterial", RenderSettings(size=64))
    np.testing.assert_array_equal(montage.mask[0:64, 64:128], single.mask)
    assert not montage.pixels[64:128, 128:192].any()
    decoded = np.asarray(Image.open(io.BytesIO(montage.png)))
    np.testing.assert_array_equal(decoded, montage.pixels)


def test_montage_columns(cohort):
    lesion = next(iter(cohort.lesions.values()))
    montage = render_montage(lesion, ["t2", "dwi", "adc"], RenderSettings(size=32), columns=3)
    assert montage.pixels.shape == (32, 96)


def test_value_window_for_one_sequence(cohort):
    lesion = next(iter(cohort.lesions.values()))
    # Every ADC voxel is far above 10, so a 0-10 window renders the crop white.
    settings = RenderSettings(size=64, sequence_windows={"adc": SequenceWindow(0, 10, "value")})
    assert (render_lesion(lesion, "adc", settings).pixels[20:44, 20:44] == 255).mean() > 0.9
    default = render_lesion(lesion, "t2", RenderSettings(size=64))
    np.testing.assert_array_equal(render_lesion(lesion, "t2", settings).pixels, default.pixels)
    assert settings.to_dict()["sequence_windows"] == {"adc": [0, 10, "value"]}
    assert "sequence_windows" not in RenderSettings().to_dict()


def test_each_sequence_located_by_own_mask(cohort):
    # Phantom sequences are on different grids and shifted; each is still centred on the lesion.
    lesion = next(iter(cohort.lesions.values()))
    for sequence in ("arterial", "t2", "dwi", "in_phase"):
        rendered = render_lesion(lesion, sequence, SMALL)
        rows, columns = np.nonzero(rendered.mask)
        assert abs(rows.mean() - 63.5) < 4, sequence
        assert abs(columns.mean() - 63.5) < 4, sequence
