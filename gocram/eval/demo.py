"""The completion demo: `gocram complete` (terminal) and `gocram serve` (a local web page).

The server is stdlib only: GET / is the page, POST /complete takes JSON
{"prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"} and streams the completion
as chunked plain text. One generation runs at a time (the model is shared).

Any web page the user visits can send requests to 127.0.0.1, and DNS rebinding can make a page's
own name point there, so the server answers only its own origin: the Host header must be the
address it is bound to (or `localhost` for a loopback bind), an Origin header, if sent, must be
that origin, and POST bodies must be `application/json` (a cross-site page cannot send that
without a CORS preflight, which gets no answer). A body needs a valid Content-Length within the
cap; every socket has a timeout, so a client that stops sending is dropped; and every field is
checked (type, finite, in range) before the first byte of the response goes out.
"""

from __future__ import annotations

import html
import json
import math
import socket
import sys
import threading
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gocram.core.errors import GocramError
from gocram.eval.generate import SamplingConfig, generate

MAX_PROMPT_BYTES = 100_000
MAX_NEW_TOKENS = 2048
SOCKET_TIMEOUT_S = 30.0  # per socket operation: a read or a write that stalls this long drops the client
# Below this a temperature turns logits into inf (1e-310 is a valid JSON number); above it the
# sampling is noise anyway.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-2, 100.0
MAX_TOP_K = 1 << 20
MAX_SEED = (1 << 63) - 1  # torch.Generator.manual_seed's range, non-negative
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
WILDCARD = {"", "0.0.0.0", "::"}


