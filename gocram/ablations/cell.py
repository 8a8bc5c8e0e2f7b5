"""One matrix cell, run in a fresh process: `python -m gocram.ablations.cell SPEC.json`.

A fresh process per cell keeps compile caches, allocator state and threads from leaking between
cells; the runner enforces the hard timeout by killing this process group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gocram.config import config_from_dict
from gocram.core.errors import GocramError
from gocram.measure.monitor import default_monitor
from gocram.measure.profiling import ProfilerMonitor


def run_cell(spec: dict) -> dict:
    from gocram.train.trainer import Trainer

    cfg = config_from_dict(spec["config"])
    out = Path(spec["out"])
    trainer = Trainer(cfg, out)
    if trainer.engine.is_main:  # under torchrun, rank 0 measures for the cell
        trainer.monitors.append(default_monitor(trainer.device.type))
        if spec.get("profile"):
            trainer.monitors.append(ProfilerMonitor(out / "profile"))
    return trainer.run()


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run_cell(spec)
    except GocramError as err:
        print(f"gocram: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
