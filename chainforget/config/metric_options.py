"""Metric options (bootstrap size, seed, minimum group size): defaults overlaid with a user's, checked once."""

from __future__ import annotations

from typing import Any, Mapping

from chainforget.config.defaults import METRIC_OPTION_DEFAULTS
from chainforget.config.ranges import check_number
from chainforget.config.spec import check_keys


def metric_options_from(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with the user's metric options; unknown keys and bad values are one-line errors."""
    options = dict(options or {})
    check_keys(options, set(METRIC_OPTION_DEFAULTS), "metric option")
    for key, value in options.items():
        check_number(key, value, "metric option ")
    return {**METRIC_OPTION_DEFAULTS, **options}
