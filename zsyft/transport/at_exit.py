"""Clean-up at interpreter exit that a forked child does not run.

A program that forks (`os.fork()`, a server's worker model) and whose child exits normally
would otherwise run the parent's exit handlers in the child too: stop the parent's worker
processes and remove their sockets and key files while the parent still uses them.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from typing import Any


def at_exit(function: Callable[..., Any], *args: Any) -> None:
    """`atexit.register(function, *args)`, run only by the process that registered it."""
    owner = os.getpid()

    def run() -> None:
        if os.getpid() == owner:
            function(*args)

    atexit.register(run)
