"""Prompt strategies rendered from Jinja2 templates into the exact messages sent.

A :class:`Prompt` is an ordered list of text and image parts plus a system
line. The messages a model receives are built from it, and so is the request
key, with each image's SHA-256 in place of its bytes. The SHA-256 of the
template sources travels with every prompt, so a changed template changes the
key of every request that used it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2
import numpy as np

from study.lirads import FEATURES

TEMPLATE_VERSION = "1"
_TEMPLATE_NAMES = ("system.j2", "task.j2", "exemplar.j2", "question.j2")


@dataclass(frozen=True)
class ImagePart:
    """One rendered image in a prompt."""

    sequence: str
    sha256: str
    png: bytes


@dataclass(frozen=True)
class Exemplar:
    """A worked example for few-shot prompts: a lesion's images and its reference answers."""

    lesion_id: str
    images: tuple[Any, ...]
    answers: dict[str, str]


@dataclass(frozen=True)
class Prompt:
    """The messages of one request, before images are encoded."""

    strategy: str
    system: str
    parts: tuple[str | ImagePart, ...]
    template_sha256: str
    template_version: str = TEMPLATE_VERSION

    def openai_messages(self, *, detail: str = "auto") -> list[dict[str, Any]]:
        """Return chat-completions messages with images as base64 PNG data URLs."""
        content = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                url = "data:image/png;base64," + base64.b64encode(part.png).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
            else:
                content.append({"type": "text", "text": part})
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": content},
        ]

    def keyed_messages(self) -> list[dict[str, Any]]:
        """Return the messages with each image replaced by its sequence and SHA-256."""
        content = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image", "sequence": part.sequence, "sha256": part.sha256})
            else:
                content.append({"type": "text", "text": part})
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": content},
        ]

    def text(self) -> str:
        """Return the prompt as readable text, images shown as names and hashes."""
        lines = [f"[system] {self.system}"]
        for part in self.parts:
            if isinstance(part, ImagePart):
                lines.append(f"[image {part.sequence} sha256:{part.sha256[:16]}]")
            else:
                lines.append(part)
        return "\n".join(lines)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("study", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@cache
def templates_sha256() -> str:
    """Return the SHA-256 of every prompt template's source, in a fixed order."""
    digest = hashlib.sha256()
    folder = resources.files("study") / "templates"
    for name in _TEMPLATE_NAMES:
        digest.update(name.encode("utf-8"))
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _image_parts(images) -> list[ImagePart]:
    return [ImagePart(image.sequence, image.sha256, image.png) for image in images]


def build_prompt(
    strategy: str,
    features: tuple[str, ...],
    sequences: tuple[str, ...],
    images,
    exemplars: tuple[Exemplar, ...] = (),
) -> Prompt:
    """Render the prompt of one lesion under one strategy.

    Parameters
    ----------
    strategy
        ``zero_shot``, ``few_shot`` or ``chain_of_thought``.
    features
        Feature names to ask about, in order.
    sequences
        The sequences shown, in the order their images appear.
    images
        Rendered images of the lesion (objects with ``sequence``, ``sha256``
        and ``png``), one per sequence.
    exemplars
        Worked examples, used by ``few_shot`` only.
    """
    environment = _environment()
    used_exemplars = exemplars if strategy == "few_shot" else ()
    context = {
        "strategy": strategy,
        "features": [FEATURES[name] for name in features],
        "sequences": sequences,
        "exemplars": used_exemplars,
    }
    system = environment.get_template("system.j2").render(context).strip()
    parts: list[str | ImagePart] = [environment.get_template("task.j2").render(context).strip()]

    for index, exemplar in enumerate(used_exemplars, start=1):
        answers = {name: {"answer": exemplar.answers[name]} for name in features}
        answer_json = json.dumps({"features": answers}, sort_keys=True)
        parts.extend(_image_parts(exemplar.images))
        text = environment.get_template("exemplar.j2").render(index=index, answer_json=answer_json)
        parts.append(text.strip())

    parts.append(environment.get_template("question.j2").render(context).strip())
    parts.extend(_image_parts(images))
    return Prompt(strategy, system, tuple(parts), templates_sha256())


def draw_exemplars(candidates: list[str], lesion_id: str, *, k: int, seed: int) -> list[str]:
    """Draw ``k`` exemplar lesion ids for one evaluation lesion, reproducibly.

    The draw depends only on the seed, the lesion id and the candidate set, so
    every cell shows a lesion the same exemplars.

    Examples
    --------
    >>> draw_exemplars(["E1", "E2", "E3"], "L7", k=2, seed=1) == draw_exemplars(
    ...     ["E3", "E1", "E2"], "L7", k=2, seed=1)
    True
    """
    pool = sorted(candidates)
    lesion_key = int.from_bytes(hashlib.sha256(lesion_id.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng([seed, lesion_key])
    chosen = rng.choice(len(pool), size=min(k, len(pool)), replace=False)
    return [pool[index] for index in sorted(chosen)]
