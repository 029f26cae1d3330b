"""Type-driven extractors of the offline ``local/knn`` baseline: amounts, numbers, dates, times
and ids found in a message's text.

Each extractor returns the first value it finds (in reading order) or ``None``: the offline
model never guesses a value the text does not state. Conventions, stated once:

* Dates are ISO ``YYYY-MM-DD``. Relative words ("tomorrow", "3 days ago", "on Friday") and
  year-less dates ("22nd of April") need a reference date (``Today is 2022-03-15`` in the system
  message); without one they give ``None``. A year-less date or a bare weekday means the next
  such day (a bare weekday that is today means a week from today); "last Friday" the previous
  one. Numeric dates are day-first (``03/04/2022`` is 3 April), the convention of the UK banking
  data the workflows use. Two or more date expressions in one message describe a period, not a
  date, and give ``None``; so does one that opens a period ("since", "from" or "between" <date>).
* Times are 24h ``HH:MM``: "9:05", "10 past 9", "quarter to 7", "5pm", "at 3 night", "noon",
  "15 minutes ago" (needs a reference time, ``it is 09:00``). No am/pm marker keeps the hour as
  written. Two or more time expressions are a range and give ``None``.
* Amounts need a currency mark ("£40", "40€", "$1,200.50", "73 pounds", "GBP 5") or a money verb
  right before a bare number ("spend more than 400", "transfer of 56.79").
* Ids are upper-case letter prefixes with digits: ``A-12345``, ``INV-2020``, ``AB123456``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import TypeVar

__all__ = ["date_mentions", "extract_amount", "extract_date", "extract_id", "extract_integer",
           "extract_number", "extract_time", "integer_mentions", "reference_date",
           "reference_time"]

_V = TypeVar("_V")

_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty")
_NUMWORDS = {w: i for i, w in enumerate(_SMALL.split())}
_NUMWORDS.update({"a": 1, "an": 1, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60})
_NW = "|".join(sorted(_NUMWORDS, key=len, reverse=True))
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_CUR_WORDS = (r"pounds?|quid|gbp|dollars?|bucks|usd|euros?|eur|yen|jpy|francs?|chf|"
              r"rupees?|inr|pesos?|zlotys?|pln|krona|kronor|sek|aud|cad|nzd")
_AMOUNT = re.compile(
    rf"(?P<a>[£$€¥]|\b(?:gbp|usd|eur|aud|cad|chf)\b)\s?(?P<n1>{_NUM})(?P<k1>k\b)?"
    rf"|(?<![\w.])(?P<n2>{_NUM})(?P<k2>k)?\s?(?:[£$€¥]|(?:{_CUR_WORDS})\b)", re.I)
_MONEY_VERB = re.compile(
    rf"\b(?:spen[dt]|spending|pa(?:y|id)|transfer(?:red)?|sen[dt]|withdr[ae]w|withdrawal|"
    rf"charged?|costs?|deposit(?:ed)?|refund(?:ed)?|owe|top(?:ped)?[ -]?up|limit)\b"
    rf"[^.?!\d]{{0,24}}?(?<![\w.])(?P<n>{_NUM})\b(?![.,]?\d|\s*(?:%|st\b|nd\b|rd\b|th\b|[:.]\d|"
    r"(?:days?|weeks?|months?|years?|hours?|minutes?|times?|am|pm|a\.m|p\.m)\b))", re.I)
_UNIT_AFTER = re.compile(r"\s*(?:%|-?(?:st|nd|rd|th)\b|(?:seconds?|minutes?|mins?|hours?|days?|"
                         r"weeks?|months?|years?|yrs?|times?|am|pm|a\.m|p\.m|o'clock)\b|[:/]\d)",
                         re.I)


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def extract_amount(text: str) -> float | None:
    """The first amount of money in ``text``: ``"£1,200.50"`` -> ``1200.5``."""
    m = _AMOUNT.search(text)
    if m:
        n = m.group("n1") or m.group("n2")
        return _num(n) * (1000 if (m.group("k1") or m.group("k2")) else 1)
    m = _MONEY_VERB.search(text)
    return _num(m.group("n")) if m else None


def _spans(text: str, *patterns: re.Pattern[str]) -> list[tuple[int, int]]:
    return [m.span() for p in patterns for m in p.finditer(text)]


def _free_number_matches(text: str, words: bool = False) -> Iterator[re.Match[str]]:
    """Numbers (with ``words``, also number words from "one" to "twenty") that are not part of
    an amount, a date or a time and carry no unit."""
    taken = _spans(text, _AMOUNT, _ISO, _NUMERIC_DATE, _DAY_MONTH, _MONTH_DAY, _DAY_ONLY,
                   _AGO_IN, _CLOCK, _CLOCK_SP, _AMPM, _PAST_TO, _AT_HOUR, _MIN_AGO)
    for m in (_COUNT_OR_DIGITS if words else _DIGITS).finditer(text):
        if any(a <= m.start() < b for a, b in taken) or _UNIT_AFTER.match(text, m.end()):
            continue
        yield m


_DIGITS = re.compile(r"(?<![\w.,:/-])(\d+(?:\.\d+)?)(?![\w.,:/-]?\d)")
_COUNT_OR_DIGITS = re.compile(r"(?<![\w.,:/-])(\d+(?:\.\d+)?|(?:" + "|".join(
    _SMALL.split()[1:]) + r")\b)(?![\w.,:/-]?\d)", re.I)


def _free_numbers(text: str) -> Iterator[str]:
    """Numbers that are not part of an amount, a date or a time and carry no unit."""
    for m in _free_number_matches(text):
        yield m.group(1)


def integer_mentions(text: str) -> list[tuple[tuple[int, int], int, bool]]:
    """(span, value, spelt out) of every free-standing whole number in ``text``, digits or a
    number word ("two adults"), in order."""
    out = []
    for m in _free_number_matches(text, words=True):
        w = m.group(1).lower()
        if "." not in w:
            out.append((m.span(1), _NUMWORDS[w] if w in _NUMWORDS else int(w), w in _NUMWORDS))
    return out


def extract_number(text: str) -> float | None:
    """The first free-standing number (no unit, not an amount, date or time)."""
    return next((float(n) for n in _free_numbers(text)), None)


def extract_integer(text: str) -> int | None:
    """The first free-standing integer (no unit, not an amount, date or time)."""
    return next((int(n) for n in _free_numbers(text) if "." not in n), None)


_ID = re.compile(r"(?<![\w-])(?:[A-Z]{1,5}-\d[\dA-Z-]{2,}|[A-Z]{2,5}\d{4,}|#\d{4,})(?![\w-])")


def extract_id(text: str) -> str | None:
    """The first id-like token: ``A-12345``, ``INV-2020-7``, ``AB123456``, ``#10023``."""
    m = _ID.search(text)
    return m.group(0) if m else None


