"""A callback that stands in for the process dying after a given step (the resume tests')."""

from __future__ import annotations

import matnet


class CrashError(Exception):
    """Stands in for the process dying right after a given step."""


class CrashAt(matnet.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, step, logs):
        if step == self.step:
            raise CrashError
