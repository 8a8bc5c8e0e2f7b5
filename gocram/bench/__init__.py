"""Throughput, FLOPs and MFU accounting, device facts and profiling helpers."""
