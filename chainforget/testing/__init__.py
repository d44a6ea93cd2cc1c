"""Test machinery shipped with the package (fault injection used by the reliability tests)."""
