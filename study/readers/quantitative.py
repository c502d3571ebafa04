"""The local image-measuring baseline: lesion against liver signal on the rendered images.

For each sequence shown, the reader measures on the rendered 8-bit image the
mean of the lesion core, of its outer band, of a thin ring just outside it
(where a capsule would be) and of the liver around it, as contrasts in units
of the display range (0 to 1). Each feature is a threshold rule on one such
measurement. Without exemplars the fixed thresholds below apply; a strategy
with exemplars (``few_shot``) moves each threshold to the midpoint between the
exemplars' mean measurement with and without the feature; a strategy that asks
for reasoning (``chain_of_thought``) gets the measurements before the JSON
answer. A feature whose sequences were not shown is ``indeterminate``, and so
is every feature under a strategy that shows no images (``no_image``).

The reader uses the rendered lesion mask to know where the lesion is, as a
reader told "the lesion at the centre" would; it sees no other data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from study.lirads import ABSENT, FEATURES, INDETERMINATE, PRESENT
from study.protocol import QuantitativeReaderSpec
from study.readers.base import ReaderResponse, ReadRequest

ALGORITHM_VERSION = "1"


@dataclass(frozen=True)
class Regions:
    """Mean display values (0–1) of the regions around one lesion in one image."""

    core: float
    band: float
    capsule_ring: float
    liver: float

    @property
    def contrast(self) -> float:
        """Lesion core minus surrounding liver."""
        return self.core - self.liver


def measure_regions(pixels: np.ndarray, mask: np.ndarray) -> Regions | None:
    """Measure the lesion core, band, capsule ring and surrounding liver.

    Returns None when the mask is empty in this image.

    Examples
    --------
    >>> pixels = np.full((64, 64), 100, dtype=np.uint8)
    >>> mask = np.zeros((64, 64), dtype=bool)
    >>> mask[24:40, 24:40] = True
    >>> pixels[mask] = 200
    >>> round(measure_regions(pixels, mask).contrast, 3)
    0.392
    """
    mask = mask.astype(bool)
    area = int(mask.sum())
    if area == 0:
        return None
    radius = float(np.sqrt(area / np.pi))
    band_width = max(1, round(0.25 * radius))
    core = ndimage.binary_erosion(mask, iterations=band_width)
    if not core.any():
        core = mask
    band = mask & ~core
    if not band.any():
        band = mask
    capsule_outer = ndimage.binary_dilation(mask, iterations=max(2, round(0.15 * radius)))
    capsule_ring = capsule_outer & ~mask
    liver_inner = ndimage.binary_dilation(mask, iterations=max(3, round(0.35 * radius)))
    liver_outer = ndimage.binary_dilation(mask, iterations=max(6, round(0.8 * radius)))
    liver = liver_outer & ~liver_inner
    values = pixels.astype(np.float64) / 255.0
    return Regions(
        core=float(values[core].mean()),
        band=float(values[band].mean()),
        capsule_ring=float(values[capsule_ring].mean()),
        liver=float(values[liver].mean()),
    )


# Each rule: the measurement it thresholds, the fixed threshold, and the side
# on which the feature is present (+1 above, -1 below).
_RULES: dict[str, tuple[str, float, int]] = {
    "aphe": ("arterial_gain", 0.10, +1),
    "washout": ("portal_venous_contrast", -0.08, -1),
    "enhancing_capsule": ("capsule_gain", 0.08, +1),
    "restricted_diffusion": ("diffusion_score", 0.08, +1),
    "t2_hyperintensity": ("t2_contrast", 0.08, +1),
    "fat_in_mass": ("opposed_phase_drop", -0.10, -1),
}
_RIM_THRESHOLD = 0.12
_MARKED_T2 = 0.40


def measurements(images) -> dict[str, float]:
    """Return the named measurements the rules threshold, from the images shown."""
    regions = {}
    for image in images:
        measured = measure_regions(image.pixels, image.mask)
        if measured is not None:
            regions[image.sequence] = measured
    values: dict[str, float] = {}
    if {"t1_pre", "arterial"} <= regions.keys():
        values["arterial_gain"] = regions["arterial"].contrast - regions["t1_pre"].contrast
        values["arterial_rim"] = regions["arterial"].band - regions["arterial"].core
    if "portal_venous" in regions:
        venous = regions["portal_venous"]
        values["portal_venous_contrast"] = venous.contrast
        values["portal_venous_rim"] = venous.band - venous.core
        values["capsule_gain"] = venous.capsule_ring - venous.liver
    if {"dwi", "adc"} <= regions.keys():
        values["diffusion_score"] = min(regions["dwi"].contrast, -regions["adc"].contrast)
    if "t2" in regions:
        values["t2_contrast"] = regions["t2"].contrast
    if {"in_phase", "opposed_phase"} <= regions.keys():
        values["opposed_phase_drop"] = (
            regions["opposed_phase"].contrast - regions["in_phase"].contrast
        )
    return values


def _fit_thresholds(request: ReadRequest) -> dict[str, float]:
    thresholds = {feature: rule[1] for feature, rule in _RULES.items()}
    if not request.exemplars:
        return thresholds
    measured = [(measurements(ex.images), ex.answers) for ex in request.exemplars]
    for feature, (name, _, _) in _RULES.items():
        present = [
            m[name]
            for m, answers in measured
            if name in m and answers.get(feature) not in (None, ABSENT, INDETERMINATE)
        ]
        absent = [
            m[name] for m, answers in measured if name in m and answers.get(feature) == ABSENT
        ]
        if present and absent:
            thresholds[feature] = (float(np.mean(present)) + float(np.mean(absent))) / 2.0
    return thresholds


def _decide(feature: str, values: dict[str, float], threshold: float) -> str:
    name, _, side = _RULES[feature]
    seen = (values[name] - threshold) * side > 0
    if feature == "aphe" and seen:
        return "rim" if values.get("arterial_rim", 0.0) > _RIM_THRESHOLD else "nonrim"
    if feature == "washout" and seen:
        return (
            "peripheral"
            if values.get("portal_venous_rim", 0.0) < -_RIM_THRESHOLD
            else ("nonperipheral")
        )
    if feature == "t2_hyperintensity" and values[name] > _MARKED_T2:
        return ABSENT  # marked T2 hyperintensity is a benign feature, not mild-moderate
    return PRESENT if seen else ABSENT


class QuantitativeReader:
    """Threshold rules on lesion-to-liver measurements; see the module docstring."""

    def __init__(self, spec: QuantitativeReaderSpec) -> None:
        self.name = spec.name
        self.spec = spec

    def identity(self) -> dict[str, Any]:
        """Return the algorithm version, which fixes every answer given the images."""
        return {"kind": "quantitative", "algorithm_version": ALGORITHM_VERSION}

    def read(self, request: ReadRequest) -> ReaderResponse:
        """Measure the images and answer each feature by its rule."""
        started = time.perf_counter()
        # The no-image control measures nothing, so every feature is indeterminate.
        values = measurements(request.images if request.prompt.shows_images else ())
        thresholds = _fit_thresholds(request)
        answers = {}
        for feature in request.features:
            rule = _RULES.get(feature)
            if (
                rule is None
                or not FEATURES[feature].judgeable(request.sequences)
                or (rule[0] not in values)
            ):
                answers[feature] = {"answer": INDETERMINATE, "confidence": 0}
                continue
            margin = abs(values[rule[0]] - thresholds[feature])
            answers[feature] = {
                "answer": _decide(feature, values, thresholds[feature]),
                "confidence": int(min(100, 50 + 250 * margin)),
            }

        body = json.dumps({"features": answers}, sort_keys=True)
        if request.prompt.asks_reasoning:
            lines = [f"{name} = {value:+.3f}" for name, value in sorted(values.items())]
            text = (
                "Measurements (display units):\n"
                + "\n".join(lines)
                + "\n```json\n"
                + body
                + "\n```"
            )
        else:
            text = body
        return ReaderResponse(
            text, f"quantitative-{ALGORITHM_VERSION}", time.perf_counter() - started
        )
