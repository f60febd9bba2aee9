"""Ctrl-C held back while the client is in the middle of sending.

A `KeyboardInterrupt` (Ctrl-C, Jupyter's "interrupt kernel") raised between two frames of a
multipart ZeroMQ message leaves the message half sent: ZeroMQ glues the next message's frames
to it, and the worker receives garbage ("the batch announces 2 frames but carries 3") while
the messages in it are lost. Raised while a protocol op is handed to its parties, it can
leave one party waiting for a peer that never got its part. `interrupts_deferred()` holds
SIGINT back for such a block and delivers it at the block's end, so an interrupt stops the
program between messages, never inside one.
"""

from __future__ import annotations

import _signal  # the C functions behind `signal`: without its enum wrapping, ~20x cheaper
import os
import signal
import threading
from types import FrameType, TracebackType

_SIGINT = int(signal.SIGINT)
_holding = True


def hold_sigint(enabled: bool) -> None:
    """Whether `interrupts_deferred` holds SIGINT back in this process. A worker process
    turns it off: its SIGINT handler only asks its loop to stop and never raises, so there is
    nothing to protect, and holding would cost two system calls per message it forwards."""
    global _holding
    _holding = enabled


class interrupts_deferred:
    """Run a `with` block with SIGINT held back; a SIGINT that came meanwhile is handled
    after it (Python's default handler raises KeyboardInterrupt there).

    Only the main thread can change signal handlers (Python runs them there anyway); other
    threads run the block as it is. Nested blocks deliver to the outermost one."""

    __slots__ = ("_caught", "_previous")

    def __enter__(self) -> None:
        self._caught: list[FrameType | None] = []
        self._previous = None
        if _holding and threading.current_thread() is threading.main_thread():
            self._previous = _signal.signal(_SIGINT, self._hold)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self._caught.append(frame)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._previous is None:
            return
        _signal.signal(_SIGINT, self._previous)
        if not self._caught:
            return
        if callable(self._previous):
            self._previous(_SIGINT, self._caught[0])
        elif self._previous == _signal.SIG_DFL:  # the default action: the process ends
            os.kill(os.getpid(), _SIGINT)
