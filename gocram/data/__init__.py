"""Go data in three stages, one sub-package each: corpus (build), tokens (tokenize and prepare),
batching (batches at training time)."""
