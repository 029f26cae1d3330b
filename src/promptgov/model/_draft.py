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

    def fact(*names: str) -> str | None:
        for n in names:
            for k, v in facts.items():
                if k == n:
                    return v
        for n in names:
            for k, v in facts.items():
                if n in k:
                    return v
        return None

    name = fact("customer name", "name")
    order = fact("order id", "order number", "order reference")
    state = fact("order state", "order status", "status", "state")
    eligible = fact("refund eligible", "eligible")
    amount = fact("refund amount")
    parts = [f"Hello {name}," if name else "Hello,", ""]
    body = []
    if order and state:
        body.append(f"Thank you for getting in touch about your order {order}. "
                    f"Its current status is: {state}.")
    elif order:
        body.append(f"Thank you for getting in touch about your order {order}.")
    elif state:
        body.append(f"Thank you for getting in touch. Your order's current status is: {state}.")
    else:
        body.append("Thank you for getting in touch.")
    if eligible is not None:
        if eligible.strip().lower() in _TRUE:
            body.append(f"Your order is eligible for a refund of {amount}." if amount
                        else "Your order is eligible for a refund.")
        else:
            body.append("Your order is not eligible for a refund.")
    if not (name or order or state or eligible) and facts:  # facts of another kind: list them
        listed = "; ".join(f"{k}: {v}" for k, v in facts.items())
        body.append(f"Here is what we have on record: {listed}.")
    parts.append(" ".join(body))
    parts += ["", "Kind regards,", "Customer Support"]
    reply = "\n".join(parts)
    if len(reply) > DRAFT_MAX_CHARS:
        cut = reply[:DRAFT_MAX_CHARS]
        end = max(cut.rfind(". "), cut.rfind(".\n"))
        reply = cut[:end + 1] if end > 0 else cut
    return reply
