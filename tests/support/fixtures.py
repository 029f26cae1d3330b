"""Pytest fixtures for model tests: a loopback OpenAI server and a no-internet guard.

``tests/conftest.py`` already exists, so these live here; use them with::

    from support.fixtures import no_internet, openai_server  # noqa: F401
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

from support.openai_server import OpenAIServer

__all__ = ["no_internet", "openai_server"]


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started :class:`OpenAIServer`; ``openai_server.base_url`` is the ``api_base``."""
    with OpenAIServer() as server:
        yield server


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection to a non-loopback address during the test."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise OSError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        if not _is_loopback(address):
            raise OSError(f"test tried to reach the network: {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
