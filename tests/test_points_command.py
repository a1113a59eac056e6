"""Reading /points arguments."""

from __future__ import annotations

import pytest

from bot.handlers.points import Adjustment, parse_adjustment


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("@alice +50 helped a newcomer", Adjustment("@alice", 50, "helped a newcomer")),
        ("@alice -20", Adjustment("@alice", -20, "")),
        ("123456789 -20 wrong   check-in", Adjustment("123456789", -20, "wrong check-in")),
        ("+10 thanks", Adjustment(None, 10, "thanks")),
        ("50 great job", Adjustment(None, 50, "great job")),
        ("50", Adjustment(None, 50, "")),
    ],
)
def test_adjustments_are_read(args: str, expected: Adjustment) -> None:
    assert parse_adjustment(args) == expected


@pytest.mark.parametrize(
    "args", [None, "", "@alice", "@alice lots", "+0", "@a 0", "+10000000", "x 5"]
)
def test_anything_else_is_not_an_adjustment(args: str | None) -> None:
    assert parse_adjustment(args) is None
