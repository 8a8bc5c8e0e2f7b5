"""`gocram complete` and `gocram serve`: the streamed text equals the model's completion."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from gocram.eval.generate import SamplingConfig, generate
from gocram.eval.tree import load_run
from tests.conftest import REPO, run_gocram
from tests.eval.conftest import make_run

PROMPT = "// Max returns the larger of a and b.\nfunc Max(a, b int) int {\n"


@pytest.fixture(scope="module")
def demo_run(go_tokenizer, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("demo") / "run", go_tokenizer, std=0.1)


def expected_completion(run, prompt, **sampling):
    model, tok, _ = load_run(run, "cpu")
    (done,) = generate(model, tok, prompt, SamplingConfig(**sampling))
    return done.text


def test_complete_from_file_and_stdin(tmp_path, demo_run):
    want = expected_completion(demo_run, PROMPT, max_new_tokens=20, temperature=0.0)
    assert want  # the check below is not vacuous
    prompt_file = tmp_path / "prompt.go"
    prompt_file.write_text(PROMPT)
    args = ["complete", "--checkpoint", str(demo_run), "--max-new-tokens", "20", "--temperature", "0"]
    done = run_gocram(*args, "--prompt-file", str(prompt_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout == want + "\n"
    piped = run_gocram(*args, "--echo", input=PROMPT)
    assert piped.returncode == 0 and piped.stdout == PROMPT + want + "\n"
    missing = run_gocram(*args, "--prompt-file", str(tmp_path / "nope.go"))
    assert missing.returncode == 2 and "nope.go" in missing.stderr
    bad = run_gocram(*args[:-2], "--temperature", "-1", input=PROMPT)
    assert bad.returncode == 2 and "temperature" in bad.stderr


@pytest.fixture(scope="module")
def server(demo_run):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gocram", "serve", "--checkpoint", str(demo_run), "--port", "0",
         "--max-new-tokens", "16", "--temperature", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), line
    yield line.split()[2]
    proc.terminate()
    proc.wait(timeout=10)


def post(url, body, timeout=60):
    request = urllib.request.Request(url + "complete", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout)


def test_server_page_and_streamed_completion(server, demo_run):
    page = urllib.request.urlopen(server, timeout=30).read().decode()
    assert "<textarea" in page and "/complete" in page
    want = expected_completion(demo_run, PROMPT, max_new_tokens=16, temperature=0.0)
    with post(server, {"prompt": PROMPT}) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.read().decode() == want
    with post(server, {"prompt": PROMPT, "max_new_tokens": 4, "temperature": 0}) as response:
        assert response.read().decode() == expected_completion(
            demo_run, PROMPT, max_new_tokens=4, temperature=0.0)


@pytest.mark.parametrize("body, message", [
    ({"text": "x"}, "string 'prompt'"),
    ({"prompt": "x", "top_p": 2}, "top_p"),
    ({"prompt": "x", "max_new_tokens": "many"}, "max_new_tokens"),
])
def test_server_rejects_bad_requests(server, body, message):
    with pytest.raises(urllib.error.HTTPError) as err:
        post(server, body)
    assert err.value.code == 400 and message in err.value.read().decode()


def _above(fd, lowest):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Lift the child's ends above 4 so that moving them to 3 and 4 cannot clobber them.
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        # bash (dash takes one-digit fds only) moves the pipe ends to the fds Chromium expects
        # (3: commands, 4: replies).
        redirect = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", redirect, "bash", binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.next_id, self.buffer = 0, b""

    def call(self, method, session=None, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_headless_browser_types_a_prompt_and_reads_the_completion(server, demo_run, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("needs Chromium for the browser test: apt-get install chromium")
    browser = Chromium(binary, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url=server)["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

        def js(expression):
            return browser.call("Runtime.evaluate", session, expression=expression,
                                returnByValue=True)["result"].get("value")

        deadline = time.monotonic() + 60
        while js("document.readyState") != "complete" or not js("!!document.getElementById('go')"):
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.1)
        js("document.getElementById('prompt').value = ''; document.getElementById('prompt').focus()")
        browser.call("Input.insertText", session, text=PROMPT)  # typed, as a person would
        js("document.getElementById('max_new_tokens').value = '16';"
           "document.getElementById('temperature').value = '0'; document.getElementById('go').click()")
        while js("document.getElementById('state').textContent") != "done":
            assert time.monotonic() < deadline, js("document.getElementById('state').textContent")
            time.sleep(0.1)
        shown = js("document.getElementById('completion').textContent")
        assert js("document.getElementById('prompt').value") == PROMPT
    finally:
        browser.close()
    assert shown == expected_completion(demo_run, PROMPT, max_new_tokens=16, temperature=0.0)
    assert shown
