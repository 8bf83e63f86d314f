"""A small asyncio client for QEMU's machine protocol (QMP) on a unix socket.

Snapshots go through ``human-monitor-command`` (HMP ``savevm``/``loadvm``): they are
synchronous and take ~0.1-0.3 s, where the QMP snapshot-save/-load jobs need job tracking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("pbotvm.qmp")

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 120.0  # savevm of a large guest can take a while


class QMPError(RuntimeError):
    pass


class QMP:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._next_id = 0

    @classmethod
    async def connect(cls, path: Path, timeout: float = CONNECT_TIMEOUT) -> QMP:
        """Connect, read the greeting and leave capabilities negotiation mode."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024), timeout)
        except (OSError, TimeoutError) as e:
            raise QMPError(f"QMP socket {path}: {e}") from None
        qmp = cls(reader, writer)
        try:
            greeting = await asyncio.wait_for(qmp._read(), timeout)
            if "QMP" not in greeting:
                raise QMPError(f"QMP socket {path}: unexpected greeting {greeting}")
            await qmp.execute("qmp_capabilities")
        except BaseException:
            await qmp.close()
            raise
        return qmp

    async def __aenter__(self) -> QMP:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, object]:
        line = await self._reader.readline()
        if not line:
            raise QMPError("QEMU closed the QMP connection")
        try:
            message = json.loads(line)
        except json.JSONDecodeError as e:
            raise QMPError(f"QMP: not JSON: {line[:80]!r}") from e
        if not isinstance(message, dict):
            raise QMPError(f"QMP: not an object: {line[:80]!r}")
        return message

    async def execute(self, command: str, arguments: dict[str, object] | None = None,
                      timeout: float = COMMAND_TIMEOUT) -> object:
        """Run one command; returns its ``return`` value, raises QMPError on ``error``."""
        self._next_id += 1
        request: dict[str, object] = {"execute": command, "id": self._next_id}
        if arguments:
            request["arguments"] = arguments
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                message = await self._read()
                if message.get("id") != self._next_id:
                    log.debug("QMP event: %s", message.get("event", message))
                    continue
                if "error" in message:
                    error = message["error"]
                    desc = error.get("desc", error) if isinstance(error, dict) else error
                    raise QMPError(f"QMP {command}: {desc}")
                return message.get("return")

    async def hmp(self, command_line: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """A human monitor command; returns its text output."""
        out = await self.execute("human-monitor-command", {"command-line": command_line},
                                 timeout)
        return out if isinstance(out, str) else ""


async def snapshot(qmp: QMP, verb: str, name: str) -> None:
    """HMP ``savevm``/``loadvm``: they print nothing on success and the error otherwise."""
    out = (await qmp.hmp(f"{verb} {name}")).strip()
    if out:
        raise QMPError(f"{verb} {name}: {out}")


async def loadvm(qmp_socket: Path, name: str = "1") -> float:
    """Revert the VM behind ``qmp_socket`` to snapshot ``name``; returns the seconds taken."""
    start = time.monotonic()
    async with await QMP.connect(qmp_socket) as qmp:
        await snapshot(qmp, "loadvm", name)
    return time.monotonic() - start
