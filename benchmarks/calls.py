"""Benchmark of reader calls against the local OpenAI-compatible server.

Run from the repository root::

    .venv/bin/python benchmarks/calls.py            # every measurement, about 6 minutes
    .venv/bin/python benchmarks/calls.py --calls 300 --cpu-calls 300

It measures, in one run:

1. throughput of :func:`study.calls.call_all` against a server with 200 ms
   latency and a limit of 1,200 requests per minute (a bound of 20 calls per
   second), at concurrency 8, 16, 32 and 64, with the reader declaring that
   limit and nothing tuned, beside a sequential loop (one call at a time);
2. the client's CPU time per call with a zero-latency server: keying the
   request, the store lookup, building and sending the request, storing the
   response and the attempt, and parsing the answer (rendering is done once
   beforehand and not counted);
3. a fully cached replay of calls whose responses are all stored: keying
   and store lookup, and then with the parsing of each answer added.

The server runs in a subprocess so that its CPU time is not the client's.
Calls per concurrency setting should exceed 1,200 so that the server's
60-second window fills and pacing, not the warm-up, sets the rate.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from study.answers import parse_answer
from study.calls import PendingCall, call_all
from study.prompts import build_prompt
from study.protocol import DecodingSpec, OpenAIReaderSpec
from study.readers import OpenAIReader, ReadRequest
from study.store import ResponseStore, request_key

FEATURES = ("aphe", "washout", "enhancing_capsule", "restricted_diffusion", "t2_hyperintensity")
SEQUENCES = ("t1_pre", "arterial", "portal_venous", "delayed")
KEY_VARIABLE = "VLMSTUDY_BENCHMARK_KEY"


class _Image:
    """A rendered image as prompts use it: sequence, PNG bytes and their SHA-256."""

    def __init__(self, sequence: str, png: bytes) -> None:
        import hashlib

        self.sequence = sequence
        self.png = png
        self.sha256 = hashlib.sha256(png).hexdigest()
        self.pixels = np.asarray(Image.open(io.BytesIO(png)))


def _images(rng: np.random.Generator, lesion: int) -> tuple[_Image, ...]:
    images = []
    ramp = np.linspace(60, 180, 256)[None, :] + np.linspace(0, 40, 256)[:, None]
    for sequence in SEQUENCES:
        pixels = np.clip(ramp + rng.normal(0, 1.5, (256, 256)), 0, 255).astype(np.uint8)
        pixels[100:150, 100:150] = 200 + lesion % 50
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(_Image(sequence, buffer.getvalue()))
    return tuple(images)


def _requests(count: int) -> list[ReadRequest]:
    rng = np.random.default_rng(0)
    images = [_images(rng, lesion) for lesion in range(20)]
    requests = []
    for index in range(count):
        shown = images[index % len(images)]
        prompt = build_prompt("zero_shot", FEATURES, SEQUENCES, shown)
        requests.append(
            ReadRequest(
                lesion_id=f"L{index:05d}",
                features=FEATURES,
                sequences=SEQUENCES,
                strategy="zero_shot",
                replicate=index,
                prompt=prompt,
                images=shown,
                decoding=DecodingSpec(),
            )
        )
    return requests


def _start_server(*arguments: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "study.local_server", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if "Serving at " not in line:
        process.kill()
        raise RuntimeError(f"the local server did not start: {line!r}")
    return process, line.split("Serving at ", 1)[1].split(";", 1)[0]


def _reader(base_url: str, concurrency: int, requests_per_minute: int | None) -> OpenAIReader:
    spec = OpenAIReaderSpec(
        kind="openai",
        name=f"bench-{concurrency}",
        base_url=base_url,
        model="local-vlm",
        api_key_env=KEY_VARIABLE,
        max_concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        timeout_s=30.0,
    )
    return OpenAIReader(spec)


def _pending(reader: OpenAIReader, requests: list[ReadRequest]) -> list[PendingCall]:
    calls = []
    for request in requests:
        request_json, key = request_key(
            reader.identity(),
            request.prompt.keyed_messages(),
            request.features,
            request.decoding.model_dump(mode="json"),
            request.replicate,
        )
        calls.append(PendingCall(key, request_json, request, 2000))
    return calls


def _throughput(base_url: str, concurrency: int, requests: list[ReadRequest], store) -> dict:
    reader = _reader(base_url, concurrency, 1200)
    calls = _pending(reader, requests)
    started = time.perf_counter()
    outcomes = call_all(reader, calls, store=store)
    elapsed = time.perf_counter() - started
    keys = {call.request_sha256 for call in calls}
    limited = sum(
        1
        for attempt in store.attempts()
        if attempt.kind == "rate_limited" and attempt.request_sha256 in keys
    )
    failed = sum(outcome.response is None for outcome in outcomes)
    return {"calls_per_s": len(calls) / elapsed, "rate_limited": limited, "failed": failed}


def _sequential(base_url: str, requests: list[ReadRequest], store) -> float:
    # One call in flight at a time, through the same client, store and parsing as the rest.
    reader = _reader(base_url, 1, 1200)
    calls = _pending(reader, requests)
    started = time.perf_counter()
    call_all(reader, calls, store=store)
    return len(calls) / (time.perf_counter() - started)


def _cpu_per_call(base_url: str, requests: list[ReadRequest], store) -> tuple[float, float]:
    reader = _reader(base_url, 8, None)
    started_cpu, started = time.process_time(), time.perf_counter()
    calls = _pending(reader, requests)
    missing = [call for call in calls if store.get(call.request_sha256) is None]
    outcomes = call_all(reader, missing, store=store)
    for outcome in outcomes:
        parse_answer(outcome.response.text, FEATURES, refusal=outcome.response.refusal)
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started
    return cpu / len(calls), len(calls) / wall


def _cached_replay(base_url: str, requests: list[ReadRequest], store) -> tuple[float, float]:
    """Return calls per second of keying plus store lookup, and of that plus parsing."""
    reader = _reader(base_url, 8, None)
    started = time.perf_counter()
    responses = [store.get(call.request_sha256) for call in _pending(reader, requests)]
    lookup = time.perf_counter() - started
    for response in responses:
        parse_answer(response.text, FEATURES, refusal=response.refusal)
    total = time.perf_counter() - started
    return len(requests) / lookup, len(requests) / total


def main() -> None:
    """Run every measurement and print a Markdown table of the figures."""
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1500, help="Calls per concurrency setting.")
    parser.add_argument("--sequential-calls", type=int, default=50)
    parser.add_argument("--cpu-calls", type=int, default=1000)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[8, 16, 32, 64], help="Settings to measure."
    )
    options = parser.parse_args()
    os.environ.setdefault(KEY_VARIABLE, "sk-benchmark-not-a-secret")

    folder = Path(tempfile.mkdtemp(prefix="vlmstudy-bench-calls-"))
    store = ResponseStore(folder / "responses.sqlite")
    rows = []

    server, base_url = _start_server("--latency", "0.2", "--requests-per-minute", "1200")
    try:
        offset = 0
        sequential = _sequential(base_url, _requests(options.sequential_calls), store)
        offset += options.sequential_calls
        rows.append(("sequential loop", sequential, sequential / 20.0, 0))
        for concurrency in options.concurrency:
            # A fresh server per setting starts each with an empty rate window.
            server.terminate()
            server.wait()
            server, base_url = _start_server("--latency", "0.2", "--requests-per-minute", "1200")
            requests = _requests(offset + options.calls)[offset:]
            offset += options.calls
            result = _throughput(base_url, concurrency, requests, store)
            rows.append(
                (
                    f"concurrency {concurrency}",
                    result["calls_per_s"],
                    result["calls_per_s"] / 20.0,
                    result["rate_limited"],
                )
            )
            print(rows[-1], f"failed={result['failed']}", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()

    server, base_url = _start_server()
    try:
        fresh = ResponseStore(folder / "cpu.sqlite")
        requests = _requests(offset + options.cpu_calls)[offset:]
        cpu_per_call, zero_latency_rate = _cpu_per_call(base_url, requests, fresh)
        replay, replay_parsed = _cached_replay(base_url, requests, fresh)
    finally:
        server.terminate()
        server.wait()

    print("| setting | calls/s | share of the 20 calls/s bound | 429s received |")
    print("|---|---|---|---|")
    for name, rate, share, limited in rows:
        print(f"| {name} | {rate:.2f} | {share:.1%} | {limited} |")
    print()
    print(f"client CPU per call, zero-latency server: {1000 * cpu_per_call:.2f} ms")
    print(f"zero-latency throughput at concurrency 8: {zero_latency_rate:.0f} calls/s")
    print(f"fully cached replay, keying and store lookup: {replay:.0f} calls/s")
    print(f"fully cached replay, with parsing of each answer: {replay_parsed:.0f} calls/s")


if __name__ == "__main__":
    main()
