"""A tiny threaded HTTP server on 127.0.0.1 for download tests: serves bytes from a dict.

    with serve({"/data/a.zip": payload}, cut_after={"/data/a.zip": 100}) as server:
        url = server.url("/data/a.zip")
        ...
        assert server.requests["/data/a.zip"] == 2
        assert server.ranges["/data/a.zip"] == ["bytes=100-"]

It answers `Range: bytes=N-` with 206 and Content-Range (unless honor_range=False, which
mimics servers that ignore ranges and send the whole file with 200), 404 for unknown paths,
and can drop the connection after K bytes on the first request for a path (a cut download).
"""
from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class LocalServer:
    """A running server: its base URL, the files it serves, and what it saw."""

    base_url: str
    files: dict[str, bytes]  # path -> bytes; tests may change it while the server runs
    cut_after: dict[str, int]  # path -> bytes sent before the first response is cut
    honor_range: bool = True
    requests: Counter = field(default_factory=Counter)  # path -> number of GET requests
    ranges: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # path -> Range headers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """The full URL of a served path."""
        return self.base_url + _normalise(path)

    @property
    def total_requests(self) -> int:
        """How many GET requests the server answered, all paths together."""
        return sum(self.requests.values())


def _normalise(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            range_header = self.headers.get("Range")
            with server.lock:
                server.requests[path] += 1
                if range_header:
                    server.ranges[path].append(range_header)
                first_request = server.requests[path] == 1
                body = server.files.get(path)
            if body is None:
                self._send_plain(404, b"not found")
                return
            start = self._range_start(range_header, len(body))
            if start is None:
                return  # a 416 was sent
            cut = server.cut_after.get(path) if first_request else None
            self._send_body(body, start, cut)

        def _range_start(self, range_header: str | None, size: int) -> int | None:
            if not (range_header and server.honor_range):
                return 0
            match = _RANGE.match(range_header)
            start = int(match.group(1)) if match else 0
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return start

        def _send_body(self, body: bytes, start: int, cut: int | None) -> None:
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            payload = body[start:] if cut is None else body[start:start + cut]
            self.wfile.write(payload)
            self.wfile.flush()
            if cut is not None:
                # Fewer bytes than Content-Length, then a closed socket: a dropped download.
                self.close_connection = True

        def _send_plain(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    return Handler


@contextlib.contextmanager
def serve(files: dict[str, bytes], cut_after: dict[str, int] | None = None,
          honor_range: bool = True) -> Iterator[LocalServer]:
    """Yield a LocalServer serving `files` (path -> bytes) on 127.0.0.1 at a free port; stop it on exit."""
    state = LocalServer(base_url="", files={_normalise(p): b for p, b in files.items()},
                        cut_after={_normalise(p): k for p, k in (cut_after or {}).items()},
                        honor_range=honor_range)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval makes shutdown() quick at the end of each test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
