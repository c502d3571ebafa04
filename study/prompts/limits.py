"""Provider limits on images and bytes per request, checked before a protocol is registered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.errors import UserInputError
from study.prompts.cell import PromptBuilder
from study.prompts.spec import resolve_strategy

if TYPE_CHECKING:
    from study.data.cohort import Cohort
    from study.protocol import Protocol


def images_per_request(
    protocol: Protocol, strategy: str, sequences: tuple[str, ...], exemplars: int
) -> int:
    """Return the number of images one request sends, given the exemplars shown.

    Examples
    --------
    >>> from study.protocol import Protocol
    >>> protocol = Protocol.model_validate({
    ...     "id": "p", "title": "t", "cohort": {"path": "c"}, "features": ["aphe"],
    ...     "grid": {"readers": [{"kind": "simulated", "name": "s"}],
    ...              "strategies": ["few_shot"], "sequences": [["t1_pre", "arterial"]]}})
    >>> images_per_request(protocol, "few_shot", ("t1_pre", "arterial"), exemplars=2)
    6
    >>> images_per_request(protocol, "no_image", ("t1_pre", "arterial"), exemplars=2)
    0
    """
    spec = resolve_strategy(strategy, protocol.prompts)
    if not spec.images:
        return 0
    per_lesion = 1 if protocol.prompts.layout == "montage" else len(sequences)
    shown = exemplars if spec.exemplars else 0
    return per_lesion * (1 + shown)


def check_request_limits(protocol: Protocol, cohort: Cohort) -> None:
    """Check that no request of any cell exceeds its reader's image or byte limit.

    Only readers with ``max_images_per_request`` or ``max_request_bytes`` are
    checked. Image counts follow from the protocol alone. Byte sizes need every
    evaluation lesion's prompt to be rendered, so they are measured only for
    readers with ``max_request_bytes``. Every violation is reported at once.

    Raises
    ------
    UserInputError
        Naming each reader, strategy and sequence combination over a limit, with
        the size found, the limit and the ways to fix it.
    """
    limited = [
        reader
        for reader in protocol.grid.readers
        if getattr(reader, "max_images_per_request", None) is not None
        or getattr(reader, "max_request_bytes", None) is not None
    ]
    if not limited:
        return

    from study.rendering import RenderSettings, render_lesion

    rendering = protocol.rendering
    settings = RenderSettings(
        size=rendering.size,
        margin=rendering.margin,
        window=tuple(rendering.window),
        mark=rendering.mark,
    )
    rendered: dict[tuple[str, str], object] = {}

    def render(lesion_id: str, sequence: str):
        key = (lesion_id, sequence)
        if key not in rendered:
            rendered[key] = render_lesion(cohort.lesions[lesion_id], sequence, settings)
        return rendered[key]

    builder = PromptBuilder(protocol, cohort, render)
    exemplar_lesions = cohort.split("exemplar")
    problems = []
    for reader in limited:
        max_images = getattr(reader, "max_images_per_request", None)
        max_bytes = getattr(reader, "max_request_bytes", None)
        for strategy in protocol.grid.strategies:
            for combination in protocol.grid.sequences:
                sequences = tuple(combination)
                available = sum(set(sequences) <= set(item.images) for item in exemplar_lesions)
                exemplars = min(protocol.few_shot.k, available)
                count = images_per_request(protocol, strategy, sequences, exemplars)
                label = (
                    f"reader {reader.name!r}, strategy {strategy}, sequences {'+'.join(sequences)}"
                )
                if max_images is not None and count > max_images:
                    problems.append(
                        f"{label}: {count} images per request, over max_images_per_request "
                        f"{max_images}"
                    )
                if max_bytes is None:
                    continue
                largest, largest_lesion = 0, ""
                for lesion in cohort.split("evaluation"):
                    size = builder.build(strategy, sequences, lesion).request_bytes()
                    if size > largest:
                        largest, largest_lesion = size, lesion.lesion_id
                if largest > max_bytes:
                    problems.append(
                        f"{label}: lesion {largest_lesion} needs {largest} bytes per request, over "
                        f"max_request_bytes {max_bytes}"
                    )
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise UserInputError(
            f"protocol {protocol.id!r}: {len(problems)} cell(s) would exceed a reader's request "
            f"limits:\n{listing}\nShow fewer sequences, set prompts.layout: montage, lower "
            "few_shot.k or rendering.size, or raise the reader's limit if the provider allows it."
        )
