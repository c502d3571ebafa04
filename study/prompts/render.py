"""Rendering a strategy's Jinja2 templates into a :class:`~study.prompts.Prompt`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from study.lirads import FEATURES, INDETERMINATE
from study.prompts.messages import TEMPLATE_VERSION, Exemplar, ImagePart, Prompt
from study.prompts.montage import build_montage
from study.prompts.spec import PromptsSpec, Strategy, resolve_strategy

TEMPLATE_NAMES: tuple[str, ...] = (
    "system.j2",
    "task.j2",
    "exemplar.j2",
    "question.j2",
    "image_label.j2",
)
"""Templates under ``study/templates``, in the order their sources are hashed."""

_VERSION_LINE = re.compile(r"^\{#-?\s*version:\s*(\S+)\s*-?#\}")


def _template_folder() -> Path:
    return Path(str(resources.files("study") / "templates"))


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_folder()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _template_source(name: str) -> bytes:
    return (_template_folder() / name).read_bytes()


@cache
def templates_sha256() -> str:
    """Return the SHA-256 of every prompt template's source, in :data:`TEMPLATE_NAMES` order."""
    digest = hashlib.sha256()
    for name in TEMPLATE_NAMES:
        digest.update(name.encode("utf-8"))
        digest.update(_template_source(name))
    return digest.hexdigest()


@cache
def template_versions() -> dict[str, str]:
    """Return each template's version, read from its first line ``{#- version: N -#}``.

    Examples
    --------
    >>> template_versions()["system.j2"]
    '1'
    """
    versions = {}
    for name in TEMPLATE_NAMES:
        first_line = _template_source(name).decode("utf-8").splitlines()[0]
        match = _VERSION_LINE.match(first_line)
        if match is None:
            raise ValueError(f"template {name} does not start with '{{#- version: N -#}}'")
        versions[name] = match.group(1)
    return versions


@cache
def feature_definitions() -> dict[str, str]:
    """Return the LI-RADS definition of each feature, shipped in ``definitions.yaml``.

    Examples
    --------
    >>> set(feature_definitions()) == set(FEATURES)
    True
    """
    text = (resources.files("study.prompts") / "definitions.yaml").read_text(encoding="utf-8")
    return {str(name): str(value) for name, value in yaml.safe_load(text).items()}


def _render(name: str, context: dict[str, Any]) -> str:
    return _environment().get_template(name).render(context).strip()


def _image_parts(images: Sequence[Any], *, layout: str, labels: bool) -> list[str | ImagePart]:
    if layout == "montage":
        return [build_montage(images, labels=labels)]
    parts: list[str | ImagePart] = []
    for image in images:
        if labels:
            parts.append(_render("image_label.j2", {"sequence": image.sequence}))
        parts.append(ImagePart(image.sequence, image.sha256, image.png))
    return parts


def build_prompt(
    strategy: str | Strategy,
    features: tuple[str, ...],
    sequences: tuple[str, ...],
    images: Sequence[Any],
    exemplars: tuple[Exemplar, ...] = (),
    *,
    prompts: PromptsSpec | None = None,
) -> Prompt:
    """Render the prompt of one lesion under one strategy.

    Parameters
    ----------
    strategy
        A strategy name (shipped, or defined in ``prompts.strategies``) or a
        resolved :class:`Strategy`.
    features
        Feature names to ask about, in order.
    sequences
        The sequences shown, in the order their images appear.
    images
        Rendered images of the lesion (objects with ``sequence``, ``sha256``,
        ``png`` and, for a montage, ``pixels``), one per sequence.
    exemplars
        Worked examples; used only by strategies with ``exemplars``.
    prompts
        The protocol's ``prompts`` section: system role, layout, labels and
        strategy fields. The shipped defaults when omitted.

    Examples
    --------
    >>> prompt = build_prompt("no_image", ("aphe",), ("t1_pre", "arterial"), images=())
    >>> prompt.shows_images, prompt.parts[-1]
    (False, 'Now the lesion to read (t1_pre, arterial):')
    """
    prompts = prompts or PromptsSpec()
    spec = strategy if isinstance(strategy, Strategy) else resolve_strategy(strategy, prompts)
    used_exemplars = exemplars if spec.exemplars else ()
    definitions = feature_definitions()
    context = {
        "features": [
            {
                "name": name,
                "label": FEATURES[name].label,
                "answers": FEATURES[name].answers,
                "definition": definitions[name],
            }
            for name in features
        ],
        "definitions": spec.definitions,
        "reasoning": spec.reasoning,
        "sequences": sequences,
        "labels": prompts.labels,
        "layout": prompts.layout,
        "exemplar_count": len(used_exemplars),
    }
    system = _render("system.j2", context) if spec.system_role else ""
    parts: list[str | ImagePart] = [_render("task.j2", context)]

    for index, exemplar in enumerate(used_exemplars, start=1):
        # The task asks for "indeterminate" when the sequences shown cannot judge a feature,
        # so the examples answer the same way and none of them teaches guessing.
        answers = {
            name: {
                "answer": exemplar.answers.get(name, INDETERMINATE)
                if FEATURES[name].judgeable(sequences)
                else INDETERMINATE
            }
            for name in features
        }
        answer_json = json.dumps({"features": answers}, sort_keys=True)
        if spec.images:
            header = {"index": index, "section": "images", "answer_json": ""}
            parts.append(_render("exemplar.j2", header))
            parts.extend(
                _image_parts(exemplar.images, layout=prompts.layout, labels=prompts.labels)
            )
        answer = {"index": index, "section": "answer", "answer_json": answer_json}
        parts.append(_render("exemplar.j2", answer))

    parts.append(_render("question.j2", context))
    if spec.images:
        parts.extend(_image_parts(images, layout=prompts.layout, labels=prompts.labels))
    return Prompt(
        strategy=spec.name,
        system=system,
        parts=tuple(parts),
        template_sha256=templates_sha256(),
        template_version=TEMPLATE_VERSION,
        spec=spec,
        exemplar_ids=tuple(exemplar.lesion_id for exemplar in used_exemplars),
        presentation={"layout": prompts.layout, "labels": prompts.labels},
        template_versions=template_versions(),
    )
