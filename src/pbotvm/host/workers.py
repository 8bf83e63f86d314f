"""CPU work sized by user input, off vm-server's event loop: a few worker processes, a
wall-clock budget per job, and fair turns between requesters.

A request's preparation (its edit step, options, the C family's rewriting and astyle) and
the finishing of its answer (filters, the cap, "Same output.") are work whose cost a chat
line chooses: a ``replace all`` chain, a diff of long entries, a backtracking regex. Done in
the event loop, one such line stalled every other client (issue 19). Here each job runs in a
worker process: a job past its budget has its worker killed, with whatever it started
(astyle), and a new worker takes its place; memory a job took goes with its worker.

A requester (a nick) has at most one job running at a time, and a free worker takes the next
job by ``fairness``'s rule (the requester served longest ago): a flood from one nick takes one
worker and waits behind itself, and anybody else's job finds another worker free or goes next.

The worker side is ``python -m pbotvm.host.workers``: length-prefixed pickles of
``(function, arguments)`` on its stdin, of the outcome on its stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from pbotvm import logs
from pbotvm.host.fairness import FairQueue

log = logging.getLogger("pbotvm.workers")

T = TypeVar("T")

SIZE = 4
# A worker's address space: a job that tries to take more gets MemoryError, and a worker
# that grew past RETIRE_BYTES is replaced once its job is done (Python keeps what it took).
MEMORY_BYTES = 1024 * 1024 * 1024
RETIRE_BYTES = 256 * 1024 * 1024
START_TIMEOUT = 30.0
RESTART_DELAY = 1.0  # seconds between tries to start a worker that would not
_HEADER = struct.Struct(">Q")


class OverBudget(Exception):
    """The job ran past its budget; its worker was killed."""


class Failed(Exception):
    """The job raised, or its worker died; the message says what, in one line."""


class _Died(Exception):
    """The worker's pipes broke."""


