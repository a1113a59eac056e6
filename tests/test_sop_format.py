"""SOP files: what loads, the exact problems `tidepool check` reports, and how texts render."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.sop.check import check_path, load_sops, sop_files
from bot.sop.format import IfStep, SendStep, Sop, WaitStep, json_schema_text, walk_steps
from bot.sop.templates import SAMPLE_CONTEXT, context_names, member_context, render

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "sops"
CONTENT = FIXTURES / "content"
INVALID = FIXTURES / "invalid"


def problems_of(path: Path) -> list[str]:
    return [str(problem) for problem in check_path(path, CONTENT)]


def test_valid_fixtures_load_and_drafts_are_skipped() -> None:
    sops, problems = load_sops(FIXTURES / "valid", CONTENT)
    assert problems == []
    assert sorted(sops) == ["checkin_reminder", "onboarding"]
    onboarding = sops["onboarding"].sop
    assert sops["onboarding"].file == FIXTURES / "valid" / "onboarding.yaml"
    assert len(sops["onboarding"].digest) == 64
    assert onboarding.catch_up.grace == timedelta(minutes=30)
    assert onboarding.variables == {
        "code": "WELCOME10",
        "max_nudges": 1,
        "ratio": 0.5,
        "strict": False,
    }
    assert [step.action for step in walk_steps(onboarding.steps)] == [
        "send",
        "wait",
        "wait",
        "if",
        "send",
        "points",
        "emit",
        "tag",
        "start",
        "stop",
        "send",
    ]
    hello = onboarding.steps[0]
    assert isinstance(hello, SendStep) and hello.send.delete_after == timedelta(days=1, hours=12)
    assert hello.send.buttons[0][0].next == "rules"
    until = onboarding.steps[1]
    assert isinstance(until, WaitStep) and until.wait.until == time(10, 30), (
        "10:30 is a time, not 630"
    )
    branch = onboarding.steps[3]
    assert isinstance(branch, IfStep) and branch.if_.else_[0].action == "points"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "yaml_syntax",
            "10:6: invalid YAML: expected <block end>, but found '<block mapping start>' (while "
            "parsing a block mapping that starts at line 8); check the indentation",
        ),
        (
            "unknown_key",
            "9:7: steps.0.send.tempalte: unknown key 'tempalte' (did you mean 'template'?)",
        ),
        ("wrong_type", "7:11: triggers.0.days: must be a whole number, not 'two'"),
        ("missing_key", "1:1: name: missing required key 'name'"),
        (
            "bad_duration",
            "10:16: steps.0.wait.timeout: '24 hours' is not a duration; write it like 30s, 10m, 24h, 3d or 1d12h",
        ),
        (
            "bad_regex",
            "7:12: triggers.0.regex: invalid regular expression: missing ), unterminated subpattern at position 5",
        ),
        (
            "bad_cron",
            "7:11: triggers.0.cron: invalid cron expression '0 9 * *': a cron expression has 5 "
            "fields, '0 9 * *' has 4; write 5 fields: minute hour day month weekday, e.g. '0 9 * * mon'",
        ),
        (
            "bad_timezone",
            "8:15: triggers.0.timezone: unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?); "
            "use an IANA name such as Asia/Shanghai",
        ),
        (
            "two_actions",
            "8:5: steps.0: a step does exactly one thing, this one has 2 actions (send, wait); split it into 2 steps",
        ),
        (
            "duplicate_step_id",
            "13:15: steps.1.if.then.0.id: step id 'greet' is already used by steps.0",
        ),
        (
            "dangling_next",
            "12:51: steps.0.send.buttons.0.0.next: 'next' names step 'rulez', which this SOP does not "
            "have; steps are: greet, wait_first, nudge",
        ),
        (
            "missing_text",
            f"9:17: steps.0.send.template: text key 'onboarding.helo' is in neither this SOP's texts nor {CONTENT}/texts/en.yaml or zh.yaml (did you mean 'onboarding.hello'?); add it under `texts:` in the SOP file or in its .texts.yaml",
        ),
        (
            "undefined_variable",
            f"8:22: steps.0.send.template: text 'broken.unknown_variable' (en, {CONTENT}/texts/en.yaml:12) uses an unknown variable: "
            "'coupon_code' is undefined; texts can use checkin, group, invitee, inviter, leaderboard, live, lottery, member, members, now, review, run, sop, trigger, vars (this SOP's vars: none)",
        ),
    ],
)
def test_invalid_file_gives_one_exact_problem(name: str, expected: str) -> None:
    path = INVALID / f"{name}.yaml"
    assert problems_of(path) == [f"{path}:{expected}"]


def test_references_across_files() -> None:
    folder = FIXTURES / "references"
    assert problems_of(folder) == [
        f"{folder}/second_same_id.yaml:2:5: id: SOP id 'first' is already used by first.yaml; SOP ids must differ",
        f"{folder}/unknown_start.yaml:7:18: steps.0.start.sop: 'sop' names SOP 'frist', which is not in "
        f"{folder} (did you mean 'first'?); SOPs there are: first, unknown_start",
    ]
    sops, problems = load_sops(folder, CONTENT)
    assert list(sops) == ["first"] and sops["first"].file.name == "first.yaml"
    assert len(problems) == 2, "the broken files stay unloaded, the good one loads"


def test_more_schema_messages(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    path.write_text(
        "schema_version: 1\nid: X\nname: ''\ngroups: some\nmode: singel\n"
        "triggers: [{type: joined}]\nsteps:\n  - sned: {}\n  - stop:\n"
    )
    assert problems_of(path) == [
        f"{path}:2:5: id: 'X' is not an id: 2-64 lowercase letters, digits or _, starting with a letter",
        f"{path}:3:7: name: must not be empty",
        f"{path}:4:9: groups: must be 'all' or a mapping with 'ids' and/or 'tags', not 'some'",
        f"{path}:5:7: mode: must be 'single', 'restart', 'queued' or 'parallel', not 'singel' (did you mean 'single'?)",
        f"{path}:6:12: triggers.0: unknown trigger type 'joined' (did you mean 'member_joined'?)",
        f"{path}:8:5: steps.0.sned: unknown key 'sned' (did you mean 'send'?)",
    ]
    path.write_text("")
    assert problems_of(path) == [
        f"{path}:1:1: the file is empty; an SOP needs schema_version, id, name, groups, triggers and steps"
    ]
    path.write_text("schema_version: 1\nid: ab\nid: cd\n")
    assert problems_of(path) == [
        f"{path}:3:1: key 'id' appears twice in this mapping (first on line 2)"
    ]


def test_shipped_sops_pass() -> None:
    assert [str(problem) for problem in check_path(ROOT / "sops", ROOT / "content")] == []
    sops, _ = load_sops(ROOT / "sops", ROOT / "content")
    assert sorted(sops) == [
        "daily_checkin",
        "daily_tip",
        "flood",
        "join_check",
        "live_funnel",
        "live_reminders",
        "onboarding_path",
        "product_launch",
        "reengage_dormant",
        "referral",
        "silent_reactivation",
        "streak_milestone",
        "weekly_leaderboard",
        "weekly_lottery",
        "weekly_review",
        "welcome",
    ]
    for path in sop_files(ROOT / "sops"):  # tiers.yaml beside them is not an SOP
        assert path.read_text().startswith("# yaml-language-server: $schema=schema.json\n")


def test_json_schema_is_up_to_date() -> None:
    committed = (ROOT / "sops" / "schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        "sops/schema.json is out of date: python -m bot.sop.format > sops/schema.json"
    )


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No .env and no settings from the developer's environment; texts from the fixtures."""
    for name in ("BOT_TOKEN", "SOPS_DIR", "LOG_LEVEL", "TIMEZONE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTENT_DIR", str(CONTENT))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_command_ok(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "valid")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "2 SOP files OK\n"


