"""Prompt strategies as data: the shipped defaults, the protocol section, and their merge.

The package ships one definition per strategy name in ``strategies.yaml``. A
protocol's ``prompts.strategies`` section may change any field of a shipped
strategy or define a new name; :func:`resolve_strategy` merges the two into a
:class:`Strategy`, the record every prompt and reader uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

STRATEGY_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
"""Strategy names are lower-case identifiers, so they can be MLflow params and file names."""

EXEMPLAR_RULES: tuple[str, ...] = ("random", "balanced", "nearest_type")
"""Rules for drawing few-shot exemplars; see :func:`study.prompts.draw_exemplars`."""


class StrategySpec(BaseModel):
    """One strategy's fields in a protocol; every field left out keeps the shipped value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    exemplars: bool | None = None
    reasoning: bool | None = None
    definitions: bool | None = None
    images: bool | None = None
    samples: int | None = Field(None, ge=1, le=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    system_role: bool | None = None


class PromptsSpec(BaseModel):
    """The protocol's ``prompts`` section: strategies and how images are presented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_role: bool = True
    layout: Literal["separate", "montage"] = "separate"
    labels: bool = True
    strategies: dict[str, StrategySpec] = Field(default_factory=dict)

    @field_validator("strategies")
    @classmethod
    def _valid_names(cls, strategies: dict[str, StrategySpec]) -> dict[str, StrategySpec]:
        invalid = [name for name in strategies if not re.fullmatch(STRATEGY_NAME_PATTERN, name)]
        if invalid:
            raise ValueError(
                f"invalid strategy name(s) {invalid}; use lower-case letters, digits and '_', "
                "starting with a letter"
            )
        return strategies


@dataclass(frozen=True)
class Strategy:
    """A resolved prompt strategy: what the prompt contains and how a reader is asked.

    Attributes
    ----------
    name
        The name used in ``grid.strategies`` and in the predictions table.
    description
        One sentence for people reading prompts and reports.
    exemplars
        Whether worked examples precede the lesion (few-shot).
    reasoning
        Whether the reader is asked for reasoning per feature before its JSON answer.
    definitions
        Whether the LI-RADS definition of each feature is in the prompt.
    images
        Whether images are sent; ``False`` is the no-image control.
    samples
        Independent samples per lesion, combined by
        :func:`study.prompts.aggregate_samples` when more than one.
    temperature
        Sampling temperature for this strategy, or ``None`` to use the protocol's decoding.
    system_role
        Whether the system role line is sent.
    """

    name: str
    description: str = ""
    exemplars: bool = False
    reasoning: bool = False
    definitions: bool = False
    images: bool = True
    samples: int = 1
    temperature: float | None = None
    system_role: bool = True

    def settings(self) -> dict[str, Any]:
        """Return every field except the description, which does not change what is sent.

        Every request key contains these settings, so this runs once per call. The
        fields are all scalars, and a shallow copy is several times cheaper than
        ``dataclasses.asdict``, which copies each value recursively.

        Examples
        --------
        >>> Strategy("zero_shot", description="plain").settings()["name"]
        'zero_shot'
        """
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name != "description"
        }


@cache
def shipped_strategies() -> dict[str, dict[str, Any]]:
    """Return the strategy definitions shipped in ``study/prompts/strategies.yaml``.

    Examples
    --------
    >>> list(shipped_strategies())[:3]
    ['zero_shot', 'few_shot', 'chain_of_thought']
    """
    text = (resources.files("study.prompts") / "strategies.yaml").read_text(encoding="utf-8")
    mapping = yaml.safe_load(text)
    return {
        name: StrategySpec.model_validate(fields).model_dump() for name, fields in mapping.items()
    }


def known_strategy_names(prompts: PromptsSpec | None = None) -> tuple[str, ...]:
    """Return the shipped strategy names followed by those a protocol defines."""
    names = list(shipped_strategies())
    defined = prompts.strategies if prompts is not None else {}
    names.extend(name for name in defined if name not in names)
    return tuple(names)


def resolve_strategy(name: str, prompts: PromptsSpec | None = None) -> Strategy:
    """Merge the shipped definition of ``name`` with the protocol's fields for it.

    Raises
    ------
    KeyError
        When ``name`` is neither shipped nor defined in ``prompts.strategies``.

    Examples
    --------
    >>> resolve_strategy("self_consistency").samples
    5
    >>> spec = PromptsSpec(strategies={"self_consistency": StrategySpec(samples=3)})
    >>> resolve_strategy("self_consistency", spec).samples, resolve_strategy("no_image").images
    (3, False)
    """
    prompts = prompts or PromptsSpec()
    shipped = shipped_strategies().get(name)
    override = prompts.strategies.get(name)
    if shipped is None and override is None:
        known = ", ".join(known_strategy_names(prompts))
        raise KeyError(f"unknown strategy {name!r}; known strategies: {known}")

    fields: dict[str, Any] = {"system_role": prompts.system_role}
    for layer in (shipped or {}, override.model_dump() if override else {}):
        fields.update({key: value for key, value in layer.items() if value is not None})
    return Strategy(name=name, **fields)
