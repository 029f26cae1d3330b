"""A reproducible wheel, written with ``zipfile`` (no build backend, no subprocess).

Reproducible means byte-identical for the same input: entries in a fixed order (the package's
files sorted, then ``.dist-info`` with ``RECORD`` last), every timestamp 1980-01-01 00:00 (or
``SOURCE_DATE_EPOCH``), every file mode 0644, the same compression level, and ``RECORD`` holding
the sha256 and size of every other entry, as the wheel format (PEP 427) requires.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
import zipfile
from io import BytesIO

from promptgov._version import __version__

EPOCH = (1980, 1, 1, 0, 0, 0)
"""The earliest time a zip entry can carry."""
TAG = "py3-none-any"


def zip_time() -> tuple[int, int, int, int, int, int]:
    """``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) if set, else 1980-01-01."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return EPOCH
    t = time.gmtime(int(epoch))[:6]
    return max(t, EPOCH)


def wheel_filename(distribution: str, version: str) -> str:
    return f"{_escape(distribution)}-{version}-{TAG}.whl"


def metadata(distribution: str, version: str, summary: str, requires: list[str],
             extras: dict[str, list[str]], description: str) -> str:
    """The ``METADATA`` file (core metadata 2.1)."""
    lines = ["Metadata-Version: 2.1", f"Name: {distribution}", f"Version: {version}",
             f"Summary: {summary}", "Requires-Python: >=3.11"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    for extra, reqs in sorted(extras.items()):
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + description


def build(distribution: str, version: str, files: dict[str, bytes], *, summary: str,
          requires: list[str], extras: dict[str, list[str]], description: str) -> bytes:
    """The wheel's bytes: ``files`` (paths inside the wheel) plus its ``.dist-info``."""
    info = f"{_escape(distribution)}-{version}.dist-info"
    entries = sorted(files.items())
    entries.append((f"{info}/METADATA", metadata(distribution, version, summary, requires,
                                                 extras, description).encode()))
    entries.append((f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: promptgov {__version__}"
                                      f"\nRoot-Is-Purelib: true\nTag: {TAG}\n").encode()))
    record = "".join(f"{path},sha256={_digest(data)},{len(data)}\n" for path, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    when = zip_time()
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in entries:
            zi = zipfile.ZipInfo(path, date_time=when)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # Unix, so that the mode below is read
            zi.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(zi, data, compresslevel=9)
    return buf.getvalue()


def _escape(distribution: str) -> str:
    """The file-name form of a distribution name (``support-bot`` → ``support_bot``)."""
    return re.sub(r"[-_.]+", "_", distribution).lower()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
