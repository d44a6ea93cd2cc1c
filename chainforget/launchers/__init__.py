"""Launchers: how the runs of a suite are executed (here, one after another; on Ray; ...)."""
