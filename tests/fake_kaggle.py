"""A fake Kaggle API on 127.0.0.1:7777, answering the calls the real `kaggle` client makes.

The client reaches it with KAGGLE_API_ENVIRONMENT=TEST. It checks the HTTP basic credentials,
serves the competition archive through a redirect, takes submission uploads, and lists
submissions with a public score. `fail[call]` holds HTTP statuses to answer before succeeding.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = "/api/v1/competitions.CompetitionApiService/"
PORT = 7777
USER, KEY = "tester", "s3cr3t-key-0123456789"


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class FakeKaggle:
    def __init__(self, archive: bytes, score: str = "0.12345", polls_before_score: int = 1):
        self.archive = archive
        self.score = score
        self.polls_before_score = polls_before_score
        self.fail: dict[str, list[int]] = {}
        self.hang: set[str] = set()  # calls accepted and then never answered (until exit)
        self.html: set[str] = set()  # calls answered 200 with an HTML page (a login wall, a proxy)
        self.nested: set[str] = set()  # calls answered 200 with JSON nested 200,000 deep
        self.loop: set[str] = set()  # calls answered with a redirect to themselves, forever
        self.released = threading.Event()
        self.calls: list[str] = []
        self.uploads: list[bytes] = []
        self.submissions: list[dict] = []
        self.log: list[str] = []  # every request line and header, to check for leaked secrets
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                expected = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
                return self.headers.get("Authorization") == expected

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                fake.log.append(f"POST {self.path} {dict(self.headers)}")
                body = self._body()
                call = self.path.removeprefix(SERVICE)
                fake.calls.append(call)
                if not self._authorised():
                    self._json(401, {"code": 401, "message": "Unauthenticated"})
                    return
                if call in fake.hang:
                    fake.released.wait(30)  # bounded: the test's deadline is far shorter
                    return
                if call in fake.loop:
                    self.send_response(307)  # keeps the POST: the client follows it again
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if call in fake.nested:
                    page = b"[" * 200_000 + b"]" * 200_000
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if call in fake.html:
                    page = b"<html><body>Please sign in</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if fake.fail.get(call):
                    status = fake.fail[call].pop(0)
                    self._json(status, {"code": status, "message": f"fake error {status}"})
                    return
                request = json.loads(body or b"{}")
                if call == "DownloadDataFiles":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{PORT}/blobs/"
                                                 f"{request['competitionName']}.zip")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif call == "StartSubmissionUpload":
                    self._json(200, {"token": "blob-token-1",
                                     "createUrl": f"http://localhost:{PORT}/upload/blob-token-1"})
                elif call == "CreateSubmission":
                    ref = 4000 + len(fake.submissions)
                    fake.submissions.append({"ref": ref, "polls": 0,
                                             "description": request.get("submissionDescription"),
                                             "token": request.get("blobFileTokens")})
                    self._json(200, {"message": "Successfully submitted", "ref": ref})
                elif call == "ListSubmissions":
                    listed = []
                    for sub in reversed(fake.submissions):
                        sub["polls"] += 1
                        done = sub["polls"] > fake.polls_before_score
                        listed.append({"ref": sub["ref"], "description": sub["description"],
                                       "status": "COMPLETE" if done else "PENDING",
                                       "publicScore": fake.score if done else ""})
                    self._json(200, {"submissions": listed})
                else:
                    self._json(404, {"code": 404, "message": f"unknown call {call}"})

            def do_GET(self):
                fake.log.append(f"GET {self.path} {dict(self.headers)}")
                if self.path.startswith("/blobs/"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    self.send_header("Content-Length", str(len(fake.archive)))
                    self.end_headers()
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(fake.archive)
                    return
                self._json(404, {"code": 404, "message": "not found"})

            def do_PUT(self):
                fake.log.append(f"PUT {self.path} {dict(self.headers)}")
                fake.uploads.append(self._body())
                self._json(200, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeKaggle:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
