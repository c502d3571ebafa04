"""Reading every evaluation lesion of one cell: render, prompt, call or reuse, parse.

Each lesion's request is keyed by its SHA-256 (:func:`study.store.request_key`).
A stored response is reused and marked ``cached``. The other requests are
sent and their responses stored: model readers go through :mod:`study.calls`,
which paces and retries them, and local readers are called directly. A call
that still fails becomes rows with outcome ``infra_failure`` and no answer.
When the run's budget cap is reached, no new call starts. The cell then raises
:class:`study.calls.BudgetExhausted` after storing every response it received,
so running again resumes from the store without paying twice.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import pandas as pd

from study.answers import parse_answer
from study.calls import Budget, BudgetExhausted, PendingCall, call_all, call_local
from study.cost import call_cost_usd, check_prices, estimate_call, price_table
from study.data.cohort import Cohort, Lesion
from study.grid import Cell
from study.prompts import Exemplar, Prompt, PromptBuilder, aggregate_samples, reference_answers
from study.protocol import OpenAIReaderSpec, Protocol
from study.readers import Reader, ReaderResponse, ReadRequest
from study.rendering import RenderSettings, render_lesion
from study.store import ResponseStore, request_key

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "protocol_id",
    "protocol_sha256",
    "run_id",
    "cell_id",
    "reader",
    "model_snapshot",
    "strategy",
    "sequences",
    "replicate",
    "patient_id",
    "lesion_id",
    "feature",
    "answer",
    "confidence",
    "outcome",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cached",
    "request_sha256",
)
"""Columns of the predictions table, in order."""


@dataclass(frozen=True)
class LesionRecord:
    """The prediction rows, prompt text and raw response of one lesion's call."""

    rows: list[dict[str, Any]]
    prompt_text: str
    response_text: str | None
    repairs: tuple[str, ...]


class SweepContext:
    """The protocol, cohort, readers, response store and budget that every cell of a run shares."""

    def __init__(
        self,
        protocol: Protocol,
        protocol_sha256: str,
        cohort: Cohort,
        readers: dict[str, Reader],
        store: ResponseStore,
        run_id: str,
    ) -> None:
        self.protocol = protocol
        self.protocol_sha256 = protocol_sha256
        self.cohort = cohort
        self.readers = readers
        self.store = store
        self.run_id = run_id
        rendering = protocol.rendering
        self.render_settings = RenderSettings(
            size=rendering.size,
            margin=rendering.margin,
            window=tuple(rendering.window),
            mark=rendering.mark,
        )
        self.render = lru_cache(maxsize=4096)(self._render)
        self.reference = reference_answers(cohort)
        self.prompts = PromptBuilder(protocol, cohort, self.render, self.reference)
        self.prices = price_table(protocol)
        check_prices(protocol, self.prices)
        self.budget = Budget(protocol.budget.max_cost_usd)

    def _render(self, lesion_id: str, sequence: str):
        return render_lesion(self.cohort.lesions[lesion_id], sequence, self.render_settings)

    def exemplars(self, lesion: Lesion, sequences: tuple[str, ...]) -> tuple[Exemplar, ...]:
        """Return the few-shot exemplars of a lesion, drawn from the ``exemplar`` split."""
        return self.prompts.exemplars(lesion, sequences)


@dataclass(frozen=True)
class PreparedRead:
    """One lesion's request in one cell, keyed and estimated, before any call."""

    cell: Cell
    lesion: Lesion
    prompt: Prompt
    call: PendingCall
    samples: tuple[PendingCall, ...] = ()
    """Further calls of a self-consistency strategy (samples 1 to n-1; ``call`` is sample 0)."""

    @property
    def calls(self) -> tuple[PendingCall, ...]:
        """Every call of this read, sample 0 first."""
        return (self.call, *self.samples)


