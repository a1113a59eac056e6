"""The moderation keys of the SOP format: steps, the `flood` trigger, `checks`, `approved`,
`join_gate` and `only: member` buttons; what loads, and the exact problems `tidepool check`
reports for what does not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiogram.types import ChatPermissions

from bot.sop.check import check_path, load_sops
from bot.sop.format import (
    PERMISSIONS,
    BanStep,
    DeleteStep,
    FloodTrigger,
    KickStep,
    MemberCondition,
    MessageTrigger,
    MuteStep,
    RestrictStep,
    SendStep,
    Sop,
    UnrestrictStep,
    WarnStep,
)
from bot.sop.messages import CALLBACK_LIMIT, LONGEST_USER_ID, button_data, parse_button

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "tests" / "fixtures" / "sops" / "content"

HEAD = """\
schema_version: 1
id: modsop
name: Moderation
groups: all
"""
TEXTS = """\
texts:
  en:
    t:
      hi: "Hello {{ member.name }}"
      press: "Press"
  zh:
    t:
      hi: "你好 {{ member.name }}"
      press: "按"
"""


def write(tmp_path: Path, body: str, *, head: str = HEAD) -> Path:
    path = tmp_path / "modsop.yaml"
    path.write_text(head + body + TEXTS)
    return path


def problems(path: Path) -> list[str]:
    """The problems, each without the file name: `line:column: key path: message`."""
    return [str(problem).removeprefix(f"{path}:") for problem in check_path(path, CONTENT)]


def loaded(path: Path) -> Sop:
    sops, found = load_sops(path.parent, CONTENT)
    assert found == [], [str(problem) for problem in found]
    return sops["modsop"].sop


# -- steps ---------------------------------------------------------------------------------------


def test_every_moderation_step_loads_with_its_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
triggers:
  - type: message
    keywords: [buy now]
steps:
  - restrict:
      permissions: {can_send_messages: true, can_send_photos: false}
      for: 1h
      reason: newcomer
  - restrict:
  - unrestrict: {reason: ok}
  - mute: {for: 10m, reason: flood}
  - kick:
  - ban: {for: 7d, reason: spam}
  - ban: {}
  - delete: {reason: spam}
  - id: hello
    send: {template: t.hi}
  - delete: {step: hello}
  - warn: {reason: no ads}
""",
    )
    assert problems(path) == []
    steps = loaded(path).steps
    assert [step.action for step in steps] == [
        "restrict",
        "restrict",
        "unrestrict",
        "mute",
        "kick",
        "ban",
        "ban",
        "delete",
        "send",
        "delete",
        "warn",
    ]
    assert isinstance(steps[2], UnrestrictStep) and isinstance(steps[4], KickStep)
    assert isinstance(steps[10], WarnStep) and steps[10].warn.reason == "no ads"
    first, bare = steps[0], steps[1]
    assert isinstance(first, RestrictStep) and isinstance(bare, RestrictStep)
    assert first.restrict.permissions == {"can_send_messages": True, "can_send_photos": False}
    assert first.restrict.for_ == timedelta(hours=1) and first.restrict.reason == "newcomer"
    assert bare.restrict.permissions is None and bare.restrict.for_ is None, "nothing, for good"
    mute, ban, forever = steps[3], steps[5], steps[6]
    assert isinstance(mute, MuteStep) and mute.mute.for_ == timedelta(minutes=10)
    assert isinstance(ban, BanStep) and ban.ban.for_ == timedelta(days=7)
    assert isinstance(forever, BanStep) and forever.ban.for_ is None
    delete_trigger, delete_sent = steps[7], steps[9]
    assert isinstance(delete_trigger, DeleteStep) and delete_trigger.delete.step is None
    assert isinstance(delete_sent, DeleteStep) and delete_sent.delete.step == "hello"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "  - mute: {reason: flood}\n",
            "12:11: steps.0.mute.for: missing required key 'for'",
        ),
        (
            "  - mute: {for: 10s}\n",
            "12:17: steps.0.mute.for: must be from 30s to 366d (Telegram takes a shorter or "
            "longer one as for good; leave 'for' out for good)",
        ),
        (
            "  - ban: {for: 400d}\n",
            "12:16: steps.0.ban.for: must be from 30s to 366d (Telegram takes a shorter or "
            "longer one as for good; leave 'for' out for good)",
        ),
        (
            "  - restrict: {permissions: {can_send_message: true}}\n",
            "12:30: steps.0.restrict.permissions.can_send_message: must be 'can_send_messages', "
            "'can_send_audios', 'can_send_documents', 'can_send_photos', 'can_send_videos', "
            "'can_send_video_notes', 'can_send_voice_notes', 'can_send_polls', "
            "'can_send_other_messages', 'can_add_web_page_previews', 'can_react_to_messages', "
            "'can_edit_tag', 'can_change_info', 'can_invite_users', 'can_pin_messages' or "
            "'can_manage_topics', not 'can_send_message' (did you mean 'can_send_messages'?)",
        ),
        (
            "  - kick: {resaon: spam}\n",
            "12:12: steps.0.kick.resaon: unknown key 'resaon' (did you mean 'reason'?)",
        ),
        (
            "  - warn: {reason: [a, b]}\n",
            "12:20: steps.0.warn.reason: must be text, not a list",
        ),
    ],
)
def test_a_bad_moderation_step_gives_one_exact_problem(
    tmp_path: Path, steps: str, expected: str
) -> None:
    path = write(
        tmp_path,
        "triggers:\n  - type: message\n    keywords: [spam]\nsteps:\n" + steps,
        head=HEAD + "description: moderation steps\nmode: single\nconcurrency_key: member\n",
    )
    assert problems(path) == [expected]


