"""One thing ``check`` (or ``lock``, ``status``, ``export``) found wrong: the file, what, the fix,
and a code that logic may branch on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    fix: str
    code: str = ""
    """What kind of problem, for logic (never branch on the message): ``unlocked`` and
    ``policy_changed`` (what ``promptgov lock`` resolves), ``drift``, ``invalid_content``,
    ``contamination``, ``evidence``, ``deleted``, ``reference`` (an unknown schema or evalset);
    empty for a file that does not load."""

    def __str__(self) -> str:
        return f"{self.file}: {self.message} (fix: {self.fix})"