def prepare_read(context: SweepContext, cell: Cell, lesion: Lesion) -> PreparedRead:
    """Render the lesion, build its prompt, key the request and estimate its cost."""
    protocol = context.protocol
    reader = context.readers[cell.reader.name]
    features = tuple(protocol.features)
    prompt = context.prompts.build(cell.strategy, cell.sequences, lesion)
    images = tuple(context.render(lesion.lesion_id, sequence) for sequence in cell.sequences)
    strategy = context.prompts.strategy(cell.strategy)
    exemplars = context.exemplars(lesion, cell.sequences) if strategy.exemplars else ()

    spec = cell.reader
    is_model = isinstance(spec, OpenAIReaderSpec)
    decoding = protocol.decoding
    if prompt.temperature is not None:
        decoding = decoding.model_copy(update={"temperature": prompt.temperature})
    keyed_messages = prompt.keyed_messages()
    request_json, key = request_key(
        reader.identity(),
        keyed_messages,
        features,
        decoding.model_dump(mode="json") if is_model else {},
        cell.replicate,
    )
    request = ReadRequest(
        lesion_id=lesion.lesion_id,
        features=features,
        sequences=cell.sequences,
        strategy=cell.strategy,
        replicate=cell.replicate,
        prompt=prompt,
        images=images,
        exemplars=exemplars,
        truth=None if is_model else context.reference.get(lesion.lesion_id),
        decoding=decoding,
    )

    tokens, max_cost = 0, 0.0
    if is_model:
        estimate = estimate_call(
            [prompt.system, *(part for part in prompt.parts if isinstance(part, str))],
            len(prompt.images),
            protocol.rendering.size,
            detail=spec.image_detail,
            n_features=len(features),
            strategy=cell.strategy,
            max_tokens=decoding.max_tokens,
            price=context.prices.get(spec.model),
        )
        tokens = estimate.input_tokens + estimate.max_output_tokens
        max_cost = 0.0 if math.isnan(estimate.max_cost_usd) else estimate.max_cost_usd
    samples = []
    # NOTE: local readers answer a self-consistency strategy once, because their draw does not
    # depend on a sample index.
    for index in range(1, prompt.samples if is_model else 1):
        # Each sample has its own decoding seed, so an endpoint that honours seeds still varies.
        seed = None if decoding.seed is None else decoding.seed + index
        sampled = decoding.model_copy(update={"seed": seed})
        sample_json, sample_key = request_key(
            reader.identity(),
            keyed_messages,
            features,
            {**sampled.model_dump(mode="json"), "sample": index},
            cell.replicate,
        )
        sample_request = replace(request, decoding=sampled)
        samples.append(PendingCall(sample_key, sample_json, sample_request, tokens, max_cost))
    call = PendingCall(key, request_json, request, tokens, max_cost)
    return PreparedRead(cell, lesion, prompt, call, tuple(samples))


def response_cost(context: SweepContext, cell: Cell, response: ReaderResponse) -> float:
    """Return the cost of one response in US dollars: 0 for local readers, NaN without a price."""
    if not isinstance(cell.reader, OpenAIReaderSpec):
        return 0.0
    price = context.prices.get(cell.reader.model)
    return call_cost_usd(price, response.input_tokens, response.output_tokens)


def finish_read(
    context: SweepContext,
    prepared: PreparedRead,
    response: ReaderResponse | None,
    cached: bool,
    sample_responses: tuple[ReaderResponse | None, ...] = (),
) -> LesionRecord:
    """Parse a response (or its absence) into the lesion's prediction rows.

    With ``sample_responses`` (samples 1 to n-1 of a self-consistency strategy)
    the valid samples are combined by :func:`study.prompts.aggregate_samples`.
    The confidence is then the share of samples that gave the winning answer,
    in percent, and usage and cost are summed on the first row.
    """
    if prepared.samples:
        return _finish_samples(context, prepared, (response, *sample_responses), cached)
    return _finish_single(context, prepared, response, cached)


def _finish_single(
    context: SweepContext, prepared: PreparedRead, response: ReaderResponse | None, cached: bool
) -> LesionRecord:
    protocol = context.protocol
    cell, lesion, prompt = prepared.cell, prepared.lesion, prepared.prompt
    features = tuple(protocol.features)
    base = {
        "protocol_id": protocol.id,
        "protocol_sha256": context.protocol_sha256,
        "run_id": context.run_id,
        "cell_id": cell.cell_id,
        "reader": cell.reader.name,
        "strategy": cell.strategy,
        "sequences": cell.sequences_label,
        "replicate": cell.replicate,
        "patient_id": lesion.patient_id,
        "lesion_id": lesion.lesion_id,
        "cached": cached,
        "request_sha256": prepared.call.request_sha256,
    }
    if response is None:
        rows = [
            {
                **base,
                "feature": name,
                "answer": None,
                "confidence": None,
                "outcome": "infra_failure",
                "model_snapshot": None,
                "latency_s": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": 0.0,
            }
            for name in features
        ]
        return LesionRecord(rows, prompt.text(), None, ())

    parsed = parse_answer(response.text, features, refusal=response.refusal)
    cost = response_cost(context, cell, response)
    rows = []
    for position, name in enumerate(features):
        # One call answers every feature, so its usage is counted once, on the first row.
        first = position == 0
        answer, confidence = parsed.answers.get(name, (None, None))
        outcome = parsed.outcome
        if outcome == "valid" and answer is None:
            outcome = "parse_failure"  # this feature was missing from an otherwise valid answer
        rows.append(
            {
                **base,
                "feature": name,
                "answer": answer if outcome == "valid" else None,
                "confidence": confidence if outcome == "valid" else None,
                "outcome": outcome,
                "model_snapshot": response.model_snapshot,
                "latency_s": response.latency_s if first else 0.0,
                "input_tokens": response.input_tokens if first else 0,
                "output_tokens": response.output_tokens if first else 0,
                "cost_usd": cost if first else 0.0,
            }
        )
    text = response.text if response.refusal is None else f"[refusal] {response.refusal}"
    return LesionRecord(rows, prompt.text(), text, parsed.repairs)


