"""``vlmstudy tune``: exploratory tuning on the development split."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("protocol_file", type=click.Path(path_type=Path))
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db].",
)
@click.option(
    "--trials",
    "n_trials",
    type=click.IntRange(min=1),
    default=None,
    help="Number of Optuna trials [default: tune.n_trials of the protocol].",
)
def tune(protocol_file: Path, tracking_uri: str | None, n_trials: int | None) -> None:
    """Tune the settings in PROTOCOL_FILE's 'tune' section on the development split.

    Every trial is logged to MLflow as an exploratory run; the evaluation
    split is never read.
    """
    from study.tune import tune_protocol

    result = tune_protocol(protocol_file, tracking_uri=tracking_uri, n_trials=n_trials)
    click.echo(f"trials: {result.n_trials}")
    click.echo(f"best value: {result.best_value:.4f}")
    for name, value in sorted(result.best_params.items()):
        click.echo(f"best {name}: {value}")
    click.echo(f"run_id: {result.run_id}")
