import math

import pytest

from zoo.lightning.schedules import warmup_decay


def test_warmup_then_cosine():
    f = warmup_decay(100, 10, "cosine")
    assert f(0) == pytest.approx(1 / 11)
    assert f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.0)


def test_poly_and_bad_kind():
    f = warmup_decay(50, 0, "poly", power=0.9)
    assert f(25) == pytest.approx(0.5**0.9)
    with pytest.raises(ValueError, match="schedule must be"):
        warmup_decay(10, 1, "linear")
