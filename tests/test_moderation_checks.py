"""The first-message checks: each check fires on Chinese and English spam and passes ordinary
chat in both; greetings do not count toward approval; a text an admin called not spam passes;
verdicts survive storing; the shipped stop words and samples load and catch shipped spam."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.moderation.checks import (
    CHECKS,
    Checks,
    Judgement,
    Limits,
    Post,
    Samples,
    Verdict,
    load_checks,
)
from bot.moderation.samples import shingles
from bot.settings import SettingsError
from tests.conftest import ROOT

# Ordinary chat of a course group: numbers, versions, prices, times, a file name, Latin words in
# Chinese, full-width punctuation. No check may fire on it.
LONG_ZH = (
    "大家好，我是上周刚报名的新同学，想跟大家分享一下这几天的学习体会，顺便问几个问题。"
    "第3课讲的复盘方法我试了5天，每天晚上21:30花10分钟回顾当天学到的内容，效果比我之前一口气"
    "看两个小时视频好太多了。老师推荐的笔记模板我也下载了，用iPhone手机和iPad都能打开，"
    "电脑上用Python写了个小脚本把笔记导出成Markdown，文件名是notes_v1.2.md，需要的同学可以"
    "跟我说。另外想问一下：课程里说的3.5版本课件是不是已经更新到群文件了？我在群公告里没找到。"
    "还有，下周三的直播是晚上8点还是8点半开始？我怕错过。最后想说，这个课程的价格（¥299）"
    "真的很值，比我之前买的那些课实在多了，感谢老师和助教们的耐心解答，也谢谢群里的同学们"
    "昨天帮我解决了安装的问题。期待下一节课！"
)
LONG_EN = (
    "Hi everyone, I joined last week and wanted to share how the first lessons went. I tried the "
    "review method from lesson 3 for five days, ten minutes every evening at 9:30, and it stuck "
    "far better than my usual two-hour binge. I wrote a small Python 3.11 script that exports my "
    "notes to Markdown (notes_v1.2.md), happy to share it. Is the version 3.5 handout in the "
    "group files yet? And does Wednesday's live start at 8 or 8:30? The course price (¥299) "
    "was worth it, and thanks to whoever helped me with the install error yesterday!"
)

SPAM_ZH = (
    "🔥诚招线上兼职🔥 手机操作，时间自由，一单一结，日赚300-800元，宝妈学生党都可以做，"
    "无需押金，名额有限，感兴趣的加微信：abc12345 详聊"
)
SPAM_EN = (
    "💰💰 Earn $500 – $2000 per week working from home! No experience needed, just your phone "
    "and 1 hour a day. DM me for details and start today 💰💰"
)


@pytest.fixture(scope="module")
def shipped() -> Checks:
    return load_checks(ROOT / "content")


def bare(*, stop_words: tuple[str, ...] = (), spam: tuple[str, ...] = (), **limits) -> Checks:
    """Checks with nothing shipped: only what a test gives them."""
    return Checks(
        stop_words=stop_words, spam=Samples(spam), not_spam=Samples(), limits=Limits(**limits)
    )


def verdict(checks: Checks, post: Post | str, check: str) -> Verdict:
    judgement = checks.judge(Post(post) if isinstance(post, str) else post)
    assert [v.check for v in judgement.verdicts] == list(CHECKS)
    return judgement.verdicts[CHECKS.index(check)]


# --- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("see https://example.com/join now", 1),
        ("www.example.org and bit.ly/abc", 2),
        ("cheap at shop-deals.xyz today", 1),
        ("short link t.co/xyz", 1),
        ("访问abc.com看看，还有 http://例子.cn/路径", 2),
        ("全角也算：ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ", 1),
        ("进群 t.me/some_group", 1),
    ],
)
def test_links_fire(text: str, count: int) -> None:
    found = verdict(bare(), text, "links")
    assert found.spam
    assert found.detail == (f"{count} link" + "s" * (count > 1))


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.5 or v1.2? Both work. See main.py and readme.md",
        "价格是3.5元。下次见。第2.1节讲完了。好的。",
        "mail me at someone@example.com",
        "ASP.NET 和 Node.js 都可以，e.g. 用 Vue.js 写前端",
        "I'll be there later.Me too!",
    ],
)
def test_links_pass_ordinary_dots(text: str) -> None:
    assert verdict(bare(), text, "links") == Verdict("links", False, "")


def test_links_count_the_ones_telegram_marked() -> None:
    hidden = verdict(bare(), Post("点这里报名", links=2), "links")
    assert hidden == Verdict("links", True, "2 links")
    assert verdict(bare(links=2), "see example.com", "links") == Verdict("links", False, "1 link")
    assert verdict(bare(links=0), Post("点这里", links=3), "links") == Verdict(
        "links", False, "3 links"
    )


# --- channel forwards --------------------------------------------------------------------------


def test_channel_forward() -> None:
    assert verdict(bare(), Post("转发的消息", from_channel=True), "channel_forward").spam
    assert not verdict(bare(), Post("a forward from a person"), "channel_forward").spam


# --- chat mentions ----------------------------------------------------------------------------

MEMBERS = {"alice_wang", "bob_lee"}


def known(name: str) -> bool:
    return name in MEMBERS


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("join us at t.me/CryptoPumpRoom", "t.me/CryptoPumpRoom"),
        ("加群：https://telegram.me/fuli_group", "t.me/fuli_group"),
        ("私密群 t.me/+aBcDeFgHiJk", "t.me/+aBcDeFgHiJk"),
        ("old link t.me/joinchat/AAAAAEXAMPLE", "t.me/joinchat/AAAAAEXAMPLE"),
        ("打开 tg://resolve?domain=spam_bot", "tg://resolve?domain=spam_bot"),
        ("联系@stranger_bob领取", "@stranger_bob"),
        ("ask @Somebody_Else about it", "@somebody_else"),
    ],
)
def test_chat_mentions_fire_and_name_them(text: str, named: str) -> None:
    found = verdict(bare(), Post(text, mentions_known=known), "chat_mentions")
    assert found.spam
    assert found.detail == named


def test_chat_mentions_of_members_or_unknown_membership_pass() -> None:
    checks = bare()
    for text in ("谢谢@alice_wang的分享", "thanks @Bob_Lee!", "mail me@example.com"):
        assert not verdict(checks, Post(text, mentions_known=known), "chat_mentions").spam
    assert not verdict(checks, Post("联系@stranger_bob领取"), "chat_mentions").spam


def test_chat_mentions_list_a_few_and_count_the_rest() -> None:
    text = "@aaaa1 @bbbb2 @cccc3 @dddd4 t.me/eeee5"
    found = verdict(bare(), Post(text, mentions_known=known), "chat_mentions")
    assert found.detail == "t.me/eeee5, @aaaa1, @bbbb2 +2 more"


# --- emoji ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("🔥🔥🔥 高薪兼职 🔥🔥🔥 ✅ 私聊", 7),
        ("💰💰💰💰 big money 💰💰💰💰", 8),
        ("🇨🇳🇺🇸🇯🇵🇬🇧🇫🇷🇩🇪🇰🇷 hi", 7),
    ],
)
def test_emoji_fire(text: str, count: int) -> None:
    assert verdict(bare(), text, "emoji") == Verdict("emoji", True, f"{count} emoji")


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("👍", 1),
        ("谢谢老师🙏🏻🙏🏻", 2),
        ("❤️😂🎉", 3),
        ("👨‍👩‍👧‍👦" * 6, 6),  # a family is four people joined into one emoji
        ("1️⃣ 2️⃣ 3️⃣ 🇨🇳 👩🏽‍💻 ☕️", 6),
        ("普通的一句话，没有表情。© 2026", 0),
    ],
)
def test_emoji_count_what_a_reader_sees(text: str, count: int) -> None:
    found = verdict(bare(), text, "emoji")
    assert not found.spam
    assert found.detail == (f"{count} emoji" if count else "")


def test_emoji_a_long_post_may_carry_more() -> None:
    assert verdict(bare(), LONG_ZH + "🎉" * 7, "emoji") == Verdict("emoji", False, "7 emoji")
    assert verdict(bare(), LONG_ZH[:100] + "🎉" * 7, "emoji").spam


# --- stop words -------------------------------------------------------------------------------

WORDS = ("加微信", "加V", "兼职", "日结工资", "dm me", "crypto signals", "earn $", "wa.me")


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("有兴趣加微信详聊", "加微信"),
        ("有兴趣 加 微 信 详聊", "加微信"),
        ("加.微.信：abc", "加微信"),
        ("加🔥微🔥信", "加微信"),
        ("加Ｖ：abc123", "加V"),
        ("加v信", "加V"),
        ("诚招兼\u200b职", "兼职"),
        ("日 结 工 资", "日结工资"),
        ("DM me for details", "dm me"),
        ("Best  CRYPTO\nsignals", "crypto signals"),
        ("ｃｒｙｐｔｏ ｓｉｇｎａｌｓ", "crypto signals"),
        ("earn $500 a day", "earn $"),
        ("write wa.me/123456", "wa.me"),
        ("联系dm me获取", "dm me"),
    ],
)
def test_stop_words_fire(text: str, word: str) -> None:
    found = verdict(bare(stop_words=WORDS), text, "stop_words")
    assert found == Verdict("stop_words", True, f"stop word: {word}")


@pytest.mark.parametrize(
    "text",
    [
        "参加VIP活动的同学请到群公告看说明",
        "今日结课，明天休息",
        "the admin meeting is at 8",
        "I learn more each day; earn your stripes",
        "加，微信群里见",  # two sentences, not a word split apart
        "dm memo",
    ],
)
def test_stop_words_pass(text: str) -> None:
    assert verdict(bare(stop_words=WORDS), text, "stop_words") == Verdict("stop_words", False, "")


def test_stop_words_name_every_one_found_once() -> None:
    found = verdict(bare(stop_words=WORDS), "兼职兼职，加微信", "stop_words")
    assert found.detail == "stop words: 加微信, 兼职"


@pytest.mark.parametrize(
    "text",
    [
        "每天刷单词半小时，坚持了一个月",
        "菠菜多少钱一斤？",
        "这个手机跑分多少",
        "他很自私我不喜欢",
        "股票套现以后准备交学费",
        "怎么提高回报率",
        "Is there a free trial? What's the price with the discount?",
        "I gave away my old notes, a free offer for anyone who wants them",
    ],
)
def test_shipped_stop_words_spare_ordinary_chat(shipped: Checks, text: str) -> None:
    assert not verdict(shipped, text, "stop_words").spam


# --- spam samples -----------------------------------------------------------------------------


def test_spam_sample_fires_on_a_near_copy_in_chinese_and_english() -> None:
    checks = bare(spam=(SPAM_ZH, SPAM_EN))
    zh = SPAM_ZH.replace("300-800", "500-1000").replace("abc12345", "xyz999")
    en = SPAM_EN.replace("$500 – $2000", "$800 – $3000").replace("1 hour", "2 hours")
    for text in (zh, en):
        found = verdict(checks, text, "spam_sample")
        assert found.spam
        assert found.detail.endswith("% like a spam sample")
        assert int(found.detail.split("%")[0]) >= 60


def test_spam_sample_passes_unrelated_chat() -> None:
    checks = bare(spam=(SPAM_ZH, SPAM_EN))
    for text in (LONG_ZH, LONG_EN, "请问第3课的作业什么时候交？", "When is the next live?"):
        assert verdict(checks, text, "spam_sample") == Verdict("spam_sample", False, "")


# --- mixed alphabets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("Best \u0441rypto signals", "\u0441rypto (Cyrillic \u0441)"),
        ("免费 B\u03bfnus 领取", "B\u03bfnus (Greek \u03bf)"),
        ("\u041fp\u0438\u0432e\u0442 всем", "\u041fp\u0438\u0432e\u0442 (Latin p e)"),
    ],
)
def test_mixed_alphabet_fires(text: str, detail: str) -> None:
    assert verdict(bare(), text, "mixed_alphabet") == Verdict("mixed_alphabet", True, detail)


@pytest.mark.parametrize(
    "text",
    [
        "iPhone手机用Python写的App很好用",
        "Привет всем, как дела? Курс отличный.",
        "Ελπίζω να είστε όλοι καλά",
        "5μm 的误差，Δt 取 0.1s，电阻 10kΩ",
        "Crème brûlée at the café",
    ],
)
def test_mixed_alphabet_passes(text: str) -> None:
    assert not verdict(bare(), text, "mixed_alphabet").spam


# --- the whole judgement ----------------------------------------------------------------------


@pytest.mark.parametrize("text", [LONG_ZH, LONG_EN])
def test_a_long_ordinary_message_passes_every_shipped_check(shipped: Checks, text: str) -> None:
    assert len(text) >= 300
    judgement = shipped.judge(Post(text, mentions_known=known))
    assert judgement.fired == []
    assert not judgement.spam


def test_a_sticker_or_photo_without_caption_is_judged_by_what_telegram_marked(
    shipped: Checks,
) -> None:
    assert shipped.judge(Post("")).fired == []
    assert shipped.judge(Post("", links=1, from_channel=True)).fired == ["links", "channel_forward"]


def test_known_good_passes_whatever_fired() -> None:
    text = "第3课的资料在这里 https://example.com/course 大家自取"
    checks = bare()
    assert checks.judge(Post(text)).spam
    checks.not_spam.add(text)
    judgement = checks.judge(Post(text.replace("第3课", "第4课")))
    assert judgement.known_good
    assert not judgement.spam
    assert judgement.fired == ["links"]


def test_known_good_does_not_carry_a_link_added_to_it() -> None:
    text = "第3课的资料在这里 https://example.com/course 大家自取,有问题群里问"
    checks = bare()
    checks.not_spam.add(text)
    assert checks.judge(Post(text)).known_good
    assert checks.judge(Post(text + " https://spam.example/x")).spam
    assert checks.judge(Post(text + " t.me/spamchat")).spam
    assert checks.judge(Post(text, links=1)).spam  # a hidden link cannot be compared


def test_known_good_needs_a_close_copy() -> None:
    checks = bare()
    checks.not_spam.add("课程资料在这里 https://example.com/course 大家自取")
    assert checks.judge(Post("进群领资料 https://example.com/other")).spam


def test_judgement_json_round_trip(shipped: Checks) -> None:
    judgement = shipped.judge(Post(SPAM_ZH + " t.me/abc_group", mentions_known=known))
    data = judgement.as_json()
    assert data["spam"] is True
    assert data["known_good"] is False
    assert {
        "check": "stop_words",
        "spam": True,
        "detail": "stop words: 加微信, 兼职, 一单一结",
    } in (data["verdicts"])
    assert Judgement.from_json(data) == judgement
    kept = Judgement.from_json({**data, "known_good": True, "spam": True})
    assert not kept.spam
    assert kept.fired == judgement.fired


# --- substance --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "Hello!",
        "hey guys 👋",
        "hello everyone, thanks!",
        "good morning all",
        "thank you so much",
        "lol hahaha",
        "你好",
        "大家好！",
        "谢谢",
        "谢谢老师🙏",
        "哈哈哈哈哈哈哈",
        "收到，好的",
        "打卡",
        "👍👍👍",
        "",
        "  ...  ",
    ],
)
def test_greetings_are_not_substantive(shipped: Checks, text: str) -> None:
    assert not shipped.substantive(text)


@pytest.mark.parametrize(
    "text",
    [
        "How much is this?",
        "When does the next lesson start?",
        "这个多少钱",
        "大家好，请问作业什么时候交？",
        "课程怎么报名",
    ],
)
def test_questions_are_substantive(shipped: Checks, text: str) -> None:
    assert shipped.substantive(text)


def test_substantive_follows_the_limit() -> None:
    assert not bare(substantive_chars=13).substantive("课程怎么报名")  # 6 characters weigh 12
    assert bare(substantive_chars=13).substantive("课程怎么报名呢？我想学")


# --- samples ----------------------------------------------------------------------------------


def test_samples_near_copy_with_other_numbers_is_similar() -> None:
    samples = Samples(["日赚500元，在家就能做，加微信abc123", "earn 500$ a day from home"])
    similarity, sample = samples.best("日赚800元，在家就能做，加微信xyz789")
    assert similarity >= 0.8
    assert sample == "日赚500元，在家就能做，加微信abc123"
    similarity, sample = samples.best("Earn 800 $ a day, from home!")
    assert similarity == 1.0
    assert sample == "earn 500$ a day from home"


def test_samples_unrelated_text_is_not_similar() -> None:
    samples = Samples(["日赚500元，在家就能做，加微信abc123", "earn 500$ a day from home"])
    assert samples.best("明天的直播几点开始？")[0] < 0.2
    assert samples.best("Where are the slides of lesson 3?")[0] < 0.2
    assert samples.best("🎉🎉") == (0.0, None)


def test_samples_keep_one_of_each_and_nothing_empty() -> None:
    samples = Samples(["Hello there, friend", "hello THERE friend!!", "👍", ""])
    assert len(samples) == 1
    samples.add("a different text altogether")
    assert len(samples) == 2


def test_samples_chinese_spaced_out_is_the_same_text() -> None:
    samples = Samples(["加微信领取资料"])
    assert samples.best("加 微 信 领 取 资 料")[0] == 1.0


def test_samples_threshold_lookup_finds_what_the_full_one_finds() -> None:
    """`best_of(at_least=t)` compares only samples that may reach t; every one that does must
    still be found, with the same similarity. Near copies (one word changed or added) of
    hundreds of samples made of a few common words put that to the test."""
    rng = random.Random(20)
    words = [
        "课程",
        "直播",
        "作业",
        "老师",
        "同学",
        "资料",
        "报名",
        "时间",
        "问题",
        "谢谢",
        "lesson",
        "live",
        "notes",
        "when",
        "where",
    ]
    texts = [rng.choices(words, k=rng.randint(8, 16)) for _ in range(400)]
    samples = Samples(" ".join(t) for t in texts)
    near = 0
    for text in texts:
        changed = list(text)
        changed[rng.randrange(len(changed))] = rng.choice(words)
        changed.insert(rng.randrange(len(changed)), rng.choice(words))
        found = shingles(" ".join(changed))
        full = samples.best_of(found)
        if 0.9 <= full[0] < 1.0:
            near += 1
            assert samples.best_of(found, at_least=0.9) == pytest.approx(full)
    assert near >= 20


# --- shipped content --------------------------------------------------------------------------


def test_load_checks_reads_the_shipped_content(shipped: Checks) -> None:
    assert len(shipped.stop_words) >= 80
    assert {"加微信", "USDT", "dm me", "whatsapp"} <= set(shipped.stop_words)
    assert [w.casefold() for w in shipped.stop_words].count("usdt") == 1
    assert len(shipped.spam) >= 30
    assert len(shipped.not_spam) == 0


def test_every_shipped_spam_sample_is_judged_spam(shipped: Checks) -> None:
    text = (ROOT / "content" / "moderation" / "spam.txt").read_text(encoding="utf-8")
    blocks = [b.strip() for b in text.split("\n\n") if b.strip() and not b.startswith("#")]
    assert len(blocks) >= 30
    for block in blocks:
        judgement = shipped.judge(Post(block, mentions_known=known))
        assert judgement.spam, block
        assert verdict(shipped, block, "spam_sample").detail == "100% like a spam sample"


def test_load_checks_takes_not_spam_texts() -> None:
    checks = load_checks(ROOT / "content", not_spam=[SPAM_EN])
    judgement = checks.judge(Post(SPAM_EN))
    assert judgement.known_good
    assert not judgement.spam


def test_load_checks_refuses_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "moderation").mkdir()
    with pytest.raises(SettingsError, match=r"stopwords\.zh\.txt is missing"):
        load_checks(tmp_path)


def test_load_checks_refuses_a_one_letter_stop_word(tmp_path: Path) -> None:
    folder = tmp_path / "moderation"
    folder.mkdir()
    (folder / "stopwords.zh.txt").write_text("# 注释\n兼职\n\n加 \n", encoding="utf-8")
    (folder / "stopwords.en.txt").write_text("dm me\n", encoding="utf-8")
    (folder / "spam.txt").write_text("# none\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"stopwords\.zh\.txt line 4: '加' is too short"):
        load_checks(tmp_path)


def test_load_checks_reads_multi_line_samples(tmp_path: Path) -> None:
    folder = tmp_path / "moderation"
    folder.mkdir()
    (folder / "stopwords.zh.txt").write_text("兼职\n", encoding="utf-8")
    (folder / "stopwords.en.txt").write_text("", encoding="utf-8")
    (folder / "spam.txt").write_text(
        "# samples\n\n第一行\n第二行还是同一条\n\n\n# between\nsecond sample\n", encoding="utf-8"
    )
    checks = load_checks(tmp_path)
    assert len(checks.spam) == 2
    assert checks.spam.best("第一行 第二行还是同一条") == (1.0, "第一行\n第二行还是同一条")
