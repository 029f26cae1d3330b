"""What a draft may state: only numbers, amounts, dates and order states found in its facts.

A draft is rejected when it states

* a number (an amount, an id, a quantity, a day of the month...) that no fact holds, by the
  same rule as promptgov's ``draft_checks`` (every digit group must be a fact's digit group);
* a month or weekday name, or a relative date (tomorrow, yesterday, next week), that neither a
  fact's text nor a date among the facts accounts for;
* an order state (shipped, delivered, refunded...) that is not a fact's text.

Deliberately strict: a draft that says more than its facts is re-asked, then refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import suppress
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

_NUM = re.compile(r"\d+(?:[.,]\d+)*")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
RELATIVE_DATES = ("today", "tomorrow", "yesterday", "tonight", "next week", "next month",
                  "last week", "last month", "this week", "this weekend")
STATES = ("awaiting pickup", "awaiting shipment", "back ordered", "backordered", "cancelled",
          "canceled", "delivered", "dispatched", "in transit", "lost", "on hold",
          "out for delivery", "pending", "processing", "ready for pickup", "refunded",
          "returned", "shipped")
# "May" is a month only next to a day number ("May 3", "3 May"); elsewhere it is a verb.
_NAMED = re.compile(r"\b(?:" + "|".join(m for m in MONTHS if m != "May") + "|"
                    + "|".join(WEEKDAYS) + r")\b|\bMay\b(?=\s+\d)|(?<=\d\s)May\b")
_RELATIVE = re.compile(r"\b(?:" + "|".join(RELATIVE_DATES) + r")\b", re.I)
_STATE = re.compile(r"\b(?:" + "|".join(sorted(STATES, key=len, reverse=True)) + r")\b", re.I)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def unsupported_facts(text: str, inputs: Mapping[str, Any]) -> list[str]:
    """Everything ``text`` states that the facts in ``inputs`` do not hold, in order of first
    appearance, without repeats."""
    leaves = list(_leaves(inputs))
    facts = " ".join(str(v) for v in leaves)
    low = facts.lower()
    days = _dates(leaves, facts)
    numbers = _numbers(facts) | {str(x) for d in days for x in (d.year, d.day)}
    names = {w.lower() for w in _NAMED.findall(facts)} | {
        n for d in days for n in (MONTHS[d.month - 1].lower(), WEEKDAYS[d.weekday()].lower())}
    found = [(m.start(), m.group()) for m in _NUM.finditer(text) if _norm(m.group()) not in numbers]
    found += [(m.start(), m.group()) for m in _NAMED.finditer(text)
              if m.group().lower() not in names]
    found += [(m.start(), m.group()) for rx in (_RELATIVE, _STATE) for m in rx.finditer(text)
              if m.group().lower() not in low]
    out = [w for _, w in sorted(found)]
    return list(dict.fromkeys(out))


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _norm(n: str) -> str:
    return n.replace(",", "").rstrip(".")


def _numbers(text: str) -> set[str]:
    return {_norm(n) for n in _NUM.findall(text)}


def _dates(leaves: list[Any], facts: str) -> list[date]:
    """The dates among the facts (date objects, or ISO ``YYYY-MM-DD`` text): a draft may name
    their month, weekday and day number."""
    days = [v for v in leaves if isinstance(v, date)]  # datetime is a date too
    for y, m, d in _ISO.findall(facts):
        with suppress(ValueError):  # 2026-02-30 is no date
            days.append(date(int(y), int(m), int(d)))
    return days
