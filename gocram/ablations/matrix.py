"""Ablation matrices: a YAML file naming a base config, toggles, a budget per cell, seeds and a mode.

```yaml
name: cpu-quick
base: tiny                       # a configs/ name or a YAML path
overrides: [impl.attention=math]  # turn the base into the baseline
budget_s: 60                     # per cell
seeds: 1                         # a count (seeds 0..n-1) or a list
mode: one-on                     # one-on | hold-one-out | cumulative | grid | list
toggles: [attention=sdpa, compile, precision=bf16]       # for one-on / hold-one-out / cumulative
axes: {attention: [math, sdpa], vocab: [4096, 8192]}     # for grid: toggle name -> values
cells: [{name: fast, toggles: [compile, attention=sdpa]}]  # for list
max_cells: 24                    # grid refuses more unless forced
```
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gocram.ablations.toggles import check_groups
from gocram.core.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "matrices"
MODES = ("one-on", "hold-one-out", "cumulative", "grid", "list")
KNOWN_KEYS = {"name", "description", "base", "overrides", "budget_s", "seeds", "mode", "toggles",
              "axes", "cells", "max_cells", "timeout_s"}


@dataclass(frozen=True)
class Cell:
    name: str
    toggles: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Matrix:
    name: str
    description: str = ""
    base: str = "tiny"
    overrides: tuple[str, ...] = ()
    budget_s: float = 60.0
    seeds: tuple[int, ...] = (0,)
    mode: str = "one-on"
    toggles: tuple[str, ...] = ()
    axes: dict[str, list] = field(default_factory=dict)
    cells: tuple[Cell, ...] = ()
    max_cells: int = 24
    timeout_s: float | None = None  # hard limit per cell; default: see runner

    def expand(self, *, force: bool = False) -> list[Cell]:
        """The cells of this matrix (seeds apart), baseline first; two toggles of a group are rejected
        here, everything else on each cell's final config (gocram.plan)."""
        cells = EXPANDERS[self.mode](self)
        if self.mode == "grid" and len(cells) > self.max_cells and not force:
            raise ConfigError(f"matrix {self.name!r}: grid has {len(cells)} cells, over max_cells="
                              f"{self.max_cells}; pass --force to run them all")
        for cell in cells:
            try:
                check_groups(cell.toggles)
            except ConfigError as err:
                raise ConfigError(f"matrix {self.name!r}, cell {cell.name!r}: {err}") from None
        names = [c.name for c in cells]
        if len(set(names)) != len(names):
            raise ConfigError(f"matrix {self.name!r}: duplicate cell names {names}")
        return cells


def cell_name(toggles: tuple[str, ...]) -> str:
    return "+".join(toggles) if toggles else "baseline"


def _one_on(m: Matrix) -> list[Cell]:
    return [Cell("baseline", ())] + [Cell(t, (t,)) for t in m.toggles]


def _hold_one_out(m: Matrix) -> list[Cell]:
    every = tuple(m.toggles)
    held = [Cell(f"all-{t}", tuple(x for x in every if x != t)) for t in every]
    return [Cell("baseline", ()), Cell("all", every), *held]


def _cumulative(m: Matrix) -> list[Cell]:
    return [Cell("baseline", ())] + [
        Cell("+" + "+".join(m.toggles[:i]), tuple(m.toggles[:i])) for i in range(1, len(m.toggles) + 1)]


def _grid(m: Matrix) -> list[Cell]:
    """Every combination of the axes; a value-less toggle's axis is [false, true]."""
    from gocram.ablations.toggles import TOGGLES

    for name in m.axes:
        if name not in TOGGLES:
            raise ConfigError(f"grid axis {name!r} is not a toggle; choose from {sorted(TOGGLES)}")
    cells = []
    for values in itertools.product(*m.axes.values()):
        toggles = []
        for name, value in zip(m.axes, values, strict=True):
            if TOGGLES[name].takes_value:
                toggles.append(f"{name}={value}")
            elif value:
                toggles.append(name)
        cells.append(Cell(cell_name(tuple(toggles)), tuple(toggles)))
    return cells


def _listed(m: Matrix) -> list[Cell]:
    return list(m.cells)


EXPANDERS = {"one-on": _one_on, "hold-one-out": _hold_one_out, "cumulative": _cumulative,
             "grid": _grid, "list": _listed}


def _as_tuple(value: Any, where: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list")
    return tuple(str(v) for v in value)


def matrix_from_dict(raw: dict, source: str) -> Matrix:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a matrix must be a mapping")
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown matrix keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    mode = raw.get("mode", "one-on")
    if mode not in MODES:
        raise ConfigError(f"{source}: mode must be one of {list(MODES)}, got {mode!r}")
    seeds = raw.get("seeds", 1)
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else _as_tuple(seeds, f"{source}: seeds")
    cells = []
    for i, c in enumerate(raw.get("cells") or []):
        if not isinstance(c, dict) or "toggles" not in c:
            raise ConfigError(f"{source}: cells[{i}] needs a 'toggles' list")
        toggles = _as_tuple(c["toggles"], f"{source}: cells[{i}].toggles")
        cells.append(Cell(str(c.get("name") or cell_name(toggles)), toggles))
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) for v in axes.values()):
        raise ConfigError(f"{source}: axes must map toggle names to lists of values")
    needs = {"grid": axes, "list": cells}
    if mode in needs and not needs[mode]:
        raise ConfigError(f"{source}: mode {mode!r} needs {'axes' if mode == 'grid' else 'cells'}")
    if mode in ("one-on", "hold-one-out", "cumulative") and not raw.get("toggles"):
        raise ConfigError(f"{source}: mode {mode!r} needs a 'toggles' list")
    try:
        return Matrix(
            name=str(raw.get("name") or Path(source).stem), description=str(raw.get("description", "")),
            base=str(raw.get("base", "tiny")), overrides=_as_tuple(raw.get("overrides"), "overrides"),
            budget_s=float(raw.get("budget_s", 60)), seeds=tuple(int(s) for s in seeds), mode=mode,
            toggles=_as_tuple(raw.get("toggles"), "toggles"), axes=axes, cells=tuple(cells),
            max_cells=int(raw.get("max_cells", 24)),
            timeout_s=float(raw["timeout_s"]) if raw.get("timeout_s") else None,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def load_matrix(name_or_path: str) -> Matrix:
    """A shipped matrix by name (gocram/ablations/matrices/NAME.yaml) or a user's YAML by path."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SHIPPED / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in SHIPPED.glob("*.yaml"))
        raise ConfigError(f"matrix not found: {name_or_path} (shipped: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return matrix_from_dict(raw, str(path))
