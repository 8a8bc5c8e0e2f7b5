"""Run one Go test file as `go test` does, both steps locked in a bubblewrap sandbox.

1. compile: `go test -c` (GOPATH mode: testify from Debian's golang-github-stretchr-testify-dev,
   CGO off) inside bubblewrap, as its own unprivileged uid, with rlimits on memory, processes,
   file size and CPU: a sample can make the compiler itself blow up (a constant that doubles 30
   times), and that must end in `build_failed`, not in the host's RAM.
2. run: the test binary `-test.v -test.paniconexit0` inside bubblewrap as `nobody`.

What either sandbox sees: an empty read-only root; a read-only minimal `/dev` (null, zero,
random, urandom, tty...) with a size-capped tmpfs at `/dev/shm`; a size-capped tmpfs at `/tmp`;
no network (own network namespace), own PID namespace (everything dies with it). The compile
step also sees, read-only, the Go toolchain (GOROOT and what its symlinks point to), the GOPATH
with testify and the system libraries the dynamically linked `go` command loads (/usr/lib,
/lib*); read-write only the job's own directory and the build cache. The run step sees only the
test binary, execute-only. No project tree, no `evaldata/`, no home, no /etc.

The verdict is the parent's: it pipes the output through `go tool test2json` and passes the
sample only when the binary exited 0, every `Test` function the file declares reported `pass`,
nothing reported `fail` or `skip`, and a sentinel test with a random name (compiled into the
binary, run after the sample's tests) passed last. A test that prints `PASS` and calls
`os.Exit(0)` panics (`-test.paniconexit0`); one that leaves through `syscall.Exit(0)` never
reaches the sentinel. Files defining `TestMain` (which would run before `-test.paniconexit0` is
armed) or using `//go:linkname` (which could read the test table) are rejected unrun.

Anything but a clean pass is a failure: build errors, `[no test files]`, no test run, a timeout,
a panic, an output flood, a forged transcript or a kill by any signal.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.data.tokens.prepare import default_cache_dir

DEBIAN_GOPATH = "/usr/share/gocode"
NOBODY = 65534  # runs the test binary
# Compiles, so the test binary (uid nobody) can neither write the build cache nor read itself,
# and the compiler's threads do not count against the test binary's RLIMIT_NPROC. 65000-65533 is
# Debian's reserved, never-allocated uid range.
COMPILER_UID = 65533
OUTPUT_TAIL = 2000  # characters of output kept per result (its head and tail)
SANDBOX_PATH = "/usr/bin:/bin"
JOB_DIR = "/job"  # the compile step's working directory inside the sandbox
INSIDE_BINARY = "/tmp/test.bin"
SENTINEL_FILE = "zzzz_gocram_sentinel_test.go"  # sorts last, so its test runs last
REJECTED_SOURCE = {
    "defines TestMain (it would run before -test.paniconexit0 is armed)":
        re.compile(r"^\s*func\s+TestMain\s*\(", re.M),
    "uses //go:linkname (it could reach the test binary's internals)": re.compile(r"go:linkname"),
}
TEST_FUNC = re.compile(r"^func\s+(Test(?:[^a-z\W]\w*)?)\s*\(\s*\w+\s+\*testing\.T\s*\)", re.M)
PACKAGE = re.compile(r"^package\s+(\w+)", re.M)


@dataclass(frozen=True, kw_only=True)
class Limits:
    timeout_s: float = 15.0  # wall clock of the test binary
    compile_timeout_s: float = 180.0  # a cold GOCACHE compiles testify and the stdlib once
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the test binary
    compile_memory_bytes: int = 2 << 30  # RLIMIT_AS of each toolchain process
    processes: int = 32  # RLIMIT_NPROC (threads count: Go needs a handful)
    compile_processes: int = 256  # go, compile, link, vet and their threads
    output_bytes: int = 1 << 20  # RLIMIT_FSIZE: stdout+stderr and any file written
    compile_output_bytes: int = 256 << 20  # RLIMIT_FSIZE of the toolchain: the binary, cache entries
    tmpfs_bytes: int = 64 << 20  # size of /tmp, the test's working directory and the compiler's TMPDIR
    shm_bytes: int = 1 << 20  # size of /dev/shm
    open_files: int = 64
    compile_open_files: int = 1024


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
    go: str  # the real path of the go command, inside goroot
    goroot: Path
    gopath: str
    gocache: Path
    read_only: tuple[str, ...]  # what the compile step sees of the toolchain (toolchain_paths)

    def sandbox_env(self) -> dict[str, str]:
        """The compile step's whole environment (bwrap --clearenv)."""
        return {
            "PATH": f"{self.goroot}/bin:{SANDBOX_PATH}", "HOME": "/tmp", "TMPDIR": "/tmp",
            "GOROOT": str(self.goroot), "GO111MODULE": "off", "GOPATH": self.gopath,
            "GOCACHE": str(self.gocache), "CGO_ENABLED": "0", "GOFLAGS": "", "GOENV": "off",
            "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOTELEMETRY": "off", "GOMAXPROCS": "2",
        }

