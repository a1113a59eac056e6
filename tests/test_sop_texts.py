"""An SOP's own texts (in the file or beside it) and what `tidepool check` says of texts: HTML
Telegram would refuse, lengths, full-width punctuation, and the file and language of a text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.sop.check import check_path, load_sops
from bot.sop.messages import TextCatalogue
from bot.sop.telegram_html import html_problems, visible_length
from bot.texts import Texts

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "tests" / "fixtures" / "sops" / "content"

HEAD = """\
schema_version: 1
id: {id}
name: Keyword reply
groups: all
triggers:
  - type: message
    keywords: [price]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def sop(folder: Path, steps: str, texts: str = "", sop_id: str = "reply") -> Path:
    """An SOP file `<id>.yaml` with these steps (and `texts:`), in `folder`."""
    body = HEAD.format(id=sop_id) + textwrap.dedent(steps)
    if texts:
        body += textwrap.dedent(texts)
    return write(folder, f"{sop_id}.yaml", body)


def problems(path: Path, content: Path = CONTENT) -> list[str]:
    return [str(problem) for problem in check_path(path, content) if not problem.note]


def notes(path: Path, content: Path = CONTENT) -> list[str]:
    return [str(problem) for problem in check_path(path, content) if problem.note]


SEND_ANSWER = """\
steps:
  - id: answer
    send:
      template: answer
"""


# --- Texts beside their SOP ---------------------------------------------------------------------


def test_texts_in_the_sop_file_are_found_and_loaded(tmp_path: Path) -> None:
    path = sop(
        tmp_path,
        SEND_ANSWER,
        """\
        texts:
          zh:
            answer: "{{ member.first_name }}，价格在置顶消息里。"
          en:
            answer: "{{ member.first_name }}, the price is in the pinned message."
        """,
    )
    assert problems(path) == []
    assert notes(path) == []
    loaded, found = load_sops(tmp_path, CONTENT)
    assert found == []
    assert loaded["reply"].texts["zh"]["answer"].endswith("价格在置顶消息里。")


def test_texts_in_a_texts_file_beside_the_sop(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER)
    write(
        tmp_path,
        "reply.texts.yaml",
        """\
        zh:
          answer: 价格在置顶消息里。
        en:
          answer: The price is in the pinned message.
        """,
    )
    assert problems(path) == []
    assert problems(tmp_path) == []  # the texts file is not taken for an SOP file
    loaded, _ = load_sops(tmp_path, CONTENT)
    assert loaded["reply"].texts == {
        "zh": {"answer": "价格在置顶消息里。"},
        "en": {"answer": "The price is in the pinned message."},
    }


def test_new_texts_change_the_sops_digest(tmp_path: Path) -> None:
    sop(tmp_path, SEND_ANSWER)
    texts = write(tmp_path, "reply.texts.yaml", "en:\n  answer: One\n")
    before = load_sops(tmp_path, CONTENT)[0]["reply"].digest
    texts.write_text("en:\n  answer: Two\n", encoding="utf-8")
    assert load_sops(tmp_path, CONTENT)[0]["reply"].digest != before


def test_a_text_written_twice_is_a_problem(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER, "texts:\n  en:\n    answer: One\n")
    texts = write(tmp_path, "reply.texts.yaml", "en:\n  answer: Two\n")
    assert problems(path) == [
        f"{texts}:2:1: en.answer: text 'answer' (en) is also in reply.yaml (line 14); keep one"
    ]
    assert "reply" not in load_sops(tmp_path, CONTENT)[0]


def test_a_text_in_one_language_only_is_a_note_not_a_problem(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER, "texts:\n  zh:\n    answer: 价格在置顶消息里。\n")
    assert problems(path) == []
    assert notes(path) == [
        f"{path}:11:17: steps.0.send.template: note: text 'answer' is written in zh only "
        f"({path}:14): groups in en get it in Chinese too"
    ]
    assert "reply" in load_sops(tmp_path, CONTENT)[0]


