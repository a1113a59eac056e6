"""`tidepool replay`: the shipped transcript replays cleanly; a changed text shows as a diff."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "sops" / "transcripts" / "welcome.yaml"


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


async def test_the_shipped_welcome_transcript_replays_cleanly(tmp_path: Path) -> None:
    code, output = await replay(SHIPPED, tmp_path)
    assert code == 0, output
    assert "7 steps, the bot answered the same" in output


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