def toolchain_paths(goroot: Path, gopath: str) -> tuple[str, ...]:
    """GOROOT, what the symlinks inside it point to (Debian keeps src and pkg/include under
    /usr/share/go-1.x) and the GOPATH."""
    paths = [str(goroot), gopath]
    for parent, dirs, files in os.walk(goroot):
        for name in dirs + files:
            entry = Path(parent, name)
            if entry.is_symlink() and entry.exists():
                paths.append(str(entry.resolve()))
    return tuple(dict.fromkeys(paths))


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
    goroot = Path(subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.strip()).resolve()
    cache = Path(gocache) if gocache else sandbox_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _chown_tree(cache, COMPILER_UID)
    return GoToolchain(str(Path(go).resolve()), goroot, gopath, cache.resolve(),
                       toolchain_paths(goroot, gopath))


def sandbox_cache_dir() -> Path:
    """The compile step's GOCACHE. As root it must be reachable by COMPILER_UID, which cannot
    enter root's 0700 home: /var/cache (root-owned, not world-writable, so nobody can plant a
    symlink there). Otherwise under gocram's cache directory."""
    if os.geteuid() == 0:
        return Path("/var/cache/gocram/go-build")
    return default_cache_dir() / "go-build-sandbox"


def _chown_tree(root: Path, uid: int) -> None:
    if root.stat().st_uid == uid:
        return
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def _system_library_binds() -> list[str]:
    """bwrap arguments that bring in /usr/lib and the /lib* entries (symlinks stay symlinks), for
    the dynamically linked `go` command."""
    args = ["--ro-bind", "/usr/lib", "/usr/lib"]
    for name in ("lib", "lib32", "lib64", "libx32", "usr/lib32", "usr/lib64"):
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _bwrap_args(*, limits: Limits, tmpfs_bytes: int, binds: list[str], env: dict[str, str],
                chdir: str, proc: bool) -> list[str]:
    """The namespaces and the file system both steps share; binds adds what a step needs."""
    return [
        "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        *(["--proc", "/proc"] if proc else []),
        "--dev", "/dev",  # a tmpfs with null, zero, random, urandom, tty...: made read-only below
        "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm",
        "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
        *binds,
        # The root is bwrap's own tmpfs, uncapped: read-only, like /dev; the tmpfs mounts above
        # stay writable (the remount is not recursive).
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", chdir,
        *[arg for key, value in env.items() for arg in ("--setenv", key, value)],
    ]


