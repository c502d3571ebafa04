"""The Monte Carlo loop of ``vlmstudy power``: simulate studies, run the registered tests, count.

Scenarios: ``assumed effect`` draws every tested reader at the error rates the
protocol states. ``no effect`` for hypothesis H sets each of H's tested cells
to the error rate at which its endpoint equals the null
(:meth:`study.power.population.Population.null_rate`), the others as stated.
The share of studies in which H is rejected is its power under the first and
its type I error under the second. A hypothesis with several tests (features
or cells) counts toward power when every test rejects, and toward type I
error when any test rejects, since the report would then declare one row
significant. Each study's draws come from a seed built
from the power seed, the scenario, the cohort size and the study's number, so
the result does not depend on how many processes share the work.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context

import numpy as np
import pandas as pd

from analysis.accuracy import proportion_ci
from analysis.report.registered import registered_tests
from study import __version__
from study.errors import UserInputError
from study.power.design import Design, cell_label
from study.power.draws import simulate_records
from study.power.population import Population

EFFECT = "assumed effect"
NO_EFFECT = "no effect"

RESULT_COLUMNS = [
    "hypothesis",
    "scenario",
    "lesions",
    "n_sim",
    "n_tests",
    "rejected",
    "rate",
    "ci_low",
    "ci_high",
    "rejected_all",
    "rejected_any",
    "endpoint_min",
    "endpoint_max",
    "null_value",
    "alpha",
]
"""Columns of :attr:`PowerResult.table`.

``rejected`` and ``rate`` count studies in which every test of the hypothesis
rejects under the assumed effect (power), and in which any test rejects under
no effect (type I error). ``rejected_all`` and ``rejected_any`` give both
counts for either scenario. ``endpoint_min`` and ``endpoint_max`` span the
endpoint values the scenario implies over the hypothesis's tests.
"""


@dataclass(frozen=True)
class Scenario:
    """Error rates per (cell id, feature) for one scenario."""

    name: str
    hypothesis: str | None
    rates: Mapping[tuple[str, str], float]
    design: Design


@dataclass(frozen=True)
class PowerResult:
    """The outcome of a power simulation.

    Attributes
    ----------
    table
        One row per hypothesis, scenario and cohort size; columns :data:`RESULT_COLUMNS`.
    tests
        One row per test and scenario: ``hypothesis``, ``scenario``, ``feature``,
        ``cell``, ``comparator``, ``endpoint``, ``error_rate``, ``endpoint_value``, ``null``.
    settings
        Cohort sizes, studies per size, seeds, resamples and the assumptions used.
    """

    table: pd.DataFrame
    tests: pd.DataFrame
    settings: dict

    def to_record(self, *, protocol_id: str, protocol_sha256: str) -> dict:
        """Return the JSON-ready record written beside the protocol and into its registration."""
        return {
            "protocol_id": protocol_id,
            "protocol_sha256": protocol_sha256,
            "computed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "package_version": __version__,
            "settings": self.settings,
            "tests": _records(self.tests),
            "results": _records(self.table),
        }


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def build_scenarios(design: Design, population: Population) -> tuple[list[Scenario], pd.DataFrame]:
    """Return the scenarios and, per test, its error rate and endpoint value in each.

    A hypothesis listed in ``power.effects`` gets, in the assumed-effect scenario,
    the error rate per tested cell that puts its endpoint at the stated value.
    """
    assumed = dict(design.rates)
    for test in design.tests:
        if test.hypothesis in design.power.effects:
            target = design.power.effects[test.hypothesis]
            rate = population.rate_for(test, target, design.rates)
            if not np.isfinite(rate):
                raise UserInputError(
                    f"power.effects.{test.hypothesis} = {target:g} cannot be reached for "
                    f"{test.feature} in cell {cell_label(test.cell)}: under these assumptions "
                    f"its {test.endpoint} ranges from a uniform guess to a perfect reader, and "
                    f"{target:g} lies outside that range; state a value inside it"
                )
            assumed[(test.cell.cell_id, test.feature)] = rate
    scenarios = [Scenario(EFFECT, None, assumed, design)]
    for hypothesis in design.hypotheses:
        rates = dict(assumed)
        for test in design.tests:
            if test.hypothesis == hypothesis:
                rates[(test.cell.cell_id, test.feature)] = population.null_rate(test, assumed)
        # Only the hypothesis's multiplicity family bears on its adjusted p-value.
        scenarios.append(
            Scenario(NO_EFFECT, hypothesis, rates, design.only(design.family(hypothesis)))
        )
    rows = []
    for scenario in scenarios:
        for test in design.tests:
            if scenario.hypothesis not in (None, test.hypothesis):
                continue
            rate = scenario.rates[(test.cell.cell_id, test.feature)]
            value = population.value(test, scenario.rates) if np.isfinite(rate) else np.nan
            rows.append(
                {
                    "hypothesis": test.hypothesis,
                    "scenario": scenario.name,
                    "feature": test.feature,
                    "cell": cell_label(test.cell),
                    "comparator": cell_label(test.comparator) if test.comparator else "",
                    "endpoint": test.endpoint,
                    "error_rate": rate,
                    "endpoint_value": value,
                    "null": test.null,
                }
            )
    return scenarios, pd.DataFrame(rows)


def _start_worker() -> None:
    """Use one BLAS thread per process, and leave Ctrl-C to the parent, which stops the pool."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(1)


