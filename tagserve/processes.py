"""Helpers for the worker processes that tagserve starts (model workers, bulk tagging)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys


def die_with_parent() -> None:
    """Linux: the kernel kills this process if its parent dies, even by SIGKILL, so no
    worker outlives the command or server that started it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
