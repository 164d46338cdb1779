"""Change windows: the weekly hours in which a wave may start deployments, in a time zone of their own.

Pure: time comes in as an argument. Local times follow the zone's daylight-saving rules (`zoneinfo`): a window
whose start falls in a spring-forward gap opens when the clock jumps past it; in a fall-back hour the window is
open on both readings of the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from estate.errors import InputError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = range(-1, 9)  # a window opened yesterday may still be open; every weekday comes within a week


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; InputError naming it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown time zone '{name}' (use an IANA name such as Europe/Berlin or UTC)") from exc


@dataclass(frozen=True)
class ChangeWindow:
    """Open on `days` (0 = Monday) from `start` to `end`, local time in `timezone`. An `end` at or before
    `start` runs past midnight: the window opens on a listed day and closes the next day."""

    days: frozenset[int]
    start: time
    end: time
    timezone: str = "UTC"

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(zone(self.timezone))
        wall, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= wall < self.end
        return (day in self.days and wall >= self.start) or ((day - 1) % 7 in self.days and wall < self.end)

    def openings(self, around: datetime) -> list[datetime]:
        """The instants the window opens on the days around `around` (UTC, unordered)."""
        tz = zone(self.timezone)
        today = around.astimezone(tz).date()
        found = []
        for offset in _SEARCH_DAYS:
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                found += self._opening(day)
        return found

    def _opening(self, day: date) -> list[datetime]:
        tz = zone(self.timezone)
        wall = datetime.combine(day, self.start)
        readings = sorted({wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1)})
        if all(r.astimezone(tz).replace(tzinfo=None) == wall for r in readings):
            return [r for r in readings if self.contains(r)]  # one reading, or both of a fall-back hour
        # The start falls in a spring-forward gap: the window opens when the clock jumps past it.
        closed, open_ = readings
        if self.contains(closed) or not self.contains(open_):
            return []
        while (open_ - closed) > timedelta(seconds=1):
            middle = closed + (open_ - closed) / 2
            closed, open_ = (closed, middle) if self.contains(middle) else (middle, open_)
        return [open_]

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {_clock(self.start)}-{_clock(self.end)} {self.timezone}"


def is_open(windows: Sequence[ChangeWindow], when: datetime) -> bool:
    """No windows: always open; otherwise open when any window contains `when`."""
    return not windows or any(w.contains(when) for w in windows)


def next_open(windows: Sequence[ChangeWindow], now: datetime) -> datetime | None:
    """`now` when a window is open, else the first instant after it when one opens (None: never)."""
    if is_open(windows, now):
        return now
    later = [t for w in windows for t in w.openings(now) if t > now]
    return min(later, default=None)


def describe(windows: Iterable[ChangeWindow]) -> str:
    return ", ".join(str(w) for w in windows)


def _clock(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def _days_text(days: frozenset[int]) -> str:
    """`mon-fri`, `sat,sun`, `every day`."""
    if len(days) == 7:
        return "every day"
    ordered = sorted(days)
    runs: list[list[int]] = []
    for d in ordered:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs)


def parse_days(items: Sequence[str]) -> frozenset[int]:
    """`["mon-fri"]`, `["sat", "sun"]` -> weekday numbers (0 = Monday); InputError naming a bad item."""
    found: set[int] = set()
    for item in items:
        first, sep, last = item.strip().lower().partition("-")
        if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
            raise InputError(f"'{item}' is not a weekday or a range of them (mon, tue, ... sun; mon-fri)")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last) if sep else WEEKDAYS.index(first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not found:
        raise InputError("a change window needs at least one day")
    return frozenset(found)


def parse_clock(text: str) -> time:
    """`09:00` or `09:00:30` (24-hour local time); InputError otherwise."""
    parts = text.strip().split(":")
    try:
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise ValueError
        hour, minute, second = (int(p) for p in [*parts, "0"][:3])
        return time(hour, minute, second)
    except ValueError:
        raise InputError(f"'{text}' is not a time of day (HH:MM or HH:MM:SS, 24-hour)") from None
