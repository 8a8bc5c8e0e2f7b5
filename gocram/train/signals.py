"""Graceful stops on SIGTERM/SIGINT (pre-emption, Ctrl-C).

The first signal only sets a flag: the trainer finishes the step it is in, writes a checkpoint
and returns, and `gocram train` prints how to resume and exits 0. A second signal exits at once
with 128 + signum; nothing is corrupted because checkpoints are renamed into place atomically (a
half-written temp file is ignored and cleaned up by the next save).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable


class GracefulStop:
    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT), *,
                 exit_now: Callable[[int], None] = os._exit):
        self.signals = signals
        self.exit_now = exit_now  # os._exit: no cleanup that a second Ctrl-C was meant to skip
        self.requested: str | None = None  # the name of the first signal received
        self._previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # Python's rule for handlers
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        # os.write, not print: a handler may interrupt a print and the buffered stream is not
        # reentrant.
        if self.requested is None:
            self.requested = name
            os.write(2, f"\n[train] {name}: finishing the current step, then writing a checkpoint "
                        f"(send it again to exit at once)\n".encode())
            return
        os.write(2, f"\n[train] second {name}: exiting now; the newest checkpoint on disk is "
                    f"intact\n".encode())
        self.exit_now(128 + signum)


class StopState:
    """The trainer's one answer to "stop early?": a signal heard by this process and, under
    torchrun, whether every rank has heard of one (so all leave the loop at the same step)."""

    def __init__(self, signals: GracefulStop | None, *, world_size: int):
        self.signals, self.world_size = signals, world_size
        self.agreed = False  # set after each step from what every rank heard

    @property
    def heard(self) -> bool:
        """A signal reached this process (under torchrun, maybe not yet the others)."""
        return self.signals is not None and self.signals.requested is not None

    @property
    def due(self) -> bool:
        """Leave the loop now: at once in one process, once agreed by every rank in several."""
        return self.heard if self.world_size == 1 else self.agreed

    @property
    def signal_name(self) -> str:
        return (self.signals.requested if self.signals else None) or "a signal to another rank"
