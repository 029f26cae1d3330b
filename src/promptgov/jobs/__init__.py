"""Production jobs, seen from the workbench: the job traces an exported package's workers
write (``<package>.jobs``: SQLite or BullMQ on Redis) read back, and their dead letters and
review-band jobs turned into an evalset to label (``promptgov evalset from-jobs``).

Example:
    >>> from promptgov.jobs import evalset_from_jobs, read_traces      # doctest: +SKIP
    >>> es, counts = evalset_from_jobs(ws, read_traces("jobs.db"), prompt="ticket_triage@2")
"""

from promptgov.jobs._evalset import evalset_from_jobs, read_traces

__all__ = ["evalset_from_jobs", "read_traces"]
