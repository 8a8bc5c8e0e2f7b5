"""The Go sandbox: each hostile sample is contained, and anything but a clean pass fails."""

import os
import socket
from pathlib import Path

import pytest

from gocram.eval.gorun import Limits, classify, run_go_test, sandbox_problem
from tests.conftest import REPO


@pytest.fixture(scope="module", autouse=True)
def needs_go_and_sandbox():
    import shutil

    if shutil.which("go") is None:
        pytest.skip("needs Go: apt-get install golang-go golang-github-stretchr-testify-dev")
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"needs the bubblewrap sandbox: {problem}")


LIMITS = Limits(timeout_s=4)
ASSERT_HEAD = 'package main\n\nimport (\n    "testing"\n    "github.com/stretchr/testify/assert"\n)\n'


def go_test(body: str, imports: str = "") -> str:
    return f'package main\n\nimport (\n    "testing"\n{imports})\n\n{body}\n'


def test_pass_fail_build_failure_and_panic():
    add = ("func Add(a, b int) int { return %s }\n"
           "func TestAdd(t *testing.T) { assert.Equal(t, 3, Add(1, 2)) }\n")
    assert run_go_test(ASSERT_HEAD + add % "a + b", limits=LIMITS).status == "passed"
    failed = run_go_test(ASSERT_HEAD + add % "a - b", limits=LIMITS)
    assert failed.status == "failed" and "--- FAIL" in failed.output
    assert run_go_test(ASSERT_HEAD + add % "a +", limits=LIMITS).status == "build_failed"
    panic = run_go_test(ASSERT_HEAD + add % "[]int{}[a+b]", limits=LIMITS)
    assert panic.status == "panic" and not panic.passed


def test_no_tests_is_a_failure():
    # A file with no Test function compiles and exits 0 with "no tests to run": not a pass.
    result = run_go_test("package main\n\nfunc Add(a, b int) int { return a + b }\n", limits=LIMITS)
    assert result.status == "no_tests" and not result.passed


def test_early_exit_zero_without_running_tests_fails():
    src = go_test('func init() { os.Exit(0) }\nfunc TestX(t *testing.T) {}', '    "os"\n')
    assert run_go_test(src, limits=LIMITS).status == "no_tests"


def test_infinite_loop_times_out():
    result = run_go_test(go_test("func TestX(t *testing.T) { for {} }"), limits=LIMITS)
    assert result.status == "timeout" and result.seconds < LIMITS.timeout_s + 6


def test_fork_bomb_is_contained():
    # Re-executing itself forever: RLIMIT_NPROC stops it, and the PID namespace dies with the run.
    body = ('func TestX(t *testing.T) {\n\tfor i := 0; i < 500; i++ {\n'
            '\t\tif err := exec.Command(os.Args[0], "-test.run", "TestX").Start(); err != nil {\n'
            '\t\t\tt.Fatal("fork refused:", err)\n\t\t}\n\t}\n\tselect {}\n}')
    result = run_go_test(go_test(body, '    "os"\n    "os/exec"\n'), limits=LIMITS)
    assert not result.passed
    assert "fork refused" in result.output or result.status == "timeout"
    shell = go_test("""func TestX(t *testing.T) {
	out, err := exec.Command("sh", "-c", "b(){ b|b& }; b; sleep 30").CombinedOutput()
	t.Log(string(out), err)
}""", '    "os/exec"\n')
    result = run_go_test(shell, limits=LIMITS)
    # The sandbox has no shell at all (nothing of the host's /usr/bin is bound in).
    assert 'exec: "sh": executable file not found' in result.output, result.output
    assert result.seconds < LIMITS.timeout_s + 6
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_sandboxed(p)]
    assert leftovers == []


def _is_sandboxed(proc: Path) -> bool:
    try:
        return b"/tmp/test.bin" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_network_dial_is_refused():
    # A listener on this machine's loopback: reachable from here, not from inside the sandbox.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        body = (f'func TestX(t *testing.T) {{\n\tc, err := net.DialTimeout("tcp", "127.0.0.1:{port}", '
                '2*time.Second)\n\tif err != nil {\n\t\tt.Fatal("dial failed:", err)\n\t}\n\tc.Close()\n}')
        result = run_go_test(go_test(body, '    "net"\n    "time"\n'), limits=LIMITS)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection ever reached the listener
            server.accept()
    assert result.status == "failed" and "dial failed" in result.output


def test_writes_outside_the_temp_dir_are_contained(tmp_path):
    target = tmp_path / "escape"
    tmp_path.chmod(0o777)  # even a world-writable directory stays out of reach
    paths = [str(target), "/var/tmp/gocram-escape", str(Path.home() / "gocram-escape")]
    quoted = ", ".join(f'"{p}"' for p in paths)
    body = """func TestX(t *testing.T) {
	for _, p := range []string{PATHS} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err == nil {
			t.Log("WROTE", p)
		}
	}
	if err := os.WriteFile("inside.txt", []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
}""".replace("PATHS", quoted)
    result = run_go_test(go_test(body, '    "os"\n'), limits=LIMITS)
    assert result.status == "passed", result.output  # writing its own directory works
    assert "WROTE" not in result.output
    assert not target.exists() and not Path("/var/tmp/gocram-escape").exists()
    assert not (Path.home() / "gocram-escape").exists()


