"""A real HTTP server on 127.0.0.1 whose paths misbehave in the ways networks do."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` (name -> bytes) under /good/, and broken variants under other prefixes:
    /corrupt/ (wrong bytes), /404/, /500/, /truncated/ (connection drops mid-body), /slow/
    (no answer for `slow_s` seconds), /drip/ (one byte every `drip_s` seconds, for at most
    `drip_limit_s`: a mirror that never times out and never finishes)."""

    def __init__(self, files: dict[str, bytes], slow_s: float = 3.0, drip_s: float = 0.2,
                 drip_limit_s: float = 30.0):
        self.files = files
        self.slow_s = slow_s
        self.drip_s, self.drip_limit_s = drip_s, drip_limit_s
        self.requests: list[str] = []
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server_self.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                body = server_self.files.get(name)
                if mode == "500":
                    self.send_error(500, "Internal Server Error")
                    return
                if body is None or mode == "404":
                    self.send_error(404, "Not Found")
                    return
                if mode == "slow":
                    time.sleep(server_self.slow_s)
                if mode == "corrupt":
                    body = body[::-1]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "drip":
                    ends = time.monotonic() + server_self.drip_limit_s  # the test's bound
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        for byte in body:
                            if time.monotonic() > ends:
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(server_self.drip_s)
                    return
                if mode == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
