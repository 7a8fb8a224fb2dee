"""Ctrl-C and ``kill`` end a ``genprop-*`` command with one line and the shell's exit status.

Every console command's ``main`` is wrapped in :func:`console_signals`: ``SIGINT`` (Ctrl-C) and
``SIGTERM`` (``kill``, a scheduler's stop) raise :class:`Interrupted` in the main thread, so
``finally`` blocks and context managers run (temporary files are removed, locks released, Ray
shut down), then the command prints ``<prog>: stopped by SIGTERM ...`` and exits with
``128 + signal`` (130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by that
signal — instead of a KeyboardInterrupt traceback or Ray's ``sys.exit(15)``.

``ray.init`` replaces the ``SIGTERM`` handler of its driver; :func:`keep_sigterm_handler` around
it puts ours back.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process received ``signum``; raised in the main thread by :func:`console_signals`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def exit_status(e: KeyboardInterrupt) -> int:
    """``128 + signal``: 130 for Ctrl-C (a plain KeyboardInterrupt), 143 for SIGTERM."""
    return 128 + getattr(e, "signum", int(signal.SIGINT))


def stopped_line(prog: str, e: KeyboardInterrupt) -> str:
    """``<prog>: stopped by SIGTERM (finished work is kept; the same command resumes it)``."""
    name = signal.Signals(exit_status(e) - 128).name
    return f"{prog}: stopped by {name} (finished work is kept; the same command resumes it)"


def console_signals(prog: str) -> Callable[[F], F]:
    """Decorate a console entry point: SIGINT/SIGTERM end it with one line and ``128 + signal``.

    The handlers are installed only when called from the main thread (a library caller in a
    worker thread keeps its own), and the previous handlers are restored on return.
    """

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not threading.main_thread():
                return main(*args, **kwargs)
            previous = {s: signal.getsignal(s) for s in HANDLED}
            for s in HANDLED:
                signal.signal(s, _raise_interrupted)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt as e:
                print(stopped_line(prog, e), file=sys.stderr, flush=True)
                raise SystemExit(exit_status(e)) from None
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler if handler is not None else signal.SIG_DFL)

        wrapped.console_prog = prog  # type: ignore[attr-defined]  # checked by the tests
        return wrapped  # type: ignore[return-value]

    return decorate


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Restore this process's Python ``SIGTERM`` handler after the block (``ray.init`` sets
    its own, which exits with status 15). A default handler is left as the block set it."""
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if on_main else None
    try:
        yield
    finally:
        if on_main and callable(previous):
            signal.signal(signal.SIGTERM, previous)
