"""The demo: a phantom cohort, the demo protocol registered and run, and its report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from study.data.cohort import cohort_sha256, load_cohort
from study.errors import UserInputError
from study.power.record import power_protocol
from study.protocol import cohort_path, load_protocol, protocol_sha256
from study.registration import register, registrable_power, registration_path
from study.sweep import run_protocol, state_dir
from study.tracking import Tracking


@dataclass(frozen=True)
class DemoOutcome:
    """The cohort folder, MLflow store, run id and report file the demo wrote."""

    cohort_dir: Path
    registration: Path
    state_dir: Path
    tracking_uri: str
    run_id: str
    report_html: Path


def run_demo(
    protocol_file: Path,
    *,
    tracking_uri: str | None = None,
    on_cell_done=None,
    on_power_start=None,
    on_power_progress=None,
) -> DemoOutcome:
    """Build the phantom cohort if needed, register and run the protocol, and write the report.

    A protocol with a ``power`` section gets its power simulation first, unless
    it is registered already, so the registration record carries it.
    """
    from analysis.records import load_run_records
    from analysis.report import build_report, log_report
    from study.data.phantom import build_phantom

    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    cohort_dir = cohort_path(protocol, protocol_file, must_exist=False)
    if not (cohort_dir / "manifest.csv").is_file():
        if protocol.cohort.phantom is None:
            raise UserInputError(
                f"{protocol_file}: the cohort {cohort_dir} does not exist and the protocol has no "
                "'cohort.phantom' section to build it from; add one, "
                "or point 'cohort.path' at a cohort."
            )
        phantom = protocol.cohort.phantom
        build_phantom(cohort_dir, patients=phantom.patients, seed=phantom.seed)
    load_cohort(cohort_dir)
    if protocol.power is not None and not registration_path(protocol_file).is_file():
        sha256 = protocol_sha256(protocol_file)
        if registrable_power(protocol_file, protocol.id, sha256) is None:
            # The sample-size justification comes before registration, as in a real study.
            power_protocol(protocol_file, on_start=on_power_start, on_progress=on_power_progress)
    record = register(protocol_file, cohort_sha256=cohort_sha256(cohort_dir))
    Tracking(tracking_uri).log_registration(record)

    result = run_protocol(protocol_file, tracking_uri=tracking_uri, on_cell_done=on_cell_done)
    records = load_run_records(result.run_id, tracking_uri=result.tracking_uri)
    out_dir = Path("reports") / f"{protocol.id}-{result.run_id[:8]}"
    paths = build_report(
        records,
        out_dir,
        n_resamples=protocol.analysis.bootstrap_resamples,
        seed=protocol.analysis.seed,
    )
    log_report(result.run_id, out_dir, tracking_uri=result.tracking_uri)
    return DemoOutcome(
        cohort_dir,
        registration_path(protocol_file).resolve(),
        state_dir(),
        result.tracking_uri,
        result.run_id,
        paths.html.resolve(),
    )
