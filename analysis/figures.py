"""The report's figures: forest plots, a heatmap and confusion matrices, saved reproducibly.

Every figure is drawn with matplotlib's Agg backend and saved by :func:`save`,
which strips the creation date and software version from the PNG and SVG
metadata and fixes the SVG id salt, so drawing the same data twice gives
byte-identical files with the same matplotlib version.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter  # noqa: E402

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "svg.hashsalt": "vlmstudy-report",
    "svg.fonttype": "none",
    "path.simplify": False,
}
"""rcParams for every figure: text sizes readable at 100 % zoom and a fixed SVG id salt."""

DPI = 100
"""Pixels per inch of the PNG files; the HTML report shows them at their natural size."""


def save(figure: plt.Figure, folder: Path, name: str) -> bytes:
    """Write ``folder/name.png`` and ``folder/name.svg`` without dates, and return the PNG bytes.

    Examples
    --------
    >>> import tempfile
    >>> figure, axes = plt.subplots()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     first = save(figure, Path(folder), "f")
    ...     second = save(figure, Path(folder), "f")
    >>> first == second
    True
    """
    folder.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        png = buffer.getvalue()
        (folder / f"{name}.png").write_bytes(png)
        figure.savefig(
            folder / f"{name}.svg",
            format="svg",
            metadata={"Date": None, "Creator": None},
        )
    plt.close(figure)
    return png


def forest_plot(
    rows: pd.DataFrame,
    *,
    label: str,
    estimate: str,
    low: str,
    high: str,
    xlabel: str,
    title: str,
    reference: float | None = None,
    reference_label: str = "",
    xlim: tuple[float, float] | None = (-0.2, 1.0),
    log: bool = False,
) -> plt.Figure:
    """Draw one row per estimate with its interval as a horizontal line, top row first.

    A NaN interval is drawn as the point alone; a NaN estimate leaves the row empty.
    ``log`` puts the x axis on a log scale (for odds ratios) and drops the line at 0.

    Examples
    --------
    >>> rows = pd.DataFrame({"cell": ["a", "b"], "k": [0.5, 0.7], "lo": [0.3, 0.6],
    ...                      "hi": [0.7, 0.8]})
    >>> figure = forest_plot(rows, label="cell", estimate="k", low="lo", high="hi",
    ...                      xlabel="kappa (unitless)", title="t")
    >>> figure.axes[0].get_xlabel()
    'kappa (unitless)'
    """
    with plt.rc_context(STYLE):
        height = 1.2 + 0.32 * len(rows)
        figure, axes = plt.subplots(figsize=(8.0, height), layout="constrained")
        positions = np.arange(len(rows))[::-1]
        values = rows[estimate].to_numpy(dtype=float)
        lows = rows[low].to_numpy(dtype=float)
        highs = rows[high].to_numpy(dtype=float)
        for y, value, a, b in zip(positions, values, lows, highs, strict=True):
            if np.isfinite(a) and np.isfinite(b):
                axes.plot([a, b], [y, y], color="#1f4e79", linewidth=1.6)
            if np.isfinite(value):
                axes.plot([value], [y], marker="s", color="#1f4e79", markersize=5)
        if reference is not None and np.isfinite(reference):
            axes.axvline(
                reference, color="#b22222", linestyle="--", linewidth=1.2, label=reference_label
            )
            figure.legend(loc="outside lower right", frameon=False)
        if log:
            axes.set_xscale("log")
            axes.xaxis.set_major_locator(FixedLocator(2.0 ** np.arange(-6, 7)))
            axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            axes.xaxis.set_minor_formatter(NullFormatter())
        else:
            axes.axvline(0.0, color="#888888", linewidth=0.8)
        axes.set_yticks(positions, list(rows[label].astype(str)))
        axes.set_ylim(-0.7, len(rows) - 0.3)
        if xlim is not None:
            # Widen the default range so no interval or point is cut off at the edge.
            finite = np.concatenate([lows, highs, values])
            finite = finite[np.isfinite(finite)]
            left = min(xlim[0], float(finite.min()) - 0.05) if finite.size else xlim[0]
            right = max(xlim[1], float(finite.max()) + 0.05) if finite.size else xlim[1]
            axes.set_xlim(left, right)
        axes.set_xlabel(xlabel)
        axes.set_title(title)
        axes.grid(axis="x", color="#dddddd", linewidth=0.6)
    return figure


def heatmap(
    values: pd.DataFrame,
    *,
    xlabel: str,
    ylabel: str,
    colorbar_label: str,
    title: str,
    vmin: float = -0.2,
    vmax: float = 1.0,
) -> plt.Figure:
    """Draw a table of values as coloured cells with the value written in each (NaN shown as NA).

    Examples
    --------
    >>> frame = pd.DataFrame([[0.1, 0.9]], index=["aphe"], columns=["S1", "S2"])
    >>> heatmap(frame, xlabel="x", ylabel="y", colorbar_label="kappa",
    ...         title="t").axes[0].get_ylabel()
    'y'
    """
    with plt.rc_context(STYLE):
        width = 2.8 + 1.1 * values.shape[1]
        height = 1.6 + 0.42 * values.shape[0]
        figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
        data = values.to_numpy(dtype=float)
        image = axes.imshow(
            np.ma.masked_invalid(data), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto"
        )
        for (i, j), value in np.ndenumerate(data):
            text = "NA" if np.isnan(value) else f"{value:.2f}"
            # Dark text on the bright end of viridis and on NA cells, white text elsewhere.
            dark_text = not np.isfinite(value) or value > vmin + 0.6 * (vmax - vmin)
            axes.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color="black" if dark_text else "white",
            )
        axes.set_xticks(range(values.shape[1]), list(values.columns))
        axes.set_yticks(range(values.shape[0]), list(values.index))
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        figure.colorbar(image, ax=axes, label=colorbar_label)
    return figure


def confusion_matrices(
    matrices: Sequence[tuple[str, pd.DataFrame]], *, title: str, columns: int = 3
) -> plt.Figure:
    """Draw one count matrix per panel: reference answer in rows, reader answer in columns.

    Examples
    --------
    >>> counts = pd.DataFrame([[3, 1], [0, 4]], index=["absent", "present"],
    ...                       columns=["absent", "present"])
    >>> figure = confusion_matrices([("t2", counts)], title="t")
    >>> figure.axes[0].get_xlabel()
    'reader answer (count of lesions)'
    """
    with plt.rc_context(STYLE):
        count = max(len(matrices), 1)
        columns = min(columns, count)
        rows = int(np.ceil(count / columns))
        figure, grid = plt.subplots(
            rows,
            columns,
            figsize=(3.6 * columns, 3.3 * rows + 0.5),
            layout="constrained",
            squeeze=False,
        )
        for axes in grid.ravel()[len(matrices) :]:
            axes.set_visible(False)
        for axes, (name, matrix) in zip(grid.ravel(), matrices, strict=False):
            data = matrix.to_numpy(dtype=float)
            axes.imshow(data, cmap="Blues", vmin=0, vmax=max(float(data.max()), 1.0))
            for (i, j), value in np.ndenumerate(data):
                dark = value > 0.6 * max(float(data.max()), 1.0)
                axes.text(
                    j,
                    i,
                    f"{int(value)}",
                    ha="center",
                    va="center",
                    color="white" if dark else "black",
                )
            axes.set_xticks(range(data.shape[1]), list(matrix.columns), rotation=30, ha="right")
            axes.set_yticks(range(data.shape[0]), list(matrix.index))
            axes.set_xlabel("reader answer (count of lesions)")
            axes.set_ylabel("reference answer")
            axes.set_title(name)
        figure.suptitle(title)
    return figure


def power_curve(table: pd.DataFrame, *, title: str = "Power by cohort size") -> plt.Figure:
    """Draw each hypothesis's rejection rate against cohort size, with Monte Carlo intervals.

    ``table`` has the columns of :data:`study.power.simulation.RESULT_COLUMNS`.
    Solid lines are power under the assumed effect, dashed lines the type I
    error under no effect. Dotted lines mark each hypothesis's alpha and 0.8,
    the conventional power target.

    Examples
    --------
    >>> table = pd.DataFrame({"hypothesis": ["H1"] * 4,
    ...     "scenario": ["assumed effect"] * 2 + ["no effect"] * 2, "lesions": [50, 100] * 2,
    ...     "rate": [0.6, 0.9, 0.05, 0.04], "ci_low": [0.5, 0.85, 0.03, 0.02],
    ...     "ci_high": [0.7, 0.95, 0.08, 0.07], "alpha": 0.05})
    >>> [line.get_label() for line in power_curve(table).axes[0].get_lines()][:2]
    ['H1 power', 'H1 type I error']
    """
    colours = ["#1f4e79", "#b22222", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f"]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(7.0, 4.2), layout="constrained")
        for index, (hypothesis, rows) in enumerate(table.groupby("hypothesis", sort=False)):
            colour = colours[index % len(colours)]
            for scenario, style, name in [
                ("assumed effect", "-", "power"),
                ("no effect", "--", "type I error"),
            ]:
                part = rows[rows["scenario"] == scenario].sort_values("lesions")
                if part.empty:
                    continue
                x = part["lesions"].to_numpy(dtype=float)
                y = part["rate"].to_numpy(dtype=float)
                axes.plot(x, y, style, marker="o", color=colour, label=f"{hypothesis} {name}")
                axes.vlines(x, part["ci_low"], part["ci_high"], color=colour, linewidth=1.0)
        for alpha in sorted(set(table["alpha"].astype(float))):
            axes.axhline(alpha, color="#888888", linestyle=":", linewidth=1.0)
        axes.axhline(0.8, color="#888888", linestyle=":", linewidth=1.0)
        sizes = sorted(set(table["lesions"].astype(int)))
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(FixedLocator(sizes))
        axes.xaxis.set_major_formatter(FormatStrFormatter("%d"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("lesions in the cohort (log scale)")
        axes.set_ylabel("share of simulated studies rejecting")
        axes.set_title(title)
        axes.grid(color="#dddddd", linewidth=0.6)
        figure.legend(loc="outside right upper", frameon=False)
    return figure
