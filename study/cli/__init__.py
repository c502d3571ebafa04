"""The ``vlmstudy`` command line: each command parses options and calls the Python API.

Exit codes: 0 on success, 2 for bad input (a one-paragraph message on
standard error, no traceback), 1 for a bug (with its traceback).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

import click

from study import __version__
from study.errors import UserInputError

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI to log to or read from "
    "[default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db in the working folder].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlmstudy")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to standard error.")
def cli(verbose: bool) -> None:
    """Run preregistered reader studies of vision-language models on liver MRI.

    A study is a protocol (protocols/NAME.yaml): register it, run its sweep,
    browse the runs in the MLflow UI, and write the statistical report.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    import optuna

    # Optuna logs every failed trial with its traceback; the sweep reports failures itself.
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)


@cli.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@tracking_uri_option
def register(protocol_file: Path, tracking_uri: str | None) -> None:
    """Freeze PROTOCOL_FILE: record its hash, the UTC time, the git commit and the cohort hash."""
    from study.data.cohort import cohort_sha256, load_cohort
    from study.power.record import power_record_path, read_power_record
    from study.prompts import check_request_limits
    from study.protocol import cohort_path, load_protocol, protocol_sha256
    from study.registration import register as register_protocol
    from study.registration import registration_path
    from study.tracking import Tracking

    protocol = load_protocol(protocol_file)
    cohort_dir = cohort_path(protocol, protocol_file)
    check_request_limits(protocol, load_cohort(cohort_dir))
    power_file = power_record_path(protocol_file, protocol.id)
    stale = read_power_record(protocol_file, protocol.id)
    first_registration = not registration_path(protocol_file).is_file()
    if first_registration and stale and stale["protocol_sha256"] != protocol_sha256(protocol_file):
        raise UserInputError(
            f"{power_file} was computed for another version of the protocol; run 'vlmstudy "
            f"power {protocol_file}' again so the registration carries a matching power "
            "analysis, or delete the file to register without one"
        )
    record = register_protocol(protocol_file, cohort_sha256=cohort_sha256(cohort_dir))
    click.echo(f"registered {record['protocol_id']} at {record['registered_at']}")
    click.echo(f"protocol sha256: {record['protocol_sha256']}")
    click.echo(f"cohort sha256:   {record['cohort_sha256']}")
    click.echo(f"record: {registration_path(protocol_file)}")
    if "power" in record:
        click.echo(f"power analysis: included (computed at {record['power']['computed_at']})")
    elif power_file.is_file():
        click.echo(
            f"power analysis: not included; {power_file} was written after the protocol was "
            "first registered"
        )
    else:
        click.echo("power analysis: none (run 'vlmstudy power' first to include one)")
    tracking = Tracking(tracking_uri)
    run_id = tracking.log_registration(record)
    click.echo(f"logged to MLflow ({tracking.tracking_uri}) as run {run_id}")


class _ProgressBar:
    """A progress bar on standard error: cells done, calls per second, cost so far, time left."""

    def __init__(self) -> None:
        self._bar = None
        self._calls = 0
        self._cost = 0.0

    def __call__(self, report) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=report.total,
                initial=report.done - 1,
                unit="cell",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self._calls += report.calls
        self._cost += report.cost_usd
        elapsed = self._bar.format_dict["elapsed"]
        rate = f"{self._calls / elapsed:.1f}" if elapsed >= 1.0 else "-"
        self._bar.set_postfix_str(
            f"{rate} calls/s, cost ${self._cost:.2f}, "
            f"last: {report.cell.reader.name} {report.cell.strategy}"
        )
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


storage_option = click.option(
    "--storage",
    "storage_url",
    default=None,
    help="Optuna storage URL shared by workers on many machines, e.g. "
    "postgresql://user:password@host:5432/db [default: a journal file under .vlmstudy/optuna].",
)


