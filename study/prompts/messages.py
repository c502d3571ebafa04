"""The prompt record: ordered text and image parts, and the messages built from it.

A :class:`Prompt` is what one request sends, before images are encoded. The
chat-completions messages are built from it, and so is the keyed form that the
request key and the stored record use, with each image's SHA-256 in place of
its bytes and the template versions, template SHA-256, strategy settings and
exemplar draw alongside.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from study.prompts.spec import Strategy

TEMPLATE_VERSION = "2"
"""Version of the template set; each template file also states its own version."""


@dataclass(frozen=True)
class ImagePart:
    """One image in a prompt: a rendered sequence, or a montage of several.

    ``sequence`` is the sequence name, or the names joined by ``+`` for a montage.
    """

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
    """The messages of one request, before images are encoded.

    Attributes
    ----------
    strategy
        The strategy name.
    system
        The system role line, or ``""`` when the strategy sends none.
    parts
        Text and images of the user message, in order.
    template_sha256
        SHA-256 of every template's source (:func:`study.prompts.templates_sha256`).
    template_version
        Version of the template set.
    spec
        The resolved strategy; its flags tell readers how to answer.
    exemplar_ids
        Lesion ids of the worked examples shown, in order: the recorded draw.
    presentation
        How images are shown: ``layout`` (separate or montage) and ``labels``.
    template_versions
        The version of each template file, by file name.
    """

    strategy: str
    system: str
    parts: tuple[str | ImagePart, ...]
    template_sha256: str
    template_version: str = TEMPLATE_VERSION
    spec: Strategy | None = None
    exemplar_ids: tuple[str, ...] = ()
    presentation: dict[str, Any] = field(default_factory=dict)
    template_versions: dict[str, str] = field(default_factory=dict)

    @property
    def shows_images(self) -> bool:
        """Whether the prompt contains images (false for the no-image control)."""
        return self.spec.images if self.spec else True

    @property
    def asks_reasoning(self) -> bool:
        """Whether the reader is asked for reasoning before its JSON answer."""
        return self.spec.reasoning if self.spec else self.strategy == "chain_of_thought"

    @property
    def samples(self) -> int:
        """Independent samples to draw for this prompt (self-consistency when above 1)."""
        return self.spec.samples if self.spec else 1

    @property
    def temperature(self) -> float | None:
        """The strategy's sampling temperature, or ``None`` for the protocol's decoding."""
        return self.spec.temperature if self.spec else None

    @property
    def images(self) -> tuple[ImagePart, ...]:
        """Every image part, in order."""
        return tuple(part for part in self.parts if isinstance(part, ImagePart))

    def openai_messages(self, *, detail: str = "auto") -> list[dict[str, Any]]:
        """Return chat-completions messages with images as base64 PNG data URLs."""
        content = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                url = "data:image/png;base64," + base64.b64encode(part.png).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
            else:
                content.append({"type": "text", "text": part})
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": content}]

    def keyed_messages(self) -> list[dict[str, Any]]:
        """Return the messages with images as sequence and SHA-256, plus the prompt record.

        The user message carries a ``prompt`` entry with the template version and
        SHA-256, the strategy settings, the presentation and the exemplar ids, so
        the request key changes whenever any of them changes, even when the
        rendered text does not.
        """
        content = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image", "sequence": part.sequence, "sha256": part.sha256})
            else:
                content.append({"type": "text", "text": part})
        messages = [{"role": "system", "content": self.system}] if self.system else []
        user = {"role": "user", "content": content, "prompt": self.record()}
        return [*messages, user]

    def record(self) -> dict[str, Any]:
        """Return the template, strategy, presentation and exemplar draw of this prompt."""
        return {
            "template_version": self.template_version,
            "template_sha256": self.template_sha256,
            "template_versions": dict(self.template_versions),
            "strategy": self.spec.settings() if self.spec else {"name": self.strategy},
            "presentation": dict(self.presentation),
            "exemplar_ids": list(self.exemplar_ids),
        }

    @property
    def sha256(self) -> str:
        """SHA-256 of :meth:`keyed_messages`, the prompt's identity in records.

        It changes when the text or images sent, the templates, the strategy
        settings or the exemplar draw change, and only then.
        """
        text = json.dumps(self.keyed_messages(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def request_bytes(self) -> int:
        """Return the size in bytes of the messages as JSON, images encoded as data URLs."""
        return len(json.dumps(self.openai_messages(), separators=(",", ":")).encode("utf-8"))

    def text(self) -> str:
        """Return the prompt as readable text, images shown as names and hashes."""
        lines = [
            f"[prompt {self.strategy} sha256:{self.sha256}]",
            f"[templates v{self.template_version} sha256:{self.template_sha256}]",
        ]
        if self.exemplar_ids:
            lines.append(f"[exemplars {', '.join(self.exemplar_ids)}]")
        if self.system:
            lines.append(f"[system] {self.system}")
        for part in self.parts:
            if isinstance(part, ImagePart):
                lines.append(f"[image {part.sequence} sha256:{part.sha256}]")
            else:
                lines.append(part)
        return "\n".join(lines)
