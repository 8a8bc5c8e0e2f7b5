"""The kernel tests bite: each deliberate breakage below, applied alone to a copy of a kernel's
source in a temporary directory (the repository's files are never edited), must make the checks
of tests/test_kernels_paths.py fail.

A breakage whose text no longer occurs exactly once fails here too, so a refactor of a kernel has
to carry its mutations along instead of silently testing nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kernel_device import needs_kernels
from tests.test_kernels_paths import CHECKS

pytestmark = needs_kernels

KERNELS_DIR = Path(__file__).resolve().parent.parent / "gocram" / "kernels"


@dataclass(frozen=True, kw_only=True)
class Breakage:
    name: str
    kernel: str  # a key of CHECKS and the module's file name
    original: str
    broken: str


BREAKAGES = (
    # fused cross-entropy
    Breakage(name="ce-no-online-softmax-rescale", kernel="cross_entropy",
             original="s = s * tl.exp(m - m_new) + ", broken="s = s + "),
    Breakage(name="ce-target-logit-from-last-tile-only", kernel="cross_entropy",
             original="target_logit += ", broken="target_logit = "),
    Breakage(name="ce-gradient-without-onehot", kernel="cross_entropy",
             original="tl.exp(z - lse[:, None]) - tl.where(cols[None, :] == targets[:, None], 1.0, 0.0)",
             broken="tl.exp(z - lse[:, None])"),
    Breakage(name="ce-gradient-unscaled", kernel="cross_entropy",
             original="grad = tl.where(valid[:, None], grad * scale, 0.0)",
             broken="grad = tl.where(valid[:, None], grad, 0.0)"),
    # LayerNorm
    Breakage(name="ln-no-eps", kernel="layernorm",
             original="rstd = 1.0 / tl.sqrt(var + eps)", broken="rstd = 1.0 / tl.sqrt(var)"),
    Breakage(name="ln-dbias-first-program-only", kernel="layernorm",
             original="dbias = dbias_partial.sum(0)", broken="dbias = dbias_partial[0]"),
    Breakage(name="ln-dweight-first-program-only", kernel="layernorm",
             original="dweight = dweight_partial.sum(0)", broken="dweight = dweight_partial[0]"),
    Breakage(name="ln-dbias-last-tile-only", kernel="layernorm",
             original="dbias_acc += tl.sum(dy, axis=0)", broken="dbias_acc = tl.sum(dy, axis=0)"),
    Breakage(name="ln-dx-without-xhat-term", kernel="layernorm",
             original="dx = (wdy - xhat * c_xhat[:, None] - c_mean[:, None])",
             broken="dx = (wdy - c_mean[:, None])"),
    Breakage(name="ln-dweight-without-xhat", kernel="layernorm",
             original="dweight_acc += tl.sum(dy * xhat, axis=0)", broken="dweight_acc += tl.sum(dy, axis=0)"),
    # bias + GELU
    Breakage(name="gelu-erf-derivative-without-density-term", kernel="bias_gelu",
             original=" + x * INV_SQRT_2PI * tl.exp(-0.5 * x * x)", broken=""),
    Breakage(name="gelu-tanh-derivative-without-sech2", kernel="bias_gelu",
             original="0.5 * x * (1.0 - t * t) * du", broken="0.5 * x * du"),
    Breakage(name="gelu-dbias-first-band-only", kernel="bias_gelu",
             original="dbias_partial.sum(0) if want_dbias", broken="dbias_partial[0] if want_dbias"),
    Breakage(name="gelu-dbias-last-tile-only", kernel="bias_gelu",
             original="dbias_acc += tl.sum(dh, axis=0)", broken="dbias_acc = tl.sum(dh, axis=0)"),
)


def load_broken_copy(breakage: Breakage, directory: Path):
    source = (KERNELS_DIR / f"{breakage.kernel}.py").read_text()
    found = source.count(breakage.original)
    assert found == 1, f"{breakage.name}: {breakage.original!r} occurs {found} times in {breakage.kernel}.py"
    module_name = f"broken_{breakage.name.replace('-', '_')}"
    path = directory / f"{module_name}.py"
    path.write_text(source.replace(breakage.original, breakage.broken))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # triton.jit reads the kernels' source through the module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[module_name]
    return module


def test_the_breakages_cover_every_kernel():
    assert {b.kernel for b in BREAKAGES} == set(CHECKS)
    assert len({b.name for b in BREAKAGES}) == len(BREAKAGES)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # without eps, 0/0 is the point
@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.name)
def test_each_breakage_fails_the_kernel_checks(breakage, tmp_path):
    module = load_broken_copy(breakage, tmp_path)
    with pytest.raises(AssertionError):  # a numeric mismatch, not a crash of the broken copy
        CHECKS[breakage.kernel](module)


@pytest.mark.parametrize("kernel", sorted(CHECKS))
def test_an_unbroken_copy_passes(kernel, tmp_path):
    """The copying itself changes nothing: a copy with a no-op edit passes its checks."""
    first_line = (KERNELS_DIR / f"{kernel}.py").read_text().splitlines()[0]
    noop = Breakage(name=f"noop-{kernel}", kernel=kernel, original=first_line, broken=first_line)
    CHECKS[kernel](load_broken_copy(noop, tmp_path))
