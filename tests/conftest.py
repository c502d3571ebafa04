"""Shared fixtures: paths to the repository and to the read-only shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed sequence of examples, so a red build can be replayed;
# locally they draw new examples each run and can find new counterexamples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED = REPOSITORY.parent / "shared"


def run_cli(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``vlmstudy`` in a subprocess, as a user would, and return the finished process."""
    environment = {**os.environ, **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    environment.pop("VLMSTUDY_HOME", None)
    if env:
        environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only shared folder beside the repository."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED
