"""The entities Telegram finds in what a user writes (mentions, hashtags, bot commands, URLs,
e-mail addresses), with offsets and lengths in UTF-16 code units.

The rules follow Telegram's own parser (tdlib's ``MessageEntity.cpp``), because a moderation
check is only as good as what it is shown: ``@name`` glued to a Chinese word is no mention,
``readme.md`` is a link (``md`` is a country), ``file.js`` is not, and a URL that starts with
``http`` runs on through Chinese text up to the next space. Cashtags, bank cards, phone
numbers and media timestamps are not found. An explicit entity a caller passes (a
``text_link`` with a hidden URL, bold, ...) is kept, and a found one that overlaps it is
dropped unless the explicit one is only formatting, as Telegram merges them."""

from __future__ import annotations

import unicodedata
from typing import Any

from aiogram.types import MessageEntity
from pydantic import ValidationError

from ._state import ControlError

_BAD_PATH_END = ".:;,('?!`"
_NOT_USER_DATA = "\n/[]{}()'`<>\"@«»"
_NOT_PATH = '\n<>"«»'
_COMMAND_NEIGHBOURS = "/<>"
_SHORT_USERNAMES = frozenset({"gif", "vid", "pic"})
#: Entity types that may overlap a found link or mention (pure formatting).
_FORMATTING = frozenset(
    {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
    }
)

#: The top-level domains a bare domain (no ``http://``) must end in to count as a link: every
#: country code, the common generic ones and the Chinese ones. Telegram's own list is longer
#: (every delegated TLD); what is missing here only matters for links without a scheme.
_COUNTRY_TLDS = (
    "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br "
    "bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz "
    "ec ee eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw "
    "gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw "
    "ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr ms mt mu "
    "mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt "
    "pw py qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st su sv sx sy sz tc "
    "td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws "
    "ye yt za zm zw"
)
_GENERIC_TLDS = (
    "com org net edu gov mil int arpa info biz name pro mobi asia tel travel jobs aero coop "
    "museum cat post xxx app dev page blog shop store online site website web space tech cloud "
    "club live life link news media email group team work world today top xyz vip wang xin ltd "
    "art design digital network games game fun plus one zone tools chat social video tv music "
    "film photo pics pictures studio agency company business finance money bank loan credit "
    "crypto trade market markets exchange capital invest fund global center city school "
    "academy education university college courses training help support services solutions "
    "systems software download click win bet casino poker vegas lol wtf fyi icu cyou sbs cfd "
    "bond ink red blue pink gold love sex porn adult dating date host hosting domains website "
    "wiki guru expert tips guide review reviews best free sale deals cheap discount promo "
    "restaurant food cafe coffee bar pub beer wine health care clinic doctor fitness yoga "
    "google youtube amazon apple microsoft yahoo baidu alibaba taobao tmall weibo"
)
_CHINESE_TLDS = (
    "中国 中國 公司 网络 网址 网站 网店 在线 集团 信息 手机 香港 台湾 台灣 "
    "澳門 游戏 企业 商城 商店 商标 购物 娱乐 时尚 新闻 中文网 机构 组织机构 "
    "政务 公益 我爱你 移动 联通 世界 健康 招聘 八卦 佛山 广东 慈善 微博 餐厅 "
    "食品 书籍 書籍 新加坡"
)
_TLDS = frozenset((_COUNTRY_TLDS + " " + _GENERIC_TLDS + " " + _CHINESE_TLDS).split())


# ----- characters ------------------------------------------------------------------------
def _category(ch: str) -> str:
    """Unicode's category, simplified as tdlib does: L(etter), Nd, N(umber), Z (separator)."""
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        return "L"
    if cat == "Nd":
        return "Nd"
    if cat[0] == "N":
        return "N"
    if cat[0] == "Z" or (ch.isspace() and ch != "\n"):
        return "Z"
    return "other"


def _is_word(ch: str) -> bool:
    return ch == "_" or _category(ch) in ("L", "Nd", "N")


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _is_username_char(ch: str) -> bool:
    return _is_ascii_alnum(ch) or ch == "_"


def _is_url_unicode(ch: str) -> bool:
    code = ord(ch)
    if 0x2000 <= code <= 0x206F:  # General Punctuation: only joiners and dashes
        return code in (0x200C, 0x200D) or 0x2010 <= code <= 0x2015
    return _category(ch) != "Z"


def _is_path_char(ch: str) -> bool:
    return ch not in _NOT_PATH and _is_url_unicode(ch)


def _is_user_data_char(ch: str) -> bool:
    return ch not in _NOT_USER_DATA and _is_url_unicode(ch)


def _is_domain_char(ch: str) -> bool:
    if ord(ch) < 0xC0:
        return ch in ".~-_" or _is_ascii_alnum(ch)
    return _is_url_unicode(ch)


def _is_protocol_char(ch: str) -> bool:
    if ch.isascii():
        return _is_ascii_alnum(ch) or ch in "+-"
    return _category(ch) != "Z"  # swallowed, so that the protocol is then refused


def _is_hashtag_char(ch: str) -> bool:
    return ch in "_\u200c\u00b7" or 0xD80 <= ord(ch) <= 0xDFF or _category(ch) in ("L", "Nd")


# ----- mentions, commands, hashtags ------------------------------------------------------
Span = tuple[str, int, int]  # (entity type, start, end) in code points


def _run(text: str, i: int, ok: Any) -> int:
    while i < len(text) and ok(text[i]):
        i += 1
    return i


def _mentions(text: str) -> list[Span]:
    spans: list[Span] = []
    at = text.find("@")
    while at >= 0:
        end = _run(text, at + 1, _is_username_char)
        name = text[at + 1 : end]
        fits = 2 <= len(name) <= 32 and (len(name) >= 4 or name.lower() in _SHORT_USERNAMES)
        free = (at == 0 or not _is_word(text[at - 1])) and (
            end == len(text) or not _is_word(text[end])
        )
        if fits and free:
            spans.append(("mention", at, end))
        at = text.find("@", end)
    return spans


def _commands(text: str) -> list[Span]:
    spans: list[Span] = []
    slash = text.find("/")
    while slash >= 0:
        prev = text[slash - 1] if slash else ""
        if prev and (_is_word(prev) or prev in _COMMAND_NEIGHBOURS):
            slash = text.find("/", slash + 1)
            continue
        end = _run(text, slash + 1, _is_username_char)
        ok = 1 <= end - slash - 1 <= 64
        if ok and end < len(text) and text[end] == "@":
            bot_end = _run(text, end + 1, _is_username_char)
            ok = 3 <= bot_end - end - 1 <= 32
            end = bot_end
        after = text[end] if end < len(text) else ""
        if ok and not (after and (_is_word(after) or after in _COMMAND_NEIGHBOURS)):
            spans.append(("bot_command", slash, end))
        slash = text.find("/", max(end, slash + 1))
    return spans


def _hashtags(text: str) -> list[Span]:
    spans: list[Span] = []
    mark = text.find("#")
    while mark >= 0:
        if mark and _is_hashtag_char(text[mark - 1]):
            mark = text.find("#", mark + 1)
            continue
        end = _run(text, mark + 1, _is_hashtag_char)
        body = text[mark + 1 : end]
        has_letter = any(_category(ch) == "L" for ch in body[:256])
        if body and has_letter and not (end < len(text) and text[end] == "#"):
            spans.append(("hashtag", mark, min(end, mark + 257)))
        mark = text.find("#", max(end, mark + 1))
    return spans


# ----- links and e-mail addresses -------------------------------------------------------
def _url_candidates(text: str) -> list[tuple[int, int]]:
    """Stretches around each dot that may be a link, with scheme, user data, port and path."""
    found: list[tuple[int, int]] = []
    n, start = len(text), 0
    while True:
        dot = text.find(".", start)
        if dot < 0 or dot + 1 == n:
            return found
        if text[dot + 1] == " ":
            start = dot + 2
            continue
        begin = dot
        while begin > start and _is_domain_char(text[begin - 1]):
            begin -= 1
        end, last_at = dot, -1
        while end < n and (text[end] == "@" or _is_domain_char(text[end])):
            if text[end] == "@":
                last_at = end
            end += 1
        if last_at >= 0:
            while begin > start and _is_user_data_char(text[begin - 1]):
                begin -= 1
        end = _port_end(text, end)
        if end < n and text[end] in "/?#":
            path_end = _run(text, end + 1, _is_path_char)
            while path_end > end + 1 and text[path_end - 1] in _BAD_PATH_END:
                path_end -= 1
            if text[end] == "/" or path_end > end + 1:
                end = path_end
        while end > dot + 1 and text[end - 1] == ".":
            end -= 1
        begin, bad = _url_begin(text, start, begin, last_at >= 0)
        if not bad:
            if end > dot + 1:
                found.append((begin, end))
            while end < n and text[end] == ".":
                end += 1
        else:
            while text[end - 1] != ".":
                end -= 1
        start = max(end, dot + 1)


def _port_end(text: str, end: int) -> int:
    if end >= len(text) or text[end] != ":":
        return end
    digits_end = _run(text, end + 1, lambda ch: ch.isascii() and ch.isdigit())
    digits = text[end + 1 : digits_end].lstrip("0")
    if digits and len(digits) <= 5 and int(digits) <= 65535:
        return digits_end
    return end


def _url_begin(text: str, start: int, begin: int, has_at: bool) -> tuple[int, bool]:
    """Where a link found around a dot begins (user data and scheme included), and whether
    what stands before it makes it no link."""
    bad = False
    if begin > start and text[begin - 1] == "@":
        bad = has_at
        user = begin - 1
        while user > start and _is_user_data_char(text[user - 1]):
            user -= 1
        bad = bad or user == begin - 1
        begin = user
    if begin == start:
        return begin, bad
    prefix = text[start:begin]
    if len(prefix.encode()) >= 6 and prefix.endswith("://"):
        head = begin - 3
        while head > start and _is_protocol_char(text[head - 1]):
            head -= 1
        protocol = text[head : begin - 3].lower()
        if protocol.endswith("http") and protocol != "shttp":
            return begin - len("http://"), bad
        if protocol.endswith("https"):
            return begin - len("https://"), bad
        if protocol.endswith("ftp") and protocol not in ("sftp", "tftp"):
            return begin - len("ftp://"), bad
        return begin, True
    before = text[begin - 1]
    return begin, bad or _is_word(before) or before in "/#@"


def _is_email(text: str) -> bool:
    user, at, domain = text.partition("@")
    if not at or not domain:
        return False
    parts = user.replace("+", ".").split(".")
    if len(parts) >= 12 or any(len(p) >= 27 for p in parts[:-1]):
        return False
    if not 0 < len(parts[-1]) < 36:
        return False
    if any(not (_is_username_char(ch) or ch == "-") for ch in "".join(parts)):
        return False
    labels = domain.split(".")
    tld = labels.pop()
    if (
        not 1 <= len(labels) <= 6
        or not 2 <= len(tld) <= 8
        or not all(_is_ascii_alpha(c) for c in tld)
    ):
        return False
    return all(
        0 < len(label) < 31
        and all(_is_username_char(ch) or ch == "-" for ch in label)
        and _is_ascii_alnum(label[0])
        and _is_ascii_alnum(label[-1])
        for label in labels
    )


