"""Token-level conventions shared by the data, model, kernels and evaluation."""

IGNORE_INDEX = -1  # a target id that is not predicted (padding, a prompt): no loss, no bytes
