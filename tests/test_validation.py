"""The shared argument checks: one message style for every library."""

import numpy as np
import pytest

from augpipe.validation import check_int, check_nonnegative, check_unit, did_you_mean


def test_check_int_accepts_python_and_numpy_integers():
    assert check_int("epochs", 3) == 3
    assert check_int("epochs", np.int64(4)) == 4 and type(check_int("epochs", np.int64(4))) is int
    assert check_int("warmup", 0, minimum=0) == 0


@pytest.mark.parametrize("value", [True, 0, -1, 2.0, "3", None])
def test_check_int_refuses_with_the_received_value(value):
    with pytest.raises(ValueError, match=rf"Received: epochs={value!r}. Expected an int >= 1."):
        check_int("epochs", value)


def test_check_int_with_a_maximum_names_the_interval():
    with pytest.raises(ValueError, match=r"Expected an int in \[0, 3\]"):
        check_int("index", 4, minimum=0, maximum=3)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "x"])
def test_check_unit_refuses_outside_zero_one(value):
    with pytest.raises(ValueError, match=r"Expected a float in \[0, 1\]"):
        check_unit("strength", value)


def test_check_nonnegative():
    assert check_nonnegative("alpha", 0) == 0.0
    with pytest.raises(ValueError, match=r"Received: alpha=-1. Expected a float >= 0."):
        check_nonnegative("alpha", -1)


def test_did_you_mean_suggests_the_closest_name_or_nothing():
    assert did_you_mean("randaugmnt", ["mnist", "randaugment"]) == " Did you mean 'randaugment'?"
    assert did_you_mean("zzzz", ["mnist"]) == ""
