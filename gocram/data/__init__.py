"""Go corpora: sources, splits, the BPE tokenizer, token shards and batch samplers."""
