"""HTTP plumbing of the local server: the threading server and its request handler.

This private module contains the ``http.server`` classes that read each request,
hand it to :class:`~study.local_server.LocalOpenAIServer` and write back its
:class:`~study.local_server._protocol._Reply`.
"""

from __future__ import annotations

import logging
import socket
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from study.local_server._protocol import _error_reply, _Reply, _RequestError

if TYPE_CHECKING:
    from study.local_server._server import LocalOpenAIServer

logger = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LocalOpenAIServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes, and Nagle's algorithm would hold the
    # second one back until the client's delayed ACK (at least 40 ms on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # Silenced because the counters on LocalOpenAIServer already record the traffic.
        return

    def do_GET(self) -> None:
        self._send(self.server.owner._handle_models(self.path.split("?", 1)[0].rstrip("/")))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            message = (
                "The Content-Length header is missing. Chunked request bodies are not supported."
            )
            logger.debug("POST %s rejected with 411: no valid Content-Length", path)
            self._send(_error_reply(_RequestError(411, message, "invalid_request_error")))
            return
        raw_body = self.rfile.read(int(length))

        if path != "/v1/chat/completions":
            message = f"No route for POST {path}. This server serves /v1/chat/completions."
            logger.debug("POST %s rejected with 404", path)
            self._send(_error_reply(_RequestError(404, message, "invalid_request_error")))
            return
        self._send(self.server.owner._handle_chat(raw_body, self.headers.get("Authorization")))

    def _send(self, reply: _Reply) -> None:
        owner = self.server.owner
        if reply.delay_s > 0 and owner._stopping.wait(reply.delay_s):
            # Drop the response because stop() was called while the handler waited.
            self.close_connection = True
            return

        if reply.reset:
            # SO_LINGER with a zero timeout makes close() send RST, as a crashed peer would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return

        owner._record_status(reply.status)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError) as error:
            # After an injected timeout the client has usually closed the connection already.
            logger.debug(
                "Client closed the connection before a %d response: %s", reply.status, error
            )
            self.close_connection = True
