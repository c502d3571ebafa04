"""The inputs of a power simulation: the cells the hypotheses test and the assumptions about them.

A protocol's hypotheses select grid cells by ``contrast`` (and their comparator
cells by ``versus``). Only those cells and the features their hypotheses name
are simulated. The ``power`` section states the rest: cohort sizes, the
radiologists' agreement, each feature's prevalence and, as the effect sizes,
the error rates of every tested reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from study.data.simulated_reads import DEFAULT_TARGET_KAPPA
from study.errors import UserInputError
from study.grid import expand_grid
from study.lirads import FEATURES
from study.prompts.spec import resolve_strategy
from study.protocol import CELL_KEYS, PowerSpec, Protocol, SimulatedReaderSpec
from study.readers.simulated import error_rate


@dataclass(frozen=True)
class SimCell:
    """One grid cell as the simulation needs it."""

    cell_id: str
    reader: str
    strategy: str
    sequences: tuple[str, ...]
    replicate: int
    shows_images: bool

    @property
    def sequences_label(self) -> str:
        """Return the sequence combination as one string, e.g. ``t1_pre+arterial``."""
        return "+".join(self.sequences)

    def judgeable(self, feature: str) -> bool:
        """Return whether the cell shows every sequence ``feature`` needs."""
        return FEATURES[feature].judgeable(self.sequences)


@dataclass(frozen=True)
class Test:
    """One registered test: a hypothesis on one feature and one cell (and its comparator)."""

    hypothesis: str
    endpoint: str
    feature: str
    cell: SimCell
    comparator: SimCell | None
    null: float


@dataclass(frozen=True)
class Design:
    """A protocol resolved for simulation.

    Attributes
    ----------
    protocol
        The protocol as a plain mapping, as the registered analysis reads it.
    power
        The protocol's power section (defaults when it has none).
    cells
        The simulated cells, in grid order.
    features
        Features simulated per cell id.
    tests
        Every registered test.
    rates
        Error rate per (cell id, feature) under the stated effects.
    prevalence
        Share of each category per feature, in the feature's category order.
    radiologist_kappa
        Target agreement among the simulated radiologists per feature.
    """

    protocol: dict[str, Any]
    power: PowerSpec
    cells: tuple[SimCell, ...]
    features: Mapping[str, tuple[str, ...]]
    tests: tuple[Test, ...]
    rates: Mapping[tuple[str, str], float]
    prevalence: Mapping[str, np.ndarray]
    radiologist_kappa: Mapping[str, float] = field(default_factory=dict)

    @property
    def hypotheses(self) -> tuple[str, ...]:
        """Hypothesis ids in protocol order."""
        return tuple(str(entry["id"]) for entry in self.protocol.get("hypotheses", []))

    def family(self, hypothesis: str) -> tuple[str, ...]:
        """Return the hypotheses whose p-values are adjusted together with ``hypothesis``'s."""
        confirmatory = {
            str(entry["id"]): bool(entry.get("confirmatory", True))
            for entry in self.protocol["hypotheses"]
        }
        return tuple(
            name for name in self.hypotheses if confirmatory[name] == confirmatory[hypothesis]
        )

    def only(self, hypotheses: tuple[str, ...]) -> Design:
        """Return the design of some hypotheses alone: their cells, features and tests."""
        tests = tuple(test for test in self.tests if test.hypothesis in hypotheses)
        needed: dict[str, set[str]] = {}
        for test in tests:
            for cell in (test.cell, test.comparator):
                if cell is not None:
                    needed.setdefault(cell.cell_id, set()).add(test.feature)
        entries = [entry for entry in self.protocol["hypotheses"] if entry["id"] in hypotheses]
        features = {feature for names in needed.values() for feature in names}
        return replace(
            self,
            protocol={**self.protocol, "hypotheses": entries},
            cells=tuple(cell for cell in self.cells if cell.cell_id in needed),
            features={cell_id: tuple(sorted(names)) for cell_id, names in needed.items()},
            tests=tests,
            rates={key: rate for key, rate in self.rates.items() if key[0] in needed},
            prevalence={name: share for name, share in self.prevalence.items() if name in features},
            radiologist_kappa={
                name: kappa for name, kappa in self.radiologist_kappa.items() if name in features
            },
        )


def _matches(cell: SimCell, selection: Mapping[str, Any]) -> bool:
    for key in CELL_KEYS:
        if key not in selection:
            continue
        expected = selection[key]
        if key == "sequences":
            expected = "+".join(expected) if isinstance(expected, list | tuple) else expected
            if cell.sequences_label != str(expected):
                return False
        elif str(getattr(cell, key)) != str(expected):
            return False
    return True


def _comparator(cell: SimCell, versus: Mapping[str, Any], cells: list[SimCell]) -> SimCell | None:
    selection = {key: getattr(cell, key) for key in CELL_KEYS}
    selection["sequences"] = cell.sequences_label
    selection.update(versus)
    found = [other for other in cells if _matches(other, selection)]
    return found[0] if found else None


def cell_label(cell: SimCell) -> str:
    """Return a readable cell name: reader, strategy, sequences and replicate."""
    return f"{cell.reader} | {cell.strategy} | {cell.sequences_label} | r{cell.replicate}"


def _needed(feature: str) -> str:
    spec = FEATURES[feature]
    return " or ".join("+".join(option) for option in (spec.needs, *spec.alternatives))


