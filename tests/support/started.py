"""What the tests start and stop (a daemon of our own, a stack): as a context, stopped when
left, and when its start fails half way (what did start must not outlive the test)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Started(ABC):
    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop what runs; safe to call whatever ``start`` got to."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
