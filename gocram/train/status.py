"""status.json, the run's heartbeat, and `gocram status RUN_DIR`, which reads it.

The trainer rewrites status.json atomically (temp + rename) every `health.heartbeat_every_s` at a
step boundary, and once more when the run finishes, stops or fails. `gocram status` needs nothing
else (result.json adds the final numbers when it exists), so it works on a live run, a finished
one, and a copy of the directory on another machine. This module imports no torch: the command
answers in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_json

TREND_POINTS = 8  # tokens/s over the last few heartbeat intervals
STALE_AFTER_S = 60.0  # on top of three heartbeat intervals: a running state older is suspect


def json_number(value: float) -> float | str:
    """NaN/Inf as strings: log.jsonl and status.json stay strict JSON for jq and friends."""
    return value if math.isfinite(value) else str(value)


class DeviceProbe:
    """What the accelerator is doing right now: NVML on CUDA, this process's CPU use otherwise."""

    def __init__(self, device):
        import psutil

        self.process = psutil.Process()
        self.process.cpu_percent(None)  # prime: the first reading is always 0
        self.cores = psutil.cpu_count() or 1
        self.nvml = self.handle = None
        self.note = "CPU run"
        if device.type == "cuda":
            try:
                import pynvml
                import torch

                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                uuid = str(torch.cuda.get_device_properties(index).uuid)
                try:  # the UUID survives CUDA_VISIBLE_DEVICES renumbering; the index does not
                    self.handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}".encode())
                except Exception:
                    self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self.nvml = pynvml
            except Exception as err:  # no pynvml, no driver access (containers): say why
                self.note = f"NVML unavailable ({type(err).__name__}: {err})"

    def read(self) -> dict:
        reading = {"cpu_util": self.process.cpu_percent(None) / self.cores,
                   "rss_bytes": self.process.memory_info().rss, "note": self.note}
        if self.handle is not None:
            try:
                n = self.nvml
                mem = n.nvmlDeviceGetMemoryInfo(self.handle)
                reading.update(gpu_util=float(n.nvmlDeviceGetUtilizationRates(self.handle).gpu),
                               gpu_mem_used=int(mem.used), gpu_mem_total=int(mem.total),
                               gpu_name=_text(n.nvmlDeviceGetName(self.handle)), note="NVML")
            except Exception as err:
                reading["note"] = f"NVML read failed ({err})"
        return reading


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Heartbeat:
    """Writes status.json from the trainer's state; cheap enough to call after every step."""

    def __init__(self, out: Path, every_s: float, device):
        self.path = out / "status.json"
        self.every_s = every_s
        self.probe = DeviceProbe(device) if every_s else None
        self.started_at = time.time()  # stamped again by start(), when the run begins
        self._last = float("-inf")
        self._origin: tuple[float, float] | None = None  # (wall, budget fraction) at the first beat
        self._points: deque[tuple[float, int]] = deque(maxlen=TREND_POINTS + 1)  # (wall, tokens)
        self._wait_mark = (0.0, 0.0)  # loader wait / step time totals at the previous beat
        self._loss: float | None = None
        self._lr: float | None = None

    def start(self) -> None:
        self.started_at = time.time()

    def beat(self, trainer, *, loss: float | None = None, lr: float | None = None,
             state: str = "running", force: bool = False, **extra) -> None:
        if loss is not None:  # remembered, so the final beat still shows the last step's values
            self._loss, self._lr = loss, lr
        now = time.monotonic()
        if not self.every_s or (not force and now - self._last < self.every_s):
            return
        self._last = now
        p, tc, guard = trainer.progress, trainer.cfg.train, trainer.guard
        fraction = trainer.fraction
        if self._origin is None:
            self._origin = (now, fraction)
        self._points.append((now, p.tokens))
        t0, f0 = self._origin
        rate = (fraction - f0) / (now - t0) if now > t0 else 0.0  # eval and ckpt pauses included
        eta_s = (1.0 - fraction) / rate if rate > 0 and state == "running" else None
        points = list(self._points)
        trend = [max(points[i][1] - points[i - 1][1], 0) / (points[i][0] - points[i - 1][0])
                 for i in range(1, len(points)) if points[i][0] > points[i - 1][0]]
        wait, steps = guard.loader_wait_s - self._wait_mark[0], guard.step_s_total - self._wait_mark[1]
        self._wait_mark = (guard.loader_wait_s, guard.step_s_total)
        bpbs = [bpb for _, bpb in p.val_curve]
        payload = {
            "state": state, "updated_at": round(time.time(), 3),
            "started_at": round(self.started_at, 3), "pid": os.getpid(), "host": socket.gethostname(),
            "heartbeat_every_s": self.every_s,
            "step": p.step, "max_steps": tc.max_steps, "clock": tc.clock,
            "elapsed_s": round(p.elapsed_s, 3), "budget_s": tc.budget_s,
            "fraction": round(fraction, 5), "eta_s": round(eta_s, 1) if eta_s is not None else None,
            "tokens": p.tokens, "tok_per_s": p.tokens / p.elapsed_s if p.elapsed_s else None,
            "tok_per_s_trend": [round(x, 1) for x in trend],
            "loss": json_number(self._loss) if self._loss is not None else None, "lr": self._lr,
            "lr_scale": guard.lr_scale,
            "val_bpb_last": bpbs[-1] if bpbs else None, "val_bpb_best": min(bpbs) if bpbs else None,
            "evals": len(bpbs),
            "loader_wait_frac": guard.loader_wait_frac,
            "loader_wait_frac_recent": wait / steps if steps > 0 else None,
            "device": self.probe.read(),
            "health_events": dict(guard.counts), "recent_events": list(guard.recent),
            **extra,
        }
        try:
            atomic_write_json(self.path, payload)  # a reader never sees half a file
        except OSError as err:  # a full disk must not kill the run over a status file
            trainer.log.progress(f"[health] status.json not written ({err})", force=True)



