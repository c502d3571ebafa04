"""Expanding a protocol's grid into cells with stable ids.

A cell is one reader × strategy × sequence combination × replicate. Its id is
a hash of those settings alone, so reordering the YAML, renaming nothing, or
adding another cell leaves every other id unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from study.protocol import Protocol, ReaderSpec, canonical_json


@dataclass(frozen=True)
class Cell:
    """One cell of the sweep grid."""

    cell_id: str
    reader: ReaderSpec
    strategy: str
    sequences: tuple[str, ...]
    replicate: int

    @property
    def sequences_label(self) -> str:
        """Return the sequence combination as one string, e.g. ``t1_pre+arterial``."""
        return "+".join(self.sequences)

    def params(self) -> dict[str, Any]:
        """Return the settings logged as MLflow params (no secrets)."""
        reader = self.reader.model_dump(mode="json")
        params = {
            "cell_id": self.cell_id,
            "reader": self.reader.name,
            "reader_kind": self.reader.kind,
            "strategy": self.strategy,
            "sequences": self.sequences_label,
            "replicate": self.replicate,
        }
        for key, value in reader.items():
            if key not in ("kind", "name"):
                params[f"reader.{key}"] = value
        return params


def cell_id(reader: ReaderSpec, strategy: str, sequences: tuple[str, ...], replicate: int) -> str:
    """Return the stable id of a cell: the first 12 hex digits of a SHA-256 of its settings.

    Examples
    --------
    >>> from study.protocol import SimulatedReaderSpec
    >>> reader = SimulatedReaderSpec(kind="simulated", name="sim")
    >>> first = cell_id(reader, "zero_shot", ("t1_pre", "arterial"), 0)
    >>> first == cell_id(reader, "zero_shot", ("t1_pre", "arterial"), 0), len(first)
    (True, 12)
    """
    settings = {
        "reader": reader.model_dump(mode="json"),
        "strategy": strategy,
        "sequences": list(sequences),
        "replicate": replicate,
    }
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()[:12]


def expand_grid(protocol: Protocol) -> list[Cell]:
    """Return every cell of the grid, ordered by reader, strategy, sequences and replicate."""
    grid = protocol.grid
    cells = []
    for reader in grid.readers:
        for strategy in grid.strategies:
            for combination in grid.sequences:
                for replicate in range(grid.replicates):
                    sequences = tuple(combination)
                    identifier = cell_id(reader, strategy, sequences, replicate)
                    cells.append(Cell(identifier, reader, strategy, sequences, replicate))
    return cells