def test_check_command_reports_problems(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "references")]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and out.startswith(
        f"{FIXTURES}/references/second_same_id.yaml:2:5: id: "
    )
    assert err == "2 problems in 2 of 3 SOP files\n"


def test_check_command_defaults_to_sops_dir(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "sops").mkdir()
    (workdir / "sops" / "bad.yaml").write_text("schema_version: 2\n")
    assert main(["check"]) == 1
    out, err = capsys.readouterr()
    assert out == (
        "sops/bad.yaml:1:17: schema_version: 2 is not supported; "
        "this Tidepool reads schema_version 1\n"
    )
    assert err.endswith("in 1 of 1 SOP file\n")
    assert main(["check", "nowhere"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_check_does_not_import_aiogram() -> None:
    code = "import sys, bot.cli, bot.sop.check; assert 'aiogram' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_user_values_are_escaped_and_mentions_stay_links() -> None:
    member = member_context(id=42, first_name="<b>&amp;")
    context = {**SAMPLE_CONTEXT, "member": member, "members": [member]}
    assert render("<b>Hi</b> {{ member.name }}", context) == "<b>Hi</b> &lt;b&gt;&amp;amp;"
    assert (
        render("{{ member.mention }}", context)
        == '<a href="tg://user?id=42">&lt;b&gt;&amp;amp;</a>'
    )
    assert render("{{ members | map(attribute='mention') | join(', ') }}", context) == (
        '<a href="tg://user?id=42">&lt;b&gt;&amp;amp;</a>'
    )
    assert context_names() == {
        "member",
        "members",
        "group",
        "sop",
        "vars",
        "now",
        "trigger",
        "run",
        "checkin",
        "leaderboard",
        "lottery",
        "live",
        "review",
        "inviter",
        "invitee",
    }


def test_schema_round_trips_durations() -> None:
    sops, _ = load_sops(FIXTURES / "valid", CONTENT)
    data = sops["onboarding"].sop.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert data["steps"][0]["send"]["delete_after"] == "1d12h"
    assert Sop.model_validate(data) == sops["onboarding"].sop


def test_check_command_checks_the_rewards_catalogue_too(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    content = workdir / "content"
    shutil.copytree(CONTENT, content)
    monkeypatch.setenv("CONTENT_DIR", str(content))
    (workdir / "sops").mkdir()
    (content / "rewards.yaml").write_text("rewards:\n  - id: mug\n    cots: 5\n")
    assert main(["check"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{content}/rewards.yaml:3:5: ") and "cots" in out
    assert err.startswith("0 SOP files OK\n") and "in " + str(content / "rewards.yaml") in err
    (content / "rewards.yaml").unlink()
    assert main(["check"]) == 0


def test_yaml_words_on_off_yes_no_are_text_and_only_true_false_are_booleans(
    tmp_path: Path,
) -> None:
    from bot.sop.yaml_files import SopLoader

    data = SopLoader("on: 2026-12-24\nflag: yes\nother: off\nreal: true\nfake: False\n")
    assert data.get_single_data() == {
        "on": date(2026, 12, 24),
        "flag": "yes",
        "other": "off",
        "real": True,
        "fake": False,
    }
