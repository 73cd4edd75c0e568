"""Helpers the engine tests share (imported as `engine_helpers`, like tests/checkpoint's)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
