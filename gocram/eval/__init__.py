"""Evaluation: bits per byte, sampling, HumanEval-X/MultiPL-E Go with a sandboxed `go test`, a
held-out completion benchmark, fine-tuning, the completion demo and Hugging Face export.

See docs/eval.md.
"""
