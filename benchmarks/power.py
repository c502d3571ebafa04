"""Benchmark: simulated studies per second of ``vlmstudy power``, one process against several.

The demo protocol's two hypotheses (a kappa test and a non-inferiority test)
are simulated at each cohort size under both scenarios. The baseline runs
every study in this process (``workers=1``); the parallel run shares the same
studies among ``--workers`` processes. Both runs give identical tables, which
the benchmark checks, so the ratio of their wall times is the speed-up of the
process pool, start-up of the worker processes included.

Run from the repository root::

    .venv/bin/python benchmarks/power.py --workers 2
"""

from __future__ import annotations

import argparse
import os
import time

from study.power import resolve, run_power
from study.protocol import load_protocol


def timed(design, lesions: list[int], n_sim: int, workers: int):
    started = time.perf_counter()
    result = run_power(design, lesions=lesions, n_sim=n_sim, workers=workers)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="protocols/demo.yaml")
    parser.add_argument("--lesions", default="100,400")
    parser.add_argument("--n-sim", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    arguments = parser.parse_args()
    lesions = [int(size) for size in arguments.lesions.split(",")]
    design = resolve(load_protocol(arguments.protocol))
    studies = arguments.n_sim * len(lesions) * (1 + len(design.hypotheses))

    alone, alone_seconds = timed(design, lesions, arguments.n_sim, 1)
    shared, shared_seconds = timed(design, lesions, arguments.n_sim, arguments.workers)
    if not alone.table.equals(shared.table):
        raise SystemExit("the parallel run gave another table than the single process")

    print(f"studies simulated per run: {studies} (sizes {lesions}, {arguments.n_sim} per size)")
    print(f"one process:  {alone_seconds:7.1f} s, {studies / alone_seconds:6.1f} studies/s")
    print(
        f"{arguments.workers} processes: {shared_seconds:7.1f} s, "
        f"{studies / shared_seconds:6.1f} studies/s"
    )
    print(f"speed-up: {alone_seconds / shared_seconds:.2f}x on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
