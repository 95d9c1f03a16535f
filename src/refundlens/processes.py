"""Helpers for the processes a service runs beside itself (analysis, extra API processes)."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]


def die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the process that started this one dies (``PR_SET_PDEATHSIG``).

    Without it a child outlives a SIGKILLed service for good (an analysis process blocked
    on the task queue whose write end it holds itself; an API process still holding the
    port). Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the call above
        os._exit(1)
