"""Change windows and freezes, the pure part: when a window contains a moment, when it next opens (daylight
saving included, checked by Hypothesis against brute force), and what holds a deploy back."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from estate.domain.change_windows import ChangeWindow, describe, is_open, next_open, parse_clock, parse_days
from estate.domain.freezes import Freeze, Frozen, freeze_hold, require_unfrozen, window_hold
from estate.errors import InputError

BERLIN_OFFICE = ChangeWindow(parse_days(["mon-fri"]), time(9), time(17), "Europe/Berlin")
NIGHTS = ChangeWindow(parse_days(["sat", "sun"]), time(22), time(6), "UTC")  # runs past midnight


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_window_opens_on_its_days_in_its_own_time_zone() -> None:
    # 2027-01-04 is a Monday; Berlin is UTC+1 in winter and UTC+2 in summer.
    assert not BERLIN_OFFICE.contains(utc(2027, 1, 4, 7, 59))
    assert BERLIN_OFFICE.contains(utc(2027, 1, 4, 8, 0))
    assert not BERLIN_OFFICE.contains(utc(2027, 1, 4, 16, 0))  # 17:00 in Berlin: closed
    assert BERLIN_OFFICE.contains(utc(2027, 7, 5, 7, 0))  # 09:00 summer time
    assert not BERLIN_OFFICE.contains(utc(2027, 1, 9, 10, 0))  # a Saturday
    assert next_open([BERLIN_OFFICE], utc(2027, 1, 8, 17, 0)) == utc(2027, 1, 11, 8, 0)  # Friday evening -> Monday
    assert str(BERLIN_OFFICE) == "mon-fri 09:00-17:00 Europe/Berlin"


def test_an_overnight_window_belongs_to_the_day_it_opens() -> None:
    assert NIGHTS.contains(utc(2027, 1, 9, 23, 0))  # Saturday night
    assert NIGHTS.contains(utc(2027, 1, 11, 5, 59))  # early Monday: Sunday's night
    assert not NIGHTS.contains(utc(2027, 1, 11, 23, 0))  # Monday night is not listed
    assert not NIGHTS.contains(utc(2027, 1, 9, 5, 0))  # early Saturday: Friday's night, not listed
    assert str(NIGHTS) == "sat-sun 22:00-06:00 UTC"
    assert str(ChangeWindow(parse_days(["mon", "wed-thu", "sun"]), time(9), time(9, 30, 15))).startswith(
        "mon,wed-thu,sun 09:00-09:30:15"
    )


def test_a_start_in_the_spring_forward_gap_opens_when_the_clock_jumps() -> None:
    # Berlin skips 02:00-03:00 on 2027-03-28 (01:00 UTC); a window from 02:30 opens at 03:00 local.
    window = ChangeWindow(parse_days(["sun"]), time(2, 30), time(4), "Europe/Berlin")
    assert next_open([window], utc(2027, 3, 27, 12)) == utc(2027, 3, 28, 1, 0)


def test_no_windows_means_always_open() -> None:
    now = utc(2027, 1, 1)
    assert is_open([], now) and next_open([], now) == now and window_hold([], now) is None


def test_bad_days_clocks_and_zones_are_input_errors() -> None:
    with pytest.raises(InputError, match="weekday"):
        parse_days(["mon-fry"])
    with pytest.raises(InputError, match="time of day"):
        parse_clock("24:00")
    assert parse_days(["fri-mon"]) == frozenset({4, 5, 6, 0})
    assert parse_clock("09:00:30") == time(9, 0, 30)


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/St_Johns"]
windows = st.builds(
    ChangeWindow,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=st.times().map(lambda t: t.replace(microsecond=0)),
    end=st.times().map(lambda t: t.replace(microsecond=0)),
    timezone=st.sampled_from(ZONES),
)
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC))


@given(chosen=st.lists(windows, min_size=1, max_size=3), now=moments, fractions=st.lists(st.floats(0, 1), max_size=8))
def test_next_open_is_the_first_open_moment(chosen: list[ChangeWindow], now: datetime, fractions: list[float]) -> None:
    opens = next_open(chosen, now)
    assert opens is not None, f"{describe(chosen)} never opens"
    assert opens >= now and is_open(chosen, opens)
    if opens > now:
        assert not is_open(chosen, opens - timedelta(seconds=1)) or opens - timedelta(seconds=1) < now
        for f in fractions:  # nothing in between is open
            assert not is_open(chosen, now + (opens - now) * f * 0.999)


# -- freezes ------------------------------------------------------------------------------------------

T0 = utc(2027, 1, 4, 10)


def freeze(id: int, env_type: str | None = None, until: datetime | None = None) -> Freeze:
    return Freeze(id, f"reason {id}", "root", T0, env_type, until)


def test_a_freeze_covers_its_env_type_until_it_ends() -> None:
    prod = freeze(1, "production", T0 + timedelta(hours=2))
    assert freeze_hold([prod], "development", T0) is None
    hold = freeze_hold([prod], "production", T0)
    assert (
        hold is not None
        and hold.until == T0 + timedelta(hours=2)
        and "env type production frozen by root" in hold.reason
    )
    assert freeze_hold([prod], "production", T0 + timedelta(hours=2)) is None  # ended
    everything = freeze(2)  # until lifted
    both = freeze_hold([prod, everything], "production", T0)
    assert both is not None and both.until is None, "one freeze without an end: no end"
    with pytest.raises(Frozen, match="shop/prod is frozen"):
        require_unfrozen([prod], [("shop/dev", "development"), ("shop/prod", "production")], T0)