def _pool(workers: int):
    """Start the worker processes with Ctrl-C ignored from their first instruction.

    A spawned process keeps an ignored signal across exec, and Python then
    installs no KeyboardInterrupt handler. So a Ctrl-C while the workers still
    import the package prints no traceback in them, and the parent stops the pool.
    """
    context = get_context("spawn")
    if threading.current_thread() is not threading.main_thread():
        return context.Pool(workers, initializer=_start_worker)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(workers, initializer=_start_worker)
    finally:
        signal.signal(signal.SIGINT, previous)


def _simulate_task(task: tuple) -> tuple[tuple[int, int], list]:
    key, design, rates, size, seeds, n_resamples = task
    return key, simulate_chunk(design, rates, size, seeds, n_resamples)


def simulate_chunk(
    design: Design,
    rates: Mapping[tuple[str, str], float],
    n_lesions: int,
    seeds: Sequence[Sequence[int]],
    n_resamples: int,
) -> list[dict[str, tuple[int, int, int]]]:
    """Simulate one study per seed and return, per hypothesis, (tests, rejected, total)."""
    analysis_seed = int(design.protocol.get("analysis", {}).get("seed", 20261204))
    outcomes = []
    for seed in seeds:
        records = simulate_records(design, rates, n_lesions, np.random.default_rng(list(seed)))
        tested = registered_tests(records, n_resamples=n_resamples, seed=analysis_seed)
        rejected = tested["decision"] == "H0 rejected"
        outcome = {}
        for hypothesis, index in tested.groupby("id").groups.items():
            outcome[str(hypothesis)] = (int(rejected[index].sum()), len(index))
        outcomes.append(outcome)
    return outcomes