def complete_to(stream, model, tokenizer, prompt: str, cfg: SamplingConfig) -> str:
    """Stream one completion of prompt to a text stream; returns it."""
    def emit(_row: int, text: str) -> None:
        stream.write(text)
        stream.flush()

    (completion,) = generate(model, tokenizer, prompt, cfg, n=1, on_text=emit)
    return completion.text


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gocram: complete Go</title>
<style>
 body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; }
 textarea, pre { width: 100%; font-family: monospace; font-size: 14px; box-sizing: border-box; }
 textarea { height: 14rem; }
 pre { background: #f4f4f4; min-height: 8rem; padding: .5rem; white-space: pre-wrap; }
 #completion { color: #0645ad; }
</style></head>
<body>
<h1>gocram</h1>
<p>Paste the start of some Go (for example a doc comment and a signature ending in <code>{</code>)
and press Complete. Model: __MODEL__.</p>
<textarea id="prompt" spellcheck="false">// Max returns the larger of a and b.
func Max(a, b int) int {
</textarea>
<p>
 <label>max tokens <input id="max_new_tokens" type="number" value="128" min="1" max="2048"></label>
 <label>temperature <input id="temperature" type="number" value="0.2" step="0.1" min="0"></label>
 <label>top-p <input id="top_p" type="number" value="0.95" step="0.05" min="0.05" max="1"></label>
 <button id="go">Complete</button> <span id="state"></span>
</p>
<pre><span id="shown-prompt"></span><span id="completion"></span></pre>
<script>
const $ = (id) => document.getElementById(id);
$("go").onclick = async () => {
  $("go").disabled = true; $("state").textContent = "generating...";
  $("shown-prompt").textContent = $("prompt").value; $("completion").textContent = "";
  try {
    const response = await fetch("/complete", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({prompt: $("prompt").value,
        max_new_tokens: Number($("max_new_tokens").value),
        temperature: Number($("temperature").value), top_p: Number($("top_p").value)})});
    if (!response.ok) { throw new Error(await response.text()); }
    const reader = response.body.getReader(); const decoder = new TextDecoder();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      $("completion").textContent += decoder.decode(value, {stream: true});
    }
    $("state").textContent = "done";
  } catch (err) { $("state").textContent = "error: " + err.message; }
  $("go").disabled = false;
};
</script></body></html>
"""


def _integer(name: str, value, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise GocramError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise GocramError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _real(name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise GocramError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise GocramError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _temperature(value) -> float:
    value = _real("temperature", value)
    if value != 0 and not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise GocramError(f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, "
                          f"{MAX_TEMPERATURE:g}], got {value!r}")
    return value


def _top_p(value) -> float:
    value = _real("top_p", value)
    if not 0 < value <= 1:
        raise GocramError(f"top_p must be in (0, 1], got {value!r}")
    return value


FIELD_CHECKS = {
    "max_new_tokens": lambda v: _integer("max_new_tokens", v, 1, MAX_NEW_TOKENS),
    "temperature": _temperature,
    "top_k": lambda v: _integer("top_k", v, 0, MAX_TOP_K),
    "top_p": _top_p,
    "seed": lambda v: _integer("seed", v, 0, MAX_SEED),
}


def sampling_from_request(body: dict, base: SamplingConfig) -> SamplingConfig:
    """The request's sampling settings over the server's defaults; GocramError names a bad field."""
    unknown = sorted(set(body) - set(FIELD_CHECKS) - {"prompt"})
    if unknown:
        raise GocramError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: prompt, "
                          f"{', '.join(FIELD_CHECKS)}")
    return replace(base, **{name: check(body[name]) for name, check in FIELD_CHECKS.items()
                            if name in body})


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values that name this server (lower case)."""
    names = {host.lower()}
    if host in LOOPBACK:
        names |= LOOPBACK
    if host in WILDCARD:  # bound everywhere: its own names and loopback
        names |= LOOPBACK | {socket.gethostname().lower(), socket.getfqdn().lower()}
    return {f"[{name}]:{port}" if ":" in name else f"{name}:{port}" for name in names if name}


class RequestRefused(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def body_length(headers) -> int:
    """The request body's length from a valid Content-Length within the cap."""
    if headers.get("Transfer-Encoding"):
        raise RequestRefused(HTTPStatus.LENGTH_REQUIRED,
                             "Transfer-Encoding bodies are not accepted: send a Content-Length")
    values = headers.get_all("Content-Length") or []
    if not values:
        raise RequestRefused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
    if len(values) > 1 or not (values[0].isascii() and values[0].isdigit()):
        raise RequestRefused(HTTPStatus.BAD_REQUEST,
                             f"Content-Length must be one non-negative integer, got {values!r}")
    length = int(values[0])
    if length > MAX_PROMPT_BYTES:
        raise RequestRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"Content-Length {length} is over the {MAX_PROMPT_BYTES} byte cap")
    return length


def make_server(model, tokenizer, *, host: str, port: int, base: SamplingConfig,
                label: str = "gocram", timeout_s: float = SOCKET_TIMEOUT_S) -> ThreadingHTTPServer:
    lock = threading.Lock()
    page = PAGE.replace("__MODEL__", html.escape(label)).encode()
    hosts: set[str] = set()  # filled once the port is bound (port 0 = any free one)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = timeout_s  # StreamRequestHandler sets it on the socket: no read or write hangs

        def log_message(self, fmt, *args):  # one line per request on stderr, like the CLI's logs
            sys.stderr.write(f"[serve] {self.address_string()} {fmt % args}\n")

        def _plain(self, status: HTTPStatus, text: str, *, close: bool = False) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if close:  # an unread request body would be parsed as the next request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def _same_origin(self) -> None:
            host = (self.headers.get("Host") or "").strip().lower()
            if host not in hosts:
                raise RequestRefused(HTTPStatus.FORBIDDEN,
                                     f"Host {host!r} is not this server ({sorted(hosts)[0]})")
            origin = self.headers.get("Origin")
            if origin is not None and origin.strip().lower() != f"http://{host}":
                raise RequestRefused(HTTPStatus.FORBIDDEN,
                                     f"Origin {origin!r} is not this server's (http://{host})")

        def do_GET(self):
            try:
                self._same_origin()
            except RequestRefused as refused:
                return self._plain(refused.status, str(refused), close=True)
            if self.path not in ("/", "/index.html"):
                return self._plain(HTTPStatus.NOT_FOUND, "not found")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def _request(self) -> tuple[str, SamplingConfig]:
            """The prompt and sampling settings of a POST, every check done; RequestRefused says
            what is wrong."""
            self._same_origin()
            if self.path != "/complete":
                raise RequestRefused(HTTPStatus.NOT_FOUND, "not found")
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise RequestRefused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                     f"Content-Type must be application/json, got {kind!r}")
            length = body_length(self.headers)
            try:
                raw = self.rfile.read(length)
            except TimeoutError:
                raise RequestRefused(HTTPStatus.REQUEST_TIMEOUT,
                                     f"the body did not arrive within {timeout_s:g}s") from None
            if len(raw) < length:
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "the body is shorter than Content-Length")
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
                raise RequestRefused(HTTPStatus.BAD_REQUEST,
                                     "body must be a JSON object with a string 'prompt'")
            try:
                return body["prompt"], sampling_from_request(body, base)
            except GocramError as err:  # ConfigError included: a bad sampling value
                raise RequestRefused(HTTPStatus.BAD_REQUEST, str(err)) from None

        def do_POST(self):
            try:
                prompt, cfg = self._request()
            except RequestRefused as refused:
                try:
                    return self._plain(refused.status, str(refused), close=True)
                except OSError:  # the client is gone (or stalled past the timeout)
                    self.close_connection = True
                    return None
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()

            def chunk(_row: int, text: str) -> None:
                data = text.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            try:
                with lock:
                    generate(model, tokenizer, prompt, cfg, n=1, on_text=chunk)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the page went away mid-stream, or stopped reading past the timeout
                self.close_connection = True

    server = ThreadingHTTPServer((host, port), Handler)  # daemon threads: a stalled client never
    # blocks shutdown
    hosts.update(allowed_hosts(host, server.server_address[1]))
    return server