def _is_ascii_alpha(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _is_known_tld(tld: str) -> bool:
    lower = tld.lower()
    if lower != tld and lower[1:] == tld[1:]:  # "Com": only the first letter is upper case
        return False
    return lower in _TLDS


def _link_length(url: str) -> int:
    """How much of a candidate is a link (0: none): unbalanced brackets and trailing
    punctuation end it; the host must have a known top-level domain unless a scheme is given."""
    rest, has_scheme = url, False
    for scheme in ("http://", "https://", "ftp://"):
        if url[:8].lower().startswith(scheme):
            rest, has_scheme = url[len(scheme) :], True
            break
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, path = rest[:cut], rest[cut:]
    host = host[host.find("@") + 1 :]
    if ":" in host:
        host = host[: host.rfind(":")]
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    keep = 0
    while keep < len(path):
        ch = path[keep]
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                break
        keep += 1
    while keep > 0 and path[keep - 1] in _BAD_PATH_END:
        keep -= 1
    length = len(url) - (len(path) - keep)
    labels = host.split(".")
    if any(not label or len(label.encode()) >= 64 or label[-1] == "-" for label in labels):
        return 0
    if len(labels) == 1:
        return 0
    if len(labels) == 4 and all(_is_ipv4_part(label) for label in labels):
        return length
    if all(label.isascii() and label.isdigit() for label in labels):
        return 0
    tld = labels[-1]
    if len(tld) <= 1:
        return 0
    if tld.startswith("xn--"):
        return length if len(tld) > 5 and all(_is_ascii_alnum(c) for c in tld[4:]) else 0
    if "_" in tld or "-" in tld or (not has_scheme and not _is_known_tld(tld)):
        return 0
    return 0 if "_" in labels[-2] else length


def _is_ipv4_part(label: str) -> bool:
    if not (label.isascii() and label.isdigit()) or len(label) > 3:
        return False
    return int(label) <= 255 and not (label[0] == "0" and len(label) > 1)


def _links(text: str) -> list[Span]:
    spans: list[Span] = []
    for begin, end in _url_candidates(text):
        candidate = text[begin:end]
        if _is_email(candidate):
            spans.append(("email", begin, end))
        elif candidate.startswith("mailto:") and _is_email(candidate[7:]):
            spans.append(("email", begin + 7, end))
        elif length := _link_length(candidate):
            spans.append(("url", begin, begin + length))
    return spans


# ----- assembling ------------------------------------------------------------------------
def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def find_entities(text: str | None) -> list[MessageEntity] | None:
    """The entities Telegram finds in ``text``, in order, none overlapping another (the first
    and longest wins); None when there are none."""
    if not text:
        return None
    spans = _mentions(text) + _commands(text) + _hashtags(text) + _links(text)
    spans.sort(key=lambda s: (s[1], -(s[2] - s[1])))
    kept: list[MessageEntity] = []
    last_end = 0
    for kind, begin, end in spans:
        if begin < last_end:
            continue
        last_end = end
        offset = utf16_len(text[:begin])
        kept.append(MessageEntity(type=kind, offset=offset, length=utf16_len(text[begin:end])))
    return kept or None


def explicit_entities(raw: Any, text: str) -> list[MessageEntity]:
    """Entities a caller passes for ``text`` (a ``text_link`` with its hidden URL, bold, ...),
    validated as Telegram validates a client's: inside the text, sorted by offset."""
    if not isinstance(raw, list):
        raise ControlError(400, "entities must be a list of MessageEntity objects")
    try:
        entities = [MessageEntity.model_validate(e) for e in raw]
    except ValidationError as exc:
        raise ControlError(400, f"bad entity: {exc.errors()[0]['msg']}") from None
    size = utf16_len(text)
    for e in entities:
        if e.offset < 0 or e.length <= 0 or e.offset + e.length > size:
            raise ControlError(
                400, f"entity {e.type} at {e.offset}+{e.length} is outside the text ({size})"
            )
        if e.type == "text_link" and not e.url:
            raise ControlError(400, "a text_link entity needs its url")
    return sorted(entities, key=lambda e: (e.offset, -e.length))


def entities_for(text: str, raw: Any = None) -> list[MessageEntity] | None:
    """What a user's ``text`` carries: the entities passed (``raw``, if any) merged with the
    ones Telegram finds, a found one dropped where it overlaps a passed one that is more than
    formatting."""
    found = find_entities(text) or []
    if raw is None:
        return found or None
    given = explicit_entities(raw, text)
    blocking = [e for e in given if e.type not in _FORMATTING]
    merged = given + [
        f
        for f in found
        if not any(
            f.offset < b.offset + b.length and b.offset < f.offset + f.length for b in blocking
        )
    ]
    merged.sort(key=lambda e: (e.offset, -e.length))
    return merged or None
