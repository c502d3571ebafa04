"""The report's building blocks: sections of text, tables and figures, as Markdown and HTML.

A section is data, not markup: the same :class:`Section` renders to both
formats, so the Markdown and the HTML report always say the same thing.
Text uses one inline mark, backticks for code, which becomes ``<code>`` in HTML.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Table:
    """A table as display strings, with a caption and the CSV file holding it at full precision."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    csv: str = ""
    collapsed: bool = False


@dataclass(frozen=True)
class Figure:
    """A figure written as ``figures/<name>.png`` and ``.svg``; ``png`` contains the PNG bytes."""

    name: str
    caption: str
    png: bytes = field(repr=False)


@dataclass(frozen=True)
class Details:
    """Long text shown collapsed in HTML and as a fenced block in Markdown."""

    summary: str
    text: str


Block = str | Table | Figure | Details


@dataclass(frozen=True)
class Section:
    """One numbered part of the report: a title, an HTML anchor and blocks in reading order."""

    anchor: str
    title: str
    blocks: tuple[Block, ...]


def format_number(value: object, digits: int = 3) -> str:
    """Format a value for display: floats rounded, NaN as ``NA``.

    Examples
    --------
    >>> format_number(0.12345), format_number(float("nan")), format_number(7)
    ('0.123', 'NA', '7')
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "NA" if np.isnan(value) else f"{value:.{digits}f}"
    if value is None or value is pd.NA:
        return "NA"
    return str(value)


def interval(low: float, high: float, digits: int = 3) -> str:
    """Format a confidence interval as ``low to high``.

    Examples
    --------
    >>> interval(0.1, 0.25)
    '0.100 to 0.250'
    """
    return f"{format_number(low, digits)} to {format_number(high, digits)}"


def table(frame: pd.DataFrame, caption: str, csv: str = "") -> Table:
    """Turn a DataFrame into a :class:`Table` of display strings (rounding for display only).

    Examples
    --------
    >>> table(pd.DataFrame({"k": [0.5]}), "c").rows
    (('0.500',),)
    """
    rows = tuple(
        tuple(format_number(value) for value in record) for record in frame.itertuples(index=False)
    )
    return Table(caption, tuple(str(column) for column in frame.columns), rows, csv)


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(section: Section, number: int) -> str:
    """Render a section as Markdown, with figures linked from ``figures/``."""
    lines = [f"## {number}. {section.title}", ""]
    for block in section.blocks:
        if isinstance(block, str):
            lines += [block, ""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"**{block.caption}**", ""]
            if not block.rows:
                lines += ["(no rows)", ""]
                continue
            lines.append("| " + " | ".join(map(_markdown_cell, block.headers)) + " |")
            lines.append("|" + " --- |" * len(block.headers))
            for row in block.rows:
                lines.append("| " + " | ".join(map(_markdown_cell, row)) + " |")
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.caption}](figures/{block.name}.png)", "", f"*{block.caption}*", ""]
        else:
            lines += [f"{block.summary}:", "", "```text", block.text, "```", ""]
    return "\n".join(lines)


def to_html(section: Section, number: int) -> str:
    """Render a section as HTML, with figures inlined as PNG data URIs."""
    parts = [f'<section id="{section.anchor}">', f"<h2>{number}. {html.escape(section.title)}</h2>"]
    for block in section.blocks:
        if isinstance(block, str):
            parts.append(f"<p>{_inline_html(block)}</p>")
        elif isinstance(block, Table):
            if block.caption:
                parts.append(f'<p class="caption">{_inline_html(block.caption)}</p>')
            if not block.rows:
                parts.append("<p>(no rows)</p>")
                continue
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
            body = "\n".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            markup = (
                f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
                f"<tbody>\n{body}\n</tbody>\n</table></div>"
            )
            if block.collapsed:
                count = len(block.rows)
                markup = f"<details><summary>Show the {count} rows</summary>{markup}</details>"
            parts.append(markup)
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            alt = html.escape(block.caption)
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
        else:
            parts.append(
                f"<details><summary>{html.escape(block.summary)}</summary>"
                f"<pre>{html.escape(block.text)}</pre></details>"
            )
    parts.append("</section>")
    return "\n".join(parts)


def write_tables(frames: dict[str, pd.DataFrame], folder: Path) -> None:
    """Write every full-precision table to ``folder/<name>.csv`` with ``\\n`` line ends."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in sorted(frames.items()):
        frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")
