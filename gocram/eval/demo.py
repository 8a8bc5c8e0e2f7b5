"""The completion demo: `gocram complete` (terminal) and `gocram serve` (a local web page).

The server is stdlib only: GET / is the page, POST /complete takes JSON
{"prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"} and streams the completion
as chunked plain text. One generation runs at a time (the model is shared).
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gocram.core.errors import GocramError
from gocram.eval.generate import SamplingConfig, generate

MAX_PROMPT_BYTES = 100_000
MAX_NEW_TOKENS = 2048


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


def sampling_from_request(body: dict, base: SamplingConfig) -> SamplingConfig:
    """The request's sampling settings over the server's defaults; GocramError names a bad field."""
    fields = {"max_new_tokens": int, "temperature": float, "top_k": int, "top_p": float, "seed": int}
    changes = {}
    for name, kind in fields.items():
        if name in body:
            value = body[name]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise GocramError(f"{name} must be a number, got {value!r}")
            changes[name] = kind(value)
    if changes.get("max_new_tokens", 0) > MAX_NEW_TOKENS:
        raise GocramError(f"max_new_tokens must be <= {MAX_NEW_TOKENS}")
    return replace(base, **changes)


def make_server(model, tokenizer, *, host: str, port: int, base: SamplingConfig,
                label: str = "gocram") -> ThreadingHTTPServer:
    lock = threading.Lock()
    page = PAGE.replace("__MODEL__", label).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request on stderr, like the CLI's logs
            sys.stderr.write(f"[serve] {self.address_string()} {fmt % args}\n")

        def _plain(self, status: HTTPStatus, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path not in ("/", "/index.html"):
                return self._plain(HTTPStatus.NOT_FOUND, "not found")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self):
            if self.path != "/complete":
                return self._plain(HTTPStatus.NOT_FOUND, "not found")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PROMPT_BYTES:
                return self._plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"request body over {MAX_PROMPT_BYTES} bytes")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
                    raise GocramError("body must be a JSON object with a string 'prompt'")
                cfg = sampling_from_request(body, base)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._plain(HTTPStatus.BAD_REQUEST, "body is not JSON")
            except GocramError as err:  # ConfigError included: a bad sampling value
                return self._plain(HTTPStatus.BAD_REQUEST, str(err))
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
                    generate(model, tokenizer, body["prompt"], cfg, n=1, on_text=chunk)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page went away mid-stream

    return ThreadingHTTPServer((host, port), Handler)
