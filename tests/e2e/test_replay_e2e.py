"""`tidepool replay`: every shipped transcript replays cleanly; a changed text shows as a diff."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "sops" / "transcripts" / "welcome.yaml"
TRANSCRIPTS = sorted((ROOT / "sops" / "transcripts").glob("*.yaml"))
REPLAYS = 5  # replays at once


async def replay(path: Path, folder: Path, **env: str) -> tuple[int, str]:
    """Run `tidepool replay PATH` as an operator would; (exit code, what it printed)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BOT_", "TELEGRAM_", "DATABASE_", "CLOCK_", "LANGUAGE"))
    }
    environment.update(
        DATA_DIR=str(folder),
        SOPS_DIR=str(ROOT / "sops"),
        CONTENT_DIR=str(ROOT / "content"),
        TIMEZONE="Asia/Shanghai",
    )
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "replay",
        str(path),
        cwd=folder,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_every_shipped_transcript_replays_cleanly(tmp_path: Path) -> None:
    """Each transcript in sops/transcripts replays in its own sandbox; they run side by side
    (a replay spends most of its time waiting for the bot to fall quiet), at most REPLAYS at
    once."""
    lanes = asyncio.Semaphore(REPLAYS)

    async def replayed(transcript: Path) -> tuple[Path, int, int, str]:
        steps = len((await asyncio.to_thread(_read, transcript))["steps"])
        folder = tmp_path / transcript.stem
        folder.mkdir()
        async with lanes:
            code, output = await replay(transcript, folder)
        return transcript, steps, code, output

    results = await asyncio.gather(*(replayed(transcript) for transcript in TRANSCRIPTS))
    assert {transcript.stem for transcript, *_ in results} >= {
        "welcome",
        "onboarding_path",
        "product_launch",
        "live_funnel",
        "weekly_review",
    }
    for transcript, steps, code, output in results:
        assert code == 0, f"{transcript.name}:\n{output}"
        assert f"{steps} steps, the bot answered the same" in output, (
            f"{transcript.name}:\n{output}"
        )


def test_every_shipped_sop_that_is_off_by_default_has_a_transcript_that_switches_it_on() -> None:
    """What the new SOPs show: each is switched on by an admin in its own transcript."""
    for sop in ("onboarding_path", "product_launch", "live_funnel", "weekly_review"):
        transcript = ROOT / "sops" / "transcripts" / f"{sop}.yaml"
        steps = _read(transcript)["steps"]
        assert any(step.get("say") == f"/sop_on {sop}" for step in steps), transcript


def _read(transcript: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(transcript.read_text(encoding="utf-8"))
    return document


async def test_a_changed_welcome_text_fails_the_replay_with_a_diff(tmp_path: Path) -> None:
    sops = tmp_path / "sops"
    shutil.copytree(ROOT / "sops", sops)
    texts = sops / "welcome.texts.yaml"
    old = "Say hi and tell us what brought you here. The rules are one tap away."
    new = "Say hello! The rules are one tap away."
    source = texts.read_text(encoding="utf-8")
    assert old in source
    texts.write_text(source.replace(old, new), encoding="utf-8")

    code, output = await replay(SHIPPED, tmp_path, SOPS_DIR=str(sops))
    assert code == 1, output
    assert f"-      {old}" in output and f"+      {new}" in output  # Zoe's and Yan's greetings
    assert output.count(f"+      {new}") == 2
    assert "the bot now answers differently" in output


async def test_a_broken_transcript_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("transcript: 1\nsteps: nope\n", encoding="utf-8")
    code, output = await replay(broken, tmp_path)
    assert code == 2
    assert "broken.yaml" in output and "'steps' must be a list" in output