def test_huge_output_is_cut_off():
    body = ('func TestX(t *testing.T) {\n\tline := strings.Repeat("A", 4096)\n'
            '\tfor i := 0; i < 1000000; i++ {\n\t\tfmt.Println(line)\n\t}\n}')
    limits = Limits(timeout_s=4, output_bytes=256 << 10)
    result = run_go_test(go_test(body, '    "fmt"\n    "strings"\n'), limits=limits)
    assert result.status == "output_limit" and len(result.output) <= 2100


def test_memory_hog_is_stopped():
    body = """var keep [][]byte

func TestX(t *testing.T) {
	for {
		keep = append(keep, make([]byte, 64<<20))
	}
}"""
    result = run_go_test(go_test(body), limits=LIMITS)
    assert result.status in {"panic", "killed"} and "out of memory" in result.output



SENTINEL = "TestGocramSentinel0123"
RUN_X = [{"Action": "run", "Test": "TestX"}]
PASS_X = [*RUN_X, {"Action": "pass", "Test": "TestX"}]
PASS_SENTINEL = [{"Action": "run", "Test": SENTINEL}, {"Action": "pass", "Test": SENTINEL}]


@pytest.mark.parametrize("code, timed_out, output, size, events, status", [
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 10, PASS_X + PASS_SENTINEL, "passed"),
    # No sentinel after the sample's test: the binary left early with a forged transcript.
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 10, PASS_X, "failed"),
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 10, PASS_SENTINEL + PASS_X, "failed"),
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 10,
     PASS_X + [{"Action": "skip", "Test": "TestY"}] + PASS_SENTINEL, "failed"),
    (0, False, "ok  \t_/tmp/x\t[no test files]\n", 10, [], "no_tests"),
    (0, False, "testing: warning: no tests to run\nPASS\n", 10, PASS_SENTINEL, "no_tests"),
    (1, False, "=== RUN   TestX\n--- FAIL: TestX\nFAIL\n", 10,
     [*RUN_X, {"Action": "fail", "Test": "TestX"}], "failed"),
    (2, False, "=== RUN   TestX\npanic: runtime error\n", 10, RUN_X, "panic"),
    (None, True, "=== RUN   TestX\n", 10, RUN_X, "timeout"),
    (2, False, "=== RUN   TestX\npanic: test timed out after 4s\n", 10, RUN_X, "timeout"),
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 1 << 20, PASS_X + PASS_SENTINEL,
     "output_limit"),
    (137, False, "=== RUN   TestX\n", 10, RUN_X, "killed"),
])
def test_classify(code, timed_out, output, size, events, status):
    assert classify(code, timed_out, output, size, Limits(), events=events, declared=["TestX"],
                    sentinel=SENTINEL) == status


def test_a_declared_test_that_never_ran_fails():
    events = PASS_X + PASS_SENTINEL
    assert classify(0, False, "PASS\n", 10, Limits(), events=events, declared=["TestX", "TestY"],
                    sentinel=SENTINEL) == "failed"


# -- escapes: each hostile program below broke the previous sandbox ------------------------------

def test_dev_is_read_only_and_dev_shm_is_capped():
    # Before: /dev was a writable tmpfs with no size cap, outside the memory limit.
    body = """func TestX(t *testing.T) {
	block := make([]byte, 1<<20)
	for _, dir := range []string{"/dev", "/dev/shm", "/"} {
		written := 0
		for i := 0; i < 64; i++ {
			if err := os.WriteFile(fmt.Sprintf("%s/fill-%d", dir, i), block, 0o644); err != nil {
				fmt.Println("STOPPED", dir, err)
				break
			}
			written++
		}
		fmt.Println("WRITTEN", dir, written)
	}
}"""
    limits = Limits(timeout_s=10, shm_bytes=2 << 20)
    result = run_go_test(go_test(body, '    "fmt"\n    "os"\n'), limits=limits)
    assert result.status == "passed", result.output
    written = {line.split()[1]: int(line.split()[2]) for line in result.output.splitlines()
               if line.startswith("WRITTEN")}
    assert written == {"/dev": 0, "/dev/shm": 2, "/": 0}, result.output
    assert "STOPPED /dev open /dev/fill-0: read-only file system" in result.output