class NullHeartbeat:
    """What ranks other than 0 beat with under torchrun: nothing (rank 0's status.json is the run's)."""

    def start(self) -> None:
        pass

    def beat(self, trainer, **kwargs) -> None:
        pass


# -- `gocram status` ---------------------------------------------------------------------------
def load_status(run_dir: Path) -> dict:
    """The heartbeat, completed from result.json when the run has one; raises when neither."""
    status_path, result_path = run_dir / "status.json", run_dir / "result.json"
    status = _read_json(status_path) if status_path.is_file() else None
    result = _read_json(result_path) if result_path.is_file() else None
    if status is None and result is None:
        raise GocramError(f"{run_dir}: no status.json or result.json (not a gocram run directory, "
                          f"or the run has not reached its first step)")
    merged = dict(status or {"state": "finished"})
    if result is not None:
        merged["state"] = "finished"
        merged["result"] = {k: result.get(k) for k in (
            "status", "val_bpb", "val_loss", "xz_bpb", "steps", "tokens", "tokens_per_s", "elapsed_s",
            "budget_s", "loader_wait_frac", "health_events", "lr_scale", "device_name", "mean_gpu_util",
            "mean_cpu_util")}
        for key in ("steps", "elapsed_s", "budget_s", "loader_wait_frac", "health_events", "lr_scale"):
            if result.get(key) is not None:
                merged[{"steps": "step"}.get(key, key)] = result[key]
        merged["val_bpb_last"] = result.get("val_bpb")
        curve = [bpb for _, bpb in result.get("val_curve", [])]
        merged["val_bpb_best"] = min(curve) if curve else result.get("val_bpb")
        merged["eta_s"] = None
    merged["run_dir"] = str(run_dir)
    if merged.get("updated_at"):
        merged["heartbeat_age_s"] = round(time.time() - merged["updated_at"], 1)
        every = merged.get("heartbeat_every_s") or 0
        merged["stale"] = bool(merged["state"] == "running" and
                               merged["heartbeat_age_s"] > 3 * every + STALE_AFTER_S)
    return merged


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise GocramError(f"{path}: unreadable ({err})") from None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _num(value, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def render(s: dict) -> str:
    state = s.get("state", "?")
    head = f"run {s['run_dir']}: {state}"
    if s.get("stale"):
        head += " (STALE: no heartbeat for a while; the process may be gone)"
    if s.get("heartbeat_age_s") is not None:
        head += f", heartbeat {_duration(s['heartbeat_age_s'])} ago"
    if s.get("pid"):
        head += f", pid {s['pid']} on {s.get('host', '?')}"
    if s.get("message"):
        head += f"\n  {s['message']}"
    eta = s.get("eta_s")
    if eta is not None and state == "running":
        eta = max(eta - (s.get("heartbeat_age_s") or 0), 0)
    if s.get("clock") == "steps" and s.get("max_steps"):
        where = f"step {s.get('step', 0):,} / {s['max_steps']:,}"
    else:
        where = f"step {s.get('step', 0):,}"
    rows = [
        ("progress", f"{where} | train {_num(s.get('elapsed_s'), '.1f')} / "
                     f"{_num(s.get('budget_s'), '.0f')} s"
                     + (f" ({100 * s['fraction']:.1f}%)" if s.get("fraction") is not None else "")
                     + f" | ETA {_duration(eta) if state == 'running' else '-'}"),
        ("loss / lr", f"{_num(s.get('loss'))} / {_num(s.get('lr'), '.2e')}"
                      + (f" (LR scale {s['lr_scale']:g} after rollbacks)"
                         if s.get("lr_scale") not in (None, 1.0) else "")),
        ("val bpb", f"last {_num(s.get('val_bpb_last'))} | best {_num(s.get('val_bpb_best'))}"),
        ("tokens/s", f"{_num(s.get('tok_per_s'), ',.0f')} overall"
                     + (" | trend " + " ".join(f"{x:,.0f}" for x in s["tok_per_s_trend"])
                        if s.get("tok_per_s_trend") else "")),
        ("device", _device_line(s.get("device"), s.get("result"))),
        ("data loader", f"wait {_pct(s.get('loader_wait_frac'))} of step time"
                        + (f" (recent {_pct(s['loader_wait_frac_recent'])})"
                           if s.get("loader_wait_frac_recent") is not None else "")),
        ("guard events", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in
                                   (s.get("health_events") or {}).items()) or "-"),
    ]
    for event in (s.get("recent_events") or [])[-3:]:
        detail = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "time"))
        rows.append(("  " + event["event"], detail))
    if s.get("result"):
        r = s["result"]
        rows.append(("result", f"val bpb {_num(r.get('val_bpb'))} (xz {_num(r.get('xz_bpb'))}), "
                               f"{_num(r.get('tokens_per_s'), ',.0f')} tok/s, status {r.get('status')}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join([head] + [f"  {k:<{width}}  {v}" for k, v in rows])


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _device_line(device: dict | None, result: dict | None) -> str:
    if device:
        if device.get("gpu_util") is not None:
            return (f"{device.get('gpu_name', 'GPU')}: util {device['gpu_util']:.0f}% | mem "
                    f"{device['gpu_mem_used'] / 2**30:.1f} / {device['gpu_mem_total'] / 2**30:.1f} GiB")
        return (f"CPU util {device['cpu_util']:.0f}% of all cores | RSS "
                f"{device['rss_bytes'] / 2**20:,.0f} MiB ({device.get('note', '')})")
    if result and result.get("mean_gpu_util") is not None:
        return f"{result.get('device_name')}: mean util {result['mean_gpu_util']:.0f}%"
    if result and result.get("mean_cpu_util") is not None:
        return f"{result.get('device_name')}: mean CPU util {result['mean_cpu_util']:.0f}%"
    return result.get("device_name", "-") if result else "-"


def show(run_dir: str, *, as_json: bool = False, watch: float | None = None) -> int:
    path = Path(run_dir)
    if watch is None:
        s = load_status(path)
        print(json.dumps(s, indent=1) if as_json else render(s))
        return 0
    try:
        while True:
            s = load_status(path)
            text = json.dumps(s) if as_json else render(s)
            if as_json:
                print(text, flush=True)  # one object per line: easy to pipe
            else:
                sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")  # home, clear: refresh in place
                sys.stdout.flush()
            if s.get("state") != "running" or s.get("stale"):
                return 0
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
