"""vm-server's default stdin: one line of the command's output per request, fetched ahead."""

import asyncio
import sys
import time

from pbotvm.host.request.vmexec import PrefetchedStdin, stdin_from_command


def test_command_output_becomes_one_line() -> None:
    line = asyncio.run(stdin_from_command(["printf", "Q: Why?\\n\\tA: Because.\\n"]))
    assert line == "Q - Why? A - Because."


def test_missing_command_gives_no_input() -> None:
    assert asyncio.run(stdin_from_command(["/nonexistent/fortune"])) is None


def test_each_request_gets_its_own_line_and_the_next_is_ready() -> None:
    async def scenario() -> tuple[list[str | None], float]:
        stdin = PrefetchedStdin(["sh", "-c", "sleep 0.3; echo line $$"])
        first = await stdin.take()
        await asyncio.sleep(0.6)  # the next line is fetched meanwhile
        start = time.monotonic()
        second = await stdin.take()
        waited = time.monotonic() - start
        third = await stdin.take()
        await stdin.close()
        return [first, second, third], waited

    lines, waited = asyncio.run(scenario())
    assert all(line and line.startswith("line ") for line in lines)
    assert len(set(lines)) == 3
    assert waited < 0.2


def test_close_stops_the_command_running_ahead(tmp_path) -> None:
    log = tmp_path / "runs"

    async def scenario() -> float:
        # One process (a shell would leave its sleep holding the pipe after the kill).
        script = f"import time; time.sleep(0.3); open({str(log)!r}, 'a').write('run\\n')"
        stdin = PrefetchedStdin([sys.executable, "-c", script])
        await stdin.take()
        await stdin.take()  # fetched with the first; a third starts now
        start = time.monotonic()
        await stdin.close()
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 0.2
    time.sleep(0.5)
    assert log.read_text() == "run\n" * 2
