"""chainforget: a plugin-based benchmark of forgetting (and biased forgetting) under chained fine-tuning."""

__version__ = "0.1.0"
