import pytest

from delivery_service.domain.errors import NavigationForbidden, PositionOutOfRange
from delivery_service.domain.navigation import next_position


def test_next_and_previous_move_by_one() -> None:
    assert next_position(current=1, to="next", total=4, mode="nonlinear") == 2
    assert next_position(current=1, to="previous", total=4, mode="nonlinear") == 0


def test_nonlinear_jumps_anywhere() -> None:
    assert next_position(current=3, to=0, total=4, mode="nonlinear") == 0


def test_linear_forbids_going_back() -> None:
    with pytest.raises(NavigationForbidden, match="linear"):
        next_position(current=2, to="previous", total=4, mode="linear")
    with pytest.raises(NavigationForbidden):
        next_position(current=2, to=0, total=4, mode="linear")
    assert next_position(current=2, to=3, total=4, mode="linear") == 3


@pytest.mark.parametrize("to", ["next", 4, -1])
def test_outside_the_form_is_out_of_range(to: str | int) -> None:
    with pytest.raises(PositionOutOfRange):
        next_position(current=3, to=to, total=4, mode="nonlinear")  # type: ignore[arg-type]
