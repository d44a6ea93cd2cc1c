"""Configuration: run specs, suites (grids of runs) and the built-in presets."""
