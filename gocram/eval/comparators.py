"""Classical compressors on exactly the scored bytes: each file alone, and all files concatenated.

Per file, the sizes of the separately compressed files are summed (what a compressor that may not
look across files achieves); concatenated, one stream in the scoring order (what it achieves when
it may). Both are in bits per input byte, so they sit beside the model's bpb.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess

from gocram.core.errors import GocramError
from gocram.core.registry import Registry

COMPRESSORS = Registry("comparator")
PPMD_ORDER = 8  # PPMd variant H (7-Zip's), order 8 and 256 MiB: near 7-Zip's -mx9 text settings
PPMD_MEMORY = 256 << 20


@COMPRESSORS.register("xz -9e")
def xz_9e(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


class ComparatorUnavailable(GocramError):
    """A compressor's program or library is missing here: its cells say so instead of a number."""


@COMPRESSORS.register("zstd -19 --long")
def zstd_19_long(data: bytes) -> int:
    if shutil.which("zstd") is None:
        raise ComparatorUnavailable("the zstd program is not installed (apt-get install zstd)")
    done = subprocess.run(["zstd", "-19", "--long", "-q", "-c"], input=data, capture_output=True,
                          check=True)
    return len(done.stdout)


@COMPRESSORS.register("ppmd")
def ppmd(data: bytes) -> int:
    import pyppmd

    return len(pyppmd.compress(data, max_order=PPMD_ORDER, mem_size=PPMD_MEMORY))


def compare(files: list[bytes]) -> dict:
    """{compressor: {"per_file_bpb", "concatenated_bpb"}} over the files, plus the byte count;
    a compressor missing here gets None and a "skipped" reason."""
    total = sum(len(f) for f in files)
    if not total:
        raise GocramError("no bytes to compress")
    joined = b"".join(files)
    result = {"bytes": total, "files": len(files)}
    for name in COMPRESSORS.names():
        size = COMPRESSORS.get(name)
        try:
            result[name] = {"per_file_bpb": 8.0 * sum(size(f) for f in files if f) / total,
                            "concatenated_bpb": 8.0 * size(joined) / total}
        except ComparatorUnavailable as err:  # a missing tool must not cost a training run
            result[name] = {"per_file_bpb": None, "concatenated_bpb": None, "skipped": str(err)}
    return result
