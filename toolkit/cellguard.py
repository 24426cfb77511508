"""What a method may end: its own cell, never the run.

A method that calls ``sys.exit()``, raises ``SystemExit``, ``KeyboardInterrupt`` or
``GeneratorExit`` itself is a failing method: its cell fails (and the run goes on, exits 1,
with a table and a report), exactly like any other exception.  A real Ctrl-C of the user
still stops the run: :class:`InterruptWatch` notes whether a SIGINT arrived while the method
ran (it wraps the current handler, which still raises), and only a ``KeyboardInterrupt``
without one is counted as the method's own.
"""
from __future__ import annotations

import signal
import threading


class InterruptWatch:
    """``with InterruptWatch() as w: …``; afterwards ``w.signalled`` says whether a real
    SIGINT arrived meanwhile (in the main thread; elsewhere no signal can arrive)."""

    def __init__(self):
        self.signalled = False
        self._previous = None
        self._installed = False

    def __enter__(self):
        self.signalled = False
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.getsignal(signal.SIGINT)
                signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except (ValueError, OSError):  # no signals here (an embedded interpreter)
                self._installed = False
        return self

    def _handler(self, signum, frame):
        self.signalled = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        return False


def is_method_failure(exc: BaseException, watch: InterruptWatch) -> bool:
    """Whether ``exc`` out of a method fails only its cell (else it stops the run)."""
    if isinstance(exc, KeyboardInterrupt):
        return not watch.signalled
    return isinstance(exc, (Exception, SystemExit, GeneratorExit))


def failure_text(exc: BaseException) -> str:
    """``Type: message`` of a cell's failure; a method's ``sys.exit(n)`` says so."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the method called sys.exit({exc.code!r}), which ends only its cell"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt: raised by the method itself (no Ctrl-C arrived), which ends only its cell"
    return f"{type(exc).__name__}: {exc}"
