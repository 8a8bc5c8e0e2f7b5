"""From a corpus to tokens: the tokenizer, the cached prepare step, pretokenized shards."""
