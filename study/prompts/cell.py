"""The prompt a cell sends for one lesion: images rendered, exemplars drawn, templates filled.

:class:`PromptBuilder` is shared by the sweep and by ``vlmstudy prompts show``,
so the command prints exactly what a cell sends.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from study.prompts.exemplars import draw_exemplars
from study.prompts.messages import Exemplar, Prompt
from study.prompts.render import build_prompt
from study.prompts.spec import Strategy, resolve_strategy

if TYPE_CHECKING:
    from study.data.cohort import Cohort, Lesion
    from study.protocol import Protocol


def reference_answers(cohort: Cohort) -> dict[str, dict[str, str]]:
    """Return the answers exemplars show: the phantom's truth, else the radiologists' majority."""
    from analysis.reference import majority_reference

    table = cohort.truth if cohort.truth is not None else majority_reference(cohort.reads)
    reference: dict[str, dict[str, str]] = {}
    for row in table.itertuples(index=False):
        reference.setdefault(str(row.lesion_id), {})[str(row.feature)] = str(row.answer)
    return reference


def lesion_types(cohort: Cohort) -> dict[str, str]:
    """Return each lesion's pathology diagnosis, the type the ``nearest_type`` rule matches."""
    return {
        str(row.lesion_id): str(row.diagnosis)
        for row in cohort.pathology.itertuples(index=False)
        if isinstance(row.diagnosis, str) and row.diagnosis
    }


class PromptBuilder:
    """Build the prompt of any lesion under any strategy and sequence combination of a protocol.

    Parameters
    ----------
    protocol
        The loaded protocol.
    cohort
        The loaded cohort.
    render
        ``render(lesion_id, sequence)`` returning a rendered image; the sweep
        passes its cached renderer so images are rendered once.
    reference
        Reference answers per lesion (:func:`reference_answers` when omitted).
    """

    def __init__(
        self,
        protocol: Protocol,
        cohort: Cohort,
        render: Callable[[str, str], Any],
        reference: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.protocol = protocol
        self.cohort = cohort
        self.render = render
        self.reference = reference if reference is not None else reference_answers(cohort)
        self.lesion_types = lesion_types(cohort)
        self.strategy = lru_cache(maxsize=None)(self._strategy)

    def _strategy(self, name: str) -> Strategy:
        return resolve_strategy(name, self.protocol.prompts)

    def exemplars(self, lesion: Lesion, sequences: tuple[str, ...]) -> tuple[Exemplar, ...]:
        """Return the few-shot exemplars of a lesion, drawn from the ``exemplar`` split only."""
        few_shot = self.protocol.few_shot
        candidates = [
            item.lesion_id
            for item in self.cohort.split("exemplar")
            if set(sequences) <= set(item.images) and item.lesion_id in self.reference
        ]
        chosen = draw_exemplars(
            candidates,
            lesion.lesion_id,
            k=few_shot.k,
            seed=few_shot.seed,
            rule=few_shot.rule,
            answers=self.reference,
            lesion_types=self.lesion_types,
        )
        return tuple(
            Exemplar(
                lesion_id,
                tuple(self.render(lesion_id, sequence) for sequence in sequences),
                self.reference[lesion_id],
            )
            for lesion_id in chosen
        )

    def build(self, strategy: str, sequences: tuple[str, ...], lesion: Lesion) -> Prompt:
        """Return the prompt of ``lesion`` under ``strategy`` showing ``sequences``."""
        spec = self.strategy(strategy)
        images = tuple(self.render(lesion.lesion_id, sequence) for sequence in sequences)
        exemplars = self.exemplars(lesion, sequences) if spec.exemplars else ()
        return build_prompt(
            spec,
            tuple(self.protocol.features),
            sequences,
            images,
            exemplars,
            prompts=self.protocol.prompts,
        )
