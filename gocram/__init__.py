"""gocram: an efficiency lab for training micro language models on Go source code."""

__version__ = "0.1.0"
