"""Stopping child processes the way an operator would: SIGTERM, then SIGKILL if ignored."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def terminate(process: subprocess.Popen[Any], timeout: float) -> bool:
    """Send SIGTERM and wait up to ``timeout`` s, then SIGKILL. True if it had to be killed."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False
