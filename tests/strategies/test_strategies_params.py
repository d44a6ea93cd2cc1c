"""``Param`` bounds: inclusive by default, exclusive on request, one-line errors, and declarations checked early."""

import pytest

from chainforget.errors import ConfigError
from chainforget.strategies.base import Param, StrategySpec

ALPHA = Param("alpha", "float", 0.5, "interpolation weight", low=0.0, high=1.0, low_exclusive=True)


@pytest.mark.parametrize("value, expected", [("1", 1.0), (1, 1.0), (1e-9, 1e-9), ("0.25", 0.25)])
def test_half_open_interval_accepts_its_inside_and_closed_end(value, expected):
    assert ALPHA.parse(value, "wise-ft") == expected


@pytest.mark.parametrize("value", [0, 0.0, "0", -0.1, 1.0000001, "2"])
def test_half_open_interval_rejects_the_open_end_and_outside(value):
    with pytest.raises(ConfigError) as err:
        ALPHA.parse(value, "wise-ft")
    message = str(err.value)
    assert message.startswith("wise-ft.alpha must be in (0, 1], got ") and "\n" not in message


def test_both_ends_exclusive_and_inclusive_bounds_unchanged():
    p = Param("p", "float", 0.5, "a probability strictly inside", low=0.0, high=1.0, low_exclusive=True,
              high_exclusive=True)
    assert p.describe() == "p=0.5 (float (0, 1)): a probability strictly inside"
    for bad in (0.0, 1.0):
        with pytest.raises(ConfigError, match=r"must be in \(0, 1\), got"):
            p.parse(bad)
    closed = Param("q", "float", 0.0, "closed", low=0.0, high=1.0)
    assert closed.parse(0.0) == 0.0 and closed.parse(1.0) == 1.0 and closed.describe().endswith("(float [0, 1]): closed")
    assert Param("n", "int", 1, "positive", low=0, low_exclusive=True).describe() == "n=1 (int (0, inf]): positive"


def test_int_exclusive_bound_through_resolve():
    spec = StrategySpec("demo", "d", params=(Param("k", "int", 1, "steps", low=0, low_exclusive=True),))
    assert spec.resolve({"k": "3"}) == {"k": 3}
    with pytest.raises(ConfigError, match=r"^demo.k must be in \(0, inf\], got 0$"):
        spec.resolve({"k": 0})


@pytest.mark.parametrize("kwargs, match", [
    (dict(default=0.0, low=0.0, low_exclusive=True), "default is invalid: alpha must be in \\(0, inf\\]"),
    (dict(default=0.5, high_exclusive=True), "high_exclusive=True needs a high bound"),
    (dict(default=0.5, low=0.0, high=1.0, type="double"), "type must be one of"),
])
def test_bad_declarations_fail_at_import(kwargs, match):
    args = {"type": "float", **kwargs}
    with pytest.raises(ValueError, match=match):
        Param("alpha", args.pop("type"), args.pop("default"), "h", **args)


# -- plugin attributes Avalanche would take for callbacks ---------------------------------------------------------
def test_callback_list_is_avalanches():
    from avalanche.core import SupervisedPlugin

    from chainforget.strategies.base import CALLBACKS

    assert set(CALLBACKS) == {n for n in dir(SupervisedPlugin) if n.startswith(("before", "after"))}


class _Good:
    def before_backward(self, strategy, **kwargs):
        pass

    _before = 1.0  # private names are not callbacks


class _Misspelled:
    def before_trainig_exp(self, strategy, **kwargs):
        pass


class _Stored:
    def __init__(self):
        self.before = {"w": 0}


class _Shadowed:
    def __init__(self):
        self.after_training_exp = 3.0


def test_check_callbacks_one_line_errors():
    from chainforget.strategies.base import check_callbacks

    check_callbacks([_Good()], "demo")
    with pytest.raises(ConfigError, match="^strategy 'demo': plugin _Misspelled has 'before_trainig_exp', which "
                                          "Avalanche takes for a callback .* did you mean 'before_training_exp'\\?"):
        check_callbacks([_Good(), _Misspelled()], "demo")
    with pytest.raises(ConfigError, match="plugin _Stored has 'before', which Avalanche takes for a callback .*"
                                          "rename it \\(e.g. '_before'\\)"):
        check_callbacks([_Stored()], "demo")
    with pytest.raises(ConfigError, match="'after_training_exp', a callback name, but it is not a method"):
        check_callbacks([_Shadowed()], "demo")
