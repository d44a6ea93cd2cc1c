"""Command back-ends: what each CLI command does, minus click parsing and printing."""
