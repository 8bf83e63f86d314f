"""fdio.feed: every chunk reaches the consumer, end of file ends it, and no reader is left."""

from __future__ import annotations

import asyncio
import os

from pbotvm.guest import fdio


def test_feed_hands_over_every_chunk_until_end_of_file() -> None:
    async def main() -> list[bytes]:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()

        async def writer() -> None:
            for piece in (b"one", b"two", b"three"):
                os.write(write_fd, piece)
                await asyncio.sleep(0.01)  # most likely separate reads
            os.close(write_fd)

        task = asyncio.create_task(writer())
        await asyncio.wait_for(fdio.feed(read_fd, chunks.append), 5)
        await task
        assert not loop.remove_reader(read_fd)  # feed unregistered itself
        os.close(read_fd)
        return chunks

    assert b"".join(asyncio.run(main())) == b"onetwothree"


def test_read_to_end_collects_a_pipe() -> None:
    async def main() -> bytes:
        read_fd, write_fd = os.pipe()
        os.write(write_fd, b"result")
        os.close(write_fd)
        try:
            return await asyncio.wait_for(fdio.read_to_end(read_fd), 5)
        finally:
            os.close(read_fd)

    assert asyncio.run(main()) == b"result"
