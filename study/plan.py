"""The plan of a run before any call: how many calls, what is stored, tokens and cost.

:func:`plan_run` renders every request of a protocol's grid, keys it exactly
as the sweep does and looks the key up in the response store, so the counts
it reports are the calls a run would make now. Token and cost figures are
estimates (:mod:`study.cost`); the ``max`` figures assume every answer uses
``max_tokens``, which bounds what the budget cap can let through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from study.cells import SweepContext, prepare_read
from study.cost import estimate_call
from study.data.cohort import load_cohort
from study.grid import expand_grid
from study.protocol import OpenAIReaderSpec, cohort_path, load_protocol
from study.readers import OpenAIReader, make_reader
from study.store import ResponseStore


@dataclass(frozen=True)
class ReaderPlan:
    """The planned calls of one reader."""

    reader: str
    model: str
    is_model: bool
    requests: int
    stored: int
    input_tokens: int
    expected_output_tokens: int
    max_output_tokens: int
    expected_cost_usd: float
    max_cost_usd: float

    @property
    def to_call(self) -> int:
        """Requests without a stored response: the calls a run would make."""
        return self.requests - self.stored


@dataclass(frozen=True)
class RunPlan:
    """The planned calls of every reader, with the budget cap."""

    protocol_id: str
    readers: tuple[ReaderPlan, ...]
    max_cost_usd: float | None

    def lines(self) -> list[str]:
        """Return the plan as lines of text for the command line."""
        lines = [f"protocol {self.protocol_id}: dry run, no reader is called"]
        for plan in self.readers:
            lines.append(
                f"reader {plan.reader} ({plan.model}): {plan.requests} requests, "
                f"{plan.stored} already stored, {plan.to_call} to call"
            )
            if not plan.is_model:
                continue
            lines.append(
                f"  estimated tokens of the calls: {plan.input_tokens} input, "
                f"{plan.expected_output_tokens} output (at most {plan.max_output_tokens})"
            )
            lines.append(
                f"  estimated cost: {_usd(plan.expected_cost_usd)} "
                f"(at most {_usd(plan.max_cost_usd)})"
            )
        total = sum(plan.to_call for plan in self.readers)
        expected = sum(plan.expected_cost_usd for plan in self.readers)
        lines.append(f"total: {total} calls, estimated cost {_usd(expected)}")
        cap = "none" if self.max_cost_usd is None else _usd(self.max_cost_usd)
        lines.append(f"budget cap (budget.max_cost_usd): {cap}")
        return lines


def _usd(value: float) -> str:
    return "unknown (no price; add it under 'pricing')" if math.isnan(value) else f"{value:.4f} USD"


def plan_run(protocol_file: Path, store_path: Path) -> RunPlan:
    """Plan a run of ``protocol_file`` against the response store at ``store_path``.

    The store is opened (and created when missing) but nothing is written to
    it; no reader is called and no API key is needed.
    """
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    cohort = load_cohort(cohort_path(protocol, protocol_file))
    readers = {
        spec.name: (
            OpenAIReader(spec, require_key=False)
            if isinstance(spec, OpenAIReaderSpec)
            else make_reader(spec)
        )
        for spec in protocol.grid.readers
    }
    store = ResponseStore(store_path)
    context = SweepContext(protocol, "", cohort, readers, store, "dry-run")
    lesions = list(cohort.split("evaluation"))

    plans = []
    for spec in protocol.grid.readers:
        keys: list[str] = []
        estimates = []
        for cell in (cell for cell in expand_grid(protocol) if cell.reader.name == spec.name):
            for lesion in lesions:
                prepared = prepare_read(context, cell, lesion)
                keys.extend(call.request_sha256 for call in prepared.calls)
                if not isinstance(spec, OpenAIReaderSpec):
                    continue
                prompt = prepared.prompt
                estimate = estimate_call(
                    [prompt.system, *(part for part in prompt.parts if isinstance(part, str))],
                    len(prompt.images),
                    protocol.rendering.size,
                    detail=spec.image_detail,
                    n_features=len(protocol.features),
                    strategy=cell.strategy,
                    max_tokens=prepared.call.request.decoding.max_tokens,
                    price=context.prices.get(spec.model),
                )
                # Every self-consistency sample is a call of its own, with the same estimate.
                estimates.extend((call.request_sha256, estimate) for call in prepared.calls)
        unique = list(dict.fromkeys(keys))
        stored = store.stored_keys(unique)
        pending = [estimate for key, estimate in dict(estimates).items() if key not in stored]
        plans.append(
            ReaderPlan(
                reader=spec.name,
                model=spec.model if isinstance(spec, OpenAIReaderSpec) else spec.kind,
                is_model=isinstance(spec, OpenAIReaderSpec),
                requests=len(unique),
                stored=len(stored),
                input_tokens=sum(item.input_tokens for item in pending),
                expected_output_tokens=sum(item.expected_output_tokens for item in pending),
                max_output_tokens=sum(item.max_output_tokens for item in pending),
                expected_cost_usd=sum(item.expected_cost_usd for item in pending),
                max_cost_usd=sum(item.max_cost_usd for item in pending),
            )
        )
    return RunPlan(protocol.id, tuple(plans), protocol.budget.max_cost_usd)
