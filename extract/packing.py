"""Packs: the asks of trials extracted at the same time, sent as one request.

Every request carries the system prompt and the tool schema, whatever it asks; a hybrid request asks
a few criteria of one trial (extract/hybrid.py), so most of what it costs is that prefix, and a run
makes one request per trial it asks. A `Packer` gathers the asks of the trials in flight (the
pipeline's --concurrency) into packs of at most `size` asks and `chars` characters, and sends each
pack with `send`, which answers each ask of it (a result or an exception). A pack goes when it is
full or `wait` seconds after its first ask: a trial alone waits that long, no longer. Pure asyncio:
what a pack is and how it is asked are the caller's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, TypeVar

Item = TypeVar("Item")


class Packer(Generic[Item]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Any]]], *, size: int, chars: int, wait: float,
                 weight: Callable[[Item], int]) -> None:  # fmt: skip
        self.send, self.size, self.chars, self.wait, self.weight = send, size, chars, wait, weight
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._weight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()  # packs in flight (a task nobody holds may be collected)

    async def ask(self, item: Item) -> Any:
        """`item`'s answer from the pack it goes in; raised when it is an exception."""
        weight = self.weight(item)
        if self._pending and self._weight + weight > self.chars:
            self._flush()  # it would not fit: the pack so far goes, and it opens the next
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._weight += weight
        if len(self._pending) >= self.size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait, self._flush)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pack, self._pending, self._weight = self._pending, [], 0
        if pack:
            task = asyncio.ensure_future(self._answer(pack))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _answer(self, pack: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self.send([item for item, _ in pack])
        except asyncio.CancelledError:
            for _, future in pack:
                future.cancel()
            raise
        except Exception as error:  # the pack could not be asked at all: every ask's failure
            results = [error] * len(pack)
        for (_, future), result in zip(pack, results, strict=True):
            if not future.done():  # an ask cancelled meanwhile (the run interrupted) wants nothing
                future.set_result(result)
