"""`tidepool replay FILE`: do a transcript's steps again in a fresh sandbox and compare.

The fresh sandbox starts at the transcript's recorded start (so quiet hours, weekdays and
schedules fall the same way), with the demo group and the transcript's language, and runs the
real bot process as `tidepool sandbox` does. Each step is done at its recorded time since the
start; what the bot did from one step to the next is compared with what the transcript says,
and any difference is shown as a unified diff of the two transcripts.
"""

from __future__ import annotations

import asyncio
import difflib
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.sandbox._operator import Operator
from bot.sandbox._sandbox import Sandbox
from bot.sandbox._time import ANSWER_QUIET
from bot.sandbox._transcript import HEADER, bot_did, dump, parse, parse_duration
from bot.settings import Settings


@dataclass
class Replayed:
    """The outcome of a replay: whether the bot answered the same, and the diff if not."""

    same: bool
    diff: str
    steps: int


async def replay(path: Path, settings: Settings, folder: Path | None = None) -> Replayed:
    """Replay the transcript at `path` in a fresh sandbox (in `folder`, or a temporary one)."""
    expected = parse(await asyncio.to_thread(path.read_text, encoding="utf-8"))
    settings = settings.model_copy(update={"language": expected.get("language", "zh")})
    start = datetime.fromisoformat(str(expected["start"]))
    with tempfile.TemporaryDirectory(prefix="tidepool-replay-") as scratch:
        sandbox = Sandbox(settings, folder or Path(scratch), reset=True, start_at=start)
        await sandbox.start()
        try:
            actual = await _play(sandbox, expected, start)
        finally:
            await sandbox.stop()
    before = (HEADER + dump(expected)).splitlines(keepends=True)
    after = (HEADER + dump(actual)).splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(before, after, f"{path} (recorded)", f"{path} (now)"))
    return Replayed(same=not diff, diff=diff, steps=len(expected["steps"]))


async def _play(sandbox: Sandbox, expected: dict[str, Any], start: datetime) -> dict[str, Any]:
    operator = sandbox.operator
    world = sandbox.world
    steps: list[dict[str, Any]] = []
    await sandbox.time.settle(ANSWER_QUIET)
    mark = 0
    for step in expected["steps"][1:]:
        target = start + parse_duration(str(step.get("at", "0s")))
        if "clock" in step:
            # What the bot does while time moves belongs to this step.
            steps.append({"bot": world.calls[mark : len(world.calls)]})
            mark = len(world.calls)
            await _move_to(sandbox, target)
            continue
        await _move_to(sandbox, target)  # what happens on the way belongs to the step before
        steps.append({"bot": world.calls[mark : len(world.calls)]})
        mark = len(world.calls)
        await _act(operator, step, str(expected.get("language", "zh")))
        await sandbox.time.settle(ANSWER_QUIET)
    steps.append({"bot": world.calls[mark : len(world.calls)]})
    actual = {key: value for key, value in expected.items() if key != "steps"}
    actual["steps"] = [
        {
            **{key: value for key, value in recorded.items() if key != "bot"},
            "bot": bot_did(found["bot"], operator.chat_name),
        }
        for recorded, found in zip(expected["steps"], steps, strict=True)
    ]
    return actual


async def _move_to(sandbox: Sandbox, target: datetime) -> None:
    seconds = (target - sandbox.clock.now()).total_seconds()
    if seconds > 0:
        await sandbox.time.advance(seconds)


async def _act(operator: Operator, step: dict[str, Any], language: str) -> None:
    if "join" in step and step.get("new"):
        who = await operator.new_person(str(step["who"]), language)
    else:
        who = operator.person(str(step["who"]))
    if "say" in step:
        await operator.say(operator.chat(str(step["chat"])), who, str(step["say"]))
    elif "press" in step:
        await operator.press_label(operator.chat(str(step["chat"])), who, str(step["press"]))
    elif "join" in step:
        await operator.join(operator.chat(str(step["join"])), who, new=bool(step.get("new")))
    elif "leave" in step:
        await operator.leave(operator.chat(str(step["leave"])), who)
    elif "admin" in step:
        await operator.make_admin(operator.chat(str(step["admin"])), who)
    elif "start" in step:
        await operator.start(who)
