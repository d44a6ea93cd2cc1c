"""chainforget-plugin-example: one strategy, one metric and one task added to chainforget from outside."""

__version__ = "0.1.0"
