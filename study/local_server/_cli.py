"""Command line of the local server, run by ``python -m study.local_server``."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence

from study.local_server._server import FAULT_KINDS, LocalOpenAIServer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground on 127.0.0.1 until interrupted; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m study.local_server",
        description="Serve an OpenAI-compatible chat completions API on 127.0.0.1 with "
        "optional injected faults, for manual tests and offline demos.",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one.")
    parser.add_argument("--model", default="local-vlm", help="Model name that requests must use.")
    parser.add_argument(
        "--snapshot", default="local-vlm-2026-12-01", help="Snapshot reported in responses."
    )
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds before each response.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fault draws.")
    for kind in FAULT_KINDS:
        parser.add_argument(
            "--" + kind.replace("_", "-"),
            type=float,
            default=0.0,
            help=f"Probability of the injected fault {kind} per request.",
        )
    parser.add_argument(
        "--timeout-sleep", type=float, default=30.0, help="Seconds a timeout fault waits."
    )
    parser.add_argument(
        "--retry-after", type=float, default=1, help="Retry-After of an injected 429, in seconds."
    )
    parser.add_argument(
        "--requests-per-minute", type=int, default=None, help="Limit per sliding 60 s window."
    )
    parser.add_argument(
        "--tokens-per-minute", type=int, default=None, help="Token limit per sliding 60 s window."
    )
    parser.add_argument(
        "--reject-response-format",
        action="store_true",
        help="Reject requests with a json_schema response format with HTTP 400.",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="Environment variable that contains the API key that requests must send.",
    )
    options = parser.parse_args(argv)

    api_key = None
    if options.api_key_env is not None:
        api_key = os.environ.get(options.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env: environment variable {options.api_key_env} is not set.")
    try:
        server = LocalOpenAIServer(
            port=options.port,
            model=options.model,
            snapshot=options.snapshot,
            latency_s=options.latency,
            seed=options.seed,
            timeout_sleep_s=options.timeout_sleep,
            retry_after_s=options.retry_after,
            requests_per_minute=options.requests_per_minute,
            tokens_per_minute=options.tokens_per_minute,
            reject_response_format=options.reject_response_format,
            require_api_key=api_key,
            **{kind: getattr(options, kind) for kind in FAULT_KINDS},
        )
    except ValueError as error:
        parser.error(str(error))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server.start()
    except OSError as error:
        parser.error(f"could not bind 127.0.0.1:{options.port}: {error}; choose another --port.")
    print(f"Serving at {server.base_url}; press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
