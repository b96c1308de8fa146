"""A small, honest stand-in for the Hugging Face Hub on 127.0.0.1, for tests that must never
reach a real hub: point HF_ENDPOINT at ``FakeHub.url``.

It answers only what ``huggingface_hub.hf_hub_download`` (and ``get_hf_file_metadata``) ask, the
way the Hub answers them (huggingface_hub 2.4, file_download.py / utils/_http.py):
  HEAD|GET /{org}/{repo}/resolve/{revision}/{file}
      307 to /api/resolve-cache/models/{org}/{repo}/{commit}/{file} (a redirect that stays on
      the Hub, as the Hub does for regular files), with X-Repo-Commit;
      404 + X-Error-Code: EntryNotFound (+ X-Repo-Commit) for a file the repo lacks;
      404 + X-Error-Code: RevisionNotFound for an unknown revision;
      401 + X-Error-Code: RepoNotFound for an unknown repository (what the Hub tells an
      anonymous client).
  HEAD|GET /api/resolve-cache/models/{org}/{repo}/{commit}/{file}
      200 with ETag (the sha256 of the content, quoted, as for LFS files), X-Repo-Commit,
      Content-Length; GET sends the bytes.
  GET /api/agent-harnesses
      an empty registry (huggingface_hub 2.x fetches it, best effort, once a day per HF_HOME,
      the first time it builds request headers).
Every request is recorded (method, path, user agent) in ``requests``. Not imitated: Xet
storage (the real Hub serves large weights through hf_xet: X-Xet-Hash headers and a CAS
service), CDN redirects to other hosts, authentication, Range requests.
"""
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class FakeHub:
    """repos: {"org/name": {"file name": bytes}}. Use as a context manager, or start()/stop()."""

    def __init__(self, repos):
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.commits = {repo: hashlib.sha1(repr(sorted((n, hashlib.sha256(b).hexdigest())
                                                       for n, b in files.items())).encode()
                                           ).hexdigest()
                        for repo, files in self.repos.items()}
        self.requests = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread:
            self.server.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _answer(self, req, body):
        path = unquote(urlsplit(req.path).path)
        with self._lock:
            self.requests.append((req.command, path, req.headers.get("User-Agent", "")))
        parts = path.strip("/").split("/")
        if path == "/api/agent-harnesses":
            return self._send(req, 200, {"Content-Type": "application/json"},
                              b'{"standardEnvVars": [], "harnesses": {}}', body)
        if parts[:3] == ["api", "resolve-cache", "models"] and len(parts) >= 7:
            repo, commit, name = "/".join(parts[3:5]), parts[5], "/".join(parts[6:])
            if self.commits.get(repo) != commit or name not in self.repos[repo]:
                return self._send(req, 404, {"X-Error-Code": "EntryNotFound"}, b"", body)
            data = self.repos[repo][name]
            return self._send(req, 200, {
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": commit,
                "Content-Type": "application/octet-stream"}, data, body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo not in self.repos:
                return self._send(req, 401, {"X-Error-Code": "RepoNotFound",
                                             "X-Error-Message": "Repository not found"},
                                  b"", body)
            commit = self.commits[repo]
            if revision not in ("main", commit):
                return self._send(req, 404, {"X-Error-Code": "RevisionNotFound"}, b"", body)
            if name not in self.repos[repo]:
                return self._send(req, 404, {"X-Error-Code": "EntryNotFound",
                                             "X-Repo-Commit": commit}, b"", body)
            return self._send(req, 307, {
                "Location": f"/api/resolve-cache/models/{repo}/{commit}/{name}",
                "X-Repo-Commit": commit}, b"", body)
        return self._send(req, 404, {}, b"", body)

    @staticmethod
    def _send(req, status, headers, data, body):
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if body and data:
            req.wfile.write(data)
