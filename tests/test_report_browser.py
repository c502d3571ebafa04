"""The HTML report opened in headless Chromium: it renders, every image loads, no console errors.

Uses Debian's /usr/bin/chromium through the installed ``playwright`` package;
playwright never downloads a browser here. Skips only when that binary is absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.records import RunRecords
from analysis.report import PREDICTION_COLUMNS, build_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed")

LESIONS = [f"L{i}" for i in range(10)]
TRUTH = ["absent", "nonrim", "rim", "nonrim", "absent"] * 2


def _records() -> RunRecords:
    """Two cells reading aphe on ten lesions in six patients, three radiologists."""
    patients = [f"P{i // 2}" if i < 8 else f"P{i - 4}" for i in range(10)]
    rows = []
    for cell, sequences, flips in [("c1", "t1_pre+arterial", {2}), ("c2", "t2", {0, 4, 7})]:
        for index, lesion in enumerate(LESIONS):
            answer = "absent" if index in flips and TRUTH[index] != "absent" else TRUTH[index]
            if index in flips and TRUTH[index] == "absent":
                answer = "nonrim"
            rows.append(
                {
                    **dict.fromkeys(PREDICTION_COLUMNS, ""),
                    "protocol_id": "browser",
                    "protocol_sha256": "cd" * 32,
                    "run_id": "r",
                    "cell_id": cell,
                    "reader": "simulated",
                    "model_snapshot": "sim-1",
                    "strategy": "zero_shot",
                    "sequences": sequences,
                    "replicate": 0,
                    "patient_id": patients[index],
                    "lesion_id": lesion,
                    "feature": "aphe",
                    "answer": answer,
                    "confidence": 50.0,
                    "outcome": "valid",
                    "latency_s": 0.5,
                    "input_tokens": 100,
                    "output_tokens": 20,
                    "cost_usd": 0.001,
                    "cached": False,
                    "request_sha256": f"{cell}{lesion}",
                }
            )
    reads = pd.DataFrame(
        [
            (lesion, reader, "aphe", answer)
            for lesion, answer in zip(LESIONS, TRUTH, strict=True)
            for reader in ("A", "B", "C")
        ],
        columns=["lesion_id", "reader", "feature", "answer"],
    )
    reads.loc[(reads["reader"] == "C") & (reads["lesion_id"] == "L1"), "answer"] = "rim"
    return RunRecords(
        run_id="r",
        protocol={"id": "browser", "title": "Browser check"},
        registration={"registered_at": "2026-12-01T09:00:00+00:00"},
        predictions=pd.DataFrame(rows, columns=PREDICTION_COLUMNS),
        reads=reads,
        pathology=pd.DataFrame({"lesion_id": LESIONS, "diagnosis": "HCC"}),
        patients=pd.DataFrame({"lesion_id": LESIONS, "patient_id": patients, "split": "test"}),
    )


def test_report_renders_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    paths = build_report(_records(), tmp_path, n_resamples=50, seed=1)
    messages: list[str] = []
    failed_requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            page.goto(paths.html.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
            title = page.title()
            headings = page.locator("h2").all_inner_texts()
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            height = page.evaluate("() => document.body.scrollHeight")
        finally:
            browser.close()

    assert title == "Browser check"
    assert headings[0] == "1. Question, registration and deviations"
    assert len(headings) == 13
    assert headings[2] == "3. Sample size and power"
    assert len(images) >= 4
    assert all(complete and width > 0 for complete, width in images), images
    assert height > 2000
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000
    assert not [m for m in messages if m.startswith(("error", "pageerror"))], messages
    assert failed_requests == []
