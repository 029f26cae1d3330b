"""The plain-text draft of ``local/knn`` (a request with no response schema): a deterministic
reply built only from the ``- key: value`` facts of the final user message.
"""

from __future__ import annotations

import re

__all__ = ["draft_reply"]

DRAFT_MAX_CHARS = 600

_FACT = re.compile(r"^[ \t]*[-*•]?[ \t]*([A-Za-z][\w .'/-]{0,40}?)[ \t]*:[ \t]*(\S.*?)[ \t]*$",
                   re.M)
_TRUE = {"true", "yes", "y", "1", "eligible"}


def draft_reply(text: str) -> str:
    """A short reply built only from the ``- key: value`` facts in ``text``."""
    facts = {m.group(1).strip().lower().replace("_", " "): m.group(2)
             for m in _FACT.finditer(text)}
    name = _fact(facts, "customer name", "name")
    order = _fact(facts, "order id", "order number", "order reference")
    state = _fact(facts, "order state", "order status", "status", "state")
    eligible = _fact(facts, "refund eligible", "eligible")
    amount = _fact(facts, "refund amount")
    body = [_opening(order, state)]
    if eligible is not None:
        body.append(_refund_sentence(eligible, amount))
    if not (name or order or state or eligible) and facts:  # facts of another kind: list them
        listed = "; ".join(f"{k}: {v}" for k, v in facts.items())
        body.append(f"Here is what we have on record: {listed}.")
    parts = [f"Hello {name}," if name else "Hello,", "", " ".join(body),
             "", "Kind regards,", "Customer Support"]
    return _shorten("\n".join(parts))


def _fact(facts: dict[str, str], *names: str) -> str | None:
    """The value of the first of ``names`` that is a fact's key; failing that, of the first
    that is part of one ("refund eligible" answers "eligible")."""
    for n in names:
        for k, v in facts.items():
            if k == n:
                return v
    for n in names:
        for k, v in facts.items():
            if n in k:
                return v
    return None


def _opening(order: str | None, state: str | None) -> str:
    if order and state:
        return (f"Thank you for getting in touch about your order {order}. "
                f"Its current status is: {state}.")
    if order:
        return f"Thank you for getting in touch about your order {order}."
    if state:
        return f"Thank you for getting in touch. Your order's current status is: {state}."
    return "Thank you for getting in touch."


def _refund_sentence(eligible: str, amount: str | None) -> str:
    if eligible.strip().lower() not in _TRUE:
        return "Your order is not eligible for a refund."
    if amount:
        return f"Your order is eligible for a refund of {amount}."
    return "Your order is eligible for a refund."


def _shorten(reply: str) -> str:
    """At most :data:`DRAFT_MAX_CHARS`, cut after the last whole sentence that fits."""
    if len(reply) <= DRAFT_MAX_CHARS:
        return reply
    cut = reply[:DRAFT_MAX_CHARS]
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    return cut[:end + 1] if end > 0 else cut