@dataclass
class _Job:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    budget: float
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop()
                                      .create_future())


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, preload: tuple[str, ...]) -> _Worker:
        """A worker that has imported ``preload`` (so that no job pays for it)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, *preload, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, start_new_session=True)
        worker = cls(process)
        assert process.stdout is not None
        try:
            await asyncio.wait_for(process.stdout.readexactly(1), START_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError):
            await worker.stop()
            raise OSError(f"worker {process.pid} did not start") from None
        return worker

    async def call(self, function: Callable[..., Any],
                   args: tuple[Any, ...]) -> tuple[bool, Any, bool]:
        """Whether the function returned, its value (or what went wrong, in one line), and
        whether the worker asks to be retired. Died when the worker cannot answer."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        data = pickle.dumps((function, args))
        try:
            stdin.write(_HEADER.pack(len(data)) + data)
            await stdin.drain()
            (size,) = _HEADER.unpack(await stdout.readexactly(_HEADER.size))
            ok, value, retire = pickle.loads(await stdout.readexactly(size))
        except (OSError, asyncio.IncompleteReadError) as e:
            raise _Died(f"worker {self.process.pid} died ({e or type(e).__name__})") from None
        return ok, value, retire

    async def stop(self) -> None:
        """Kill it and everything it started (its session), and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()


class Workers:
    """The pool: ``run`` a job for a requester, within a budget."""

    def __init__(self, preload: tuple[str, ...] = (), size: int = SIZE) -> None:
        self.preload = preload
        self.size = size
        self._idle: list[_Worker] = []
        self._starting: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._waiting: FairQueue[_Job] = FairQueue()
        self._busy: set[str] = set()  # requesters with a job running
        self._closed = False

    async def start(self) -> None:
        """Start the workers ahead of the first request (each takes ~0.1 s of CPU)."""
        for _ in range(self.size):
            self._replace()
        await asyncio.gather(*self._starting)

    async def run(self, requester: str, budget: float, function: Callable[..., T],
                  *args: Any) -> T:
        """``function(*args)`` in a worker, within ``budget`` seconds of running (not of
        waiting for its turn). OverBudget or Failed when it does not come back."""
        job = _Job(function, args, budget)
        self._waiting.put(requester, job)
        self._dispatch()
        try:
            return await asyncio.shield(job.done)
        except asyncio.CancelledError:
            # Not taken yet: it never will be. Taken: it runs out, within its budget, and
            # its outcome is dropped.
            if self._waiting.discard(requester, job) and requester not in self._busy:
                self._waiting.done(requester)
            job.done.add_done_callback(_drop_outcome)
            raise

    def _dispatch(self) -> None:
        while self._idle and not self._closed:
            taken = self._waiting.take(busy=self._busy)
            if taken is None:
                return
            requester, job = taken
            self._busy.add(requester)
            self._background(self._serve(self._idle.pop(), requester, job), self._running)

    async def _serve(self, worker: _Worker, requester: str, job: _Job) -> None:
        keep = False
        try:
            ok, value, retire = await asyncio.wait_for(worker.call(job.function, job.args),
                                                       job.budget)
            keep = not retire
            if ok:
                job.done.set_result(value)
            else:  # the worker has logged why
                job.done.set_exception(Failed(value))
        except TimeoutError:
            log.warning("a job of %r ran past its %g s budget: worker %d killed", requester,
                        job.budget, worker.process.pid)
            job.done.set_exception(OverBudget())
        except _Died as e:
            log.error("a job of %r failed: %s", requester, e)
            job.done.set_exception(Failed(str(e)))
        except asyncio.CancelledError:
            job.done.cancel()  # vm-server is stopping
            raise
        finally:
            self._busy.discard(requester)
            self._waiting.done(requester)
            if keep and not self._closed:
                self._idle.append(worker)
            else:
                self._background(worker.stop())
                self._replace()
            self._dispatch()

    def _replace(self) -> None:
        if not self._closed:
            self._background(self._start_one(), self._starting)

    def _background(self, work: Coroutine[Any, Any, None],
                    tasks: set[asyncio.Task[None]] | None = None) -> None:
        tasks = self._stopping if tasks is None else tasks
        task = asyncio.create_task(work)
        tasks.add(task)  # a strong reference while it runs
        task.add_done_callback(tasks.discard)

    async def _start_one(self, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        try:
            worker = await _Worker.start(self.preload)
        except OSError as e:
            log.error("cannot start a worker (trying again in %g s): %s", RESTART_DELAY, e)
            if not self._idle and not self._running:
                # Nobody could take them: the waiting jobs are answered now, not never.
                for job in self._waiting.drain():
                    job.done.set_exception(Failed(f"no worker could start: {e}"))
            self._background(self._start_one(RESTART_DELAY), self._starting)
            return
        if self._closed:
            await worker.stop()
            return
        self._idle.append(worker)
        self._dispatch()

    async def close(self) -> None:
        """Stop every worker; jobs still waiting are cancelled."""
        self._closed = True
        for job in self._waiting.drain():
            job.done.cancel()
        for task in (*self._starting, *self._running):
            task.cancel()
        await asyncio.gather(*self._starting, *self._running, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.stop() for worker in idle), *self._stopping)


def _drop_outcome(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: nobody waits for it any more


class Inline:
    """The same interface, in this process and without a budget: for ``vm-exec`` in a shell,
    where no other client waits."""

    async def run(self, requester: str, budget: float, function: Callable[..., T],
                  *args: Any) -> T:
        return function(*args)


def _work(requests: BinaryIO, replies: BinaryIO) -> None:
    """The worker's loop: one job after another until its stdin closes."""
    while header := requests.read(_HEADER.size):
        (size,) = _HEADER.unpack(header)
        function, args = pickle.loads(requests.read(size))
        try:
            outcome = (True, function(*args))
        except MemoryError:
            outcome = (False, f"{function.__name__}: out of memory")
            log.error("%s ran out of memory", function.__name__)
        except Exception as e:
            log.exception("%s failed", function.__name__)
            outcome = (False, f"{function.__name__}: {type(e).__name__}: {e}")
        retire = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > RETIRE_BYTES
        data = pickle.dumps((*outcome, retire))
        replies.write(_HEADER.pack(len(data)) + data)
        replies.flush()
        if retire:
            return


def main() -> None:
    """The worker: ``python -m pbotvm.host.workers [MODULE...]``, the modules its jobs use."""
    logs.setup("vm-server-worker")
    for module in sys.argv[1:]:
        importlib.import_module(module)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    # Replies go on a descriptor of their own; anything printed by mistake goes to the log.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        replies.write(b"\0")  # ready
        replies.flush()
        _work(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
