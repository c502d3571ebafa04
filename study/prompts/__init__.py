"""Prompt strategies as data, rendered from Jinja2 templates into the exact messages sent.

Strategies are declared in ``strategies.yaml`` (shipped) and in a protocol's
``prompts`` section (:mod:`study.prompts.spec`). :func:`build_prompt` fills
the templates under ``study/templates`` into a :class:`Prompt`; the template
versions and SHA-256, the strategy settings and the exemplar draw travel with
every prompt, so each one is part of the request key and the stored record.
:func:`aggregate_samples` combines self-consistency samples, and
:func:`check_request_limits` checks provider limits before registration.
"""

from study.prompts.cell import PromptBuilder, lesion_types, reference_answers
from study.prompts.consistency import aggregate_samples
from study.prompts.exemplars import draw_exemplars
from study.prompts.limits import check_request_limits, images_per_request
from study.prompts.messages import TEMPLATE_VERSION, Exemplar, ImagePart, Prompt
from study.prompts.montage import build_montage
from study.prompts.render import (
    TEMPLATE_NAMES,
    build_prompt,
    feature_definitions,
    template_versions,
    templates_sha256,
)
from study.prompts.spec import (
    EXEMPLAR_RULES,
    PromptsSpec,
    Strategy,
    StrategySpec,
    known_strategy_names,
    resolve_strategy,
    shipped_strategies,
)

__all__ = [
    "EXEMPLAR_RULES",
    "TEMPLATE_NAMES",
    "TEMPLATE_VERSION",
    "Exemplar",
    "ImagePart",
    "Prompt",
    "PromptBuilder",
    "PromptsSpec",
    "Strategy",
    "StrategySpec",
    "aggregate_samples",
    "build_montage",
    "build_prompt",
    "check_request_limits",
    "draw_exemplars",
    "feature_definitions",
    "images_per_request",
    "known_strategy_names",
    "lesion_types",
    "reference_answers",
    "resolve_strategy",
    "shipped_strategies",
    "template_versions",
    "templates_sha256",
]
