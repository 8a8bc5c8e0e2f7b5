"""Run one Go test file as `go test` does, with the test binary locked in a sandbox.

Two steps, so that untrusted code never runs with write access to the shared build cache:
1. compile: `go test -c` (GOPATH mode: testify from Debian's golang-github-stretchr-testify-dev,
   CGO off) in a fresh temp directory. Compiling runs no code from the sample.
2. run: the test binary `-test.v` inside bubblewrap: no network (own network namespace), own PID
   namespace (everything dies with it), the whole file system read-only except a size-capped
   tmpfs at /tmp that is its working directory, and rlimits on address space, processes, file
   size, open files and CPU. As root the sandbox runs as the unprivileged `nobody`, since the
   kernel does not apply RLIMIT_NPROC to root. Output goes to a file capped by RLIMIT_FSIZE.

Anything but a clean pass is a failure: build errors, `[no test files]`, no test run, a timeout,
a panic, an output flood or a kill by any signal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.data.prepare import default_cache_dir

DEBIAN_GOPATH = "/usr/share/gocode"
NOBODY = 65534
OUTPUT_TAIL = 2000  # characters of output kept per result (its head and tail)


@dataclass(frozen=True, kw_only=True)
class Limits:
    timeout_s: float = 15.0  # wall clock of the test binary
    compile_timeout_s: float = 180.0  # a cold GOCACHE compiles testify and the stdlib once
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the test binary
    processes: int = 32  # RLIMIT_NPROC (threads count: Go needs a handful)
    output_bytes: int = 1 << 20  # RLIMIT_FSIZE: stdout+stderr and any file written
    tmpfs_bytes: int = 64 << 20  # size of the only writable place, /tmp
    open_files: int = 64


DEFAULT_LIMITS = Limits()


@dataclass
class GoResult:
    status: str  # passed | failed | build_failed | no_tests | timeout | panic | output_limit | killed
    exit_code: int | None
    seconds: float
    output: str  # the last OUTPUT_TAIL characters of compiler or test output

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GoToolchain:
    go: str
    gopath: str
    gocache: Path

    def env(self, home: Path) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "GO111MODULE": "off", "GOPATH": self.gopath, "GOCACHE": str(self.gocache),
            "CGO_ENABLED": "0", "GOFLAGS": "", "GOTOOLCHAIN": "local", "GOPROXY": "off",
            "TMPDIR": str(home),
        }


def find_toolchain(gocache: str | Path | None = None) -> GoToolchain:
    """The Go compiler and testify in GOPATH mode, or a GocramError saying what to install."""
    go = shutil.which("go")
    if go is None:
        raise GocramError("go not found on PATH: apt-get install golang-go "
                          "golang-github-stretchr-testify-dev")
    gopath = os.environ.get("GOCRAM_GOPATH", DEBIAN_GOPATH)
    if not Path(gopath, "src/github.com/stretchr/testify/assert").is_dir():
        raise GocramError(f"testify not found under GOPATH {gopath}: "
                          "apt-get install golang-github-stretchr-testify-dev")
    cache = Path(gocache) if gocache else default_cache_dir() / "go-build"
    cache.mkdir(parents=True, exist_ok=True)
    return GoToolchain(go, gopath, cache)


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """None if the bubblewrap sandbox works here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) not found: apt-get install bubblewrap"
    probe = subprocess.run(
        [bwrap, *_bwrap_args(Path("/bin/true"), Limits())], capture_output=True, text=True,
        timeout=30, **_drop_root())
    if probe.returncode != 0:
        return f"bwrap cannot create its namespaces here: {probe.stderr.strip()[-200:]}"
    return None


def _drop_root() -> dict:
    """Popen arguments that run the sandbox as nobody when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def _bwrap_args(binary: Path, limits: Limits, test_args: tuple[str, ...] = ()) -> list[str]:
    inside = "/tmp/test.bin"
    return [
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp",
        "--size", str(1 << 20), "--tmpfs", "/dev/shm",
        "--ro-bind", str(binary), inside,
        "--unshare-all", "--die-with-parent", "--new-session",
        "--chdir", "/tmp", "--clearenv",
        "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "GOMAXPROCS", "2",
        "--setenv", "PATH", "/usr/bin:/bin",
        "--",
        "prlimit", f"--as={limits.memory_bytes}", f"--nproc={limits.processes}",
        f"--fsize={limits.output_bytes}", f"--nofile={limits.open_files}", "--core=0",
        f"--cpu={int(limits.timeout_s) + 1}",
        "--", inside, *test_args,
    ]


def _run_killable(cmd: list[str], *, timeout: float, stdout, cwd=None, env=None,
                  **popen) -> tuple[int | None, bool]:
    """(exit code, timed out); on timeout the whole process group is killed."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                            cwd=cwd, env=env, start_new_session=True, **popen)
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None, True