def test_delete_names_a_send_step_to_the_group_or_has_a_message_to_delete(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
triggers:
  - type: member_joined
steps:
  - id: private
    send: {template: t.hi, to: member}
  - id: tag_it
    tag: {add: [x]}
  - delete: {step: privat}
  - delete: {step: private}
  - delete: {step: tag_it}
  - delete: {}
""",
    )
    assert problems(path) == [
        "12:20: steps.2.delete.step: 'step' names step 'privat', which this SOP does not "
        "have; steps are: private, tag_it",
        "13:20: steps.3.delete.step: 'step' must name a send step of this SOP that sends to "
        "the group; 'private' is a send step sending to member",
        "14:20: steps.4.delete.step: 'step' must name a send step of this SOP that sends to "
        "the group; 'tag_it' is a tag step",
        "15:13: steps.5.delete: 'delete' without 'step' deletes the message that started the "
        "run, but this SOP's triggers (member_joined) start runs without one: name a send "
        "step of this SOP with 'step'",
    ]


def test_permissions_are_telegrams() -> None:
    assert set(PERMISSIONS) == set(ChatPermissions.model_fields)


# -- triggers ------------------------------------------------------------------------------------


def test_a_flood_trigger_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "triggers:\n  - type: flood\n    messages: 8\n    within: 10s\n"
        "steps:\n  - mute: {for: 10m}\n",
    )
    assert problems(path) == []
    (trigger,) = loaded(path).triggers
    assert isinstance(trigger, FloodTrigger)
    assert (trigger.messages, trigger.within) == (8, timedelta(seconds=10))


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("    within: 10s\n", "6:5: triggers.0.messages: missing required key 'messages'"),
        ("    messages: 8\n", "6:5: triggers.0.within: missing required key 'within'"),
        (
            "    messages: 1\n    within: 10s\n",
            "7:15: triggers.0.messages: must be at least 2, not 1",
        ),
        (
            "    messages: 8\n    within: 1h\n",
            "6:5: triggers.0: 'within' must be at most 10m: a longer burst is a busy member",
        ),
        (
            "    messages: 8\n    within: 10 seconds\n",
            "8:13: triggers.0.within: '10 seconds' is not a duration; write it like 30s, 10m, "
            "24h, 3d or 1d12h",
        ),
    ],
)
def test_a_bad_flood_trigger_gives_one_exact_problem(
    tmp_path: Path, trigger: str, expected: str
) -> None:
    path = write(
        tmp_path, "triggers:\n  - type: flood\n" + trigger + "steps:\n  - mute: {for: 10m}\n"
    )
    assert problems(path) == [expected]


def test_a_message_trigger_may_ask_for_the_checks_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
triggers:
  - type: message
    checks: {spam: true}
  - type: message
    checks: {fired: [links, stop_words]}
  - type: message
    keywords: [http]
    checks: {spam: false}
steps:
  - delete: {}
""",
    )
    assert problems(path) == []
    spam, fired, both = loaded(path).triggers
    assert isinstance(spam, MessageTrigger) and spam.checks is not None
    assert spam.checks.spam is True and spam.checks.fired is None
    assert isinstance(fired, MessageTrigger) and fired.checks is not None
    assert fired.checks.fired == ["links", "stop_words"]
    assert isinstance(both, MessageTrigger) and both.keywords == ["http"]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("    checks: {}\n", "7:13: triggers.0.checks: needs one of 'spam' or 'fired'"),
        (
            "    checks: {spam: true, fired: [links]}\n",
            "7:13: triggers.0.checks: use only one of 'spam' or 'fired', not 'spam' and 'fired'",
        ),
        ("    checks: {fired: []}\n", "7:21: triggers.0.checks.fired: needs at least 1 item"),
        (
            "    checks: {fired: [link]}\n",
            "7:22: triggers.0.checks.fired.0: must be 'links', 'channel_forward', "
            "'chat_mentions', 'emoji', 'stop_words', 'spam_sample' or 'mixed_alphabet', not "
            "'link' (did you mean 'links'?)",
        ),
        (
            "    case_sensitive: true\n",
            "6:5: triggers.0: needs at least one of 'keywords', 'regex'",
        ),
    ],
)
def test_bad_checks_give_one_exact_problem(tmp_path: Path, trigger: str, expected: str) -> None:
    path = write(tmp_path, "triggers:\n  - type: message\n" + trigger + "steps:\n  - delete: {}\n")
    assert problems(path) == [expected]


