"""Triton kernels (one module per kernel) and their plain-torch twins in reference.py."""
