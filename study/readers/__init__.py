"""Readers: every kind takes a :class:`ReadRequest` and returns a :class:`ReaderResponse`."""

from __future__ import annotations

from study.protocol import OpenAIReaderSpec, QuantitativeReaderSpec, SimulatedReaderSpec
from study.readers.base import Reader, ReaderCallError, ReaderResponse, ReadRequest
from study.readers.openai_reader import OpenAIReader
from study.readers.quantitative import QuantitativeReader
from study.readers.simulated import SimulatedReader

__all__ = [
    "OpenAIReader",
    "QuantitativeReader",
    "ReadRequest",
    "Reader",
    "ReaderCallError",
    "ReaderResponse",
    "SimulatedReader",
    "make_reader",
]


def make_reader(spec) -> Reader:
    """Build the reader a protocol's reader entry describes."""
    if isinstance(spec, OpenAIReaderSpec):
        return OpenAIReader(spec)
    if isinstance(spec, QuantitativeReaderSpec):
        return QuantitativeReader(spec)
    if isinstance(spec, SimulatedReaderSpec):
        return SimulatedReader(spec)
    raise TypeError(f"unknown reader spec {type(spec).__name__}")
