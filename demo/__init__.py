"""The whole system on this machine with one command, no Docker: ``python -m demo``."""

from demo.system import run_demo

__all__ = ["run_demo"]