def _read(path: Path) -> str:
    return (path.read_bytes() if path.exists() else b"").decode("utf-8", "replace")


def head_and_tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    """Long output keeps its start (the error) and its end (the verdict)."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "\n[...]\n" + text[-(limit - head):]


def compile_test(source: str, filename: str, workdir: Path, toolchain: GoToolchain,
                 limits: Limits) -> tuple[Path | None, GoResult | None]:
    """(test binary, None) or (None, the failure)."""
    src = workdir / "src"
    src.mkdir()
    (src / filename).write_text(source)
    binary, log = workdir / "test.bin", workdir / "compile.log"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        code, timed_out = _run_killable(
            [toolchain.go, "test", "-c", "-o", str(binary), "."], timeout=limits.compile_timeout_s,
            stdout=out, cwd=src, env=toolchain.env(workdir))
    took = time.perf_counter() - t0
    output = head_and_tail(_read(log))
    if timed_out:
        return None, GoResult("timeout", None, took, "compile timed out\n" + output)
    if "no test files" in output:
        return None, GoResult("no_tests", code, took, output)
    if code != 0:
        return None, GoResult("build_failed", code, took, output)
    if not binary.is_file():  # go test -c writes nothing for a package without tests
        return None, GoResult("no_tests", code, took, output)
    return binary, None


def run_binary(binary: Path, workdir: Path, limits: Limits) -> GoResult:
    problem = sandbox_problem()
    if problem:
        raise GocramError(f"refusing to run untrusted Go code without a sandbox: {problem}")
    # The sandbox user must reach the binary to bind it in.
    for path in (workdir, binary):
        path.chmod(0o755)
    log = workdir / "test.log"
    t0 = time.perf_counter()
    test_args = ("-test.v", "-test.count=1", f"-test.timeout={limits.timeout_s}s")
    with open(log, "wb") as out:
        code, timed_out = _run_killable(
            [shutil.which("bwrap"), *_bwrap_args(binary, limits, test_args)],
            timeout=limits.timeout_s + 5, stdout=out, env={"PATH": "/usr/bin:/bin"}, **_drop_root())
    took = time.perf_counter() - t0
    output = _read(log)  # at most limits.output_bytes: RLIMIT_FSIZE caps the file
    status = classify(code, timed_out, output, log.stat().st_size, limits)
    return GoResult(status, code, took, head_and_tail(output))


def classify(code: int | None, timed_out: bool, output: str, output_size: int, limits: Limits) -> str:
    """A test run's status from its exit, output and output size; only a clean run passes."""
    if timed_out or "panic: test timed out" in output:
        return "timeout"
    if output_size >= limits.output_bytes or code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        return "output_limit"
    if "testing: warning: no tests to run" in output or "=== RUN" not in output:
        return "no_tests"
    if code == 0 and "--- FAIL" not in output and output.rstrip().endswith("PASS"):
        return "passed"
    if "panic:" in output or "fatal error:" in output:
        return "panic"
    if code is not None and (code < 0 or code > 128):
        return "killed"
    return "failed"


def run_go_test(source: str, *, filename: str = "main_test.go", limits: Limits = DEFAULT_LIMITS,
                toolchain: GoToolchain | None = None, keep_dir: Path | None = None) -> GoResult:
    """Compile and run one self-contained Go test file in a fresh temp directory."""
    if not filename.endswith("_test.go"):
        raise GocramError(f"{filename}: a Go test file must end in _test.go")
    toolchain = toolchain or find_toolchain()
    workdir = Path(tempfile.mkdtemp(prefix="gocram-go-", dir=keep_dir))
    try:
        binary, failure = compile_test(source, filename, workdir, toolchain, limits)
        if failure is not None:
            return failure
        return run_binary(binary, workdir, limits)
    finally:
        if keep_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
