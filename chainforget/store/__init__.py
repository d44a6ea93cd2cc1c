"""The store: every file a run writes (layout, atomic writes, records, results, prefix store, checkpoints)."""
