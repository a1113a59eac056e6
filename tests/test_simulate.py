"""`tidepool simulate`: the shipped SOPs on a fake clock, members' actions, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.sop.simulate import Entry, Timeline, parse_script, simulate

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
WELCOME = ROOT / "sops/welcome.yaml"
SILENT = ROOT / "sops/silent_reactivation.yaml"


async def run(
    file: Path,
    *,
    until: str = "3d",
    writes: list[str] | None = None,
    presses: list[str] | None = None,
    members: list[str] | None = None,
    full: bool = False,
) -> Timeline:
    """Simulate `file` from Monday 2026-11-02 09:00 in Shanghai, in English."""
    options: dict[str, Any] = {"start": "2026-11-02T09:00", "until": until, "writes": writes}
    options |= {"presses": presses, "member": members, "full": full}
    script = parse_script(options, SHANGHAI)
    return await simulate(file, ROOT / "content", script, timezone=SHANGHAI, language="en")


def sends(timeline: Timeline) -> list[tuple[str, str]]:
    """(offset, text) of every message sent."""
    return [(timeline.offset(e.at), e.text) for e in timeline.entries if e.kind == "send"]


def kinds(timeline: Timeline) -> list[tuple[str, str]]:
    return [(timeline.offset(e.at), e.kind) for e in timeline.entries]


def entry(timeline: Timeline, kind: str) -> Entry:
    return next(e for e in timeline.entries if e.kind == kind)


async def test_welcome_greets_at_once_then_nudges_the_silent_member() -> None:
    timeline = await run(WELCOME)

    assert kinds(timeline)[:2] == [("+0s", "join"), ("+0s", "run")]
    assert "its first step at 09:00" in entry(timeline, "run").text
    (greet_at, greet), (nudge_at, nudge) = sends(timeline)
    assert greet_at == "+1s" and nudge_at == "+1d1s"
    assert greet.startswith('greet → group "Welcome to Simulated group, Lin! 👋')
    assert greet.endswith("[Group rules → rules]")
    assert nudge.startswith('nudge → group "Lin, how are you settling in?')
    assert "<" not in greet + nudge, "HTML tags are dropped"
    assert entry(timeline, "wait").text == "wait_first: for member.message, at most 1d"
    assert entry(timeline, "timeout").text == "wait_first: no member.message within 1d"
    assert entry(timeline, "if").text == "check_silent: conditions hold → then: nudge"
    assert timeline.runs == ["run 1 (welcome, Lin): done at +1d1s, stop reason: welcomed"]

    lines = timeline.text().splitlines()
    assert "+0s      09:00  join      Lin joins the group" in lines
    assert any(line.startswith("+1s      09:00  send      greet → group") for line in lines)
    assert any(line.startswith("+1d1s    09:00  send      nudge → group") for line in lines)
    assert 'Group "Simulated group" (-1000000000001), language en' in lines[1]
    assert "Asia/Shanghai" in lines[1] and "welcome runs in all groups" in lines[1]


async def test_a_message_within_the_first_day_means_no_nudge() -> None:
    timeline = await run(WELCOME, writes=["2h"])

    assert [text.split(" ")[0] for _at, text in sends(timeline)] == ["greet"]
    assert ("+2h", "write") in kinds(timeline)
    assert entry(timeline, "resume").text == "wait_first: member.message came"
    assert entry(timeline, "if").text == "check_silent: conditions do not hold; nothing to do"
    assert timeline.runs == ["run 1 (welcome, Lin): done at +2h, stop reason: welcomed"]


async def test_pressing_the_rules_button_sends_the_rules_and_no_nudge() -> None:
    timeline = await run(WELCOME, presses=["rules@5m"])

    presses = [(timeline.offset(e.at), e.text) for e in timeline.entries if e.kind == "press"]
    assert presses == [("+5m", "Lin presses [Group rules] on message 1000")]
    (_, _greeting), (rules_at, rules) = sends(timeline)
    assert rules_at == "+5m"
    assert rules.startswith('rules → group "Simulated group: three simple rules')
    assert rules.endswith("delete after 10m")
    assert entry(timeline, "resume").text == (
        "wait_first: cut short by Lin's press of [Group rules] → rules"
    )
    assert timeline.runs == ["run 1 (welcome, Lin): done at +5m"]


async def test_silent_member_is_mentioned_once_then_not_again_for_30_days() -> None:
    timeline = await run(SILENT, until="32d")

    assert "Member Lin (100001) joined 44d before the start, last wrote 14d1h before" in (
        timeline.text()
    )
    assert "checked daily at 10:00" in timeline.text()
    nudges = sends(timeline)
    assert [at for at, _text in nudges] == ["+1h", "+31d1h"], "one mention, then 30 quiet days"
    assert nudges[0][1].startswith(
        "nudge → group \"Lin: we haven't heard from you in a while. Hope all is well! Drop by"
    )
    tags = [(timeline.offset(e.at), e.text) for e in timeline.entries if e.kind == "tag"]
    assert tags == [
        ("+1h", "mark_nudged: +reactivated_recently"),
        ("+30d1h", "unmark: -reactivated_recently"),
        ("+31d1h", "mark_nudged: +reactivated_recently"),
    ]
    checks = [(timeline.offset(e.at), e.text) for e in timeline.entries if e.kind == "check"]
    assert checks == [
        ("+1h", "daily check for members silent 14d: 1 run(s) started"),
        ("+31d1h", "daily check for members silent 14d: 1 run(s) started"),
    ]
    assert timeline.runs == [
        "run 1 (silent_reactivation, Lin): done at +30d1h",
        "run 2 (silent_reactivation, Lin): waiting at cool_down until +61d1h",
    ]
    assert "[run 2] nudge → group" in timeline.text()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings for `main()`: English texts, the shipped content, no .env from the developer."""
    for name in ("TIMEZONE", "SOPS_DIR", "LOG_LEVEL", "DATABASE_URL", "BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGUAGE", "en")
    monkeypatch.setenv("CONTENT_DIR", str(ROOT / "content"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("cli_env")
def test_a_broken_file_is_reported_like_tidepool_check(capsys: pytest.CaptureFixture[str]) -> None:
    broken = ROOT / "tests/fixtures/sops/invalid/dangling_next.yaml"

    assert main(["simulate", str(broken)]) == 1

    out, err = capsys.readouterr()
    assert out.startswith(f"{broken}:12:51: steps.0.send.buttons.0.0.next: 'next' names step")
    assert "1 problem in" in err and "Traceback" not in err


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sops/nowhere.yaml"], "sops/nowhere.yaml is not a file"),
        ([str(WELCOME), "--until", "3x"], "--until: '3x' is not a duration"),
        ([str(WELCOME), "--writes", "soon"], "--writes: 'soon' is not a duration"),
        ([str(WELCOME), "--presses", "rules"], "must look like STEP@AFTER"),
        ([str(WELCOME), "--presses", "rulez@5m"], "welcome has no step 'rulez'; its step ids"),
        ([str(WELCOME), "--start", "monday"], "--start 'monday' is not a date-time"),
        ([str(WELCOME), "--writes", "hi@soon"], "--writes: 'soon' is not a duration"),
        ([str(WELCOME), "--writes", "@2h"], "--writes '@2h': write TEXT@AFTER"),
        (
            [str(WELCOME), "--member", "Lin", "--member", "Ada", "--writes", "Bo: hi@2h"],
            "--writes 'Bo: hi@2h': 'Bo' is not a member; members: Lin, Ada",
        ),
        ([str(WELCOME), "--presses", "Bo: rules@5m"], "'Bo' is not a member; members: Lin"),
        ([str(WELCOME), "--member", "Lin", "--member", "Lin"], "--member 'Lin' is given twice"),
        ([str(WELCOME), "--member", "Ada: x"], "without ':' or '@'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *args]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_the_command_prints_the_timeline_in_the_groups_language(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("LOG_LEVEL", "SOPS_DIR")}
    env.update(LANGUAGE="zh", CONTENT_DIR="content", TIMEZONE="Asia/Shanghai")

    done = subprocess.run(
        # From 10:00: a start in the evening would put the nudge in quiet hours (22:00-08:00).
        [
            sys.executable,
            "-m",
            "bot",
            "simulate",
            "sops/welcome.yaml",
            "--until",
            "2d",
            "--start",
            "2026-12-07T10:00",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "Simulating welcome (Welcome newcomers) from sops/welcome.yaml"
    assert any(line.startswith("+0s") and "join      Lin joins the group" in line for line in lines)
    greet = next(line for line in lines if "greet → group" in line)
    assert greet.startswith("+1s ") and "欢迎 Lin 加入Simulated group！👋" in greet
    assert any(line.startswith("+1d1s ") and "nudge → group" in line for line in lines)
    assert lines[-1] == "run 1 (welcome, Lin): done at +1d1s, stop reason: welcomed"


async def test_a_live_step_shows_its_announcement_and_each_reminder() -> None:
    timeline = await run(ROOT / "sops/live_reminders.yaml", until="2d")
    pushes = [(timeline.offset(e.at), e.text) for e in timeline.entries if e.kind == "push"]
    assert [offset for offset, _ in pushes] == [
        "+0s",
        "+11h",
        "+1d10h",
        "+1d10h50m",
        "+1d11h",
        "+1d12h30m",
    ]
    assert "Live: Weekly live Q&A" in pushes[0][1]
    assert "starts in 1 day" in pushes[1][1] and "starting now" in pushes[4][1]
    assert "unpins" in pushes[5][1]


async def test_the_daily_tip_waits_out_quiet_hours() -> None:
    options = {"start": "2026-11-02T07:00", "until": "1h"}
    script = parse_script(options, SHANGHAI)
    timeline = await simulate(
        ROOT / "sops/daily_tip.yaml", ROOT / "content", script, timezone=SHANGHAI, language="en"
    )
    [push] = [e for e in timeline.entries if e.kind == "push"]
    assert timeline.offset(push.at) == "+1h" and "Tip of the day" in push.text


async def test_a_simulated_event_carries_what_the_real_one_carries() -> None:
    milestone = await run(ROOT / "sops/streak_milestone.yaml", until="1h")
    [(_, celebration)] = sends(milestone)
    assert celebration.startswith('celebrate → group "🎉 Lin has checked in 7 days in a row!')
    dormant = await run(ROOT / "sops/reengage_dormant.yaml", until="1h")
    [(_, greeting)] = sends(dormant)
    assert greeting.startswith("greet → group \"Lin, we haven't heard from you")


PRICE = """\
schema_version: 1
id: price
name: Price reply
groups: all
triggers:
  - type: message
    keywords: [价格, price]
    cooldown: 1d
steps:
  - send:
      template: price.answer
      reply: true
texts:
  en:
    price:
      answer: |
        <b>Prices</b>
        1. Tea: 10 yuan a pot, refills free all afternoon.
        2. Cake: 15 yuan a slice, baked every morning.
        3. Ask us about the set menu.
  zh:
    price:
      answer: |
        <b>价格</b>
        1. 茶：10 元。
        2. 蛋糕：15 元。
        3. 套餐请问我们。
"""


@pytest.fixture
def price(tmp_path: Path) -> Path:
    """A keyword reply at most once a local day per member."""
    file = tmp_path / "price.yaml"
    file.write_text(PRICE)
    return file


def lines_of(timeline: Timeline, *kinds: str) -> list[tuple[str, str, str]]:
    """(offset, kind, text) of the entries of these kinds."""
    return [(timeline.offset(e.at), e.kind, e.text) for e in timeline.entries if e.kind in kinds]


async def test_writes_say_what_a_member_writes_and_a_cooldown_refusal_says_why(
    price: Path,
) -> None:
    timeline = await run(price, until="1d", writes=["价格?@2h", "price@15h1m"])

    assert lines_of(timeline, "write", "refused", "run") == [
        ("+0s", "write", 'Lin writes "价格"'),
        ("+0s", "run", "run 1 of price starts for Lin (trigger message)"),
        ("+2h", "write", 'Lin writes "价格?"'),
        (
            "+2h",
            "refused",
            "price not started for Lin: cooldown 1d, started today at 09:00; next from tomorrow 00:00",
        ),
        # 00:01 in Shanghai: a new local day (15:01 UTC is still the same day in UTC).
        ("+15h1m", "write", 'Lin writes "price"'),
        ("+15h1m", "run", "run 2 of price starts for Lin (trigger message)"),
    ]
    assert "Trigger: message; cooldown 1d per member" in timeline.text()
    assert "+2h      11:00  refused   price not started for Lin: cooldown 1d" in timeline.text()


async def test_a_bare_duration_still_writes_the_default_text() -> None:
    timeline = await run(WELCOME, writes=["2h"])
    assert lines_of(timeline, "write") == [("+2h", "write", 'Lin writes "Hi everyone!"')]


async def test_several_members_each_started_and_each_writing(price: Path) -> None:
    timeline = await run(
        price, until="1d", members=["Lin", "Ada"], writes=["Ada: 价格@1h", "Lin: hello@2h"]
    )

    assert lines_of(timeline, "write", "refused", "run") == [
        ("+0s", "write", 'Lin writes "价格"'),
        ("+0s", "write", 'Ada writes "价格"'),
        ("+0s", "run", "run 1 of price starts for Lin (trigger message)"),
        ("+0s", "run", "run 2 of price starts for Ada (trigger message)"),
        ("+1h", "write", 'Ada writes "价格"'),
        (
            "+1h",
            "refused",
            "price not started for Ada: cooldown 1d, started today at 09:00; next from tomorrow 00:00",
        ),
        ("+2h", "write", 'Lin writes "hello"'),
    ]
    assert timeline.runs == ["run 1 (price, Lin): done at +0s", "run 2 (price, Ada): done at +0s"]
    assert "Member Ada (100002) joined now" in timeline.text()


async def test_members_join_together_and_each_press_cuts_their_own_wait_short() -> None:
    timeline = await run(
        WELCOME,
        until="1d",
        members=["Lin", "Ada"],
        presses=["Ada: rules@5m", "rules@10m", "Lin: rules@20m"],
    )

    [(_, greeting), *_rules] = sends(timeline)
    assert greeting.startswith('greet → group "Welcome to Simulated group, Lin, Ada!')
    assert lines_of(timeline, "press", "resume") == [
        ("+5m", "press", "Ada presses [Group rules] on message 1000"),
        ("+5m", "resume", "wait_first: cut short by Ada's press of [Group rules] → rules"),
        ("+10m", "press", "Lin presses [Group rules] on message 1000"),
        ("+10m", "resume", "wait_first: cut short by Lin's press of [Group rules] → rules"),
        # The same button again, the run over: a run of its own from the button's step.
        ("+20m", "press", "Lin presses [Group rules] on message 1000"),
    ]
    rules = [at for at, text in sends(timeline) if text.startswith("rules")]
    assert rules == ["+5m", "+10m", "+20m"]
    assert timeline.runs == [
        "run 1 (welcome, Lin): done at +10m",
        "run 2 (welcome, Ada): done at +5m",
        "run 3 (welcome, Lin): done at +20m",
    ]
    assert "[run 2] wait_first: cut short by Ada's press" in timeline.text()


async def test_a_press_in_the_same_minute_is_answered_as_done_already() -> None:
    timeline = await run(WELCOME, until="1h", presses=["rules@5m", "rules@5m30s"])
    presses = lines_of(timeline, "press")
    assert presses[1] == (
        "+5m30s",
        "press",
        'Lin presses [Group rules] on message 1000; the bot answers "Done already 👍"',
    )
    assert [at for at, text in sends(timeline) if text.startswith("rules")] == ["+5m"]


async def test_full_prints_texts_whole(price: Path) -> None:
    cut = await run(price, until="1h")
    whole = await run(price, until="1h", full=True)

    [(_, short)] = sends(cut)
    [(_, long)] = sends(whole)
    assert short.endswith('2. Cake: 15 yuan a slice, baked every mor…"')
    assert long.endswith('3. Ask us about the set menu."')
    lines = whole.text().splitlines()
    at = next(n for n, line in enumerate(lines) if "steps.0 → group" in line)
    assert lines[at].endswith('steps.0 → group "Prices')
    assert lines[at + 1] == " " * 26 + "1. Tea: 10 yuan a pot, refills free all afternoon."


@pytest.mark.usefixtures("cli_env")
def test_the_command_takes_members_writes_and_full(
    price: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--member", "Lin", "--member", "Ada", "--writes", "Ada: price@1h", "--full"]
    assert main(["simulate", str(price), *args, "--start", "2026-11-02T09:00"]) == 0

    out = capsys.readouterr().out
    assert "Member Ada (100002) joined now" in out
    assert "refused   price not started for Ada: cooldown 1d, started today at 09:00" in out
    assert "3. Ask us about the set menu." in out


# -- moderation --------------------------------------------------------------------------------


async def test_the_join_check_frees_the_member_who_presses_and_kicks_the_one_who_does_not() -> None:
    timeline = await run(
        ROOT / "sops/join_check.yaml",
        until="1h",
        members=["Lin", "Ada"],
        presses=["Lin: passed@1m", "Ada: passed@2m"],
    )

    text = timeline.text()
    assert "the SOP says enabled: false, switched on here for the simulation" in text
    assert "[run 1] hold: restrict may send nothing for 10m (join check)" in text
    assert "[✅ I'm a person → passed (only its member)]" in text
    # Lin's own button frees her; Ada, pressing at +2m, finds her own button on her prompt.
    assert "[run 1] passed: unrestrict (pressed the join check button)" in text
    assert "[run 2] passed: unrestrict" in text
    assert timeline.runs == [
        "run 1 (join_check, Lin): done at +1m",
        "run 2 (join_check, Ada): done at +2m",
    ]


async def test_the_join_check_kicks_after_five_minutes_without_a_press() -> None:
    timeline = await run(ROOT / "sops/join_check.yaml", until="1h")

    assert [(at, text.split(" ")[0]) for at, text in sends(timeline)] == [
        ("+0s", "prompt"),
        ("+3m", "remind"),
    ]
    kick = entry(timeline, "kick")
    assert (timeline.offset(kick.at), kick.text) == (
        "+5m",
        "remove: kick (join check: no press within 5 minutes)",
    )
    assert timeline.runs == [
        "run 1 (join_check, Lin): done at +5m, stop reason: not confirmed, removed"
    ]


async def test_a_flood_is_written_and_muted() -> None:
    timeline = await run(ROOT / "sops/flood.yaml", until="1h")

    assert lines_of(timeline, "write", "mute") == [
        ("+0s", "write", 'Lin writes "Hi everyone!" 8 times within 10s'),
        ("+0s", "mute", "mute: mute for 10m (8 messages within 10 seconds)"),
    ]
    [(_, note)] = sends(timeline)
    assert note.startswith('note → group "Lin is sending a lot at once: muted for 10 minutes')
    assert note.endswith("delete after 1m")


async def test_a_checks_trigger_is_met_by_a_judgement_that_says_so(tmp_path: Path) -> None:
    path = tmp_path / "links.yaml"
    path.write_text(
        "schema_version: 1\nid: links\nname: Links\ngroups: all\n"
        "triggers:\n  - type: message\n    checks: {fired: [links]}\n"
        "steps:\n  - delete: {reason: link}\n"
    )
    timeline = await run(path, until="1h")

    assert lines_of(timeline, "write", "delete") == [
        ("+0s", "write", 'Lin writes "Hi everyone!"; the checks judge it spam (links fired)'),
        ("+0s", "delete", "steps.0: delete the triggering message (link)"),
    ]
