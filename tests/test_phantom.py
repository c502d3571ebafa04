"""Tests of the phantom cohort generator: determinism, counts, truth and signal model."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from study.data import build_phantom, cohort_sha256, load_cohort
from study.data.phantom import LESION_TYPES, PHANTOM_FEATURES, PHANTOM_SEQUENCES, plan_phantom
from study.data.phantom_signal import ACQUISITIONS, acquisition_of
from study.data.simulated_reads import DEFAULT_TARGET_KAPPA, READERS
from study.errors import UserInputError


@pytest.fixture(scope="module")
def default_cohort(tmp_path_factory):
    return build_phantom(tmp_path_factory.mktemp("phantom"))


def test_same_seed_same_hash(tmp_path):
    first = build_phantom(tmp_path / "a", patients=3, exemplar_patients=1, seed=7)
    second = build_phantom(tmp_path / "b", patients=3, exemplar_patients=1, seed=7)
    assert cohort_sha256(first) == cohort_sha256(second)
    volume = "images/P001/arterial.nii.gz"
    assert (first / volume).read_bytes() == (second / volume).read_bytes()


def test_other_seed_other_hash(tmp_path):
    first = build_phantom(tmp_path / "a", patients=3, exemplar_patients=1, seed=7)
    second = build_phantom(tmp_path / "b", patients=3, exemplar_patients=1, seed=8)
    assert cohort_sha256(first) != cohort_sha256(second)


def test_default_counts(default_cohort):
    patients = load_cohort(default_cohort).patients()
    evaluation = patients[patients["split"] == "evaluation"]
    exemplar = patients[patients["split"] == "exemplar"]
    assert evaluation["patient_id"].nunique() >= 12
    assert len(evaluation) >= 16
    assert exemplar["patient_id"].nunique() == 4
    assert not set(evaluation["patient_id"]) & set(exemplar["patient_id"])


def test_every_lesion_has_all_sequences(default_cohort):
    cohort = load_cohort(default_cohort)
    for lesion in cohort.lesions.values():
        assert lesion.sequences == PHANTOM_SEQUENCES
        masks = {image.mask for image in lesion.images.values()}
        assert len(masks) == len(ACQUISITIONS)


def test_one_to_three_lesions_per_patient(default_cohort):
    counts = load_cohort(default_cohort).patients().groupby("patient_id").size()
    assert counts.min() == 1
    assert counts.max() == 3


def test_sequences_not_coregistered(default_cohort):
    # The same lesion sits at other world coordinates in the T2 and diffusion volumes.
    centres = {}
    for acquisition in ACQUISITIONS:
        mask = nib.load(default_cohort / "masks" / "P001-L1" / f"{acquisition.name}.nii.gz")
        voxels = np.argwhere(np.asanyarray(mask.dataobj) > 0).mean(axis=0)
        centres[acquisition.name] = nib.affines.apply_affine(mask.affine, voxels)
    assert nib.load(default_cohort / "images" / "P001" / "dwi.nii.gz").shape != (96, 96, 24)
    assert np.linalg.norm(centres["t2"] - centres["dynamic"]) > 0.5
    assert np.linalg.norm(centres["diffusion"] - centres["dynamic"]) > 0.5


def test_volume_geometry(default_cohort):
    image = nib.load(default_cohort / "images" / "P001" / "t1_pre.nii.gz")
    assert image.shape == (96, 96, 24)
    assert image.get_data_dtype() == np.int16
    assert image.header.get_zooms() == (1.5, 1.5, 5.0)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    mask = nib.load(default_cohort / "masks" / "P001-L1" / "dynamic.nii.gz")
    assert mask.get_data_dtype() == np.uint8
    assert np.asanyarray(mask.dataobj).sum() > 0


def test_truth_follows_lesion_type(default_cohort):
    truth = pd.read_csv(default_cohort / "truth.csv")
    lesions = pd.read_csv(default_cohort / "lesions.csv")
    wide = truth.pivot(index="lesion_id", columns="feature", values="answer")
    wide = wide.join(lesions.set_index("lesion_id")["lesion_type"])
    assert sorted(truth["feature"].unique()) == sorted(PHANTOM_FEATURES)

    cysts = wide[wide["lesion_type"] == "cyst"]
    assert (cysts["aphe"] == "absent").all()
    assert (cysts["marked_t2_hyperintensity"] == "present").all()
    assert (wide.loc[wide["lesion_type"] == "HCC", "aphe"] != "rim").all()
    assert (wide.loc[wide["lesion_type"] == "metastasis", "enhancing_capsule"] == "absent").all()
    assert (wide.loc[wide["lesion_type"] == "FNH", "washout"] == "absent").all()
    assert (wide.loc[wide["lesion_type"] == "hemangioma", "t2_hyperintensity"] == "absent").all()


def test_sizes_in_range(default_cohort):
    lesions = pd.read_csv(default_cohort / "lesions.csv")
    # Two close lesions may shrink below 10 mm; none grows above 40 mm.
    assert lesions["size_mm"].between(8.0, 40.0).all()
    assert set(lesions["lesion_type"]) <= set(LESION_TYPES)


def test_pathology_matches_type(default_cohort):
    pathology = pd.read_csv(default_cohort / "pathology.csv")
    lesions = pd.read_csv(default_cohort / "lesions.csv")
    merged = pathology.merge(lesions, on="lesion_id")
    assert (merged["diagnosis"] == merged["lesion_type"]).all()
    assert set(merged["method"]) <= {"histopathology", "imaging follow-up"}


def test_raters_disagree_sometimes(default_cohort):
    reads = pd.read_csv(default_cohort / "reads.csv")
    wide = reads.pivot_table(
        index=["lesion_id", "feature"], columns="reader", values="answer", aggfunc="first"
    )
    assert list(wide.columns) == list(READERS)
    for first, second in itertools.combinations(READERS, 2):
        agreement = (wide[first] == wide[second]).mean()
        assert 0.6 < agreement < 0.97, (first, second, agreement)


def test_readers_mostly_match_truth(default_cohort):
    reads = pd.read_csv(default_cohort / "reads.csv")
    truth = pd.read_csv(default_cohort / "truth.csv")
    merged = reads.merge(truth, on=["lesion_id", "feature"], suffixes=("", "_truth"))
    accuracy = (merged["answer"] == merged["answer_truth"]).groupby(merged["reader"]).mean()
    assert accuracy.between(0.75, 0.99).all(), accuracy.to_dict()


@pytest.fixture(scope="module")
def plan_200():
    plan = plan_phantom(patients=115, exemplar_patients=0, seed=11)
    assert len(plan.lesions) == 200
    return plan


@pytest.mark.parametrize("feature", PHANTOM_FEATURES)
def test_200_lesions_reach_target_kappa(plan_200, feature):
    from analysis.agreement import fleiss_kappa
    from study.lirads import FEATURES

    reads = plan_200.reads[plan_200.reads["feature"] == feature]
    wide = reads.pivot(index="lesion_id", columns="reader", values="answer")
    achieved = fleiss_kappa(wide, categories=FEATURES[feature].categories).estimate
    assert abs(achieved - DEFAULT_TARGET_KAPPA[feature]) <= 0.05, achieved


def test_custom_target_kappa(plan_200):
    from analysis.agreement import fleiss_kappa

    plan = plan_phantom(patients=115, exemplar_patients=0, seed=11, target_kappa={"aphe": 0.4})
    reads = plan.reads[plan.reads["feature"] == "aphe"]
    wide = reads.pivot(index="lesion_id", columns="reader", values="answer")
    achieved = fleiss_kappa(wide, categories=("absent", "nonrim", "rim")).estimate
    assert abs(achieved - 0.4) <= 0.05
    # Same seed, same truth: only the reads change.
    pd.testing.assert_frame_equal(plan.truth, plan_200.truth)


def test_plan_is_deterministic():
    first = plan_phantom(patients=6, exemplar_patients=2, seed=4)
    second = plan_phantom(patients=6, exemplar_patients=2, seed=4)
    pd.testing.assert_frame_equal(first.reads, second.reads)
    assert first.lesions == second.lesions


def _lesion_to_liver(cohort_root, lesion_id: str, sequence: str) -> float:
    from scipy import ndimage

    patient_id = lesion_id.split("-")[0]
    acquisition = acquisition_of(sequence).name
    volume = nib.load(cohort_root / "images" / patient_id / f"{sequence}.nii.gz").get_fdata()
    mask = nib.load(cohort_root / "masks" / lesion_id / f"{acquisition}.nii.gz").get_fdata() > 0
    # Liver is a ring 2-3 voxels outside the lesion, in the lesion's slices, because lesions lie
    # at least 4 mm inside the liver. The median ignores another lesion that touches the ring.
    outer = ndimage.binary_dilation(mask, iterations=3)
    ring = outer & ~ndimage.binary_dilation(mask, iterations=2)
    ring &= mask.any(axis=(0, 1))[None, None, :]
    return float(volume[mask].mean() / np.median(volume[ring]))


def test_fat_drops_on_opposed_phase(default_cohort):
    truth = pd.read_csv(default_cohort / "truth.csv")
    fatty = truth[(truth["feature"] == "fat_in_mass") & (truth["answer"] == "present")]
    assert len(fatty) > 0
    for lesion_id in fatty["lesion_id"]:
        in_phase = _lesion_to_liver(default_cohort, lesion_id, "in_phase")
        opposed = _lesion_to_liver(default_cohort, lesion_id, "opposed_phase")
        assert opposed < 0.8 * in_phase, lesion_id


def test_restriction_bright_dwi_dark_adc(default_cohort):
    truth = pd.read_csv(default_cohort / "truth.csv")
    restricted = truth[
        (truth["feature"] == "restricted_diffusion") & (truth["answer"] == "present")
    ]
    assert len(restricted) > 0
    for lesion_id in restricted["lesion_id"]:
        assert _lesion_to_liver(default_cohort, lesion_id, "dwi") > 1.3, lesion_id
        assert _lesion_to_liver(default_cohort, lesion_id, "adc") < 0.8, lesion_id


@pytest.mark.parametrize("patients, exemplars", [(0, 0), (4, 4), (4, -1)])
def test_invalid_sizes_rejected(tmp_path, patients, exemplars):
    with pytest.raises(UserInputError, match="exemplar_patients"):
        build_phantom(tmp_path, patients=patients, exemplar_patients=exemplars)


@pytest.mark.parametrize("item", ["aphe", "aphe=1.5", "colour=0.5", "aphe=high"])
def test_invalid_kappa_rejected(item):
    from study.data.simulated_reads import parse_kappas

    with pytest.raises(UserInputError, match="FEATURE=KAPPA"):
        parse_kappas([item])
