"""Crons as KFP's scheduler reads them: six fields, seconds first, in one cluster-wide zone.

What KFP does (read in kubeflow/pipelines, ``backend/src/crd/controller/scheduledworkflow``):

* The recurring-run API (``V2beta1CronSchedule``) has ``cron``, ``start_time`` and ``end_time``
  and **no time-zone field**.
* The ScheduledWorkflow controller parses the cron with ``github.com/robfig/cron`` v1.2.0,
  whose ``Parse`` reads **six fields, seconds first** (a 5-field cron is taken as
  ``sec min hour dom month`` with any weekday: ``0 2 * * 1`` would fire at 00:02 on January's
  days, not at 02:00 on Mondays), knows no ``TZ=`` prefix, and evaluates the cron in the
  controller's one location: ``CRON_SCHEDULE_TIMEZONE`` of the ``ml-pipeline-scheduledworkflow``
  deployment (``cronScheduleTimezone`` in ``pipeline-install-config``), UTC by default.

So kfgpu requires an explicit IANA ``timezone`` with every cron, converts 5-field crons to six
fields (``0`` seconds), and converts the cron from its zone to the scheduler's zone **only when
that is exact**: the two zones keep a constant offset all year (no daylight-saving mismatch) and
the shifted times are still one cron (a cartesian product of minutes and hours, with weekdays
shifted when every time crosses midnight the same way). Anything else is refused with the two
ways out: run the scheduler in that zone, or write the cron in the scheduler's zone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from kfgpu.errors import ConfigError

__all__ = ["KfpCron", "check_timezone", "to_kfp_cron"]

_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day of month": (1, 31),
    "month": (1, 12),
    "day of week": (0, 6),
}
_FIELDS = list(_BOUNDS)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
#: How far ahead the offset between two zones is checked for being constant.
_HORIZON_DAYS = 2 * 366


@dataclass(frozen=True)
class KfpCron:
    """A cron ready for KFP, and what was done to get there (one line each)."""

    cron: str
    notes: list[str] = field(default_factory=list)


def check_timezone(name: str, *, where: str) -> ZoneInfo:
    """The zone called ``name``; a :class:`ConfigError` naming ``where`` if there is none."""
    if not name or not str(name).strip():
        raise ConfigError(
            f"{where}: timezone is required (an IANA name such as UTC or Europe/Berlin): "
            "KFP's recurring-run API carries none, so kfgpu refuses to guess"
        )
    try:
        if name not in available_timezones() and name != "UTC":
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(
            f"{where}: timezone {name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, "
            "America/New_York)"
        ) from e


def _value(token: str, name: str, names: dict[str, int] | None, where: str) -> int:
    low, high = _BOUNDS[name]
    if names and token.lower() in names:
        return names[token.lower()]
    if not token.isdigit():
        raise ConfigError(f"{where}: {name} {token!r} is not a number")
    value = int(token)
    if name == "day of week" and value == 7:
        raise ConfigError(
            f"{where}: day of week 7 is not accepted by KFP's scheduler; use 0 for Sunday"
        )
    if not low <= value <= high:
        raise ConfigError(f"{where}: {name} {value} is outside {low}-{high}")
    return value


def _expand(text: str, name: str, where: str) -> set[int] | None:
    """The values a cron field selects; ``None`` for ``*`` or ``?`` (every value)."""
    low, high = _BOUNDS[name]
    names = _MONTHS if name == "month" else _DAYS if name == "day of week" else None
    if text in ("*", "?"):
        if text == "?" and name not in ("day of month", "day of week"):
            raise ConfigError(f"{where}: '?' is only allowed for day of month and day of week")
        return None
    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ConfigError(f"{where}: empty list item in {name} {text!r}")
        if any(c in part for c in "LW#"):
            raise ConfigError(
                f"{where}: {name} {part!r} uses L, W or #, which KFP's scheduler "
                "(robfig/cron v1) does not support"
            )
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ConfigError(
                    f"{where}: step {step_text!r} in {name} must be a positive number"
                )
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, name, names, where), _value(b, name, names, where)
            if start > end:
                raise ConfigError(f"{where}: range {base!r} in {name} runs backwards")
        else:
            start = _value(base, name, names, where)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


def _render(values: set[int] | None, name: str) -> str:
    low, high = _BOUNDS[name]
    if values is None or values == set(range(low, high + 1)):
        return "*"
    ordered = sorted(values)
    runs: list[str] = []
    start = prev = ordered[0]
    for v in [*ordered[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(runs)


def _offset_minutes(zone: ZoneInfo, scheduler: ZoneInfo, now: dt.datetime) -> int:
    """The constant offset of ``zone`` from ``scheduler`` in minutes, or raise."""
    seen: set[int] = set()
    t = now
    for _ in range(_HORIZON_DAYS * 24):
        a = t.astimezone(zone).utcoffset()
        b = t.astimezone(scheduler).utcoffset()
        assert a is not None and b is not None
        seen.add(int((a - b).total_seconds() // 60))
        if len(seen) > 1:
            break
        t += dt.timedelta(hours=1)
    if len(seen) > 1:
        shown = ", ".join(f"{m / 60:+g}h" for m in sorted(seen))
        raise ValueError(shown)
    return seen.pop()


def to_kfp_cron(
    cron: str,
    timezone: str,
    *,
    scheduler_timezone: str = "UTC",
    where: str = "cron",
    now: dt.datetime | None = None,
) -> KfpCron:
    """Convert ``cron`` written in ``timezone`` to the 6-field cron KFP's scheduler runs.

    Args:
        cron: 5 fields (``min hour dom month dow``), 6 fields (seconds first) or a descriptor
            (``@daily``, ``@hourly``, ``@weekly``, ``@monthly``, ``@yearly``).
        timezone: the IANA zone the cron is meant in.
        scheduler_timezone: the zone KFP's ScheduledWorkflow controller evaluates crons in
            (its ``CRON_SCHEDULE_TIMEZONE``; UTC unless the cluster's operator changed it).
        where: names the schedule and field in error messages.
        now: the start of the window in which the zones' offset must be constant.

    Raises:
        ConfigError: the cron is malformed or uses syntax KFP's scheduler lacks, a zone is
            unknown, or the conversion would not be exact (the message says what to do).
    """
    zone = check_timezone(timezone, where=where)
    scheduler = check_timezone(scheduler_timezone, where="--scheduler-timezone")
    text = " ".join(str(cron).split())
    notes: list[str] = []
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ConfigError(
                f"{where}: {text!r} is not supported; use a cron or one of {', '.join(_DESCRIPTORS)}"
            )
        notes.append(f"{text} is {_DESCRIPTORS[text]!r} in KFP's 6-field form")
        text = _DESCRIPTORS[text]
    fields = text.split(" ")
    if len(fields) == 5:
        six = "0 " + text
        notes.append(
            f"cron {text!r} has 5 fields; KFP's scheduler reads 6 (seconds first): {six!r}"
        )
        fields = six.split(" ")
    elif len(fields) != 6:
        raise ConfigError(
            f"{where}: {cron!r} has {len(fields)} fields; write 5 (minute hour day-of-month month "
            "day-of-week) or 6 (seconds first)"
        )
    sets = {name: _expand(f, name, where) for name, f in zip(_FIELDS, fields, strict=True)}
    same_zone = zone.key == scheduler.key
    if not same_zone:
        try:
            offset = _offset_minutes(zone, scheduler, now or dt.datetime.now(dt.timezone.utc))
        except ValueError as e:
            raise ConfigError(
                f"{where}: {timezone} and the scheduler's zone {scheduler.key} are {e} apart at "
                f"different times of year (daylight saving time), so no single KFP cron fires at "
                f"{timezone} times all year. Either run KFP's scheduler in {timezone} "
                f"(CRON_SCHEDULE_TIMEZONE of the ml-pipeline-scheduledworkflow deployment, "
                f"cronScheduleTimezone in pipeline-install-config) and pass --scheduler-timezone "
                f"{timezone}, or write the cron in {scheduler.key} with timezone: {scheduler.key}"
            ) from e
        if offset:
            fields = _shift(fields, sets, offset, timezone, scheduler.key, where)
            notes.append(
                f"{timezone} is {offset / 60:+g}h from the scheduler's {scheduler.key} all year: "
                f"sending {' '.join(fields)!r}"
            )
    return KfpCron(cron=" ".join(fields), notes=notes)


def _shift(
    fields: list[str],
    sets: dict[str, set[int] | None],
    offset: int,
    timezone: str,
    scheduler: str,
    where: str,
) -> list[str]:
    minutes = sets["minute"] if sets["minute"] is not None else set(range(60))
    hours = sets["hour"] if sets["hour"] is not None else set(range(24))
    by_day: dict[int, set[tuple[int, int]]] = {}
    for h in hours:
        for m in minutes:
            total = h * 60 + m - offset
            day, rest = divmod(total, 24 * 60)
            by_day.setdefault(day, set()).add(divmod(rest, 60))
    days_free = sets["day of month"] is None and sets["month"] is None
    every_day = days_free and sets["day of week"] is None
    refuse = (
        f"{where}: the cron's times in {timezone} are not one cron in the scheduler's {scheduler}"
    )
    if len(by_day) > 1 and not every_day:
        raise ConfigError(
            f"{refuse}: some times cross midnight and others do not, and the cron restricts days; "
            f"write it in {scheduler} (timezone: {scheduler}) or split it into two schedules"
        )
    shifted = set().union(*by_day.values())
    new_hours = {h for h, _ in shifted}
    new_minutes = {m for _, m in shifted}
    if shifted != {(h, m) for h in new_hours for m in new_minutes}:
        raise ConfigError(
            f"{refuse}: the shifted hours and minutes are no longer every combination of each "
            f"other; write it in {scheduler} (timezone: {scheduler})"
        )
    out = list(fields)
    out[1] = _render(new_minutes, "minute")
    out[2] = _render(new_hours, "hour")
    (day,) = by_day if len(by_day) == 1 else (0,)
    if day and not every_day:
        if not days_free:
            raise ConfigError(
                f"{refuse}: every time moves to the {'previous' if day < 0 else 'next'} day and the "
                f"cron names days of the month or months; write it in {scheduler} "
                f"(timezone: {scheduler})"
            )
        dows = sets["day of week"]
        assert dows is not None
        out[5] = _render({(d + day) % 7 for d in dows}, "day of week")
    return out