def run_power(
    design: Design,
    *,
    lesions: Sequence[int],
    n_sim: int,
    workers: int | None = None,
    chunk: int = 10,
    scenarios: Sequence[str] = (EFFECT, NO_EFFECT),
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PowerResult:
    """Estimate each hypothesis's power and type I error at each cohort size by simulation.

    Parameters
    ----------
    design
        The resolved protocol (:func:`study.power.design.resolve`).
    lesions
        Cohort sizes to simulate.
    n_sim
        Simulated studies per scenario and size.
    workers
        Processes; default every core. With 1, everything runs in this process.
    chunk
        Studies per task handed to a process.
    scenarios
        Which of :data:`EFFECT` and :data:`NO_EFFECT` to simulate.
    on_start
        Called once with the number of studies to simulate.
    on_progress
        Called with the number of studies just finished.

    Returns
    -------
    PowerResult
    """
    power = design.power
    population = Population(design, seed=power.seed)
    chosen = scenarios
    scenarios, tests = build_scenarios(design, population)
    tests = tests[tests["scenario"].isin(chosen)].reset_index(drop=True)
    n_resamples = power.bootstrap_resamples or int(
        design.protocol.get("analysis", {}).get("bootstrap_resamples", 1000)
    )
    tasks = []
    for s, scenario in enumerate(scenarios):
        if scenario.name not in chosen:
            continue
        if any(not np.isfinite(rate) for rate in scenario.rates.values()):
            continue
        for size in lesions:
            seeds = [(power.seed, s, size, i) for i in range(n_sim)]
            for start in range(0, n_sim, chunk):
                tasks.append((s, size, seeds[start : start + chunk]))

    if on_start is not None:
        on_start(sum(len(seeds) for _, _, seeds in tasks))
    work = [
        ((s, size), scenarios[s].design, scenarios[s].rates, size, seeds, n_resamples)
        for s, size, seeds in tasks
    ]
    counts: dict[tuple[int, int], list] = {}
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        finished = map(_simulate_task, work)
        for key, outcomes in finished:
            _collect(counts, key, outcomes, on_progress)
    else:
        # Leaving the block, normally or on Ctrl-C or an error, terminates the workers.
        with _pool(workers) as pool:
            for key, outcomes in pool.imap_unordered(_simulate_task, work):
                _collect(counts, key, outcomes, on_progress)

    table = _summarise(design, scenarios, tests, counts, lesions)
    settings = {
        "lesions": list(lesions),
        "n_sim": n_sim,
        "seed": power.seed,
        "bootstrap_resamples": n_resamples,
        "analysis_seed": int(design.protocol.get("analysis", {}).get("seed", 20261204)),
        "assumptions": power.model_dump(mode="json"),
        "rule": (
            "power counts a study when every test of the hypothesis rejects; type I error "
            "counts it when any test rejects"
        ),
    }
    return PowerResult(table=table, tests=tests, settings=settings)


def _collect(counts: dict, key: tuple[int, int], outcomes: list, on_progress) -> None:
    counts.setdefault(key, []).extend(outcomes)
    if on_progress is not None:
        on_progress(len(outcomes))


def _summarise(design, scenarios, tests, counts, lesions) -> pd.DataFrame:
    alphas = {
        str(entry["id"]): float(entry.get("alpha", 0.05)) for entry in design.protocol["hypotheses"]
    }
    rows = []
    for s, scenario in enumerate(scenarios):
        if scenario.name not in set(tests["scenario"]):
            continue
        hypotheses = design.hypotheses if scenario.hypothesis is None else (scenario.hypothesis,)
        for hypothesis in hypotheses:
            mine = tests[(tests["hypothesis"] == hypothesis) & (tests["scenario"] == scenario.name)]
            for size in lesions:
                outcomes = [o[hypothesis] for o in counts.get((s, size), []) if hypothesis in o]
                n = len(outcomes)
                every = sum(rejected == total for rejected, total in outcomes)
                some = sum(rejected > 0 for rejected, _ in outcomes)
                # Power needs every test to reject; a false positive needs only one.
                counted = every if scenario.name == EFFECT else some
                interval = proportion_ci(counted, n) if n else None
                rows.append(
                    {
                        "hypothesis": hypothesis,
                        "scenario": scenario.name,
                        "lesions": int(size),
                        "n_sim": n,
                        "n_tests": len(mine),
                        "rejected": counted,
                        "rate": counted / n if n else np.nan,
                        "ci_low": interval.ci_low if interval else np.nan,
                        "ci_high": interval.ci_high if interval else np.nan,
                        "rejected_all": every,
                        "rejected_any": some,
                        "endpoint_min": float(mine["endpoint_value"].min()),
                        "endpoint_max": float(mine["endpoint_value"].max()),
                        "null_value": float(mine["null"].mean()),
                        "alpha": alphas[hypothesis],
                    }
                )
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