# -- conditions, join_gate, buttons ---------------------------------------------------------------


def test_approved_is_a_member_condition(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "triggers:\n  - type: member_joined\nconditions:\n  - type: member\n    approved: false\n"
        "steps:\n  - kick: {}\n",
    )
    assert problems(path) == []
    (condition,) = loaded(path).conditions
    assert isinstance(condition, MemberCondition) and condition.approved is False
    path.write_text(
        HEAD + "triggers:\n  - type: member_joined\nconditions:\n  - type: member\n"
        "    approved: maybe\nsteps:\n  - kick: {}\n"
    )
    assert problems(path) == ["9:15: conditions.0.approved: must be true or false, not 'maybe'"]


GATE = """\
triggers:
  - type: member_joined
    batch_window: null
steps:
  - restrict: {}
  - id: prompt
    send:
      template: t.hi
      buttons: [[{text: t.press, next: passed, only: member}]]
  - wait: {for: 5m}
  - kick: {}
  - stop: {}
  - id: passed
    unrestrict: {}
"""


def test_a_join_gate_with_a_button_only_its_member_may_press_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GATE, head=HEAD + "join_gate: true\n")
    assert problems(path) == []
    sop = loaded(path)
    assert sop.join_gate is True
    prompt = sop.steps[1]
    assert isinstance(prompt, SendStep) and prompt.send.buttons[0][0].only == "member"


@pytest.mark.parametrize(
    ("head", "body", "expected"),
    [
        (
            "join_gate: true\n",
            GATE.replace("    batch_window: null\n", ""),
            "5:12: join_gate: a join_gate SOP checks each joiner alone: give its member_joined "
            "trigger batch_window: null",
        ),
        (
            "join_gate: true\n",
            GATE.replace(
                "type: member_joined\n    batch_window: null", "type: command\n    command: x"
            ),
            "5:12: join_gate: a join_gate SOP needs a member_joined trigger: it checks joiners",
        ),
        (
            "join_gate: true\nconcurrency_key: group\n",
            GATE,
            "5:12: join_gate: a join_gate SOP runs per member: concurrency_key must be member",
        ),
        (
            "join_gate: 2\n",
            GATE,
            "5:12: join_gate: must be true or false, not 2",
        ),
        (
            "",
            GATE.replace("next: passed, only: member", "data: go, only: member"),
            "13:18: steps.1.send.buttons.0.0: 'only' goes with 'next': only a flow button knows "
            "its member",
        ),
        (
            "",
            GATE.replace("only: member", "only: admins"),
            "13:54: steps.1.send.buttons.0.0.only: must be 'member', not 'admins'",
        ),
        (
            "",
            GATE.replace("template: t.hi\n", "template: t.hi\n      to: member\n"),
            "12:7: steps.1.send: 'only: member' buttons are for messages to the group",
        ),
    ],
)
def test_bad_gates_and_buttons_give_one_exact_problem(
    tmp_path: Path, head: str, body: str, expected: str
) -> None:
    path = write(tmp_path, body, head=HEAD + head)
    assert problems(path) == [expected]


def test_a_button_for_one_member_carries_their_id_within_telegrams_limit() -> None:
    data = button_data("join_check", "passed", 123456789)
    assert data == "s:join_check:passed:123456789"
    assert parse_button(data) == ("join_check", "passed", 123456789)
    assert parse_button("s:join_check:passed") == ("join_check", "passed", None)
    assert parse_button("s:join_check:passed:x") is None
    longest = button_data("j" * 20, "p" * 20, LONGEST_USER_ID)
    assert len(longest.encode()) <= CALLBACK_LIMIT


def test_check_sizes_an_only_member_buttons_data_for_the_longest_user_id(tmp_path: Path) -> None:
    sop_id, step_id = "a_long_sop_identifier_for_gate", "passed_the_check"  # 49 bytes of data
    head = HEAD.replace("id: modsop", f"id: {sop_id}")
    body = GATE.replace("id: passed", f"id: {step_id}").replace(
        "next: passed,", f"next: {step_id},"
    )
    path = tmp_path / "gate.yaml"
    path.write_text(head + body.replace(", only: member", "") + TEXTS)
    assert check_path(path, CONTENT) == []
    path.write_text(head + body + TEXTS)
    assert [str(problem).removeprefix(f"{path}:") for problem in check_path(path, CONTENT)] == [
        f"13:40: steps.1.send.buttons.0.0.next: button data 's:{sop_id}:{step_id}:"
        f"{LONGEST_USER_ID}' (with the member's id: only they may press it) is longer than "
        "Telegram's 64 bytes; shorten the SOP id or the step id"
    ]
