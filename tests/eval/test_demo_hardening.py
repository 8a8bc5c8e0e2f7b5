"""The demo server against hostile clients: a real server on 127.0.0.1 (an ephemeral port) and raw
sockets with bounded timeouts, so each request says exactly which bytes it sends."""

import json
import socket
import threading
import time

import pytest

from gocram.eval.demo import MAX_PROMPT_BYTES, make_server
from gocram.eval.generate import SamplingConfig
from gocram.eval.tree import load_run
from tests.eval.conftest import make_run

SERVER_TIMEOUT_S = 0.5
CLIENT_TIMEOUT_S = 10.0  # far above the server's: a test that waits this long has failed
LABEL = '<img src=x onerror="alert(1)">run'


@pytest.fixture(scope="module")
def port(go_tokenizer, tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("hardening") / "run", go_tokenizer, std=0.1)
    model, tok, _ = load_run(run, "cpu")
    server = make_server(model, tok, host="127.0.0.1", port=0, label=LABEL,
                         base=SamplingConfig(max_new_tokens=4, temperature=0.0),
                         timeout_s=SERVER_TIMEOUT_S)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def exchange(port, data: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as conn:
        conn.sendall(data)
        reply = b""
        while chunk := conn.recv(65536):  # every request says Connection: close
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def request(port, *, body=None, raw_body: bytes | None = None, method="POST", path="/complete",
            host=None, content_type="application/json", length="auto", extra=()) -> tuple:
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if length == "auto":
        lines.append(f"Content-Length: {len(data)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [*extra, "Connection: close"]
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + data)


def test_a_valid_request_streams_a_completion(port):
    status, headers, body = request(port, body={"prompt": "func f() {\n", "temperature": 0},
                                    extra=[f"Origin: http://127.0.0.1:{port}"])
    assert status == 200 and headers["Transfer-Encoding"] == "chunked" and body.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("length, status", [
    ("-1", 400), ("abc", 400), ("1e3", 400), ("+5", 400), (" ", 400), (None, 411),
    (str(MAX_PROMPT_BYTES + 1), 413), ("99999999999999999999", 413),
])
def test_content_length_must_be_valid_and_capped(port, length, status):
    # Before: Content-Length -1 read the whole stream past the 100 KB cap; "abc" raised.
    got, headers, body = request(port, raw_body=b'{"prompt": "x"}', length=length)
    assert got == status and b"Content-Length" in body, body
    assert headers.get("Connection") == "close"


def test_chunked_request_bodies_are_refused(port):
    got, _, body = request(port, raw_body=b"f\r\n{\"prompt\": \"x\"}\r\n0\r\n\r\n", length=None,
                           extra=["Transfer-Encoding: chunked"])
    assert got == 411 and b"Content-Length" in body


def test_a_client_that_never_sends_its_body_is_dropped(port):
    # Before: no socket timeout, so this held a server thread forever.
    head = (f"POST /complete HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
            "\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
    t0 = time.monotonic()
    status, _, body = exchange(port, head.encode())
    took = time.monotonic() - t0
    assert status == 408 and b"did not arrive" in body
    assert took < SERVER_TIMEOUT_S + 3


def test_a_client_that_never_finishes_its_headers_is_dropped(port):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as conn:
        conn.sendall(b"POST /complete HTTP/1.1\r\nHost: 127.0")
        assert conn.recv(65536) == b""  # closed by the server, not by our own timeout
    assert time.monotonic() - t0 < SERVER_TIMEOUT_S + 3


@pytest.mark.parametrize("method, path", [("GET", "/"), ("POST", "/complete")])
@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "rebind.attacker.test",
                                  ""])
def test_host_must_be_this_server(port, method, path, host):
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends its Host.
    got, _, body = request(port, method=method, path=path, host=host.format(port=port) or " ",
                           body={"prompt": "x"})
    assert got == 403 and b"Host" in body


def test_localhost_names_a_loopback_server(port):
    got, _, _ = request(port, method="GET", path="/", host=f"localhost:{port}", body=None)
    assert got == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1",
                                    "https://127.0.0.1:{port}"])
def test_origin_must_be_this_server(port, origin):
    got, _, body = request(port, body={"prompt": "x"}, extra=[f"Origin: {origin.format(port=port)}"])
    assert got == 403 and b"Origin" in body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_content_type_must_be_json(port, content_type):
    # A cross-site <form> or a "simple" fetch can send these without a CORS preflight.
    got, _, body = request(port, body={"prompt": "x"}, content_type=content_type)
    assert got == 415 and b"application/json" in body


@pytest.mark.parametrize("raw, field", [
    (b'{"prompt": "x", "temperature": NaN}', b"temperature"),
    (b'{"prompt": "x", "temperature": 1e-310}', b"temperature"),
    (b'{"prompt": "x", "temperature": 1e400}', b"temperature"),
    (b'{"prompt": "x", "temperature": -1}', b"temperature"),
    (b'{"prompt": "x", "temperature": "hot"}', b"temperature"),
    (b'{"prompt": "x", "seed": 1e30}', b"seed"),
    (b'{"prompt": "x", "seed": -1}', b"seed"),
    (b'{"prompt": "x", "seed": 100000000000000000000000}', b"seed"),
    (b'{"prompt": "x", "max_new_tokens": NaN}', b"max_new_tokens"),
    (b'{"prompt": "x", "max_new_tokens": 0}', b"max_new_tokens"),
    (b'{"prompt": "x", "max_new_tokens": 2.5}', b"max_new_tokens"),
    (b'{"prompt": "x", "max_new_tokens": 100000}', b"max_new_tokens"),
    (b'{"prompt": "x", "max_new_tokens": true}', b"max_new_tokens"),
    (b'{"prompt": "x", "top_k": -1}', b"top_k"),
    (b'{"prompt": "x", "top_k": 1.5}', b"top_k"),
    (b'{"prompt": "x", "top_p": 0}', b"top_p"),
    (b'{"prompt": "x", "top_p": Infinity}', b"top_p"),
    (b'{"prompt": "x", "top_p": 1.01}', b"top_p"),
    (b'{"prompt": "x", "tempreature": 0.2}', b"tempreature"),
    (b'{"prompt": 7}', b"prompt"),
    (b'["prompt"]', b"prompt"),
    (b'{"prompt": "x"', b"JSON"),
])
def test_every_field_is_checked_before_the_response_starts(port, raw, field):
    # Before: NaN or denormal temperature, a 1e30 seed and NaN max_new_tokens got 200 and then
    # broke mid-stream.
    got, headers, body = request(port, raw_body=raw)
    assert got == 400 and field in body, body
    assert "Transfer-Encoding" not in headers


def test_the_label_is_escaped(port):
    got, _, body = request(port, method="GET", path="/", body=None)
    assert got == 200
    assert b'<img src=x onerror="alert(1)">' not in body
    assert b"&lt;img src=x onerror=&quot;alert(1)&quot;&gt;run" in body