@cli.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@tracking_uri_option
@storage_option
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Processes on this machine that run cells at the same time.",
)
@click.option(
    "--deviation",
    default=None,
    help="Reason for running a protocol or cohort that changed since registration; "
    "it is recorded with a diff in the run and the report.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the number of calls, what is already stored, and estimated tokens and cost "
    "(US dollars); call no reader and log no run.",
)
def run(
    protocol_file: Path,
    tracking_uri: str | None,
    storage_url: str | None,
    workers: int,
    deviation: str | None,
    dry_run: bool,
) -> None:
    """Run (or resume) every cell of PROTOCOL_FILE; print the parent run id last.

    A sweep that was killed or failed is resumed: finished cells are kept, the
    others rerun, and stored responses are reused, so no call is paid twice.
    """
    if dry_run:
        from study.plan import plan_run
        from study.sweep import state_dir

        for line in plan_run(protocol_file, state_dir() / "responses.sqlite").lines():
            click.echo(line)
        return
    from study.sweep import run_protocol

    bar = _ProgressBar()
    try:
        result = run_protocol(
            protocol_file,
            tracking_uri=tracking_uri,
            deviation=deviation,
            workers=workers,
            storage_url=storage_url,
            on_cell_done=bar,
        )
    finally:
        bar.close()
    calls = result.predictions.drop_duplicates(["cell_id", "request_sha256"])
    cached = int(calls["cached"].sum())
    if result.resumed:
        click.echo(f"resumed the unfinished sweep {result.run_id}")
    click.echo(f"calls: {len(calls)} ({cached} from the response store)")
    click.echo(f"tracking uri: {result.tracking_uri}")
    click.echo(f"run_id: {result.run_id}")


@cli.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@click.option(
    "--storage",
    "storage_url",
    required=True,
    help="The Optuna storage URL that 'vlmstudy run --storage' uses, e.g. "
    "postgresql://user:password@host:5432/db.",
)
@click.option(
    "--run-id",
    default=None,
    help="Parent run id of the sweep to join [default: the newest sweep of the protocol].",
)
@tracking_uri_option
def worker(
    protocol_file: Path, storage_url: str, run_id: str | None, tracking_uri: str | None
) -> None:
    """Join a running sweep of PROTOCOL_FILE from this machine and run cells until none is left."""
    from study.sweep import run_worker

    ran = run_worker(
        protocol_file, storage_url=storage_url, run_id=run_id, tracking_uri=tracking_uri
    )
    click.echo(f"this worker ran {ran} cell(s)")


@cli.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@tracking_uri_option
def status(protocol_file: Path, tracking_uri: str | None) -> None:
    """Print whether PROTOCOL_FILE is registered and the progress of each of its sweeps."""
    from datetime import UTC, datetime

    from study.status import study_status

    state = study_status(protocol_file, tracking_uri=tracking_uri)
    if not state.registered:
        registration = "not registered"
    elif state.changed_since_registration:
        registration = "registered, but changed since (a run needs --deviation)"
    else:
        registration = "registered, unchanged"
    click.echo(f"protocol {state.protocol_id}: {registration}")
    if not state.sweeps:
        click.echo("no sweeps in the tracking store")
    for sweep in state.sweeps:
        started = datetime.fromtimestamp(sweep.started_at / 1000, UTC)
        started_text = started.strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(
            f"run {sweep.run_id}  started {started_text}  {sweep.status.lower()}  "
            f"cells {sweep.cells_done}/{sweep.cells_total}"
        )


@cli.command()
@click.argument("run_id")
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path),
    help="File to write: .csv or .parquet.",
)
@tracking_uri_option
def export(run_id: str, out_file: Path, tracking_uri: str | None) -> None:
    """Write the predictions table of parent run RUN_ID to a CSV or Parquet file."""
    from analysis.records import load_predictions

    suffix = out_file.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserInputError(f"--out {out_file}: the file must end in .csv or .parquet.")
    predictions = load_predictions(run_id, tracking_uri=tracking_uri)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + ".partial")
    if suffix == ".csv":
        predictions.to_csv(partial, index=False)
    else:
        predictions.to_parquet(partial, index=False)
    partial.replace(out_file)
    click.echo(f"wrote {len(predictions)} rows to {out_file}")