# -- reference date and time -----------------------------------------------------------------

_REF_DATE = re.compile(r"\b(?:today is|today's date is|the date is|current date(?: is)?:?|"
                       r"date today(?: is)?:?)\s*(\d{4}-\d{2}-\d{2})", re.I)
_REF_TIME = re.compile(r"\b(?:it is|it's|now is|the time is|current time(?: is)?:?)\s*"
                       r"(\d{1,2}:\d{2})", re.I)


def reference_date(text: str) -> date | None:
    """The date a prompt says is today (``Today is 2022-03-15``), else ``None``."""
    m = _REF_DATE.search(text)
    try:
        return date.fromisoformat(m.group(1)) if m else None
    except ValueError:
        return None


_REF_LINE = re.compile(r"^[ \t]*(?:today is|today's date is|the date is)[ \t]*(\d{4}-\d{2}-\d{2})"
                       r"\.?[ \t]*(?:\n|$)", re.I | re.M)


def split_reference(text: str) -> tuple[str, date | None]:
    """A message's own reference date: a whole line ``Today is YYYY-MM-DD.`` (what a prompt's
    ``today`` variable renders), removed from the text, and that date; else ``(text, None)``."""
    m = _REF_LINE.search(text)
    if m is None:
        return text, None
    try:
        return text[:m.start()] + text[m.end():], date.fromisoformat(m.group(1))
    except ValueError:
        return text, None


def reference_time(text: str) -> tuple[int, int] | None:
    """The time a prompt says it is now (``it is 09:00``), else ``None``."""
    m = _REF_TIME.search(text)
    if not m:
        return None
    h, mi = map(int, m.group(1).split(":"))
    return (h, mi) if h < 24 and mi < 60 else None


# -- dates -----------------------------------------------------------------------------------

