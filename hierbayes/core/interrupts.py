"""The one Ctrl-C (SIGINT) handler: notice an interrupt, or hold it back, within a block.

Signal handlers belong to the main thread and to handlers installed from Python: elsewhere
(a worker thread, a process that ignores SIGINT) the context does nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Interrupts"]


class Interrupts:
    """Notice Ctrl-C inside the block (``hit``), or hold it back until the block ends.

    Parameters
    ----------
    hold : bool
        False (notice): a Ctrl-C raises KeyboardInterrupt at once, as usual, and sets
        ``hit``. True (hold): a Ctrl-C only sets ``hit``, and on exit it is raised again to
        the handler that was in place, so that a few steps are not cut apart.
    reraise : bool
        In notice mode, raise KeyboardInterrupt again on exit when the block swallowed it:
        PyMC catches one while sampling and returns the draws so far, which must not be
        taken for a finished posterior. False leaves that to the caller, who reads ``hit``.

    Examples
    --------
    >>> with Interrupts(hold=True) as ctrl_c:
    ...     pass  # steps that a Ctrl-C must not cut apart
    >>> ctrl_c.hit
    False
    """

    def __init__(self, *, hold: bool = False, reraise: bool = True) -> None:
        self.hold = hold
        self.reraise = reraise
        self.hit = False
        self.previous: Any = None

    def __enter__(self) -> Interrupts:
        self.hit = False
        current = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread() and callable(current):
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.hit = True
        if not self.hold:
            raise KeyboardInterrupt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self.previous is None:
            return False
        signal.signal(signal.SIGINT, self.previous)
        self.previous = None
        if self.hit and self.hold:
            signal.raise_signal(signal.SIGINT)
        elif self.hit and self.reraise:
            if exc_type is None or not issubclass(exc_type, KeyboardInterrupt):
                raise KeyboardInterrupt from None
        return False
