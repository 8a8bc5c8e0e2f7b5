"""The wall-clock-budgeted trainer: budget clock, LR schedules, checkpoints, run logs."""