_MONTHS = {m: i + 1 for i, ms in enumerate(
    ("january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul",
     "august aug", "september sept sep", "october oct", "november nov", "december dec"))
    for m in ms.split()}
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WD = "|".join(_WEEKDAYS)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4}|\d{2})\b")
_DAY_MONTH = re.compile(rf"\b(?:the\s+)?(\d{{1,2}}){_ORD}\s+(?:of\s+)?({_MON})\b\.?"
                        rf"(?:,?\s+(\d{{4}}))?", re.I)
_MONTH_DAY = re.compile(rf"\b({_MON})\.?\s+(?:the\s+)?(\d{{1,2}}){_ORD}\b(?!:)(?:,?\s+(\d{{4}}))?",
                        re.I)
_DAY_ONLY = re.compile(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b(?!\s+(?:of\s+)?(?:" + _MON + r")\b)",
                       re.I)
_AGO_IN = re.compile(rf"\b(?:(in)\s+)?(\d+|{_NW})\s+(days?|weeks?|months?|years?)"
                     rf"(?:\s+(ago|before|earlier|from now|later))?\b", re.I)
_RELATIVE = re.compile(rf"\b(day after tomorrow|day before yesterday|tomorrow|yesterday|"
                       rf"last night|today|tonight|this (?:morning|afternoon|evening)|"
                       rf"(?:(last|next|this|coming)\s+)?({_WD}))\b", re.I)
_SINCE = re.compile(r"\b(?:since|from|between)\s+(?:the\s+|last\s+|this\s+)?$", re.I)


def _add_months(d: date, n: int) -> date | None:
    y, m = divmod(d.month - 1 + n, 12)
    try:
        return d.replace(year=d.year + y, month=m + 1)
    except ValueError:
        return None


def _upcoming(today: date, month: int, day: int) -> date | None:
    """The next ``day``/``month`` on or after ``today``."""
    for year in (today.year, today.year + 1):
        try:
            d = date(year, month, day)
        except ValueError:
            continue
        if d >= today:
            return d
    return None


_Span = tuple[int, int]
_DateCandidate = tuple[_Span, date | None]
_TimeCandidate = tuple[_Span, tuple[int, int] | None]


def _date_candidates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """(position, date or None) of every date expression in ``text``, pattern by pattern in a
    fixed order (on a tie, :func:`_resolve` keeps the first)."""
    for find in _DATE_FINDERS:
        yield from find(text, today)


def _iso_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    for m in _ISO.finditer(text):
        yield m.span(), _safe_date(*map(int, m.groups()))


def _numeric_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """``03/04/2022``: day first, unless only the second number can be a day."""
    for m in _NUMERIC_DATE.finditer(text):
        a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        y += 2000 if y < 100 else 0
        day, month = (b, a) if b > 12 >= a else (a, b)
        yield m.span(), _safe_date(y, month, day)


def _named_month_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """``22nd of April [2022]`` and ``April 22nd [2022]``; without a year, the next one."""
    for pat, di, mi in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        for m in pat.finditer(text):
            day, month = int(m.group(di)), _MONTHS[m.group(mi).lower()]
            if m.group(3):
                yield m.span(), _safe_date(int(m.group(3)), month, day)
            else:
                yield m.span(), _upcoming(today, month, day) if today else None


def _day_only_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """``the 22nd``: that day of this month, else of one of the next two."""
    for m in _DAY_ONLY.finditer(text):
        yield m.span(), _coming_day_of_month(today, int(m.group(1))) if today else None


def _coming_day_of_month(today: date, day: int) -> date | None:
    d = None
    for k in range(0, 3):
        d = _add_months(today.replace(day=1), k)
        d = _safe_date(d.year, d.month, day) if d else None
        if d and d >= today:
            break
    return d


def _ago_in_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """``3 days ago``, ``in two weeks``, ``a month later``."""
    for m in _AGO_IN.finditer(text):
        if not (m.group(1) or m.group(4)):
            continue  # "3 days" with neither "in" nor "ago": a duration, not a date
        n = int(m.group(2)) if m.group(2).isdigit() else _NUMWORDS[m.group(2).lower()]
        sign = -1 if (m.group(4) or "").lower() in ("ago", "before", "earlier") else 1
        unit = m.group(3).lower().rstrip("s")
        if today is None:
            yield m.span(), None
        elif unit in ("day", "week"):
            yield m.span(), today + timedelta(days=sign * n * (7 if unit == "week" else 1))
        else:
            yield m.span(), _add_months(today, sign * n * (12 if unit == "year" else 1))