def test_a_zh_only_sop_reaches_an_en_group_in_chinese(tmp_path: Path) -> None:
    """As an operator would: `tidepool check` passes (with a note), and `tidepool simulate` in an
    English group shows the Chinese text going out."""
    path = sop(tmp_path, SEND_ANSWER, "texts:\n  zh:\n    answer: 价格在置顶消息里。\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LANGUAGE"))},
        "CONTENT_DIR": str(ROOT / "content"),
        "DATA_DIR": str(tmp_path),
        "TIMEZONE": "Asia/Shanghai",
    }
    checked = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "note: text 'answer' is written in zh only" in checked.stdout
    simulated = subprocess.run(
        [sys.executable, "-m", "bot", "simulate", str(path), "--language", "en"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "价格在置顶消息里。" in simulated.stdout


def test_the_engine_prefers_the_sops_own_text_and_falls_back_across_languages() -> None:
    catalogue = TextCatalogue(
        {"en": {"answer": "global en", "other": "other en"}, "zh": {"answer": "global zh"}},
        "zh",
        {"reply": {"zh": {"answer": "own zh"}}},
    )
    assert catalogue.render("answer", "zh", {}, "reply") == "own zh"
    assert catalogue.render("answer", "en", {}, "reply") == "global en"  # en first, then zh
    assert catalogue.render("answer", "en", {}, "another") == "global en"
    assert catalogue.render("other", "zh", {}, "reply") == "other en"
    assert catalogue.mentions(["answer"], "own", "reply")
    assert not catalogue.mentions(["answer"], "own", "another")


def test_the_bots_texts_in_one_language_serve_every_group(tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "texts").mkdir(parents=True)
    (content / "texts" / "zh.yaml").write_text("a: 中文\nb: 乙\n", encoding="utf-8")
    (content / "texts" / "en.yaml").write_text("a: English\n", encoding="utf-8")
    texts = Texts.load(content)
    assert texts("a", "en") == "English"
    assert texts("b", "en") == "乙"
    with pytest.raises(KeyError):
        texts("c", "en")


def test_the_shipped_bot_texts_exist_in_both_languages() -> None:
    texts = Texts.load(ROOT / "content")
    assert set(texts.catalogues["zh"]) == set(texts.catalogues["en"])


# --- Errors in text files name the file and the language ----------------------------------------


def test_a_broken_catalogue_names_its_file_and_language(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(CONTENT, content)
    zh = content / "texts" / "zh.yaml"
    zh.write_text(zh.read_text(encoding="utf-8") + "bad: [unclosed\n", encoding="utf-8")
    path = sop(tmp_path, SEND_ANSWER, "texts:\n  en:\n    answer: Own\n  zh:\n    answer: 自己\n")
    found = problems(path, content)
    assert len(found) == 1
    assert found[0].startswith(f"{zh}:")
    assert "(zh) invalid YAML" in found[0]
    # An SOP whose texts are its own is still checked (and loads) with the catalogue broken.
    loaded, _ = load_sops(tmp_path, content)
    assert "reply" in loaded


def test_an_sop_that_needs_a_broken_catalogue_says_so(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(CONTENT, content)
    (content / "texts" / "zh.yaml").write_text("onboarding: [\n", encoding="utf-8")
    path = sop(tmp_path, SEND_ANSWER.replace("template: answer", "template: onboarding.rules"))
    found = problems(path, content)
    assert found[-1].endswith(
        f"text 'onboarding.rules' cannot be checked in zh: {content}/texts/zh.yaml cannot be read"
    )


def test_a_broken_texts_file_names_itself(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER)
    texts = write(tmp_path, "reply.texts.yaml", "en:\n  answer: [one\nzh:\n  answer: 二\n")
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{texts}:")
    assert "invalid YAML" in found[0]
    write(tmp_path, "reply.texts.yaml", "fr:\n  answer: Un\nen:\n  answer: One\n")
    assert problems(path) == [
        f"{texts}:1:1: fr: 'fr' is not a language: a texts file has 'zh:' and/or 'en:'"
    ]


def test_a_text_problem_names_the_language_and_where_the_text_is(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER)
    texts = write(
        tmp_path,
        "reply.texts.yaml",
        "zh:\n  answer: 你好\nen:\n  answer: 'Code: {{ coupon }}'\n",
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:11:17: steps.0.send.template: text 'answer' (en, {texts}:4)")
    assert "uses an unknown variable: 'coupon' is undefined" in found


# --- What Telegram would refuse -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I <3 this group", "a bare '<' in \"I <3 this group\""),
        ("Tom & Jerry", "a bare '&' in \"Tom & Jerry\""),
        (
            "line<br>break",
            "Telegram does not allow the tag <br>; for a line break write a new line",
        ),
        ("<b>bold", "<b> is never closed: add </b>"),
        ("<b><i>x</b></i>", "</b> closes a tag that is not open (expected </i>)"),
        ('<a hreff="https://x.org">x</a>', "<a> cannot have hreff"),
        ("<a>x</a>", '<a> needs href="…"'),
    ],
)
def test_html_that_telegram_refuses(text: str, expected: str) -> None:
    assert expected in html_problems(text)[0]


@pytest.mark.parametrize(
    "text",
    [
        "<b>Rules</b> &amp; <i>tips</i>: 3 &lt; 5 &#128512; &#x1F600;",
        '<a href="https://t.me/x?a=1&amp;b=2">link</a>',
        '<span class="tg-spoiler">x</span> <tg-spoiler>y</tg-spoiler>',
        '<pre><code class="language-python">print(1)</code></pre>',
        "<blockquote expandable>quote</blockquote> 5 > 3",
        "价格：99 元（限时）",
    ],
)
def test_html_that_telegram_accepts(text: str) -> None:
    assert html_problems(text) == []


def test_visible_length_counts_what_shows_in_utf16() -> None:
    assert visible_length("<b>ab</b> &amp;") == 4
    assert visible_length("😀") == 2


def test_check_refuses_a_text_telegram_would_refuse(tmp_path: Path) -> None:
    path = sop(
        tmp_path, SEND_ANSWER, "texts:\n  zh:\n    answer: 爱你 <3\n  en:\n    answer: Love\n"
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:11:17: steps.0.send.template: text 'answer' (zh, {path}:")
    assert "Telegram would refuse it: a bare '<'" in found
    assert "write &lt;" in found


def test_check_refuses_a_bare_ampersand(tmp_path: Path) -> None:
    path = sop(tmp_path, SEND_ANSWER, "texts:\n  en:\n    answer: Q&A at 8\n")
    (found,) = problems(path)
    assert "a bare '&' in \"Q&A at 8\"" in found and "write &amp;" in found


def test_values_from_members_are_escaped_so_they_never_break_the_html(tmp_path: Path) -> None:
    path = sop(
        tmp_path,
        SEND_ANSWER,
        'texts:\n  en:\n    answer: "<b>{{ member.name }}</b> & {{ group.title }}"\n',
    )
    assert "a bare '&'" in problems(path)[0]  # the literal '&' only, not the escaped values
    path = sop(
        tmp_path,
        SEND_ANSWER,
        'texts:\n  en:\n    answer: "<b>{{ member.name }}</b> &amp; {{ group.title }}"\n',
    )
    assert problems(path) == []


def test_a_message_over_4096_characters(tmp_path: Path) -> None:
    long = "x" * 4090
    path = sop(
        tmp_path, SEND_ANSWER, f"texts:\n  en:\n    answer: '{long} {{{{ group.title }}}}'\n"
    )
    (found,) = problems(path)
    assert "is 4107 characters with sample values; Telegram allows 4096 in a message" in found


def test_a_caption_over_1024_characters(tmp_path: Path) -> None:
    (tmp_path / "content").mkdir()
    shutil.copytree(CONTENT / "texts", tmp_path / "content" / "texts")
    (tmp_path / "content" / "poster.png").write_bytes(b"\x89PNG")
    steps = SEND_ANSWER.replace("template: answer", "template: answer\n      photo: poster.png")
    path = sop(tmp_path, steps, f"texts:\n  en:\n    answer: '{'y' * 1025}'\n")
    (found,) = problems(path, tmp_path / "content")
    assert "is 1025 characters with sample values; Telegram allows 1024 in a photo's caption" in (
        found
    )


def test_a_button_label_is_plain_text(tmp_path: Path) -> None:
    steps = """\
    steps:
      - id: answer
        send:
          template: answer
          buttons:
            - - text: more
                next: more
      - id: more
        send:
          template: answer
    """
    path = sop(tmp_path, steps, "texts:\n  en:\n    answer: Hi\n    more: <b>More</b>\n")
    (found,) = problems(path)
    assert "steps.0.send.buttons.0.0.text: text 'more' (en" in found
    assert "a button shows its text as written, without HTML" in found


def test_callback_data_over_64_bytes(tmp_path: Path) -> None:
    step_id = "a" * 60
    steps = f"""\
    steps:
      - id: answer
        send:
          template: answer
          buttons:
            - - text: answer
                next: {step_id}
      - id: {step_id}
        send:
          template: answer
    """
    path = sop(tmp_path, steps, "texts:\n  en:\n    answer: Hi\n")
    (found,) = problems(path)
    assert "steps.0.send.buttons.0.0.next: button data" in found
    assert "is longer than Telegram's 64 bytes" in found


# --- Full-width punctuation ---------------------------------------------------------------------


def test_a_full_width_colon_after_a_key_is_pointed_at(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reply.yaml",
        """\
        schema_version: 1
        id: reply
        name：Keyword reply
        groups: all
        """,
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:3:5: invalid YAML")
    assert "this line has a full-width '：', which YAML does not read: type ':' followed" in found


def test_a_full_width_space_in_the_indentation_is_pointed_at(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reply.yaml",
        HEAD.format(id="reply") + "steps:\n  - id: answer\n　  send:\n      template: answer\n",
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:10:1: ")
    assert "full-width space (U+3000)" in found and "type ASCII spaces instead" in found


def test_a_full_width_comma_in_a_flow_list_is_pointed_at(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reply.yaml",
        "schema_version: 1\nid: reply\ntriggers: [{type: message， keywords: [a]}\nname: x\n",
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:3:")
    assert "full-width '，'" in found


def test_chinese_punctuation_inside_texts_is_fine(tmp_path: Path) -> None:
    path = sop(
        tmp_path,
        SEND_ANSWER,
        "texts:\n  zh:\n    answer: 价格：99 元（限时），欢迎咨询\n  en:\n    answer: Hi\n",
    )
    assert problems(path) == []


def test_a_keyword_with_a_full_width_comma_gets_a_note(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "reply.yaml",
        HEAD.format(id="reply").replace("[price]", "[价格，多少钱]")
        + SEND_ANSWER
        + "texts:\n  zh:\n    answer: 在置顶\n",
    )
    assert problems(path) == []
    assert notes(path)[0] == (
        f"{path}:7:16: triggers.0.keywords.0: note: keyword '价格，多少钱' has a full-width comma, "
        "so it matches only that whole text; for several keywords write [价格, 多少钱]"
    )


def test_checking_a_texts_file_alone_says_to_check_its_sop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    texts = write(tmp_path, "reply.texts.yaml", "en:\n  answer: One\n")
    assert main(["check", str(texts)]) == 2
    assert "holds an SOP's texts: check the SOP file or its folder" in capsys.readouterr().err