def _prlimit(*, memory: int, processes: int, file_size: int, open_files: int,
             cpu_s: float) -> list[str]:
    """rlimits applied to bwrap, so to everything it starts; prlimit itself stays outside."""
    return [shutil.which("prlimit") or "prlimit", f"--as={memory}", f"--nproc={processes}",
            f"--fsize={file_size}", f"--nofile={open_files}", "--core=0", f"--cpu={int(cpu_s) + 1}",
            "--"]


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """None if the bubblewrap sandbox works here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) not found: apt-get install bubblewrap"
    if shutil.which("prlimit") is None:
        return "prlimit not found: apt-get install util-linux"
    true = shutil.which("true") or "/bin/true"
    probe_args = _bwrap_args(limits=DEFAULT_LIMITS, tmpfs_bytes=1 << 20, env={}, chdir="/tmp",
                             proc=False,
                             binds=[*_system_library_binds(), "--ro-bind", true, "/tmp/true"])
    probe = subprocess.run(
        [*_prlimit(memory=1 << 30, processes=64, file_size=1 << 20, open_files=64, cpu_s=10),
         bwrap, *probe_args, "--", "/tmp/true"],
        capture_output=True, text=True, timeout=30, **_as_user(NOBODY))
    if probe.returncode != 0:
        return f"bwrap cannot create its namespaces here: {probe.stderr.strip()[-200:]}"
    return None


def _as_user(uid: int) -> dict:
    """Popen arguments that run the sandbox as uid when we are root (the kernel does not apply
    RLIMIT_NPROC to root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


def describe_sandbox(limits: Limits) -> str:
    """One line for a run's summary: what the samples ran under."""
    who = f" as nobody (compiled as uid {COMPILER_UID})" if os.geteuid() == 0 else ""
    return (f"bubblewrap, compile and run: no network, own PID namespace, empty read-only root, "
            f"read-only /dev, {limits.shm_bytes >> 20} MiB /dev/shm, {limits.tmpfs_bytes >> 20} MiB "
            f"/tmp; run sees only the binary: AS={limits.memory_bytes >> 20} MiB, "
            f"NPROC={limits.processes}, FSIZE={limits.output_bytes >> 10} KiB, timeout "
            f"{limits.timeout_s:g}s; compile: AS={limits.compile_memory_bytes >> 20} MiB, "
            f"NPROC={limits.compile_processes}; verdict from test2json events, "
            f"-test.paniconexit0, sentinel test{who}")


def _run_killable(cmd: list[str], *, timeout: float, stdout, **popen) -> tuple[int | None, bool]:
    """(exit code, timed out); on timeout the whole process group is killed."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                            env={"PATH": SANDBOX_PATH}, start_new_session=True, **popen)
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


def rejection(source: str) -> str | None:
    """Why a sample is refused before compiling, or None."""
    for reason, pattern in REJECTED_SOURCE.items():
        if pattern.search(source):
            return reason
    return None


def sentinel_source(source: str, name: str) -> str:
    """A test file in the sample's package whose only test, `name`, must pass last."""
    package = PACKAGE.search(source)
    return (f"package {package.group(1) if package else 'main'}\n\nimport \"testing\"\n\n"
            f"func {name}(t *testing.T) {{}}\n")


def compile_test(source: str, filename: str, workdir: Path, toolchain: GoToolchain,
                 limits: Limits, sentinel: str) -> tuple[Path | None, GoResult | None]:
    """(test binary, None) or (None, the failure)."""
    src = workdir / "src"
    src.mkdir()
    (src / filename).write_text(source)
    (src / SENTINEL_FILE).write_text(sentinel_source(source, sentinel))
    if os.geteuid() == 0:
        _chown_tree(src, COMPILER_UID)
    src.chmod(0o755)  # the run step's nobody must reach the binary to bind it in
    workdir.chmod(0o755)
    log = workdir / "compile.log"
    binds = [*_system_library_binds(),
             *[arg for path in toolchain.read_only for arg in ("--ro-bind", path, path)],
             "--bind", str(toolchain.gocache), str(toolchain.gocache),
             "--bind", str(src), JOB_DIR]
    bwrap = _bwrap_args(limits=limits, tmpfs_bytes=limits.tmpfs_bytes, binds=binds,
                        env=toolchain.sandbox_env(), chdir=JOB_DIR, proc=True)
    command = [*_prlimit(memory=limits.compile_memory_bytes, processes=limits.compile_processes,
                         file_size=limits.compile_output_bytes, open_files=limits.compile_open_files,
                         cpu_s=limits.compile_timeout_s),
               shutil.which("bwrap"), *bwrap, "--",
               toolchain.go, "test", "-c", "-p", "2", "-o", f"{JOB_DIR}/test.bin", "."]
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        code, timed_out = _run_killable(command, timeout=limits.compile_timeout_s, stdout=out,
                                        **_as_user(COMPILER_UID))
    took = time.perf_counter() - t0
    output = head_and_tail(_read(log))
    binary = src / "test.bin"
    if timed_out:
        return None, GoResult("timeout", None, took, "compile timed out\n" + output)
    if "no test files" in output:
        return None, GoResult("no_tests", code, took, output)
    if code != 0:
        return None, GoResult("build_failed", code, took, output)
    if not binary.is_file():  # go test -c writes nothing for a package without tests
        return None, GoResult("no_tests", code, took, output)
    return binary, None


def test_events(toolchain: GoToolchain, log: Path) -> list[dict]:
    """The `go test -json` events of a test binary's `-test.v` output, by `go tool test2json`."""
    with open(log, "rb") as stdin:
        done = subprocess.run([toolchain.go, "tool", "test2json", "-p", "sample"], stdin=stdin,
                              capture_output=True, timeout=60,
                              env={"PATH": SANDBOX_PATH, "GOROOT": str(toolchain.goroot),
                                   "HOME": str(log.parent), "GOENV": "off"})
    events = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def run_binary(binary: Path, workdir: Path, limits: Limits, toolchain: GoToolchain, *,
               declared: list[str], sentinel: str) -> GoResult:
    problem = sandbox_problem()
    if problem:
        raise GocramError(f"refusing to run untrusted Go code without a sandbox: {problem}")
    # Execute-only for nobody: the binary holds the sentinel's name, so it must not read itself.
    binary.chmod(0o711)
    log = workdir / "test.log"
    test_args = ("-test.v", "-test.count=1", "-test.paniconexit0",
                 f"-test.timeout={limits.timeout_s}s")
    bwrap = _bwrap_args(limits=limits, tmpfs_bytes=limits.tmpfs_bytes, chdir="/tmp", proc=False,
                        binds=["--ro-bind", str(binary), INSIDE_BINARY],
                        env={"HOME": "/tmp", "TMPDIR": "/tmp", "GOMAXPROCS": "2",
                             "PATH": SANDBOX_PATH})
    command = [*_prlimit(memory=limits.memory_bytes, processes=limits.processes,
                         file_size=limits.output_bytes, open_files=limits.open_files,
                         cpu_s=limits.timeout_s),
               shutil.which("bwrap"), *bwrap, "--", INSIDE_BINARY, *test_args]
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        code, timed_out = _run_killable(command, timeout=limits.timeout_s + 5, stdout=out,
                                        **_as_user(NOBODY))
    took = time.perf_counter() - t0
    output = _read(log)  # at most limits.output_bytes: RLIMIT_FSIZE caps the file
    status = classify(code, timed_out, output, log.stat().st_size, limits,
                      events=test_events(toolchain, log), declared=declared, sentinel=sentinel)
    return GoResult(status, code, took, head_and_tail(output))


def verdict_holds(events: list[dict], declared: list[str], sentinel: str) -> bool:
    """True when the events show every declared test passing, nothing failing or skipped, and the
    sentinel passing after all of them."""
    if any(e.get("Action") in ("fail", "skip") for e in events):
        return False
    passed = [e.get("Test") for e in events
              if e.get("Action") == "pass" and "/" not in (e.get("Test") or "/")]
    return bool(passed) and passed[-1] == sentinel and all(name in passed for name in declared)


def classify(code: int | None, timed_out: bool, output: str, output_size: int, limits: Limits, *,
             events: list[dict], declared: list[str], sentinel: str) -> str:
    """A test run's status from its exit, output, size and test2json events; only a clean run
    whose verdict holds passes."""
    if timed_out or "panic: test timed out" in output:
        return "timeout"
    if output_size >= limits.output_bytes or code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        return "output_limit"
    ran = [e for e in events if e.get("Action") == "run" and e.get("Test") != sentinel]
    if "testing: warning: no tests to run" in output or not ran:
        return "no_tests"
    if code == 0 and output.rstrip().endswith("PASS") and verdict_holds(events, declared, sentinel):
        return "passed"
    if "panic:" in output or "fatal error:" in output:
        return "panic"
    if code is not None and (code < 0 or code > 128):
        return "killed"
    return "failed"


def run_go_test(source: str, *, filename: str = "main_test.go", limits: Limits = DEFAULT_LIMITS,
                toolchain: GoToolchain | None = None, keep_dir: Path | None = None) -> GoResult:
    """Compile and run one self-contained Go test file in a fresh temp directory."""
    if not filename.endswith("_test.go") or filename == SENTINEL_FILE or "/" in filename:
        raise GocramError(f"{filename}: a Go test file must be a plain name ending in _test.go")
    reason = rejection(source)
    if reason:
        return GoResult("failed", None, 0.0, f"rejected unrun: the sample {reason}")
    toolchain = toolchain or find_toolchain()
    workdir = Path(tempfile.mkdtemp(prefix="gocram-go-", dir=keep_dir))
    sentinel = f"TestGocramSentinel{secrets.token_hex(8)}"
    try:
        binary, failure = compile_test(source, filename, workdir, toolchain, limits, sentinel)
        if failure is not None:
            return failure
        return run_binary(binary, workdir, limits, toolchain, declared=TEST_FUNC.findall(source),
                          sentinel=sentinel)
    finally:
        if keep_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