def _reader_rates(protocol: Protocol, reader: str, hypothesis: str) -> Mapping[str, Any]:
    stated = protocol.power.error_rates if protocol.power else {}
    if reader in stated:
        return stated[reader]
    spec = next(item for item in protocol.grid.readers if item.name == reader)
    if isinstance(spec, SimulatedReaderSpec):
        return spec.error_rates
    raise UserInputError(
        f"power.error_rates has no entry for reader {reader!r}, which hypothesis {hypothesis} "
        f"tests; state the error rates you expect of it, e.g. power.error_rates.{reader}: "
        "{default: 0.2}"
    )


def _check_covered(rates: Mapping[str, Any], cell: SimCell, feature: str) -> None:
    """Raise unless the rates state one for the feature and strategy, directly or by default."""
    entry = rates.get(feature, rates.get("default"))
    covered = entry is not None and (
        not isinstance(entry, Mapping) or cell.strategy in entry or "default" in entry
    )
    if not covered:
        raise UserInputError(
            f"the error rates of reader {cell.reader!r} give none for {feature} under strategy "
            f"{cell.strategy!r}; add '{feature}' or 'default' (with '{cell.strategy}' or "
            "'default' inside a per-strategy mapping)"
        )


def _prevalence(power: PowerSpec, feature: str) -> np.ndarray:
    categories = FEATURES[feature].categories
    stated = power.prevalence.get(feature)
    if stated is None:
        return np.full(len(categories), 1.0 / len(categories))
    return np.array([float(stated.get(category, 0.0)) for category in categories])


def resolve(protocol: Protocol) -> Design:
    """Resolve a protocol's hypotheses into simulated cells, tests and error rates.

    Raises
    ------
    study.errors.UserInputError
        When the protocol has no hypotheses, a hypothesis selects no cell or a
        cell without comparator, or a tested reader has no stated error rates.
    """
    if not protocol.hypotheses:
        raise UserInputError(
            f"protocol {protocol.id!r} registers no hypotheses, so there is no test whose power "
            "could be simulated; add a 'hypotheses' list"
        )
    power = protocol.power or PowerSpec()
    grid = [
        SimCell(
            cell.cell_id,
            cell.reader.name,
            cell.strategy,
            cell.sequences,
            cell.replicate,
            resolve_strategy(cell.strategy, protocol.prompts).images,
        )
        for cell in expand_grid(protocol)
    ]
    margin_default = protocol.analysis.noninferiority_margin
    tests: list[Test] = []
    needed: dict[str, set[str]] = {}
    for hypothesis in protocol.hypotheses:
        selected = [cell for cell in grid if _matches(cell, hypothesis.contrast)]
        if not selected:
            raise UserInputError(
                f"hypothesis {hypothesis.id}: contrast {hypothesis.contrast} selects no grid cell; "
                f"the grid has readers {', '.join(r.name for r in protocol.grid.readers)} and "
                f"strategies {', '.join(protocol.grid.strategies)}"
            )
        null = (
            -(hypothesis.margin or margin_default)
            if hypothesis.endpoint == "noninferiority"
            else hypothesis.null_value
        )
        for cell in selected:
            comparator = None
            if hypothesis.versus is not None:
                comparator = _comparator(cell, hypothesis.versus, grid)
                if comparator is None:
                    raise UserInputError(
                        f"hypothesis {hypothesis.id}: cell {cell_label(cell)} has no comparator "
                        f"cell {hypothesis.versus} in the grid; point 'versus' at grid readers, "
                        "strategies or sequences"
                    )
                if comparator == cell:
                    raise UserInputError(
                        f"hypothesis {hypothesis.id}: 'versus' {hypothesis.versus} selects the "
                        f"contrast cell {cell_label(cell)} itself; name another strategy, reader "
                        "or sequence combination"
                    )
            for feature in hypothesis.features:
                for used in (cell, comparator):
                    if used is not None and not used.judgeable(feature):
                        raise UserInputError(
                            f"hypothesis {hypothesis.id}: cell {cell_label(used)} does not "
                            f"show the sequences {feature} needs ({_needed(feature)}), so its "
                            "answers are all indeterminate and the test cannot reject; select "
                            "cells that show them"
                        )
                tests.append(
                    Test(hypothesis.id, hypothesis.endpoint, feature, cell, comparator, null)
                )
                for used in (cell, comparator):
                    if used is not None:
                        needed.setdefault(used.cell_id, set()).add(feature)

    cells = tuple(cell for cell in grid if cell.cell_id in needed)
    rates = {}
    for cell in cells:
        hypothesis = next(test.hypothesis for test in tests if cell in (test.cell, test.comparator))
        reader_rates = _reader_rates(protocol, cell.reader, hypothesis)
        stated = protocol.power is not None and cell.reader in protocol.power.error_rates
        for feature in needed[cell.cell_id]:
            if stated:
                # A grid simulated reader falls back to the built-in rate when it runs, so only
                # rates stated for the power analysis must cover every tested feature.
                _check_covered(reader_rates, cell, feature)
            rates[(cell.cell_id, feature)] = error_rate(reader_rates, feature, cell.strategy)
    features = sorted({feature for names in needed.values() for feature in names})
    kappas = {**DEFAULT_TARGET_KAPPA, **power.radiologist_kappa}
    return Design(
        protocol=protocol.model_dump(mode="json", exclude_none=True),
        power=power,
        cells=cells,
        features={cell.cell_id: tuple(sorted(needed[cell.cell_id])) for cell in cells},
        tests=tuple(tests),
        rates=rates,
        prevalence={feature: _prevalence(power, feature) for feature in features},
        radiologist_kappa={feature: float(kappas.get(feature, 0.6)) for feature in features},
    )
