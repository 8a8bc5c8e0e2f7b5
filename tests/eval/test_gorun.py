"""The Go sandbox: each hostile sample is contained, and anything but a clean pass fails."""

import socket
from pathlib import Path

import pytest

from gocram.eval.gorun import Limits, classify, run_go_test, sandbox_problem


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
    # Either the shell ran out of processes at once, or the run was killed at the timeout.
    assert "fork" in result.output.lower() or result.status == "timeout"
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


@pytest.mark.parametrize("code, timed_out, output, size, status", [
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 10, "passed"),
    (0, False, "ok  \t_/tmp/x\t[no test files]\n", 10, "no_tests"),
    (0, False, "testing: warning: no tests to run\nPASS\n", 10, "no_tests"),
    (1, False, "=== RUN   TestX\n--- FAIL: TestX\nFAIL\n", 10, "failed"),
    (2, False, "=== RUN   TestX\npanic: runtime error\n", 10, "panic"),
    (None, True, "=== RUN   TestX\n", 10, "timeout"),
    (2, False, "=== RUN   TestX\npanic: test timed out after 4s\n", 10, "timeout"),
    (0, False, "=== RUN   TestX\n--- PASS: TestX\nPASS\n", 1 << 20, "output_limit"),
    (137, False, "=== RUN   TestX\n", 10, "killed"),
])
def test_classify(code, timed_out, output, size, status):
    assert classify(code, timed_out, output, size, Limits()) == status
