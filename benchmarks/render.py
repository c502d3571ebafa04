"""Rendering benchmark: lesions per second from gzipped NIfTI, and peak memory against cohort size.

Builds phantom cohorts of 100 and 500 lesions (cached under ``--work``). Then, in a
fresh Python process per measurement, it renders every sequence of every lesion
(nine PNGs per lesion, 256 px) in manifest order, as a sweep cell does. It reports:

- lesions per second from the gzipped volumes, and the same from an uncompressed
  ``.nii`` copy of the 100-lesion cohort as the baseline of the same run;
- the peak of Python-tracked allocations (``tracemalloc``, numpy arrays included)
  and the peak resident set size (``ru_maxrss``) of each process.

Peak memory must not grow with the cohort: the 500-lesion figures should match
the 100-lesion ones.

Usage::

    .venv/bin/python benchmarks/render.py [--work .vlmstudy/bench-render]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

SIZES = (100, 500)
# The phantom gives 1, 2, 1, 3 lesions to consecutive patients (7 per 4 patients).
PATIENTS = {100: 58, 500: 286}


def _build(work: Path, lesions: int) -> Path:
    from study.data.phantom import build_phantom

    folder = work / f"phantom-{lesions}"
    if not (folder / "manifest.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        build_phantom(folder, patients=PATIENTS[lesions], exemplar_patients=0, seed=1)
    return folder


def _uncompressed_copy(source: Path, target: Path) -> Path:
    if (target / "manifest.csv").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for path in target.rglob("*.nii.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    manifest = (target / "manifest.csv").read_text().replace(".nii.gz", ".nii")
    (target / "manifest.csv").write_text(manifest)
    return target


def _measure(cohort_dir: str, limit: int) -> dict:
    """Render the first ``limit`` lesions of a cohort; runs inside the worker process."""
    from study.data.cohort import load_cohort
    from study.rendering import RenderSettings, render_lesion

    cohort = load_cohort(cohort_dir)
    lesions = list(cohort.lesions.values())[:limit]
    settings = RenderSettings(size=256)
    tracemalloc.start()
    started = time.perf_counter()
    for lesion in lesions:
        for sequence in lesion.sequences:
            render_lesion(lesion, sequence, settings)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "lesions": len(lesions),
        "seconds": elapsed,
        "lesions_per_second": len(lesions) / elapsed,
        "peak_traced_mib": peak / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run_worker(cohort_dir: Path, limit: int) -> dict:
    finished = subprocess.run(
        [sys.executable, __file__, "--worker", str(cohort_dir), "--limit", str(limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the cohorts, run every measurement in its own process and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".vlmstudy/bench-render"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(_measure(str(options.worker), options.limit)))
        return

    options.work.mkdir(parents=True, exist_ok=True)
    cohorts = {size: _build(options.work, size) for size in SIZES}
    plain = _uncompressed_copy(cohorts[100], options.work / "phantom-100-nii")
    rows = [("gzip, 100 lesions", _run_worker(cohorts[100], 100))]
    rows.append(("uncompressed, 100 lesions (baseline)", _run_worker(plain, 100)))
    rows.append(("gzip, 500 lesions", _run_worker(cohorts[500], 500)))

    baseline = rows[1][1]["lesions_per_second"]
    print("| cohort | lesions/s | vs baseline | peak traced MiB | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for label, result in rows:
        print(
            f"| {label} | {result['lesions_per_second']:.2f} | "
            f"{result['lesions_per_second'] / baseline:.2f} | "
            f"{result['peak_traced_mib']:.1f} | {result['peak_rss_mib']:.0f} |"
        )
    small, large = rows[0][1], rows[2][1]
    print(
        f"\npeak traced memory 500 / 100 lesions: "
        f"{large['peak_traced_mib'] / small['peak_traced_mib']:.2f}; "
        f"peak RSS 500 / 100 lesions: {large['peak_rss_mib'] / small['peak_rss_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