_DAY_OFFSETS = {"day after tomorrow": 2, "day before yesterday": -2, "tomorrow": 1,
                "yesterday": -1, "last night": -1}


def _relative_dates(text: str, today: date | None) -> Iterator[_DateCandidate]:
    """``tomorrow``, ``last night``, ``this morning``, ``(last|next|this|coming) Friday``."""
    for m in _RELATIVE.finditer(text):
        if today is None:
            yield m.span(), None
        elif m.group(3):
            yield m.span(), _weekday_date(today, m.group(2), m.group(3))
        else:
            yield m.span(), today + timedelta(days=_DAY_OFFSETS.get(m.group(1).lower(), 0))


def _weekday_date(today: date, which: str | None, weekday: str) -> date:
    """The date of ``[which] weekday``: "last" is the previous one, "this" may be today, and
    otherwise the next one (a week from today if it is today)."""
    which = which.lower() if which else None
    delta = (_WEEKDAYS.index(weekday.lower()) - today.weekday()) % 7
    if which == "last":
        delta = delta - 7 if delta else -7
    elif delta == 0 and which != "this":
        delta = 7
    return today + timedelta(days=delta)


_DATE_FINDERS: tuple[Callable[[str, date | None], Iterator[_DateCandidate]], ...] = (
    _iso_dates, _numeric_dates, _named_month_dates, _day_only_dates, _ago_in_dates,
    _relative_dates)


def _resolve(candidates: Iterable[tuple[_Span, _V]]) -> list[tuple[_Span, _V]]:
    """Overlapping matches of several patterns ("at 10 past 9" is also "at 10") are one
    expression: keep the longest, drop what overlaps it."""
    kept: list[tuple[_Span, _V]] = []
    for (a, b), v in sorted(candidates, key=lambda c: (c[0][0] - c[0][1], c[0][0])):
        if all(b <= ka or a >= kb for (ka, kb), _ in kept):
            kept.append(((a, b), v))
    return sorted(kept, key=lambda c: c[0][0])


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def date_mentions(text: str, today: date | None = None) -> list[tuple[tuple[int, int], str]]:
    """(span, ISO date) of every date expression ``text`` mentions that resolves, in order."""
    return [(span, d.isoformat()) for span, d in _resolve(_date_candidates(text, today))
            if d is not None]


def extract_date(text: str, today: date | None = None) -> str | None:
    """The one date ``text`` mentions, ISO formatted; ``None`` for none, a period or a range."""
    found = _resolve(_date_candidates(text, today))
    if len(found) != 1:
        return None
    (start, _), d = found[0]
    if d is None or _SINCE.search(text[max(0, start - 20):start]):
        return None
    return d.isoformat()


# -- times -----------------------------------------------------------------------------------

_MARK = (r"(?:\s*(?P<mark>a\.?m\.?|p\.?m\.?|in the (?:morning|afternoon|evening|night)|"
         r"(?:at )?night|morning|afternoon|evening|tonight)\b)?")
_H = rf"(?:\d{{1,2}}|{_NW})"
_CLOCK = re.compile(rf"(?<![\d.,])([01]?\d|2[0-3]):([0-5]\d)(?![\d:]){_MARK}", re.I)
_CLOCK_SP = re.compile(rf"(?<![\d.,:])([01]?\d|2[0-3])[. ]([0-5]\d)(?=\s*(?:a\.?m|p\.?m|in the))"
                       rf"{_MARK}", re.I)  # "9 05 in the morning", "0 35 a.m."
_AMPM = re.compile(r"(?<![\d.,:])(\d{1,2})\s*(?P<mark>a\.?m\.?|p\.?m\.?)(?!\w)", re.I)
_PAST_TO = re.compile(rf"\b(\d{{1,2}}|quarter|half|{_NW})\s+(?:minutes?\s+)?"
                      rf"(past|after|to|till|before)\s+({_H})\b(?![.,]?\d|\s*(?:%|days?|weeks?|"
                      rf"months?|years?|pounds?|euros?|dollars?)\b){_MARK}", re.I)
_AT_HOUR = re.compile(rf"\b(?:at|by|around|until|till|from)\s+(\d{{1,2}})(?:\s+(\d{{2}}))?"
                      rf"(?![\d.,:/%\w]|\s*(?:st|nd|rd|th|days?|weeks?|months?|years?|pounds?|"
                      rf"euros?|dollars?|times?|%)\b)(?:\s*o'clock)?{_MARK}", re.I)
