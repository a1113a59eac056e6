"""The documentation: both languages build with --strict, have the same pages, and the first-SOP
guide's own files pass `tidepool check` and `tidepool simulate` as an operator would run them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.sop import reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LANGUAGES = reference.LANGUAGES
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)


def pages(language: str) -> set[str]:
    return {path.name.removesuffix(f".{language}.md") for path in DOCS.glob(f"*.{language}.md")}


def blocks(markdown: str) -> list[tuple[str, str, str]]:
    """(language, title, body) of every fenced code block."""
    found = []
    for match in FENCE.finditer(markdown):
        info = match["info"].strip()
        title = re.search(r'title="([^"]*)"', info)
        found.append((info.split(" ")[0], title[1] if title else "", match["body"]))
    return found


def headings(markdown: str) -> list[str]:
    """The heading levels of a page, outside code blocks: its shape."""
    text = FENCE.sub("", markdown)
    return [line.split(" ")[0] for line in text.splitlines() if re.match(r"^#{1,6} ", line)]


def test_both_languages_have_the_same_pages_and_the_nav_lists_them_all() -> None:
    assert pages("zh") == pages("en")
    loader = yaml.SafeLoader
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=loader)
    assert {entry.removesuffix(".md") for entry in config["nav"]} == pages("zh")


@pytest.mark.parametrize("page", sorted(pages("en")))
def test_a_page_has_the_same_headings_in_both_languages(page: str) -> None:
    shapes = {
        language: headings((DOCS / f"{page}.{language}.md").read_text(encoding="utf-8"))
        for language in LANGUAGES
    }
    assert shapes["zh"] == shapes["en"]


def test_the_reference_describes_every_field_variable_and_event() -> None:
    descriptions = yaml.safe_load((DOCS / "reference.yaml").read_text(encoding="utf-8"))

    assert reference.problems(descriptions) == []
    for language in LANGUAGES:
        page = reference.reference_markdown(descriptions, language)
        for section, entries in reference.sections():
            assert f"{{#{section}}}" in page
            for entry in entries:
                assert entry.anchor in page
        for path in reference.variable_paths():
            assert f"| `{path}` |" in page


def test_a_new_field_without_descriptions_is_reported() -> None:
    descriptions = yaml.safe_load((DOCS / "reference.yaml").read_text(encoding="utf-8"))
    del descriptions["models"]["SendAction"]["fields"]["reply"]
    descriptions["models"]["WaitAction"]["examples"] = ["- wait: {for: 2d}"]
    descriptions["variables"]["member.tier"] = {"en": "Their tier."}

    assert reference.problems(descriptions) == [
        "models.SendAction.fields.reply: no zh/en",
        "models.WaitAction: no example uses 'until'",
        "models.WaitAction: no example uses 'event'",
        "models.WaitAction: no example uses 'timeout'",
        "variables.member.tier: no zh",
    ]


def test_the_docs_build_with_strict_and_need_no_other_host(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    for page in pages("en"):
        assert (site / f"{page}.html").is_file()
        assert (site / "en" / f"{page}.html").is_file()
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        loaded = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="(https?:)?//', text)
        assert loaded == [], f"{html} loads something from another host"
    reference_page = (site / "reference.html").read_text(encoding="utf-8")
    assert 'id="step-send"' in reference_page and 'id="variables"' in reference_page


# --- The first-SOP guide ------------------------------------------------------------------------


def guide(language: str) -> list[tuple[str, str, str]]:
    return blocks((DOCS / f"first-sop.{language}.md").read_text(encoding="utf-8"))


def tidepool(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BOT_", "DATABASE_", "SOPS_", "LOG_", "CLOCK_"))
    }
    env.update(CONTENT_DIR=str(ROOT / "content"), TIMEZONE="Asia/Shanghai", LANGUAGE="zh")
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def commands(language: str) -> list[list[str]]:
    """The `tidepool check` and `tidepool simulate` lines of the guide's shell blocks."""
    found = []
    for kind, _, body in guide(language):
        if kind != "sh":
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["tidepool"] and words[1] in ("check", "simulate"):
                found.append(words[1:])
    return found


@pytest.fixture(params=LANGUAGES)
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """The guide's files, written where it says, in a fresh folder."""
    language = str(request.param)
    files = [(title, body) for kind, title, body in guide(language) if kind == "yaml" and title]
    assert files, 'the guide has no file blocks (```yaml title="sops/...")'
    for title, body in files:
        path = tmp_path / title
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return language, tmp_path


def test_the_guides_files_pass_check_and_its_commands_run(written: tuple[str, Path]) -> None:
    language, folder = written
    ran = commands(language)
    assert [args[0] for args in ran] == ["check", "simulate"]

    for args in ran:
        done = tidepool(args, folder)
        assert done.returncode == 0, f"tidepool {shlex.join(args)}:\n{done.stdout}{done.stderr}"
        if args[0] == "simulate":
            out = done.stdout
            # What the guide says to look for: the reply, the tag, the refused start, the
            # reply the next day, the follow-up two days after the press.
            assert re.search(r"^\+0s .*intro → group", out, re.M), out
            assert re.search(r"^\+10m .*\+course_interested", out, re.M), out
            assert re.search(r"^\+3h .*cooldown", out, re.M), out
            assert re.search(r"^\+1d .*intro → group", out, re.M), out
            assert re.search(r"^\+2d10m .*follow_up → group", out, re.M), out


def test_the_guides_mistake_gives_the_message_it_shows(written: tuple[str, Path]) -> None:
    language, folder = written
    (diff,) = [body for kind, title, body in guide(language) if kind == "diff"]
    (shown,) = [body for kind, title, body in guide(language) if title == "tidepool check"]
    wrong = [line[1:] for line in diff.splitlines() if line.startswith("-")]
    right = [line[1:] for line in diff.splitlines() if line.startswith("+")]
    sop = next(folder.glob("sops/*.yaml"))
    text = sop.read_text(encoding="utf-8")
    assert text.count(wrong[0]) == 1
    sop.write_text(text.replace(wrong[0], right[0]), encoding="utf-8")

    done = tidepool(["check", str(sop.relative_to(folder))], folder)

    assert done.returncode == 1
    for line in shown.strip().splitlines():
        assert line in done.stdout.splitlines(), done.stdout
