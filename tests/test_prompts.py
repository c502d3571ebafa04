"""Prompt strategies: exemplar draws, prompt hashes, strategy contents, self-consistency, limits."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from study.answers import parse_answer
from study.data.cohort import load_cohort
from study.data.phantom import build_phantom
from study.errors import UserInputError
from study.lirads import FEATURES, INDETERMINATE
from study.prompts import (
    EXEMPLAR_RULES,
    Exemplar,
    PromptBuilder,
    PromptsSpec,
    StrategySpec,
    aggregate_samples,
    build_prompt,
    check_request_limits,
    draw_exemplars,
    feature_definitions,
    resolve_strategy,
    shipped_strategies,
)
from study.prompts import render as render_module
from study.protocol import Protocol, load_protocol

from .conftest import REPOSITORY

SEQUENCES = ("t1_pre", "arterial", "portal_venous")
FEATURE_NAMES = ("aphe", "washout", "enhancing_capsule", "restricted_diffusion")


def fake_image(lesion_id: str, sequence: str, size: int = 16) -> SimpleNamespace:
    """A stand-in for a rendered image: distinct pixels and hash per lesion and sequence."""
    digest = hashlib.sha256(f"{lesion_id}/{sequence}".encode()).digest()
    pixels = np.full((size, size), digest[0], dtype=np.uint8)
    return SimpleNamespace(
        sequence=sequence, sha256=digest.hex(), png=digest, pixels=pixels, mask=pixels > 0
    )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = build_phantom(tmp_path_factory.mktemp("cohort"), patients=7, seed=4)
    return load_cohort(folder)


def protocol_with(**sections) -> Protocol:
    mapping = {
        "id": "p",
        "title": "t",
        "cohort": {"path": "c"},
        "features": list(FEATURE_NAMES),
        "grid": {
            "readers": [{"kind": "simulated", "name": "s"}],
            "strategies": list(shipped_strategies()),
            "sequences": [list(SEQUENCES)],
        },
    }
    mapping.update(sections)
    return Protocol.model_validate(mapping)


def test_few_shot_draw_only_exemplar_patients(cohort):
    evaluation_patients = {lesion.patient_id for lesion in cohort.split("evaluation")}
    assert evaluation_patients
    for rule in EXEMPLAR_RULES:
        for seed in range(3):
            protocol = protocol_with(few_shot={"k": 3, "seed": seed, "rule": rule})
            builder = PromptBuilder(protocol, cohort, fake_image)
            for lesion in cohort.split("evaluation"):
                exemplars = builder.exemplars(lesion, SEQUENCES)
                assert len(exemplars) == 3
                for exemplar in exemplars:
                    drawn = cohort.lesions[exemplar.lesion_id]
                    assert drawn.split == "exemplar"
                    assert drawn.patient_id not in evaluation_patients


def test_same_seed_same_exemplars(cohort):
    lesions = cohort.split("evaluation")
    for rule in EXEMPLAR_RULES:
        protocol = protocol_with(few_shot={"k": 2, "seed": 9, "rule": rule})
        first = [
            PromptBuilder(protocol, cohort, fake_image).exemplars(x, SEQUENCES) for x in lesions
        ]
        again = [
            PromptBuilder(protocol, cohort, fake_image).exemplars(x, SEQUENCES) for x in lesions
        ]
        assert [[e.lesion_id for e in row] for row in first] == [
            [e.lesion_id for e in row] for row in again
        ]

    # The seed matters: over every lesion, some other seed draws other random exemplars.
    candidates = [lesion.lesion_id for lesion in cohort.split("exemplar")]
    draws = {
        seed: [draw_exemplars(candidates, x.lesion_id, k=2, seed=seed) for x in lesions]
        for seed in range(5)
    }
    assert len({tuple(map(tuple, draw)) for draw in draws.values()}) > 1


def test_nearest_type_prefers_same_type():
    types = {"E1": "HCC", "E2": "cyst", "E3": "HCC", "E4": "FNH", "L1": "HCC"}
    for seed in range(5):
        chosen = draw_exemplars(
            ["E1", "E2", "E3", "E4"], "L1", k=2, seed=seed, rule="nearest_type", lesion_types=types
        )
        assert chosen == ["E1", "E3"]


def test_balanced_covers_each_answer():
    # Three candidates answer "absent" and one each "nonrim" and "rim": a balanced draw of
    # three shows every category, whatever the seed.
    answers = {
        "A1": {"aphe": "absent"},
        "A2": {"aphe": "absent"},
        "A3": {"aphe": "absent"},
        "N1": {"aphe": "nonrim"},
        "R1": {"aphe": "rim"},
    }
    for seed in range(10):
        chosen = draw_exemplars(
            list(answers), "L1", k=3, seed=seed, rule="balanced", answers=answers
        )
        assert {answers[item]["aphe"] for item in chosen} == {"absent", "nonrim", "rim"}


def build(strategy="zero_shot", features=FEATURE_NAMES, sequences=SEQUENCES, images=None, **kw):
    images = images if images is not None else [fake_image("L1", name) for name in sequences]
    exemplars = kw.pop("exemplars", ())
    return build_prompt(strategy, tuple(features), tuple(sequences), images, exemplars, **kw)


def exemplar(lesion_id: str) -> Exemplar:
    images = tuple(fake_image(lesion_id, name) for name in SEQUENCES)
    return Exemplar(lesion_id, images, {name: "absent" for name in FEATURE_NAMES})


def test_prompt_hash_stable_for_equal_inputs():
    assert build().sha256 == build().sha256
    few_shot = build("few_shot", exemplars=(exemplar("E1"),))
    assert few_shot.sha256 == build("few_shot", exemplars=(exemplar("E1"),)).sha256
    # The description is documentation only: it is not sent and does not change the hash.
    described = PromptsSpec(strategies={"zero_shot": StrategySpec(description="other words")})
    assert build(prompts=described).sha256 == build().sha256


def test_prompt_hash_changes_with_each_input():
    base = build().sha256
    changed = {
        "features": build(features=FEATURE_NAMES[:2]).sha256,
        "sequences": build(sequences=SEQUENCES[:2]).sha256,
        "image": build(images=[fake_image("L2", name) for name in SEQUENCES]).sha256,
        "strategy": build("chain_of_thought").sha256,
        "temperature": build(
            prompts=PromptsSpec(strategies={"zero_shot": StrategySpec(temperature=0.5)})
        ).sha256,
        "system_role": build(prompts=PromptsSpec(system_role=False)).sha256,
        "labels": build(prompts=PromptsSpec(labels=False)).sha256,
        "layout": build(prompts=PromptsSpec(layout="montage")).sha256,
    }
    for name, value in changed.items():
        assert value != base, name
    first = build("few_shot", exemplars=(exemplar("E1"),)).sha256
    assert build("few_shot", exemplars=(exemplar("E2"),)).sha256 != first


def test_prompt_hash_changes_with_template(tmp_path, monkeypatch):
    folder = tmp_path / "templates"
    shutil.copytree(REPOSITORY / "study" / "templates", folder)
    caches = (render_module._environment, render_module.templates_sha256)
    caches += (render_module.template_versions,)

    def use_folder():
        monkeypatch.setattr(render_module, "_template_folder", lambda: folder)
        for cached in caches:
            cached.cache_clear()

    try:
        use_folder()
        original = build()
        assert build().sha256 == original.sha256

        # A comment changes the template source but not the text sent: the hash still changes.
        task = folder / "task.j2"
        task.write_text(task.read_text() + "{# reworded #}\n")
        use_folder()
        commented = build()
        assert commented.parts == original.parts
        assert commented.template_sha256 != original.template_sha256
        assert commented.sha256 != original.sha256
    finally:
        monkeypatch.undo()
        for cached in caches:
            cached.cache_clear()


def test_template_versions_recorded():
    record = build().record()
    assert set(record["template_versions"]) == set(render_module.TEMPLATE_NAMES)
    assert record["template_sha256"] == render_module.templates_sha256()
    keyed = build().keyed_messages()
    assert keyed[-1]["prompt"] == record


def test_strategy_contents():
    zero = build("zero_shot")
    no_image = build("no_image")
    assert len(zero.images) == len(SEQUENCES)
    assert no_image.images == ()
    # Without per-image labels, the no-image control sends exactly the zero-shot text.
    unlabelled = PromptsSpec(labels=False)
    zero_text = [part for part in build(prompts=unlabelled).parts if isinstance(part, str)]
    assert zero_text == list(build("no_image", prompts=unlabelled).parts)
    assert not no_image.shows_images

    definitions = "\n".join(part for part in build("definitions").parts if isinstance(part, str))
    for name in FEATURE_NAMES:
        assert feature_definitions()[name] in definitions
    assert "Definition:" not in "\n".join(p for p in zero.parts if isinstance(p, str))

    thought = build("chain_of_thought")
    assert thought.asks_reasoning
    assert not zero.asks_reasoning
    assert '"reasoning"' in thought.parts[0]

    consistency = resolve_strategy("self_consistency")
    assert consistency.samples > 1
    assert consistency.temperature is not None

    off = build(prompts=PromptsSpec(system_role=False)).openai_messages()
    assert [message["role"] for message in off] == ["user"]
    assert [message["role"] for message in zero.openai_messages()] == ["system", "user"]


def test_every_feature_has_definition():
    definitions = feature_definitions()
    assert set(definitions) == set(FEATURES)
    for name, text in definitions.items():
        assert len(text.split()) >= 8, name


def test_exemplar_answer_indeterminate_when_unjudgeable():
    prompt = build("few_shot", exemplars=(exemplar("E1"),))
    answer = next(part for part in prompt.parts if isinstance(part, str) and "example 1:" in part)
    # Restricted diffusion needs DWI and ADC, which these sequences do not include.
    assert '"restricted_diffusion": {"answer": "indeterminate"}' in answer
    assert '"aphe": {"answer": "absent"}' in answer
    assert prompt.exemplar_ids == ("E1",)


def test_chain_of_thought_parses_final_answer():
    text = (
        '{"reasoning": "aphe: the rim looks brighter, but overall it is nonrim", '
        '"features": {"aphe": {"answer": "nonrim", "confidence": 70}}}'
    )
    parsed = parse_answer(text, ["aphe"])
    assert parsed.outcome == "valid"
    assert parsed.answers["aphe"][0] == "nonrim"


def test_montage_layout_sends_one_image():
    prompt = build(prompts=PromptsSpec(layout="montage"))
    assert len(prompt.images) == 1
    assert prompt.images[0].sequence == "+".join(SEQUENCES)
    unlabelled = build(prompts=PromptsSpec(layout="montage", labels=False))
    assert unlabelled.images[0].sha256 != prompt.images[0].sha256
    assert "t1_pre" not in "\n".join(p for p in unlabelled.parts if isinstance(p, str))


def test_aggregate_samples_majority_and_ties():
    samples = [
        {"aphe": ("nonrim", 90), "washout": ("present", 50), "fat_in_mass": ("absent", 10)},
        {"aphe": ("nonrim", 80), "washout": ("absent", 50), "fat_in_mass": (INDETERMINATE, 0)},
        {"aphe": ("rim", 70), "washout": (None, None)},
        {"aphe": ("nonrim", 60)},
    ]
    answers, confidence = aggregate_samples(samples, ["aphe", "washout", "fat_in_mass", "t2"])
    assert answers["aphe"] == "nonrim"
    assert confidence["aphe"] == 0.75
    # One vote each for present and absent: the tie goes to the first category, absent.
    assert answers["washout"] == "absent"
    assert confidence["washout"] == 0.25
    # A tie between absent and indeterminate goes to indeterminate.
    assert answers["fat_in_mass"] == INDETERMINATE
    assert answers["t2"] is None
    assert confidence["t2"] == 0.0


def test_aggregate_samples_order_invariant():
    rng = np.random.default_rng(3)
    categories = FEATURES["aphe"].answers
    samples = [{"aphe": (str(rng.choice(categories)), 50)} for _ in range(7)]
    expected = aggregate_samples(samples, ["aphe"])
    for _ in range(10):
        shuffled = [samples[i] for i in rng.permutation(len(samples))]
        assert aggregate_samples(shuffled, ["aphe"]) == expected


def test_demo_protocol_strategies_still_load():
    protocol = load_protocol(REPOSITORY / "protocols" / "demo.yaml")
    assert protocol.grid.strategies == ["zero_shot", "few_shot", "chain_of_thought"]
    shipped = load_protocol(REPOSITORY / "protocols" / "strategies.yaml")
    assert set(shipped.grid.strategies) == set(shipped_strategies())


def write_protocol(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


PROTOCOL_HEAD = """
id: p
title: t
cohort: {path: c}
features: [aphe]
"""


def test_unknown_strategy_is_user_error(tmp_path):
    path = write_protocol(
        tmp_path,
        PROTOCOL_HEAD
        + "grid: {readers: [{kind: simulated, name: s}], strategies: [zero_shot, tree_of_thought],"
        " sequences: [[t1_pre, arterial]]}\n",
    )
    with pytest.raises(UserInputError, match="tree_of_thought"):
        load_protocol(path)


def test_protocol_defines_new_strategy(tmp_path):
    path = write_protocol(
        tmp_path,
        PROTOCOL_HEAD
        + "grid: {readers: [{kind: simulated, name: s}], strategies: [cot_definitions],"
        " sequences: [[t1_pre, arterial]]}\n"
        "prompts: {strategies: {cot_definitions: {reasoning: true, definitions: true}}}\n",
    )
    protocol = load_protocol(path)
    strategy = resolve_strategy("cot_definitions", protocol.prompts)
    assert strategy.reasoning
    assert strategy.definitions
    assert strategy.images


def test_strategy_override_rejects_unknown_field(tmp_path):
    path = write_protocol(
        tmp_path,
        PROTOCOL_HEAD + "grid: {readers: [{kind: simulated, name: s}], strategies: [few_shot],"
        " sequences: [[t1_pre, arterial]]}\n"
        "prompts: {strategies: {few_shot: {shots: 3}}}\n",
    )
    with pytest.raises(UserInputError, match="shots"):
        load_protocol(path)


def test_request_limits_name_the_cell(cohort):
    reader = {
        "kind": "openai",
        "name": "small",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "max_images_per_request": 3,
    }
    protocol = protocol_with(
        grid={
            "readers": [reader],
            "strategies": ["zero_shot", "few_shot", "no_image"],
            "sequences": [list(SEQUENCES)],
        }
    )
    with pytest.raises(UserInputError) as raised:
        check_request_limits(protocol, cohort)
    message = str(raised.value)
    assert "reader 'small', strategy few_shot" in message
    assert "9 images per request" in message
    assert "strategy zero_shot" not in message

    montage = protocol_with(grid=protocol.grid.model_dump(), prompts={"layout": "montage"})
    check_request_limits(montage, cohort)


def test_request_byte_limit(cohort):
    from study.prompts.limits import check_request_limits as check

    reader = {
        "kind": "openai",
        "name": "tiny",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "max_request_bytes": 2000,
    }
    protocol = protocol_with(
        grid={
            "readers": [reader],
            "strategies": ["no_image", "zero_shot"],
            "sequences": [["t1_pre"]],
        },
        rendering={"size": 64},
    )
    with pytest.raises(UserInputError) as raised:
        check(protocol, cohort)
    message = str(raised.value)
    assert "strategy zero_shot" in message
    assert "max_request_bytes 2000" in message
    assert "strategy no_image" not in message
