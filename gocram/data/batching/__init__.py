"""From tokens to batches at training time: layouts, windows, packing, the shard loader."""
