"""Reading every evaluation lesion of one cell: render, prompt, call or reuse, parse.

Each lesion's request is keyed by its SHA-256 (:func:`study.store.request_key`).
A stored response is reused and marked ``cached``; a request without one is
sent to the reader and its response stored. A failed call is recorded as an attempt and becomes rows
with outcome ``infra_failure`` and no answer.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd

from study.answers import parse_answer
from study.data.cohort import Cohort, Lesion
from study.grid import Cell
from study.prompts import Exemplar, build_prompt, draw_exemplars
from study.protocol import OpenAIReaderSpec, Protocol
from study.readers import Reader, ReaderCallError, ReadRequest
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
    """The protocol, cohort, readers and response store that every cell of one run shares."""

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
        self.reference = _reference_answers(cohort)

    def _render(self, lesion_id: str, sequence: str):
        return render_lesion(self.cohort.lesions[lesion_id], sequence, self.render_settings)

    def exemplars(self, lesion: Lesion, sequences: tuple[str, ...]) -> tuple[Exemplar, ...]:
        """Return the few-shot exemplars of a lesion, drawn from the ``exemplar`` split."""
        candidates = [
            item.lesion_id
            for item in self.cohort.split("exemplar")
            if set(sequences) <= set(item.images) and item.lesion_id in self.reference
        ]
        chosen = draw_exemplars(
            candidates,
            lesion.lesion_id,
            k=self.protocol.few_shot.k,
            seed=self.protocol.few_shot.seed,
        )
        return tuple(
            Exemplar(
                lesion_id,
                tuple(self.render(lesion_id, sequence) for sequence in sequences),
                self.reference[lesion_id],
            )
            for lesion_id in chosen
        )


def _reference_answers(cohort: Cohort) -> dict[str, dict[str, str]]:
    """Return the answers exemplars show and the simulated reader draws from.

    The phantom's truth is used where it exists; otherwise the radiologists'
    majority read.
    """
    from analysis.reference import majority_reference

    table = cohort.truth if cohort.truth is not None else majority_reference(cohort.reads)
    reference: dict[str, dict[str, str]] = {}
    for row in table.itertuples(index=False):
        reference.setdefault(str(row.lesion_id), {})[str(row.feature)] = str(row.answer)
    return reference


def read_lesion(context: SweepContext, cell: Cell, lesion: Lesion) -> LesionRecord:
    """Read one lesion in one cell and return its prediction rows."""
    protocol = context.protocol
    reader = context.readers[cell.reader.name]
    features = tuple(protocol.features)
    images = tuple(context.render(lesion.lesion_id, sequence) for sequence in cell.sequences)
    exemplars = context.exemplars(lesion, cell.sequences) if cell.strategy == "few_shot" else ()
    prompt = build_prompt(cell.strategy, features, cell.sequences, images, exemplars)

    is_model = isinstance(cell.reader, OpenAIReaderSpec)
    decoding = protocol.decoding.model_dump(mode="json") if is_model else {}
    request_json, key = request_key(
        reader.identity(), prompt.keyed_messages(), features, decoding, cell.replicate
    )

    response = context.store.get(key)
    cached = response is not None
    if response is None:
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
            decoding=protocol.decoding,
        )
        try:
            response = reader.read(request)
        except ReaderCallError as error:
            context.store.record_failure(key, str(error))
            logger.warning(
                "cell %s lesion %s: call failed: %s", cell.cell_id, lesion.lesion_id, error
            )
        else:
            context.store.put(key, cell.reader.kind, request_json, response)

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
        "request_sha256": key,
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

    parsed = parse_answer(response.text, features)
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
                # NOTE: model calls have no price table yet, so their cost is left missing.
                "cost_usd": float("nan") if is_model and first else 0.0,
            }
        )
    return LesionRecord(rows, prompt.text(), response.text, parsed.repairs)


def run_cell(context: SweepContext, cell: Cell) -> tuple[pd.DataFrame, list[LesionRecord]]:
    """Read every evaluation lesion of the cohort in one cell."""
    lesions = context.cohort.split("evaluation")
    workers = cell.reader.max_concurrency if isinstance(cell.reader, OpenAIReaderSpec) else 1
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            records = list(pool.map(lambda lesion: read_lesion(context, cell, lesion), lesions))
    else:
        records = [read_lesion(context, cell, lesion) for lesion in lesions]
    rows = [row for record in records for row in record.rows]
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    return table, records
