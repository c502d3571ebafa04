"""``vlmstudy power``: power and type I error of every hypothesis, by simulation."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from study.errors import UserInputError
from study.protocol import MAX_POWER_LESIONS, MAX_POWER_STUDIES


class StudiesBar:
    """A progress bar on standard error of simulated studies, opened when the total is known."""

    def __init__(self, description: str = "power") -> None:
        self.description = description
        self._bar = None

    def start(self, total: int) -> None:
        """Open the bar for ``total`` studies."""
        from tqdm import tqdm

        self._bar = tqdm(
            total=total, unit="study", desc=self.description, file=sys.stderr, dynamic_ncols=True
        )

    def update(self, done: int) -> None:
        """Count ``done`` more finished studies."""
        if self._bar is not None:
            self._bar.update(done)

    def close(self) -> None:
        """Close the bar if it was opened."""
        if self._bar is not None:
            self._bar.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 10 or max(sizes) > MAX_POWER_LESIONS:
        raise UserInputError(
            f"--lesions {text!r}: give cohort sizes from 10 to {MAX_POWER_LESIONS} lesions, "
            "comma-separated, e.g. 50,100,200,400"
        )
    return sorted(set(sizes))


@click.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@click.option(
    "--n-sim",
    type=click.IntRange(min=10, max=MAX_POWER_STUDIES),
    default=None,
    help="Simulated studies per cohort size and scenario [default: power.n_sim, else 500].",
)
@click.option(
    "--lesions",
    default=None,
    help="Cohort sizes, comma-separated, e.g. 50,100,200,400 [default: power.lesions].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Processes that simulate at the same time [default: every core].",
)
def power(protocol_file: Path, n_sim: int | None, lesions: str | None, workers: int | None) -> None:
    """Estimate the power of PROTOCOL_FILE's hypotheses by simulating whole studies.

    Each simulated study draws a cohort, radiologists at the stated agreement
    and simulated answers at the stated error rates (the 'power' section),
    then runs the registered hypothesis tests. Power is the share of studies
    that reject under the stated effects; type I error the share under no
    effect. Run it before 'vlmstudy register' so the result enters the
    registration record.
    """
    from analysis.report.power import endpoint_span, powered_sizes
    from study.power import power_protocol
    from study.power.simulation import EFFECT
    from study.registration import registration_path

    # A SIGTERM stops the simulation as Ctrl-C does, so the worker processes are ended too.
    signal.signal(signal.SIGTERM, _interrupt)
    bar = StudiesBar()
    try:
        result, record, path = power_protocol(
            protocol_file,
            lesions=_sizes(lesions),
            n_sim=n_sim,
            workers=workers,
            on_start=bar.start,
            on_progress=bar.update,
        )
    finally:
        bar.close()
    table = result.table
    click.echo(
        f"{'hypothesis':<10} {'scenario':<15} {'lesions':>7} {'rate':>6}  "
        f"{'Monte Carlo 95% CI':<18} {'endpoint':>9} {'null':>7}"
    )
    for row in table.itertuples(index=False):
        endpoint = endpoint_span(row.endpoint_min, row.endpoint_max)
        click.echo(
            f"{row.hypothesis:<10} {row.scenario:<15} {row.lesions:>7} {row.rate:>6.3f}  "
            f"{row.ci_low:.3f} to {row.ci_high:.3f}     {endpoint:>9} {row.null_value:>7.3f}"
        )
    click.echo(
        "rate: share of simulated studies that reject: power under the assumed effect (every "
        "test of the hypothesis rejects), type I error under no effect (any test rejects). "
        "endpoint: the value the assumptions imply, a range when the tests differ."
    )
    for hypothesis, size in powered_sizes(table).items():
        if size is None:
            best = table[(table["hypothesis"] == hypothesis) & (table["scenario"] == EFFECT)]
            click.echo(
                f"{hypothesis}: below 80% power at every simulated size "
                f"(at most {best['rate'].max():.2f}); simulate larger cohorts with --lesions"
            )
        else:
            click.echo(
                f"{hypothesis}: 80% power from {size} lesions (the smallest simulated size "
                "that reaches it)"
            )
    skipped = sorted(set(table.loc[table["n_sim"] == 0, "hypothesis"]))
    if skipped:
        click.echo(
            f"not simulated under no effect: {', '.join(skipped)}; no error rate from 0 to a "
            "uniform guess puts the endpoint at the null, because the null lies outside the "
            "range between a perfect reader and a guess against this reference, or the cell's "
            "strategy shows no images, so its error rate changes nothing"
        )
    click.echo(f"record: {path}")
    if registration_path(protocol_file).is_file():
        click.echo(
            "note: the protocol is already registered, so this result is not part of its "
            "registration record"
        )
