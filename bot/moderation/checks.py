"""The plain checks of a newcomer's first messages (after umputun/tg-spam): each says spam or not
with a short fact for the admins, and a text like one an admin called "not spam" passes.

No check treats Chinese as suspicious by itself: text is compared after NFKC (full-width ＶＸ is
VX), casefolding and removing invisible characters, and CJK next to Latin is ordinary writing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.moderation.samples import CJK, Samples, fold, folded_shingles, plain
from bot.settings import SettingsError

__all__ = [
    "CHECKS",
    "Checks",
    "Judgement",
    "Limits",
    "Post",
    "Samples",
    "Verdict",
    "load_checks",
]

CHECKS = (
    "links",
    "channel_forward",
    "chat_mentions",
    "emoji",
    "stop_words",
    "spam_sample",
    "mixed_alphabet",
)


@dataclass(frozen=True, slots=True)
class Post:
    """What the checks see of a message."""

    text: str  # the text or the caption ("" for none)
    # links Telegram marked that the text does not show (text_link entities, url buttons)
    links: int = 0
    from_channel: bool = False  # forwarded from a channel, or posted as a channel
    # whether @name (lower case, no @) is a member of this group; None: unknown
    mentions_known: Callable[[str], bool] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str  # one of CHECKS (or a check of an older version, when read back)
    spam: bool
    detail: str  # a short fact, e.g. "2 links"; "" when nothing was found


@dataclass(frozen=True, slots=True)
class Judgement:
    """Every check's verdict on one message, as stored and shown to the admins."""

    verdicts: tuple[Verdict, ...]
    # the text is like a not-spam sample: it passes whatever fired. Only looked up when a check
    # fired, so a text that passes anyway says False.
    known_good: bool = False

    @property
    def spam(self) -> bool:
        return not self.known_good and any(v.spam for v in self.verdicts)

    @property
    def fired(self) -> list[str]:
        """The checks that said spam (known_good or not)."""
        return [v.check for v in self.verdicts if v.spam]

    def as_json(self) -> dict[str, Any]:
        return {
            "spam": self.spam,
            "known_good": self.known_good,
            "verdicts": [
                {"check": v.check, "spam": v.spam, "detail": v.detail} for v in self.verdicts
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Judgement:
        """The judgement `as_json` stored; `spam` is worked out again, not read."""
        verdicts = tuple(
            Verdict(str(v["check"]), bool(v["spam"]), str(v.get("detail", "")))
            for v in data.get("verdicts", ())
        )
        return cls(verdicts, bool(data.get("known_good", False)))


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of each thing a newcomer's first messages may hold before they are spam."""

    links: int = 1  # this many links or more is spam; 0: links are never spam
    # more emoji than this is spam, when they are also `emoji_share` of the characters or more
    # (a long post may carry a few more)
    emoji: int = 6
    emoji_share: float = 0.03
    spam_similarity: float = 0.6  # this like a spam sample or more is spam (0..1)
    known_good_similarity: float = 0.9  # this like a not-spam sample or more passes (0..1)
    # a text that weighs less, with greetings and thanks left out, never counts toward approval;
    # a CJK character weighs 2 (about what two Latin letters say), anything else 1
    substantive_chars: int = 6


# --- links -------------------------------------------------------------------------------------
# Top-level domains spam uses that are not English words, file extensions or framework names: a
# bare "example.com" is a link. Those that are ("later.me", "go.to", "main.py" are not) count
# only with a path after them ("t.co/x", "bit.ly/x" count either way).
_TLDS = (
    "com|net|org|info|biz|io|ly|cc|gl|gg|tk|ml|ga|cf|ws|su|pw|cn|hk|tw|jp|kr|ru|uk|de|"
    "xyz|top|vip|club|site|online|shop|store|link|click|buzz|icu|cyou|bet|loan|website"
)
_TLDS_WITH_PATH = "co|me|to|us|tv|in|it|is|so|la|be|im|gd|ai|app|dev|live|fun|win|work|space"
_LINK = re.compile(
    r"https?://\S+|tg://\S+|(?<![a-z0-9@._/-])www\.\S+"
    r"|(?<![a-z0-9@._/-])(?!asp\.net(?![a-z0-9]))(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    rf"(?:(?:{_TLDS})(?![a-z0-9-])(?:/\S*)?|(?:{_TLDS_WITH_PATH})/\S*)"
)

# --- chat mentions -----------------------------------------------------------------------------
_CHAT_LINK = re.compile(
    r"(?<![a-z0-9._-])(?:https?://)?(?:www\.)?(?:t|telegram)\.(?:me|dog)/"
    r"(\+?[a-z0-9_-]+(?:/[a-z0-9_-]+)?)"
    r"|(tg://(?:resolve|join|openmessage)\?[^\s&]+)",
    re.IGNORECASE,  # matched on the text as written: an invite's hash is case-sensitive
)
# Telegram usernames: a letter, then letters, digits and underscores, 5 to 32 in all (some
# collectible ones are 4). Not part of an e-mail address or a longer word.
_MENTION = re.compile(r"(?<![a-z0-9_@.])@([a-z][a-z0-9_]{3,31})(?![a-z0-9_])", re.IGNORECASE)

# --- emoji -------------------------------------------------------------------------------------
# One emoji as a reader sees it: a pictograph with its skin tone, variation selector or keycap,
# joined by ZWJ into a family or profession; a flag of two regional indicators; a keycap digit; or
# a symbol such as © or ↩ only when a variation selector asks for its emoji form.
_PICTOGRAPH = (
    "\u231a\u231b\u23e9-\u23f3\u23f8-\u23fa\u2600-\u27bf\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55"
    "\U0001f000-\U0001f1e5\U0001f200-\U0001faff"
)
_TEXT_SYMBOL = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u2934\u2935\u25aa\u25ab"
    "\u25b6\u25c0\u25fb-\u25fe\u3030\u303d\u3297\u3299"
)
_MODIFIER = "\U0001f3fb-\U0001f3ff\ufe0f\u20e3\U000e0020-\U000e007f"
_ONE_EMOJI = f"(?:[{_PICTOGRAPH}]|[{_TEXT_SYMBOL}]\ufe0f)[{_MODIFIER}]*"
_EMOJI = re.compile(
    f"[\U0001f1e6-\U0001f1ff]{{2}}|[0-9#*]\ufe0f?\u20e3|{_ONE_EMOJI}(?:\u200d{_ONE_EMOJI})*"
)

# --- stop words --------------------------------------------------------------------------------
# What a spammer puts between characters so that "加微信" is not found: spaces, dots, dashes,
# stars, emoji. Removed next to a CJK character only, so English words stay apart. Sentence
# punctuation (，。) stays: "参加，微信群" is two sentences.
_FILLER = "\\s*.·•・_\\-~|/\\\\+\ufe0f\u2600-\u27bf\U0001f000-\U0001faff"
_SQUEEZE = re.compile(f"(?<=[{CJK}])[{_FILLER}]+|[{_FILLER}]+(?=[{CJK}])")
_LATIN_END = re.compile(r"[a-z0-9]")

# --- mixed alphabets ---------------------------------------------------------------------------
# Greek letters that pass for Latin ones. Others (λ, Δ, μ, Ω) are science, not disguise: "5μm",
# "Δt" and "10kΩ" are ordinary.
_GREEK_LOOKALIKE = "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαινορυ"
_SCRIPTS = (
    ("Latin", re.compile("[a-zA-Z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")),
    ("Cyrillic", re.compile("[\u0400-\u052f]")),
    ("Greek", re.compile(f"[{_GREEK_LOOKALIKE}]")),
)
_LOOKALIKE = re.compile(f"[\u0400-\u052f{_GREEK_LOOKALIKE}]")
_WORD = re.compile(r"\w+")

# --- substance ---------------------------------------------------------------------------------
# Words that greet, thank, agree or laugh; a text of nothing else is not yet taking part.
_SMALL_TALK = re.compile(
    r"\b(?:hi+|hello+|helo|hey+|heya|hiya|yo|sup|howdy|greetings|good|morning|afternoon|evening"
    r"|night|gm|gn|thanks?|thank|thx|ty|tks|tnx|so|very|much|ok|okay|okey|k+|yes|yeah|yep|yup|no"
    r"|nope|sure|lol|lmao|rofl|(?:ha)+h?|(?:he)+|(?:hi){2,}|cool|nice|great|wow|welcome|everyone"
    r"|everybody|all|guys|folks|friends|there|bye|cheers|you|u|how are|what s up|whats up)\b"
    r"|大家好|大家|各位|你们好|你好|您好|嗨|哈喽|哈啰|早上好|早安|中午好|下午好|晚上好|晚安|早"
    r"|谢谢|感谢|多谢|谢啦|好的|好滴|收到|明白|了解|欢迎|新人|报到|报道|冒泡|来了|我是|打卡|签到"
    r"|赞|顶|支持|厉害|牛|[了啦呀啊哈呵嘿嘻哇嗯哦噢喔吧呢么吗的]",
    re.ASCII,
)
_NOT_LETTER = re.compile(r"[\W\d_]+")
_CJK_CHAR = re.compile(f"[{CJK}]")


class Checks:
    """The checks with their stop words, spam samples and not-spam samples. `not_spam` grows
    while the bot runs: an admin's "Not spam" adds the text to it."""

    def __init__(
        self,
        *,
        stop_words: Iterable[str],
        spam: Samples,
        not_spam: Samples,
        limits: Limits = Limits(),
    ) -> None:
        self.spam = spam
        self.not_spam = not_spam
        self.limits = limits
        # One of each (USDT is in both shipped lists), as first written, for the admins to read.
        words: dict[str, tuple[str, re.Pattern[str] | None]] = {}
        for word in stop_words:
            part, whole = _stop_word(word)
            if part:
                words.setdefault(part, (word.strip(), whole))
        self.stop_words = [word for word, _ in words.values()]
        self._stop_words = [(part, whole) for part, (_, whole) in words.items()]

    def judge(self, post: Post) -> Judgement:
        readable = plain(post.text)
        folded = readable.casefold()
        found = folded_shingles(folded)
        verdicts = (
            self._links(folded, post.links),
            Verdict(
                "channel_forward", post.from_channel, "from a channel" if post.from_channel else ""
            ),
            self._chat_mentions(readable, folded, post.mentions_known),
            self._emoji(post.text),
            self._stop_words_in(folded),
            self._spam_sample(found),
            _mixed_alphabet(readable),
        )
        known_good = False
        if any(v.spam for v in verdicts) and self.not_spam and not post.links:
            enough = self.limits.known_good_similarity
            similarity, sample = self.not_spam.best_of(found, at_least=enough)
            # A sample with a link of the spammer's added is still 95% alike: it must not pass.
            known_good = (
                similarity >= enough
                and sample is not None
                and set(_LINK.findall(folded)) <= set(_LINK.findall(plain(sample).casefold()))
                and _chat_links(readable) <= _chat_links(plain(sample))
            )
        return Judgement(verdicts, known_good)

    def substantive(self, text: str) -> bool:
        """Whether `text` says something beyond hello, thanks or a laugh, so that it counts
        toward a newcomer's approval. Emoji, stickers ("") and punctuation say nothing."""
        words = _NOT_LETTER.sub(" ", fold(text))
        rest = "".join(_SMALL_TALK.sub(" ", words).split())
        return len(rest) + len(_CJK_CHAR.findall(rest)) >= self.limits.substantive_chars

    def _links(self, folded: str, marked: int) -> Verdict:
        count = len(_LINK.findall(folded)) + marked
        spam = count >= self.limits.links > 0
        return Verdict("links", spam, _counted(count, "link"))

    def _chat_mentions(
        self, readable: str, folded: str, known: Callable[[str], bool] | None
    ) -> Verdict:
        names = []
        if "me/" in folded or "dog/" in folded or "tg:" in folded:  # the pattern is slow
            names = [f"t.me/{m[1]}" if m[1] else m[2] for m in _CHAT_LINK.finditer(readable)]
        if known is not None and "@" in readable:
            mentioned = dict.fromkeys(n.lower() for n in _MENTION.findall(readable))
            names += [f"@{n}" for n in mentioned if not known(n)]
        return Verdict("chat_mentions", bool(names), _listed(list(dict.fromkeys(names))))

    def _emoji(self, text: str) -> Verdict:
        count = sum(1 for _ in _EMOJI.finditer(text))
        spam = False
        if count > self.limits.emoji:
            others = len("".join(_EMOJI.sub("", text).split()))
            spam = count / (count + others) >= self.limits.emoji_share
        return Verdict("emoji", spam, f"{count} emoji" if count else "")

    def _stop_words_in(self, folded: str) -> Verdict:
        # A substring test per word is a tenth of the cost of one pattern of them all.
        key = " ".join(_SQUEEZE.sub("", folded).split())
        hits = [
            word
            for word, (part, whole) in zip(self.stop_words, self._stop_words, strict=True)
            if part in key and (whole is None or whole.search(key))
        ]
        detail = f"stop word{'s' * (len(hits) > 1)}: {_listed(hits)}" if hits else ""
        return Verdict("stop_words", bool(hits), detail)

    def _spam_sample(self, found: frozenset[str]) -> Verdict:
        similarity, _ = self.spam.best_of(found)
        spam = similarity >= self.limits.spam_similarity
        # Half way there is worth an admin's glance; less is noise.
        shown = similarity >= self.limits.spam_similarity / 2
        detail = f"{similarity:.0%} like a spam sample" if shown else ""
        return Verdict("spam_sample", spam, detail)


def _chat_links(readable: str) -> set[str]:
    return {match.group(0).casefold() for match in _CHAT_LINK.finditer(readable)}


def _stop_word(word: str) -> tuple[str, re.Pattern[str] | None]:
    """How to find `word` in a text folded, squeezed and with single spaces: the substring to
    look for, and the pattern it must also match when an end of it is a Latin letter or digit,
    which must then be a word's end in the text ("dm me" is not in "admin meeting", "加V" is not
    in "参加VIP"). A CJK end may sit anywhere."""
    key = " ".join(_SQUEEZE.sub("", fold(word)).split())
    before = _LATIN_END.match(key[:1]) is not None
    after = _LATIN_END.match(key[-1:]) is not None
    if not (before or after):
        return key, None
    pattern = "(?<![a-z0-9])" * before + re.escape(key) + "(?![a-z0-9])" * after
    return key, re.compile(pattern)


def _mixed_alphabet(readable: str) -> Verdict:
    """Words that mix Latin with Cyrillic or Greek letters: "сrypto" with a Cyrillic с reads as
    crypto to people but not to filters. CJK beside Latin ("iPhone手机") is not a mix of these."""
    if not _LOOKALIKE.search(readable):
        return Verdict("mixed_alphabet", False, "")
    mixed = []
    for word in dict.fromkeys(_WORD.findall(readable)):
        letters = [(name, pattern.findall(word)) for name, pattern in _SCRIPTS]
        present = [(len(found), name, found) for name, found in letters if found]
        if len(present) < 2:
            continue
        present.sort(reverse=True)  # the word's own script first, the disguise after
        odd = ", ".join(
            f"{name} {' '.join(dict.fromkeys(found))}" for _, name, found in present[1:]
        )
        mixed.append(f"{word} ({odd})")
    return Verdict("mixed_alphabet", bool(mixed), _listed(mixed, 2))


def _counted(count: int, thing: str) -> str:
    if not count:
        return ""
    return f"{count} {thing}{'s' * (count != 1)}"


def _listed(names: list[str], most: int = 3) -> str:
    """`names` joined, the first `most` of them and how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" +{len(names) - most} more" if len(names) > most else "")


def load_checks(
    content_dir: Path,
    limits: Limits = Limits(),
    not_spam: Iterable[str] = (),
) -> Checks:
    """The checks with the shipped stop words (`moderation/stopwords.zh.txt` and
    `stopwords.en.txt`, one a line; both apply to every message) and spam samples
    (`moderation/spam.txt`, separated by blank lines), and the given not-spam texts. Lines
    starting with # are comments. SettingsError names a missing file or a one-letter stop word,
    which would hold every message."""
    folder = content_dir / "moderation"
    stop_words: list[str] = []
    for name in ("stopwords.zh.txt", "stopwords.en.txt"):
        for number, line in _lines(folder / name):
            word = line.strip()
            if len(_stop_word(word)[0].replace(" ", "")) < 2:
                raise SettingsError(
                    f"{folder / name} line {number}: {word!r} is too short to be a stop word"
                )
            stop_words.append(word)
    samples: list[list[str]] = [[]]
    for _, line in _lines(folder / "spam.txt", blank=True):
        if line.strip():
            samples[-1].append(line.strip())
        elif samples[-1]:
            samples.append([])
    return Checks(
        stop_words=stop_words,
        spam=Samples("\n".join(lines) for lines in samples if lines),
        not_spam=Samples(not_spam),
        limits=limits,
    )


def _lines(path: Path, *, blank: bool = False) -> list[tuple[int, str]]:
    """The numbered lines of a content file, without comments (and blank lines unless `blank`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            f"CONTENT_DIR is invalid: {path} is missing; point CONTENT_DIR at the project's "
            "content/ folder"
        ) from None
    return [
        (number, line)
        for number, line in enumerate(text.splitlines(), 1)
        if not line.lstrip().startswith("#") and (blank or line.strip())
    ]