@cli.command()
@click.argument("run_id")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder for report.html, report.md, figures/ and tables/ "
    "[default: reports/<protocol>-<run id>].",
)
@tracking_uri_option
def report(run_id: str, out_dir: Path | None, tracking_uri: str | None) -> None:
    """Write the statistical report of parent run RUN_ID."""
    from analysis.records import load_run_records
    from analysis.report import build_report, log_report

    records = load_run_records(run_id, tracking_uri=tracking_uri)
    if out_dir is None:
        out_dir = Path("reports") / f"{records.protocol['id']}-{run_id[:8]}"
    analysis = records.protocol.get("analysis", {})
    paths = build_report(
        records,
        out_dir,
        n_resamples=int(analysis.get("bootstrap_resamples", 1000)),
        seed=int(analysis.get("seed", 20261204)),
    )
    log_report(run_id, out_dir, tracking_uri=tracking_uri)
    click.echo(f"report: {paths.html}")
    click.echo(f"markdown: {paths.markdown}")
    click.echo(f"logged under artifacts report/ of run {run_id}")


@cli.command()
@click.option(
    "--protocol",
    "protocol_file",
    default="protocols/demo.yaml",
    show_default=True,
    type=click.Path(path_type=Path),
    help="The demo protocol to register and run.",
)
@tracking_uri_option
def demo(protocol_file: Path, tracking_uri: str | None) -> None:
    """Build the phantom cohort, register and run the demo protocol, and write its report."""
    from study.cli.power import StudiesBar
    from study.demo import run_demo

    bar = _ProgressBar()
    power_bar = StudiesBar()
    try:
        outcome = run_demo(
            protocol_file,
            tracking_uri=tracking_uri,
            on_cell_done=bar,
            on_power_start=power_bar.start,
            on_power_progress=power_bar.update,
        )
    finally:
        power_bar.close()
        bar.close()
    click.echo(f"cohort: {outcome.cohort_dir}")
    click.echo(f"registration record: {outcome.registration}")
    click.echo(f"response store and Optuna journal: {outcome.state_dir}")
    click.echo(f"MLflow store: {outcome.tracking_uri} (browse it with 'vlmstudy ui')")
    click.echo(f"report: {outcome.report_html}")
    click.echo(f"run_id: {outcome.run_id}")


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; keep the loopback address unless you mean to share the UI.",
)
@click.option("--port", default=5000, show_default=True, help="TCP port of the UI.")
@tracking_uri_option
def ui(host: str, port: int, tracking_uri: str | None) -> None:
    """Serve the MLflow UI for the tracking store."""
    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserInputError(
                f"cannot serve on {host}:{port} ({error.strerror}); "
                "choose another port with --port."
            ) from None
    click.echo(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C stops it)", err=True)
    sys.stderr.flush()
    # Replace this process with the server, so Ctrl-C and SIGTERM reach it directly.
    os.execv(sys.executable, command)


@cli.command()
@click.argument("features", nargs=-1)
def schema(features: tuple[str, ...]) -> None:
    """Print the answer JSON Schema for FEATURES (default: every feature)."""
    from study.answers import answer_schema
    from study.lirads import FEATURES

    unknown = [name for name in features if name not in FEATURES]
    if unknown:
        raise UserInputError(
            f"unknown feature(s) {unknown}; known features: {', '.join(FEATURES)}."
        )
    click.echo(json.dumps(answer_schema(features or tuple(FEATURES)), indent=2))


def _register_command_modules() -> None:
    # Each topic's commands live in their own module under study/cli/.
    from study.cli import data, power, prompts, tune

    cli.add_command(data.data)
    cli.add_command(power.power)
    cli.add_command(tune.tune)
    cli.add_command(prompts.prompts)


_register_command_modules()


def main() -> None:
    """Run the command line, turning bad input into exit code 2 without a traceback."""
    # Artifact downloads are small and many; their progress bars would bury the command's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        cli.main(standalone_mode=False)
    except UserInputError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
