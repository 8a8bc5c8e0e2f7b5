"""Evaluation: bits per byte on a Go tree (later: HumanEval-X Go, generation, demo)."""
