"""Stand-alone benchmarks (kernels, attention, data, scoring, the training step) and the GPU
check; what a run measures about itself at run time is in gocram/measure."""
