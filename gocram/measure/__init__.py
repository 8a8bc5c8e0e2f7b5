"""What a run measures about itself while it trains: FLOPs and MFU, the matmul peak, device
utilisation and energy, profiler traces. The trainer and the harness use these at run time;
gocram/bench holds the stand-alone benchmarks."""