_NOON = re.compile(r"\b(noon|midday|midnight)\b", re.I)
_MIN_AGO = re.compile(rf"\b(?:(in)\s+)?(\d+|{_NW}|half an)\s+(minutes?|mins?|hours?)"
                      rf"(?:\s+(ago|from now|later))?\b", re.I)


def _hour(h: str) -> int:
    return int(h) if h.isdigit() else _NUMWORDS.get(h.lower(), 99)


def _apply_mark(h: int, mark: str | None) -> int:
    mark = (mark or "").lower().replace(".", "")
    if mark.startswith("am") or "morning" in mark:
        return 0 if h == 12 else h
    if mark.startswith("pm") or any(w in mark for w in ("afternoon", "evening", "tonight")):
        return h + 12 if h < 12 else h
    if "night" in mark:
        return h + 12 if 6 <= h < 12 else (0 if h == 12 else h)
    return h


def _time_candidates(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    """(position, (hour, minute) or None) of every time expression in ``text``, pattern by
    pattern in a fixed order (on a tie, :func:`_resolve` keeps the first)."""
    for find in _TIME_FINDERS:
        yield from find(text, now)


def _clock_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    """``9:05``, ``9 05 in the morning``."""
    for m in (*_CLOCK.finditer(text), *_CLOCK_SP.finditer(text)):
        h, mi = m.group(1), m.group(2)
        yield m.span(), (_apply_mark(int(h), m.group("mark")), int(mi))


def _ampm_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    for m in _AMPM.finditer(text):
        yield m.span(), (_apply_mark(int(m.group(1)), m.group("mark")), 0)


def _past_to_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    """``10 past 9``, ``quarter to 7``, ``half past two in the afternoon``."""
    for m in _PAST_TO.finditer(text):
        a, rel, h = m.group(1).lower(), m.group(2).lower(), _hour(m.group(3))
        mins = {"quarter": 15, "half": 30}.get(a, _hour(a))
        if h > 24 or mins >= 60:
            continue
        h = _apply_mark(h, m.group("mark"))
        if rel in ("to", "till", "before"):
            h, mins = (h - 1) % 24, 60 - mins
        yield m.span(), (h, mins)


def _at_hour_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    """``at 3 night``, ``by 10 30``, ``until 5 o'clock``."""
    for m in _AT_HOUR.finditer(text):
        h, mi = int(m.group(1)), int(m.group(2) or 0)
        if h <= 24 and mi < 60:
            yield m.span(), (_apply_mark(h % 24, m.group("mark")), mi)


def _noon_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    for m in _NOON.finditer(text):
        yield m.span(), (0 if m.group(1).lower() == "midnight" else 12, 0)


def _minutes_ago_times(text: str, now: tuple[int, int] | None) -> Iterator[_TimeCandidate]:
    """``15 minutes ago``, ``in half an hour``: needs the reference time ``now``."""
    for m in _MIN_AGO.finditer(text):
        if not (m.group(1) or m.group(4)):
            continue  # "15 minutes" with neither "in" nor "ago": a duration, not a time
        if now is None:
            yield m.span(), None
            continue
        minutes = int(_count(m.group(2)) * (60 if m.group(3).lower().startswith("h") else 1))
        sign = -1 if (m.group(4) or "").lower() == "ago" else 1
        t = datetime(2000, 1, 2, *now) + timedelta(minutes=sign * minutes)
        yield m.span(), (t.hour, t.minute)


def _count(word: str) -> float:
    """``15``, ``fifteen`` or ``half an`` as a number."""
    return {"half an": 0.5}.get(word.lower()) or (
        int(word) if word.isdigit() else _NUMWORDS[word.lower()])


_TIME_FINDERS: tuple[Callable[[str, tuple[int, int] | None], Iterator[_TimeCandidate]], ...] = (
    _clock_times, _ampm_times, _past_to_times, _at_hour_times, _noon_times, _minutes_ago_times)


def extract_time(text: str, now: tuple[int, int] | None = None) -> str | None:
    """The one time of day ``text`` mentions, as ``HH:MM``; ``None`` for none or a range."""
    found = _resolve(_time_candidates(text, now))
    if len(found) != 1:
        return None
    t = found[0][1]
    if t is None or not (0 <= t[0] < 24 and 0 <= t[1] < 60):
        return None
    return f"{t[0]:02d}:{t[1]:02d}"