def _finish_samples(
    context: SweepContext,
    prepared: PreparedRead,
    responses: tuple[ReaderResponse | None, ...],
    cached: bool,
) -> LesionRecord:
    features = tuple(context.protocol.features)
    received = [response for response in responses if response is not None]
    if not received:
        return _finish_single(context, prepared, None, cached)

    parsed = [
        parse_answer(response.text, features, refusal=response.refusal) for response in received
    ]
    valid = [item.answers for item in parsed if item.outcome == "valid"]
    answers, agreement = aggregate_samples(valid, features) if valid else ({}, {})
    if valid:
        missing_outcome = "parse_failure"
    else:
        missing_outcome = parsed[0].outcome
    first = _finish_single(context, prepared, received[0], cached)
    usage = {
        "latency_s": max(item.latency_s for item in received),
        "input_tokens": sum(item.input_tokens for item in received),
        "output_tokens": sum(item.output_tokens for item in received),
        "cost_usd": sum(response_cost(context, prepared.cell, item) for item in received),
    }
    rows = []
    for position, row in enumerate(first.rows):
        answer = answers.get(row["feature"])
        combined = {
            **row,
            "answer": answer,
            "confidence": 100.0 * agreement[row["feature"]] if answer is not None else None,
            "outcome": "valid" if answer is not None else missing_outcome,
        }
        if position == 0:
            combined.update(usage)
        rows.append(combined)
    texts = "\n\n".join(f"[sample {index}] {item.text}" for index, item in enumerate(received))
    repairs = tuple(dict.fromkeys(note for item in parsed for note in item.repairs))
    return LesionRecord(rows, first.prompt_text, texts, repairs)


def read_lesion(context: SweepContext, cell: Cell, lesion: Lesion) -> LesionRecord:
    """Read one lesion in one cell and return its prediction rows."""
    return read_lesions(context, cell, [lesion])[0]


def read_lesions(context: SweepContext, cell: Cell, lesions: list[Lesion]) -> list[LesionRecord]:
    """Read lesions in one cell: reuse stored responses, call for the rest, parse every one.

    Raises
    ------
    BudgetExhausted
        When the budget cap stopped calls; every response received is stored first.
    """
    reader = context.readers[cell.reader.name]
    prepared = [prepare_read(context, cell, lesion) for lesion in lesions]
    responses: dict[str, ReaderResponse | None] = {}
    cached: set[str] = set()
    to_call: dict[str, PendingCall] = {}
    for item in prepared:
        for call in item.calls:
            key = call.request_sha256
            stored = context.store.get(key)
            if stored is not None:
                responses[key] = stored
                cached.add(key)
            else:
                to_call.setdefault(key, call)

    not_sent = 0
    if to_call and isinstance(cell.reader, OpenAIReaderSpec):
        outcomes = call_all(
            reader,
            list(to_call.values()),
            store=context.store,
            reader_kind=cell.reader.kind,
            budget=context.budget,
            cost_of=lambda response: _finite(response_cost(context, cell, response)),
        )
        for outcome in outcomes:
            responses[outcome.request_sha256] = outcome.response
            not_sent += outcome.not_sent
    else:
        for key, call in to_call.items():
            outcome = call_local(reader, call, store=context.store, reader_kind=cell.reader.kind)
            responses[key] = outcome.response

    if not_sent:
        raise BudgetExhausted(
            f"the budget cap of {context.protocol.budget.max_cost_usd} USD "
            f"(budget.max_cost_usd) was reached after spending {context.budget.spent_usd:.4f} "
            f"USD in this run; {not_sent} call(s) of cell {cell.cell_id} were not sent. Every "
            "response received is stored, so running again resumes without paying twice; raise "
            "budget.max_cost_usd (a logged deviation after registration) to continue."
        )
    return [
        finish_read(
            context,
            item,
            responses.get(item.call.request_sha256),
            all(call.request_sha256 in cached for call in item.calls),
            tuple(responses.get(call.request_sha256) for call in item.samples),
        )
        for item in prepared
    ]


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def run_cell(context: SweepContext, cell: Cell) -> tuple[pd.DataFrame, list[LesionRecord]]:
    """Read every evaluation lesion of the cohort in one cell."""
    lesions = list(context.cohort.split("evaluation"))
    records = read_lesions(context, cell, lesions)
    rows = [row for record in records for row in record.rows]
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    return table, records
