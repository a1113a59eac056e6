"""The command line: settings errors are one clear line with exit code 2, and the db commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import SettingsError, load_settings

SETTINGS = (
    "BOT_TOKEN",
    "TELEGRAM_API_BASE",
    "DATABASE_URL",
    "TIMEZONE",
    "OWNER_IDS",
    "SOPS_DIR",
    "CONTENT_DIR",
    "LOG_LEVEL",
    "STORE_TEXT",
    "LANGUAGE",
    "CONSOLE_LISTEN",
    "CONSOLE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No settings from the developer's environment or .env; work in an empty folder."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_run_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    line = one_line_error(capsys)
    assert "BOT_TOKEN is not set" in line and "@BotFather" in line


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("TIMEZONE", "Mars/Olympus", "Asia/Shanghai"),
        ("OWNER_IDS", "12,abc", "separated by commas"),
        ("DATABASE_URL", "sqlite:///data/x.db", "sqlite+aiosqlite"),
        ("DATABASE_URL", "postgresql://u@h/db", "postgresql+asyncpg"),
        ("BOT_TOKEN", "not-a-token", "@BotFather"),
        ("TELEGRAM_API_BASE", "api.telegram.org", "http"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("STORE_TEXT", "maybe", "STORE_TEXT"),
    ],
)
def test_invalid_setting_names_itself(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    hint: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"tidepool: error: {name} is invalid")
    assert hint in line
    if name == "BOT_TOKEN":
        assert value not in line, "the token is never echoed"


def test_settings_come_from_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("OWNER_IDS=1, 2;3\nTIMEZONE=Europe/Berlin\nSTORE_TEXT=true\n")
    settings = load_settings()
    assert settings.owner_ids == [1, 2, 3]
    assert settings.timezone == "Europe/Berlin" and settings.store_text is True
    assert settings.bot_token is None
    with pytest.raises(SettingsError, match="BOT_TOKEN is not set"):
        settings.require_token()


def test_db_upgrade_and_current(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == "empty database"
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == "0013"
    assert (clean_env / "data" / "tidepool.db").exists()


def test_export_rejects_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "events", "--since", "last tuesday"]) == 2
    assert "2026-11-01" in one_line_error(capsys)


def test_export_offers_every_table() -> None:
    from typing import get_args

    from bot.cli import EXPORT_TABLES
    from bot.export import Table

    assert set(EXPORT_TABLES) == set(get_args(Table))


async def _seed_referrals(path: Path) -> None:
    from bot.db import create_engine
    from tests.test_stats import add_referrals

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await add_referrals(engine)
    await engine.dispose()


def test_export_of_the_referrals(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    assert main(["db", "upgrade"]) == 0
    asyncio.run(_seed_referrals(clean_env / "data" / "tidepool.db"))
    capsys.readouterr()
    assert main(["export", "invites"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("chat_id,invitee_id,inviter_id,link_kind,link_name,joined_at,")
    assert len(lines) == 7
    # Since the 25th in TIMEZONE (Asia/Shanghai): 3 qualified at 09:00 that day, 5 and 6 later.
    since = ["--group", "-1001", "--since", "2026-11-25", "--format", "jsonl"]
    assert main(["export", "invites", *since]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["invitee_id"], row["state"], row["link_name"]) for row in rows] == [
        (3, "qualified", "U1"),
        (5, "qualified", "spring"),
        (6, "pending", "U1"),
    ]
    assert main(["export", "invites", "--group", "-5"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == []


def test_unusable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    (clean_env / "blocker").write_text("a file where a folder should be")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{clean_env}/blocker/x.db")
    assert main(["db", "upgrade"]) == 2
    assert "DATABASE_URL" in one_line_error(capsys)


async def _seed_group(path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from bot.db import EVENTS, GROUPS, create_engine, writing
    from tests.test_stats import add_link, add_member, add_referral

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    now = datetime.now(UTC) - timedelta(minutes=1)
    async with writing(engine) as conn:
        await conn.execute(insert(GROUPS).values(id=-1001, title="Readers", status="active"))
        await conn.execute(
            insert(EVENTS),
            [
                {"chat_id": -1001, "user_id": user, "at": now, "type": "message"}
                for user in (1, 1, 2)
            ],
        )
    # Member 1, here 20 days, brought 2 (qualified 10 days ago); campaign spring brought 3,
    # qualified 40 days ago: before the 30 days.
    await add_member(engine, 1, now - timedelta(days=20), chat=-1001)
    mine = await add_link(engine, "member", "U1", 1, chat=-1001)
    spring = await add_link(engine, "campaign", "spring", chat=-1001)
    for invitee, link, inviter, days in ((2, mine, 1, 10), (3, spring, None, 40)):
        qualified = now - timedelta(days=days)
        await add_referral(
            engine,
            invitee,
            link,
            inviter,
            qualified,
            "qualified",
            chat=-1001,
            qualified_at=qualified,
        )
    await engine.dispose()


def test_stats_and_report_of_a_group(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    assert main(["db", "upgrade"]) == 0
    asyncio.run(_seed_group(clean_env / "data" / "tidepool.db"))
    capsys.readouterr()
    assert main(["stats", "--group", "-1001", "--days", "7", "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["messages"], figures["active"], len(figures["days"])) == (3, 2, 7)
    # K and the cycle time are the last 30 days', whatever --days.
    fission = {name: value for name, value in figures.items() if name.startswith("fission_")}
    assert fission == {
        "fission_days": 30,
        "fission_k": 0.5,
        "fission_qualified": 1,
        "fission_active": 2,
        "fission_cycle_days": 10.0,
        "fission_inviters": 1,
    }
    assert main(["stats", "--group", "-1001", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "messages,3" in out and "fission_k,0.5" in out
    assert main(["stats", "--group", "-1001"]) == 0
    out = capsys.readouterr().out
    assert "concentration_top10" in out and "fission_cycle_days" in out
    assert main(["report", "--group", "-1001", "--out", "chart.png"]) == 0
    assert (clean_env / "chart.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert main(["stats", "--group", "-5"]) == 1
    assert "there is no group -5" in one_line_error(capsys)


def test_console_links_and_tokens(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123456:TEST-token")
    monkeypatch.setenv("OWNER_IDS", "5")
    monkeypatch.setenv("CONSOLE_URL", "https://console.example.com/")
    assert main(["console", "link", "77"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("https://console.example.com/signin/") and len(out) > 50
    assert main(["console", "token", "77"]) == 2
    assert "not in OWNER_IDS" in one_line_error(capsys)
    assert main(["console", "token", "5"]) == 0
    assert capsys.readouterr().out.startswith("tp_")
    assert main(["console", "revoke", "5"]) == 0
    assert "1 token revoked" in capsys.readouterr().out
    monkeypatch.delenv("CONSOLE_URL")
    monkeypatch.setenv("CONSOLE_LISTEN", "off")
    assert main(["console", "link", "77"]) == 2
    assert "console is off" in one_line_error(capsys)
    monkeypatch.setenv("CONSOLE_LISTEN", "8090")
    assert main(["console", "link", "77"]) == 2
    assert "CONSOLE_LISTEN is invalid" in one_line_error(capsys)
