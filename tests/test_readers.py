"""The local readers: simulated error rates per feature and strategy, quantitative thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from study.answers import parse_answer
from study.lirads import FEATURES, INDETERMINATE
from study.prompts import Exemplar, build_prompt
from study.protocol import QuantitativeReaderSpec, SimulatedReaderSpec
from study.readers import QuantitativeReader, ReadRequest, SimulatedReader

DYNAMIC = ("t1_pre", "arterial", "portal_venous", "delayed")
TRUTH = {
    "aphe": "nonrim",
    "washout": "nonperipheral",
    "enhancing_capsule": "present",
    "t2_hyperintensity": "absent",
}


class Image:
    """A synthetic rendered image: liver at 100, the lesion disc at ``lesion`` (0-255)."""

    def __init__(self, sequence: str, lesion: int) -> None:
        rows, columns = np.mgrid[:96, :96]
        self.mask = (rows - 48) ** 2 + (columns - 48) ** 2 < 14**2
        self.pixels = np.full((96, 96), 100, dtype=np.uint8)
        self.pixels[self.mask] = lesion
        self.sequence = sequence
        self.sha256 = f"{sequence}-{lesion}"
        self.png = b""


def request(strategy: str, sequences, images=(), exemplars=(), lesion="L1", replicate=0):
    features = tuple(TRUTH)
    return ReadRequest(
        lesion_id=lesion,
        features=features,
        sequences=tuple(sequences),
        strategy=strategy,
        replicate=replicate,
        prompt=build_prompt(strategy, features, tuple(sequences), images, exemplars),
        images=tuple(images),
        exemplars=tuple(exemplars),
        truth=TRUTH,
    )


def simulated(rates) -> SimulatedReader:
    return SimulatedReader(
        SimulatedReaderSpec(kind="simulated", name="sim", seed=3, error_rates=rates)
    )


def test_simulated_rates_by_strategy():
    reader = simulated({"default": 0.0, "aphe": {"zero_shot": 0.0, "chain_of_thought": 1.0}})
    for index in range(20):
        exact = parse_answer(
            reader.read(request("zero_shot", DYNAMIC, lesion=f"L{index}")).text, tuple(TRUTH)
        )
        wrong = parse_answer(
            reader.read(request("chain_of_thought", DYNAMIC, lesion=f"L{index}")).text, tuple(TRUTH)
        )
        assert exact.answers["aphe"][0] == "nonrim"
        assert wrong.answers["aphe"][0] != "nonrim"
        assert wrong.answers["washout"][0] == "nonperipheral"


def test_simulated_error_share_matches_rate():
    reader = simulated({"default": 0.3})
    answers = [
        parse_answer(
            reader.read(request("zero_shot", DYNAMIC, lesion=f"L{index}")).text, tuple(TRUTH)
        )
        for index in range(400)
    ]
    wrong = np.mean([parsed.answers["washout"][0] != "nonperipheral" for parsed in answers])
    # 400 draws at p = 0.3: the standard error is 0.023, so 0.3 +/- 0.09 is four of them.
    assert wrong == pytest.approx(0.3, abs=0.09)


def test_simulated_reproducible_from_seed():
    first = simulated({"default": 0.5}).read(request("zero_shot", DYNAMIC, replicate=2)).text
    second = simulated({"default": 0.5}).read(request("zero_shot", DYNAMIC, replicate=2)).text
    other = [
        simulated({"default": 0.5}).read(request("zero_shot", DYNAMIC, replicate=r)).text
        for r in range(3, 9)
    ]
    assert first == second
    assert any(text != first for text in other)


def test_simulated_writes_model_format():
    text = simulated({"default": 0.0}).read(request("chain_of_thought", DYNAMIC)).text
    parsed = parse_answer(text, tuple(TRUTH))

    assert not text.startswith("{")
    assert parsed.outcome == "valid"
    assert "json_in_code_fence" in parsed.repairs
    # T2 was not shown, so its answer is indeterminate whatever the truth.
    assert parsed.answers["t2_hyperintensity"][0] == INDETERMINATE


def test_unknown_feature_rate_rejected():
    with pytest.raises(ValueError, match="unknown feature"):
        SimulatedReaderSpec(kind="simulated", name="s", error_rates={"apeh": 0.1})
    with pytest.raises(ValueError, match="probability"):
        SimulatedReaderSpec(kind="simulated", name="s", error_rates={"aphe": {"zero_shot": 1.5}})


def dynamic_images(arterial: int, pre: int = 100, venous: int = 100) -> tuple[Image, ...]:
    return (
        Image("t1_pre", pre),
        Image("arterial", arterial),
        Image("portal_venous", venous),
        Image("delayed", venous),
    )


def quantitative_answers(strategy, images, exemplars=()):
    reader = QuantitativeReader(QuantitativeReaderSpec(kind="quantitative", name="q"))
    text = reader.read(request(strategy, DYNAMIC, images, exemplars)).text
    return text, parse_answer(text, tuple(TRUTH)).answers


def test_quantitative_unshown_sequence_indeterminate():
    _, answers = quantitative_answers("zero_shot", dynamic_images(arterial=200))

    assert answers["aphe"][0] == "nonrim"
    assert answers["t2_hyperintensity"][0] == INDETERMINATE


def test_quantitative_few_shot_fits_threshold():
    # A lesion 16 grey levels (0.063 display units) brighter than liver on arterial stays under
    # the fixed 0.10 threshold. Exemplars at +0 (absent) and +30 (present) move it to 0.059.
    lesion = dynamic_images(arterial=116)
    exemplars = (
        Exemplar("E1", dynamic_images(arterial=100), {**TRUTH, "aphe": "absent"}),
        Exemplar("E2", dynamic_images(arterial=130), {**TRUTH, "aphe": "nonrim"}),
    )
    _, fixed = quantitative_answers("zero_shot", lesion)
    _, fitted = quantitative_answers("few_shot", lesion, exemplars)

    assert fixed["aphe"][0] == "absent"
    assert fitted["aphe"][0] == "nonrim"


def test_quantitative_reasoning_before_json():
    text, answers = quantitative_answers("chain_of_thought", dynamic_images(arterial=200))
    measurements, fenced = text.split("```json", 1)

    assert "arterial_gain" in measurements
    assert json.loads(fenced.strip().removesuffix("```"))["features"]["aphe"]["answer"] == "nonrim"
    assert answers["aphe"][0] == "nonrim"
    assert set(FEATURES) >= set(answers)
