"""The CT/MRI LI-RADS v2018 category computed from a reader's features.

LR-1, LR-2 and LR-NC need a reader's judgement (definitely or probably
benign, image degradation) and are never computed here, except that an
ancillary feature favouring benignity can move an LR-3 to LR-2.

Sources
-------
ACR CT/MRI LI-RADS v2018 Core (American College of Radiology, 2018) was read
in a public copy of the Core document. It confirms the order of the algorithm
(LR-NC, LR-TIV, LR-1, LR-2, LR-M, then the diagnostic table) and the
diagnostic table cell by cell. In the nonrim APHE 10-19 mm cell with one
additional major feature, capsule gives LR-4 while nonperipheral washout or
threshold growth gives LR-5. It also prints "if unsure about the presence of
any major feature: characterize that feature as absent".

NOTE: these rules were read in secondary summaries only, not in the Core
document: features favouring malignancy upgrade by one category up to LR-4,
features favouring benignity downgrade by one, and features of both kinds
leave the category as it is. The same holds for the rule that a nontargetoid
mass with LR-M features stays LR-5 when it meets LR-5 criteria.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from study.lirads.vocabulary import ABSENT, FEATURES, INDETERMINATE, PRESENT

APHE_VALUES = ("absent", "nonrim", "rim")
WASHOUT_VALUES = ("absent", "nonperipheral", "peripheral")

_ORDER = ("LR-2", "LR-3", "LR-4", "LR-5")


def _names(values: Iterable[str], group: str, argument: str) -> frozenset[str]:
    names = frozenset([values] if isinstance(values, str) else values)
    allowed = [name for name, item in FEATURES.items() if item.group == group]
    wrong = sorted(names - set(allowed))
    if wrong:
        raise ValueError(
            f"{argument}: invalid feature name(s) {wrong}; expected names from {allowed}"
        )
    return names


def _flag(value: bool | str, argument: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (PRESENT, ABSENT):
        return value == PRESENT
    raise ValueError(
        f"{argument}: invalid value {value!r}; expected True, False, 'present' or 'absent'"
    )


def diagnostic_table(size_mm: float, nonrim_aphe: bool, additional: Iterable[str]) -> str:
    """Look up the CT/MRI v2018 diagnostic table.

    Parameters
    ----------
    size_mm : float
        Observation size, outer edge to outer edge, in millimetres. The
        columns are ``< 10``, ``10 <= size < 20`` and ``>= 20`` mm.
    nonrim_aphe : bool
        Whether the observation has nonrim arterial phase hyperenhancement.
    additional : iterable of str
        The additional major features present, any of ``"capsule"``,
        ``"washout"`` (nonperipheral) and ``"threshold_growth"``.

    Returns
    -------
    str
        ``"LR-3"``, ``"LR-4"`` or ``"LR-5"``.

    Examples
    --------
    >>> diagnostic_table(15, True, ["capsule"]), diagnostic_table(15, True, ["washout"])
    ('LR-4', 'LR-5')
    """
    present = set(additional)
    unknown = present - {"capsule", "washout", "threshold_growth"}
    if unknown:
        raise ValueError(
            f"additional: invalid major feature(s) {sorted(unknown)}; "
            "expected 'capsule', 'washout' or 'threshold_growth'"
        )
    count = len(present)

    if not nonrim_aphe:
        if count == 0:
            return "LR-3"
        if count == 1:
            return "LR-3" if size_mm < 20 else "LR-4"
        return "LR-4"

    if size_mm < 10:
        return "LR-3" if count == 0 else "LR-4"
    if size_mm < 20:
        if count == 0:
            return "LR-3"
        if count == 1:
            return "LR-4" if present == {"capsule"} else "LR-5"
        return "LR-5"
    return "LR-4" if count == 0 else "LR-5"


def adjust_for_ancillary(category: str, *, malignancy: bool, benignity: bool) -> str:
    """Apply the v2018 ancillary-feature adjustment to a diagnostic-table category.

    Features favouring malignancy (in general or HCC in particular) upgrade by
    one category up to LR-4, never to LR-5. Features favouring benignity
    downgrade by one. Features of both kinds leave the category unchanged.

    Examples
    --------
    >>> adjust_for_ancillary("LR-4", malignancy=True, benignity=False)
    'LR-4'
    >>> adjust_for_ancillary("LR-3", malignancy=False, benignity=True)
    'LR-2'
    """
    if category not in _ORDER:
        raise ValueError(f"invalid category {category!r}; expected one of {_ORDER}")
    position = _ORDER.index(category)
    if malignancy and not benignity and category in ("LR-2", "LR-3"):
        return _ORDER[position + 1]
    if benignity and not malignancy and category != "LR-2":
        return _ORDER[position - 1]
    return category


def lirads_category(
    size_mm: float,
    aphe: str,
    washout: str,
    capsule: bool | str,
    threshold_growth: bool | str = False,
    *,
    ancillary_malignancy: Iterable[str] = (),
    ancillary_hcc: Iterable[str] = (),
    ancillary_benign: Iterable[str] = (),
    lr_m_features: Iterable[str] = (),
    tumour_in_vein: bool = False,
) -> str:
    """Compute the CT/MRI LI-RADS v2018 category of an untreated observation.

    The steps run in the v2018 order. Tumour in vein gives LR-TIV. A targetoid
    mass (rim APHE, peripheral washout, or a targetoid LR-M feature) gives LR-M.
    Otherwise the diagnostic table decides, except that a nontargetoid LR-M
    feature gives LR-M unless the table gave LR-5. Last, ancillary features
    adjust the category by one.

    Parameters
    ----------
    size_mm : float
        Observation size in millimetres, positive and finite.
    aphe : {"absent", "nonrim", "rim"}
        Arterial phase hyperenhancement.
    washout : {"absent", "nonperipheral", "peripheral"}
        Washout appearance.
    capsule, threshold_growth : bool or {"present", "absent"}
        Enhancing capsule and threshold growth.
    ancillary_malignancy, ancillary_hcc, ancillary_benign, lr_m_features : iterable of str
        Names of the features present in each group (see
        :func:`study.lirads.features_in_group`).
    tumour_in_vein : bool
        Definite tumour in vein.

    Returns
    -------
    str
        ``"LR-2"`` (only by a benign ancillary downgrade of LR-3), ``"LR-3"``,
        ``"LR-4"``, ``"LR-5"``, ``"LR-M"`` or ``"LR-TIV"``.

    Raises
    ------
    ValueError
        For a size that is not positive and finite, an unknown APHE or washout
        value, or a feature name outside its group.

    Examples
    --------
    >>> lirads_category(22, "nonrim", "nonperipheral", False)
    'LR-5'
    >>> lirads_category(8, "rim", "absent", False)
    'LR-M'
    >>> lirads_category(
    ...     15, "absent", "absent", False, ancillary_malignancy=["restricted_diffusion"])
    'LR-4'
    """
    if isinstance(size_mm, bool) or not isinstance(size_mm, int | float):
        raise ValueError(f"size_mm: expected a number of millimetres, got {size_mm!r}")
    if not math.isfinite(size_mm) or size_mm <= 0:
        raise ValueError(f"size_mm: expected a positive, finite size in mm, got {size_mm!r}")
    if aphe not in APHE_VALUES:
        raise ValueError(f"aphe: invalid value {aphe!r}; expected one of {APHE_VALUES}")
    if washout not in WASHOUT_VALUES:
        raise ValueError(f"washout: invalid value {washout!r}; expected one of {WASHOUT_VALUES}")
    has_capsule = _flag(capsule, "capsule")
    has_growth = _flag(threshold_growth, "threshold_growth")
    malignancy = _names(ancillary_malignancy, "ancillary_malignancy", "ancillary_malignancy")
    hcc = _names(ancillary_hcc, "ancillary_hcc", "ancillary_hcc")
    benign = _names(ancillary_benign, "ancillary_benign", "ancillary_benign")
    lr_m = _names(lr_m_features, "lr_m", "lr_m_features")

    if tumour_in_vein:
        return "LR-TIV"
    targetoid = any(FEATURES[name].targetoid for name in lr_m)
    if aphe == "rim" or washout == "peripheral" or targetoid:
        return "LR-M"

    additional = [
        name
        for name, present in (
            ("capsule", has_capsule),
            ("washout", washout == "nonperipheral"),
            ("threshold_growth", has_growth),
        )
        if present
    ]
    category = diagnostic_table(size_mm, aphe == "nonrim", additional)
    if lr_m and category != "LR-5":
        return "LR-M"
    return adjust_for_ancillary(category, malignancy=bool(malignancy | hcc), benignity=bool(benign))


def category_from_answers(
    answers: Mapping[str, str], size_mm: float, *, tumour_in_vein: bool = False
) -> str | None:
    """Compute the v2018 category from one reader's feature answers.

    ``indeterminate`` is read as absent, as LI-RADS prescribes for an uncertain
    major feature; an ancillary or LR-M feature counts only when ``present``.
    A missing ``threshold_growth`` counts as absent because it needs a prior
    exam, which readers in this project are not shown.

    Parameters
    ----------
    answers : mapping of str to str
        Feature name to answer, as :func:`study.answers.parse_answer` returns
        them without the confidences.
    size_mm : float
        Observation size in millimetres; readers do not report it.
    tumour_in_vein : bool
        Definite tumour in vein.

    Returns
    -------
    str or None
        The category, or None when ``aphe``, ``washout`` or
        ``enhancing_capsule`` is missing from ``answers``.

    Examples
    --------
    >>> category_from_answers(
    ...     {"aphe": "nonrim", "washout": "indeterminate", "enhancing_capsule": "present"}, 15)
    'LR-4'
    >>> category_from_answers({"aphe": "nonrim"}, 15) is None
    True
    """
    if any(name not in answers for name in ("aphe", "washout", "enhancing_capsule")):
        return None

    def major(name: str) -> str:
        value = answers[name]
        return ABSENT if value == INDETERMINATE else value

    present = {name for name, value in answers.items() if value == PRESENT and name in FEATURES}
    by_group = {
        group: sorted(name for name in present if FEATURES[name].group == group)
        for group in ("ancillary_malignancy", "ancillary_hcc", "ancillary_benign", "lr_m")
    }
    return lirads_category(
        size_mm,
        major("aphe"),
        major("washout"),
        major("enhancing_capsule"),
        major("threshold_growth") if "threshold_growth" in answers else False,
        ancillary_malignancy=by_group["ancillary_malignancy"],
        ancillary_hcc=by_group["ancillary_hcc"],
        ancillary_benign=by_group["ancillary_benign"],
        lr_m_features=by_group["lr_m"],
        tumour_in_vein=tumour_in_vein,
    )
