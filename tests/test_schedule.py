import math

import pytest

from gocram.core.errors import ConfigError
from gocram.train.clock import BudgetClock
from gocram.train.schedule import SCHEDULES, ScheduleShape, lr_multiplier

SHAPE = ScheduleShape(warmup_frac=0.1, min_ratio=0.1, decay_frac=0.2)


@pytest.mark.parametrize("name", ["cosine", "linear", "wsd"])
def test_endpoints(name):
    assert lr_multiplier(name, 0.0, SHAPE) == 0.0
    assert lr_multiplier(name, 0.05, SHAPE) == pytest.approx(0.5)
    assert lr_multiplier(name, 0.1, SHAPE) == pytest.approx(1.0)
    assert lr_multiplier(name, 1.0, SHAPE) == pytest.approx(0.1)
    assert lr_multiplier(name, 1.7, SHAPE) == pytest.approx(0.1)  # clamped past the budget


def test_cosine_midpoint_and_wsd_plateau():
    mid = 0.1 + 0.9 / 2
    assert lr_multiplier("cosine", mid, SHAPE) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier("wsd", 0.79, SHAPE) == 1.0
    assert lr_multiplier("wsd", 0.9, SHAPE) == pytest.approx(0.55)


def test_one_cycle_is_a_triangle():
    assert lr_multiplier("one_cycle", 0.0, SHAPE) == pytest.approx(0.1)
    assert lr_multiplier("one_cycle", 0.5, SHAPE) == pytest.approx(1.0)
    assert lr_multiplier("one_cycle", 1.0, SHAPE) == pytest.approx(0.1)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_stays_in_range(name):
    values = [lr_multiplier(name, i / 100, SHAPE) for i in range(101)]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)


def test_unknown_schedule_names_the_field():
    with pytest.raises(ConfigError, match="train.schedule"):
        lr_multiplier("cosin", 0.5, SHAPE)


def test_budget_clock_counts_only_started_segments():
    clock = BudgetClock(budget_s=1.0, elapsed_s=0.25)
    clock.start()
    took = clock.stop()
    assert clock.elapsed_s == pytest.approx(0.25 + took)
    assert not clock.spent
    clock.elapsed_s = 1.0
    assert clock.spent and clock.fraction == 1.0
