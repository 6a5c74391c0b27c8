"""The Packer: asks made at the same time share a pack, within its bounds (extract/packing.py)."""

from __future__ import annotations

import asyncio

from extract.packing import Packer


def packer(packs: list[list[str]], size: int = 3, chars: int = 100, wait: float = 0.05) -> Packer[str]:
    async def send(items: list[str]) -> list:
        packs.append(items)
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]

    return Packer(send, size=size, chars=chars, wait=wait, weight=len)


async def ask_all(gathering: Packer[str], *items: str) -> list:
    return await asyncio.gather(*(gathering.ask(item) for item in items), return_exceptions=True)


def test_asks_made_together_share_packs_of_at_most_size_and_each_gets_its_own_answer():
    packs: list[list[str]] = []
    answers = asyncio.run(ask_all(packer(packs), "a", "bad b", "c", "d"))

    assert packs == [["a", "bad b", "c"], ["d"]]  # the first full, the last after the wait
    assert answers[0] == "A" and isinstance(answers[1], ValueError) and answers[2:] == ["C", "D"]


def test_an_ask_that_would_overflow_the_characters_opens_the_next_pack():
    packs: list[list[str]] = []
    asyncio.run(ask_all(packer(packs, size=10, chars=10), "aaaa", "bbbb", "cccc", "dddddddddddddd"))

    assert packs == [["aaaa", "bbbb"], ["cccc"], ["dddddddddddddd"]]  # an ask too big alone goes alone


def test_a_pack_whose_send_fails_fails_each_of_its_asks():
    async def send(items: list[str]) -> list:
        raise ConnectionError("down")

    gathering = Packer(send, size=2, chars=100, wait=0.01, weight=len)
    answers = asyncio.run(ask_all(gathering, "a", "b"))
    assert [type(answer) for answer in answers] == [ConnectionError, ConnectionError]


def test_a_lone_ask_waits_for_company_no_longer_than_the_wait():
    packs: list[list[str]] = []

    async def lone() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await packer(packs, wait=0.2).ask("a")
        return answer, loop.time() - started

    answer, waited = asyncio.run(lone())
    assert answer == "A" and packs == [["a"]] and 0.19 <= waited < 5  # it waited, then went alone
