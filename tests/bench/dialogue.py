"""Dialogue engine cost per message: intent matching and a whole turn, on the demo dialogs.

    .venv/bin/python tests/bench/dialogue.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.dialogue import DialogState, Engine, Turn  # noqa: E402

MESSAGES = ["где мой заказ", "статус заказа 104582", "where is my order", "opening hours", "доставка",
            "hello", "спасибо", "do you have red shoes"]


async def main() -> None:
    started = time.perf_counter()
    engine = Engine.load(ROOT / "dialogs")
    load_ms = (time.perf_counter() - started) * 1000
    matcher = engine._matcher
    rounds = 2000
    started = time.perf_counter()
    for i in range(rounds):
        matcher.match(MESSAGES[i % len(MESSAGES)])
    match_us = (time.perf_counter() - started) / rounds * 1e6
    turns = []
    contact = {"id": "c1", "name": "Anna", "phone": None, "attributes": {}, "tags": []}
    for i in range(rounds):
        turn = Turn(text=MESSAGES[i % len(MESSAGES)], payload=None, language=None, state=DialogState(),
                    channel="telegram", contact=contact)
        t0 = time.perf_counter()
        await engine.respond(turn)
        turns.append(time.perf_counter() - t0)
    p50, p99 = statistics.median(turns) * 1e6, sorted(turns)[int(rounds * 0.99)] * 1e6
    print(f"load {load_ms:.0f} ms; intent match {match_us:.0f} µs/message; "
          f"whole turn p50 {p50:.0f} µs, p99 {p99:.0f} µs")


if __name__ == "__main__":
    asyncio.run(main())
