"""The trainer's small state objects: the stop state and a rollback's progress."""

import signal

from gocram.train.signals import GracefulStop, StopState
from gocram.train.trainer import Progress


def test_one_process_stops_as_soon_as_it_hears_a_signal():
    signals = GracefulStop(signals=(signal.SIGUSR1,))
    state = StopState(signals, world_size=1)
    assert not state.heard and not state.due
    with signals:
        signal.raise_signal(signal.SIGUSR1)
    assert state.heard and state.due and state.signal_name == "SIGUSR1"


def test_several_ranks_stop_only_once_they_agree():
    state = StopState(None, world_size=2)
    assert not state.heard and not state.due
    state.agreed = True  # another rank heard one
    assert state.due and state.signal_name == "a signal to another rank"


def test_a_rollback_takes_the_checkpoints_position_and_keeps_the_time_spent():
    saved = Progress(step=10, elapsed_s=5.0, tokens=1000, bytes=3000, eval_s=1.0,
                     step_times=[0.5] * 10, val_curve=[[4.0, 2.5]]).state_dict()
    now = Progress(step=14, elapsed_s=7.0, tokens=1400, bytes=4200, eval_s=2.0, ckpt_s=0.5,
                   next_eval_s=10.0, next_ckpt_s=12.0, step_times=[0.5] * 14,
                   val_curve=[[4.0, 2.5], [6.5, 2.4]])
    held = now  # the training loop holds the object: it must change in place
    now.load_state_dict(saved, keep_spent=True)
    assert held is now
    assert (now.step, now.tokens, now.bytes, now.val_curve) == (10, 1000, 3000, [[4.0, 2.5]])
    assert (now.elapsed_s, now.eval_s, now.ckpt_s, now.next_eval_s, now.next_ckpt_s) == \
        (7.0, 2.0, 0.5, 10.0, 12.0)
    assert len(now.step_times) == 14


def test_a_resume_takes_the_whole_checkpointed_progress():
    saved = Progress(step=10, elapsed_s=5.0, tokens=1000, next_eval_s=8.0)
    fresh = Progress()
    fresh.load_state_dict(saved.state_dict())
    assert fresh == saved
