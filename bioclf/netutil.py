"""Network helpers shared by everything that may download (weights, datasets)."""

from __future__ import annotations

import socket
from contextlib import contextmanager


@contextmanager
def socket_timeout(seconds: float):
    """A default socket timeout for the block: torch.hub and torchvision download with urllib and
    no timeout, so behind a firewall that drops packets they would hang for minutes."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