def test_host_files_are_not_visible():
    # Before: the whole host was bind-mounted read-only, so a sample read /etc/passwd, the eval's
    # expected answers and the project's source (and printed them into results.jsonl).
    targets = ["/etc/passwd", "/etc/hostname", str(REPO / "evaldata" / "SHA256SUMS"),
               str(REPO / "gocram" / "eval" / "gorun.py"), str(Path.home()), "/root", "/home",
               "/proc/self/environ", "/usr/share/gocode", "/usr/lib"]
    for target in targets[:4]:
        assert Path(target).exists(), target  # each probe would find something if it could look
    quoted = ", ".join(f'"{p}"' for p in targets)
    body = """func TestX(t *testing.T) {
	for _, p := range []string{PATHS} {
		if _, err := os.ReadFile(p); err == nil {
			fmt.Println("READ", p)
		}
		if entries, err := os.ReadDir(p); err == nil && len(entries) > 0 {
			fmt.Println("LISTED", p)
		}
	}
	if _, err := os.ReadFile(os.Args[0]); err == nil {
		fmt.Println("READ itself")
	}
	root, _ := os.ReadDir("/")
	for _, e := range root {
		fmt.Println("ROOT", e.Name())
	}
}""".replace("PATHS", quoted)
    result = run_go_test(go_test(body, '    "fmt"\n    "os"\n'), limits=LIMITS)
    assert result.status == "passed", result.output
    assert "READ /" not in result.output and "LISTED" not in result.output, result.output
    assert {line.split()[1] for line in result.output.splitlines() if line.startswith("ROOT")} \
        == {"dev", "tmp"}
    if os.geteuid() == 0:  # as root the binary runs as nobody, with execute-only permission
        assert "READ itself" not in result.output


@pytest.mark.parametrize("exit_call, imports", [
    ("os.Exit(0)", '    "os"\n'),
    ("syscall.Exit(0)", '    "syscall"\n'),  # skips the os.Exit hook of -test.paniconexit0
])
def test_a_forged_pass_then_exit_zero_fails(exit_call, imports):
    # Before: a test printing PASS and exiting 0 counted as passed.
    body = f"""func Add(a, b int) int {{ return a - b }}

func TestAdd(t *testing.T) {{
	fmt.Println("--- PASS: TestAdd (0.00s)")
	fmt.Println("PASS")
	{exit_call}
	if Add(1, 2) != 3 {{
		t.Fatal("wrong")
	}}
}}"""
    result = run_go_test(go_test(body, '    "fmt"\n' + imports), limits=LIMITS)
    assert not result.passed and result.status in {"failed", "panic"}, result.output
    assert result.output.rstrip().endswith("PASS") or "os.Exit(0)" in result.output


def test_a_forged_transcript_from_init_fails():
    body = """func init() {
	fmt.Println("=== RUN   TestX")
	fmt.Println("--- PASS: TestX (0.00s)")
	fmt.Println("PASS")
	os.Exit(0)
}

func TestX(t *testing.T) { t.Fatal("never reached") }"""
    result = run_go_test(go_test(body, '    "fmt"\n    "os"\n'), limits=LIMITS)
    assert result.exit_code == 0 and result.output.rstrip().endswith("PASS")  # the forgery ran
    assert result.status == "failed"


@pytest.mark.parametrize("source, reason", [
    (go_test("func TestMain(m *testing.M) { fmt.Println(\"PASS\") }\nfunc TestX(t *testing.T) {}",
             '    "fmt"\n'), "TestMain"),
    ('package main\n\nimport (\n    "testing"\n    _ "unsafe"\n)\n\n//go:linkname tests main.tests\n'
     'var tests []testing.InternalTest\n\nfunc TestX(t *testing.T) {}\n', "go:linkname"),
])
def test_samples_that_could_bypass_the_verdict_are_rejected(source, reason):
    result = run_go_test(source, limits=LIMITS)
    assert result.status == "failed" and reason in result.output and result.seconds == 0.0


def test_compiler_memory_bomb_is_stopped():
    # Before: `go test -c` ran unsandboxed, as root, with no memory cap. Each constant doubles the
    # last: c26 is a 1 GiB string the compiler must build in memory.
    consts = "\n".join(f"const c{i} = c{i - 1} + c{i - 1}" for i in range(1, 27))
    src = go_test(f'const c0 = "0123456789abcdef"\n{consts}\n'
                  'func TestX(t *testing.T) { t.Log(len(c26)) }')
    limits = Limits(timeout_s=4, compile_memory_bytes=768 << 20, compile_timeout_s=120)
    result = run_go_test(src, limits=limits)
    assert result.status == "build_failed", result.output
    assert "out of memory" in result.output or "cannot allocate memory" in result.output, result.output


def test_compiler_output_is_capped():
    # A 256 MiB initialised array makes a 256 MiB binary: RLIMIT_FSIZE stops the linker.
    src = go_test("var big = [256 << 20]byte{1}\nfunc TestX(t *testing.T) { t.Log(big[0]) }")
    limits = Limits(timeout_s=4, compile_output_bytes=32 << 20, compile_timeout_s=120)
    result = run_go_test(src, limits=limits)
    assert result.status == "build_failed", result.output
