"""Building a corpus: sources, filters, dedup, decontamination, licences, redaction, the split, chunks."""
