"""The `tidepool` command: run the bot, manage the database, export data, start the emulator."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from loguru import logger

from bot import __version__
from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_settings

# bot.export's Table (the parser does not import it: `tidepool --help` stays quick).
EXPORT_TABLES = ("events", "members", "groups", "lotteries", "invites")


class Failure(Exception):
    """A command failed in a way the operator can fix; the message says how."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidepool",
        description="Tidepool: community operations for Telegram groups, run from SOP files.",
    )
    parser.add_argument("--version", action="version", version=f"tidepool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the bot (long polling) until SIGINT/SIGTERM")
    run.add_argument(
        "--sandbox-without-token",
        action="store_true",
        help="with no BOT_TOKEN set, run the sandbox instead (what `make run` does)",
    )

    sandbox = commands.add_parser(
        "sandbox",
        help="rehearse flows in a browser: the real bot against the emulator, with a page",
        description="Starts the Telegram emulator with a demo group, the bot (tidepool run) "
        "against it with its own database in DATA_DIR, and a page at "
        "http://127.0.0.1:SANDBOX_PORT/. The next start carries on where this one stopped.",
    )
    sandbox.add_argument("--reset", action="store_true", help="forget the sandbox; start afresh")
    sandbox.add_argument("--port", type=int, help="the page's port (default: SANDBOX_PORT)")

    replay = commands.add_parser(
        "replay",
        help="replay a sandbox transcript against a fresh sandbox; exit 1 with a diff if the "
        "bot now answers differently",
    )
    replay.add_argument("file", type=Path, metavar="FILE", help="a transcript saved by the sandbox")

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply all migrations (the bot also does this on start)")
    db_commands.add_parser("current", help="print the database's migration revision")
    revision = db_commands.add_parser("revision", help="(developers) autogenerate a migration")
    revision.add_argument("message", help="what the migration changes")

    export = commands.add_parser(
        "export",
        help="write groups, members, events, the lotteries' audit trail or the referrals "
        "(invites) to stdout",
    )
    export.add_argument("table", choices=EXPORT_TABLES)
    export.add_argument("--group", type=int, metavar="ID", help="only this group (chat id)")
    export.add_argument(
        "--since", metavar="DATE", help="only rows from this date or date-time (in TIMEZONE)"
    )
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")

    check = commands.add_parser(
        "check", help="validate SOP files: print each problem, exit 1 if there are any"
    )
    check.add_argument(
        "path", nargs="?", type=Path, help="an SOP file or folder (default: SOPS_DIR)"
    )

    simulate = commands.add_parser(
        "simulate",
        help="dry-run an SOP in a simulated group on a fake clock: print what it sends when",
        description=(
            "Dry-run an SOP in a simulated group on a fake clock and print its timeline: what "
            "each member does, each step, each message (nothing reaches Telegram). The SOP's "
            "first trigger happens at the start for every member (a schedule fires once for "
            "the group); --writes and --presses add what members do later. A start that a "
            "trigger's cooldown refuses is shown with why."
        ),
    )
    simulate.add_argument("file", type=Path, metavar="SOP_FILE", help="the SOP file to run")
    simulate.add_argument(
        "--member",
        action="append",
        metavar="NAME",
        help="a member of the simulated group (repeatable; default: Lin); the first is the "
        "one --writes and --presses mean when they name nobody",
    )
    simulate.add_argument(
        "--until", default="3d", metavar="DURATION", help="how long to run (default: 3d)"
    )
    simulate.add_argument(
        "--writes",
        action="append",
        default=[],
        metavar="[NAME: ][TEXT@]AFTER",
        help="a member writes TEXT this long after the start, e.g. 'price?@2h' or "
        "'Ada: price?@1d'; a bare AFTER (2h) writes \"Hi everyone!\" (repeatable)",
    )
    simulate.add_argument(
        "--presses",
        action="append",
        default=[],
        metavar="[NAME: ]STEP@AFTER",
        help="a member presses the flow button to STEP on the last message that has it, e.g. "
        "rules@30m or 'Ada: rules@1h'; the same button may be pressed again later (repeatable)",
    )
    simulate.add_argument(
        "--full", action="store_true", help="print texts whole (default: cut at 100 characters)"
    )
    simulate.add_argument(
        "--language", choices=["zh", "en"], help="the group's language (default: LANGUAGE)"
    )
    simulate.add_argument(
        "--start", metavar="DATE-TIME", help="when to start (default: the next full hour)"
    )
    simulate.add_argument("--group-title", default="Simulated group", metavar="TITLE")
    simulate.add_argument(
        "--text",
        help="the message that starts a flow with a message trigger (default: its first keyword)",
    )

    lottery = commands.add_parser("lottery", help="lotteries: verify a draw")
    actions = lottery.add_subparsers(dest="lottery_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="recompute a draw from the stored seed and entries; exit 1 if it differs"
    )
    verify.add_argument("id", type=int, metavar="ID", help="the lottery's number")

    broadcast = commands.add_parser(
        "broadcast",
        help="queue a message to many groups (the running bot sends it), or show progress",
        description="tidepool broadcast --groups all --template sample; "
        "tidepool broadcast status [ID]",
    )
    broadcast.add_argument(
        "action", nargs="?", choices=["status"], help="status: show the progress of broadcasts"
    )
    broadcast.add_argument("id", nargs="?", type=int, metavar="ID", help="(status) one broadcast")
    broadcast.add_argument(
        "--groups",
        metavar="TARGET",
        help="all, a group tag (vip; tag:vip,course for any of several) or ids (-100123,-100456)",
    )
    broadcast.add_argument(
        "--template", metavar="NAME", help="a text key under broadcast: in content/texts"
    )
    broadcast.add_argument(
        "--urgent", action="store_true", help="send in quiet hours and over daily caps too"
    )
    broadcast.add_argument(
        "--drop",
        action="store_true",
        help="skip groups over their daily cap instead of sending the next day",
    )
    broadcast.add_argument("--pin", action="store_true", help="pin the message in each group")

    stats = commands.add_parser("stats", help="a group's metrics over the last days")
    stats.add_argument("--group", type=int, required=True, metavar="ID", help="the group's id")
    stats.add_argument("--days", type=int, default=30, metavar="N", help="the window (default 30)")
    stats.add_argument("--format", choices=["table", "json", "csv"], default="table")
    report = commands.add_parser("report", help="a group's chart as a PNG file")
    report.add_argument("--group", type=int, required=True, metavar="ID", help="the group's id")
    report.add_argument("--days", type=int, default=30, metavar="N", help="the window (default 30)")
    report.add_argument("--out", type=Path, required=True, metavar="FILE.png")

    console = commands.add_parser(
        "console",
        help="the operator console: a sign-in link, or an API token for scripts",
        description="tidepool console link USER_ID prints a one-time sign-in link (10 minutes); "
        "tidepool console token OWNER_ID prints an API token; tidepool console revoke OWNER_ID "
        "revokes that owner's tokens.",
    )
    console.add_argument("action", choices=["link", "token", "revoke"])
    console.add_argument("user", type=int, metavar="USER_ID", help="a Telegram user id")
    console.add_argument("--label", default="script", help="(token) what the token is for")

    emulator = commands.add_parser("emulator", help="run the Telegram Bot API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8081)
    emulator.add_argument("--token", default="123456:TEST-token", help="the bot token it accepts")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, secrets=_secrets(settings))
        handler = COMMANDS[args.command]
        return asyncio.run(handler(args, settings))
    except (SettingsError, Failure) as exc:
        code = exc.code if isinstance(exc, Failure) else 2
        sys.stderr.write(f"tidepool: error: {exc}\n")
        return code
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # a second SIGINT/SIGTERM: stop now, events already written
        sys.stderr.write("tidepool: stopped at once; updates still in progress were not finished\n")
        return 1


def _secrets(settings: Settings) -> tuple[str, ...]:
    return (settings.bot_token.get_secret_value(),) if settings.bot_token else ()


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import run
    from bot.polling import TokenRejected

    if settings.bot_token is None and args.sandbox_without_token:
        sys.stdout.write('BOT_TOKEN is not set: running the sandbox (see README, "Sandbox")\n')
        return await _sandbox(args, settings)
    settings.require_token()
    try:
        await _with_database_errors(run(settings))
    except TokenRejected:
        raise Failure(
            "BOT_TOKEN was rejected by Telegram (Unauthorized): copy the token again from "
            "@BotFather (/mybots → API Token)",
            2,
        ) from None
    return 0


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import create_engine, current_revision, upgrade
    from bot.db.engine import alembic_config

    if args.db_command == "revision":
        from alembic import command

        # Alembic's env.py runs its own event loop: give it a thread without one.
        await asyncio.to_thread(
            command.revision,
            alembic_config(settings.database_url),
            message=args.message,
            autogenerate=True,
        )
        return 0
    engine = _engine(create_engine, settings)
    try:
        if args.db_command == "upgrade":
            await _with_database_errors(upgrade(engine))
        revision = await _with_database_errors(current_revision(engine))
        sys.stdout.write(f"{revision or 'empty database'}\n")
    finally:
        await engine.dispose()
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import create_engine, upgrade
    from bot.export import export, parse_since

    try:
        since = parse_since(args.since, settings.tz) if args.since else None
    except ValueError as exc:
        raise Failure(str(exc), 2) from None
    engine = _engine(create_engine, settings)
    try:
        await _with_database_errors(upgrade(engine))
        count = await _with_database_errors(
            export(engine, args.table, sys.stdout, fmt=args.format, group=args.group, since=since)
        )
    finally:
        await engine.dispose()
    logger.debug("exported {} {}", count, args.table)
    return 0


async def _check(args: argparse.Namespace, settings: Settings) -> int:
    status = _report_sop_problems(args.path or settings.sops_dir, settings.content_dir)
    if args.path is None:  # the whole set-up: the rewards catalogue and member tiers too
        status = max(status, _report_catalogue_problems(settings.content_dir / "rewards.yaml"))
        status = max(status, _report_tier_problems(settings.sops_dir / "tiers.yaml"))
    return status


def _report_tier_problems(path: Path) -> int:
    from bot.stats.tiers import TierFileError, load_rules

    if not path.is_file():
        return 0
    try:
        rules = load_rules(path)
    except TierFileError as exc:
        sys.stdout.write(f"{exc}\n")
        return 1
    sys.stderr.write(f"{path}: {_plural(len(rules.tiers), 'tier rule')} OK\n")
    return 0


def _report_catalogue_problems(path: Path) -> int:
    from bot.rewards import CatalogueError, load_catalogue

    if not path.is_file():
        return 0
    try:
        catalogue = load_catalogue(path)
    except CatalogueError as exc:
        for problem in exc.problems:
            sys.stdout.write(f"{problem}\n")
        sys.stderr.write(f"{_plural(len(exc.problems), 'problem')} in {path}\n")
        return 1
    sys.stderr.write(f"{path}: {_plural(len(catalogue.rewards), 'reward')} OK\n")
    return 0


def _report_sop_problems(path: Path, content_dir: Path) -> int:
    from bot.sop.check import check_path, sop_files
    from bot.sop.text_files import TEXTS_SUFFIX

    if not path.exists():
        raise Failure(f"{path} does not exist: give an SOP file or folder, or set SOPS_DIR", 2)
    if path.name.endswith(TEXTS_SUFFIX):
        raise Failure(
            f"{path} holds an SOP's texts: check the SOP file or its folder, and its texts are "
            "checked with it",
            2,
        )
    found = check_path(path, content_dir)
    files = sop_files(path)
    for problem in found:
        sys.stdout.write(f"{problem}\n")
    count = _plural(len(files), "SOP file")
    problems = [problem for problem in found if not problem.note]
    if not problems:
        noted = f" ({_plural(len(found), 'note')})" if found else ""
        sys.stderr.write(f"{count} OK{noted}\n")
        return 0
    broken = len({problem.origin or problem.file for problem in problems} & set(files)) or 1
    sys.stderr.write(f"{_plural(len(problems), 'problem')} in {broken} of {count}\n")
    return 1


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.sop.check import check_path
    from bot.sop.simulate import SimulationError, parse_script, simulate

    if not await asyncio.to_thread(args.file.is_file):
        raise Failure(f"{args.file} is not a file: give the SOP file to simulate", 2)
    try:
        script = parse_script(vars(args), settings.tz)
        found = check_path(args.file, settings.content_dir)
        for problem in found:  # notes too, apart from the timeline
            (sys.stderr if problem.note else sys.stdout).write(f"{problem}\n")
        problems = [problem for problem in found if not problem.note]
        if problems:
            count = _plural(len(problems), "problem")
            sys.stderr.write(f"{count} in {args.file}: fix them to simulate it\n")
            return 1
        if settings.log_level in ("INFO", "SUCCESS"):  # the timeline is the output; keep warnings
            setup_logging("WARNING", secrets=_secrets(settings))
        timeline = await simulate(
            args.file,
            settings.content_dir,
            script,
            timezone=settings.tz,
            language=settings.language,
        )
    except SimulationError as exc:
        raise Failure(str(exc), 2) from None
    sys.stdout.write(timeline.text())
    return 0


async def _emulator(args: argparse.Namespace, settings: Settings) -> int:
    from bot.emulator import serve

    logger.info("Bot API emulator on http://{}:{} (token {})", args.host, args.port, args.token)
    await serve(args.host, args.port, args.token)
    return 0


def _engine(create_engine: Callable[[str], Any], settings: Settings) -> Any:
    try:
        return create_engine(settings.database_url)
    except ModuleNotFoundError as exc:
        raise Failure(
            f"DATABASE_URL needs the driver {exc.name!r}: pip install 'tidepool[postgres]'", 2
        ) from None


async def _with_database_errors(work: Coroutine[Any, Any, Any]) -> Any:
    from sqlalchemy.exc import OperationalError

    try:
        return await work
    except ModuleNotFoundError as exc:
        raise Failure(
            f"DATABASE_URL needs the driver {exc.name!r}: pip install 'tidepool[postgres]'", 2
        ) from None
    except OperationalError as exc:
        raise Failure(f"cannot use the database at DATABASE_URL: {exc.orig}", 2) from None
    except OSError as exc:
        if "connect" in str(exc).lower():
            raise Failure(f"cannot connect to the database at DATABASE_URL: {exc}", 2) from None
        raise


async def _lottery(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import create_engine, upgrade
    from bot.lottery.rules import Refusal
    from bot.lottery.store import LotteryStore

    engine = _engine(create_engine, settings)
    try:
        await _with_database_errors(upgrade(engine))
        checked = await _with_database_errors(LotteryStore(engine).verify(args.id))
    finally:
        await engine.dispose()
    if isinstance(checked, Refusal):
        why = {"unknown": "there is no such lottery", "not_drawn": "it is not drawn yet"}
        reason = why.get(checked.reason, "it was cancelled")
        raise Failure(f"lottery #{args.id} cannot be verified: {reason}", 2)
    lottery = checked.lottery
    lines = [
        f"lottery #{lottery.id} in group {lottery.chat_id}: {lottery.prize}",
        f"seed        {lottery.seed}",
        f"commitment  {lottery.commitment}",
        f"entrants    {len(checked.entrants)} (digest {lottery.entrants_digest})",
        f"winners     {', '.join(map(str, checked.winners)) or 'none'}",
    ]
    lines += [f"{'ok  ' if held else 'FAIL'}  {name}" for name, held in checked.checks]
    lines.append("the draw checks out" if checked.ok else "the draw does NOT check out")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if checked.ok else 1


async def _broadcast(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from bot.clock import clock_for
    from bot.db import create_engine, upgrade
    from bot.push import broadcasts
    from bot.texts import Texts

    if args.action is None and (args.groups is None or args.template is None or args.id):
        raise Failure("broadcast needs --groups TARGET and --template NAME (or: status [ID])", 2)
    engine = _engine(create_engine, settings)
    try:
        await _with_database_errors(upgrade(engine))
        if args.action == "status":
            found = await _with_database_errors(broadcasts.progress(engine, args.id))
            if args.id is not None and not found:
                raise Failure(f"there is no broadcast #{args.id}", 1)
            zone = settings.tz

            def when(moment: datetime) -> str:
                return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"

            lines = [line for item in found for line in broadcasts.summary_lines(item, when)]
            sys.stdout.write("\n".join(lines or ["no broadcasts yet"]) + "\n")
            return 0
        texts = Texts.load(settings.content_dir, settings.language)
        clock = clock_for(settings.clock_file)
        try:
            broadcast_id = await _with_database_errors(
                broadcasts.create(
                    engine,
                    texts,
                    target=broadcasts.Target.parse(args.groups),
                    template=args.template,
                    urgent=args.urgent,
                    over_cap="drop" if args.drop else "postpone",
                    pin=args.pin,
                    source="cli",
                    now=clock.now(),
                )
            )
        except broadcasts.BroadcastError as exc:
            raise Failure(exc.text(texts), 1) from None
        found = await broadcasts.progress(engine, broadcast_id)
    finally:
        await engine.dispose()
    sys.stdout.write(
        f"broadcast #{broadcast_id} queued for {found[0].groups} groups; the running bot sends "
        f"it (tidepool broadcast status {broadcast_id})\n"
    )
    return 0


async def _stats(args: argparse.Namespace, settings: Settings) -> int:
    import csv
    import json
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from bot.clock import clock_for
    from bot.db import GROUPS, create_engine, upgrade
    from bot.moderation.store import ModerationStore
    from bot.stats.metrics import group_metrics, window
    from bot.stats.rollup import Rollup
    from bot.stats.service import month_fission, month_moderation

    if not 1 <= args.days <= 366:
        raise Failure("--days must be from 1 to 366", 2)
    clock = clock_for(settings.clock_file)
    engine = _engine(create_engine, settings)
    try:
        await _with_database_errors(upgrade(engine))
        async with engine.connect() as conn:
            group = (
                await conn.execute(
                    select(GROUPS.c.title, GROUPS.c.timezone).where(GROUPS.c.id == args.group)
                )
            ).first()
        if group is None:
            raise Failure(f"there is no group {args.group} in the database", 1)
        zone = ZoneInfo(group.timezone) if group.timezone else settings.tz
        await Rollup(engine, lambda _chat: zone).catch_up()
        now = clock.now()
        first, last = window(now.astimezone(zone).date(), args.days)
        metrics = await group_metrics(engine, args.group, first, last, zone)
        # K and the cycle time: always the last 30 days, whatever --days (as /stats shows them)
        fission = await month_fission(engine, args.group, now, last)
        # Moderation's actions and false positives: the last 30 days too, as /stats says
        moderation = await month_moderation(ModerationStore(engine), args.group, now)
    finally:
        await engine.dispose()
    if args.command == "report":
        from bot.stats.chart import render

        args.out.write_bytes(render(metrics, title=group.title, language=settings.language))
        sys.stderr.write(f"wrote {args.out} ({first} to {last})\n")
        return 0
    figures = metrics.as_dict()
    figures.update({f"fission_{name}": value for name, value in fission.as_json().items()})
    figures.update({f"moderation_{name}": value for name, value in moderation.as_json().items()})
    if args.format == "json":
        figures["days"] = [
            {
                "day": d.day.isoformat(),
                "messages": d.messages,
                "active": d.active,
                "joins": d.joins,
                "leaves": d.leaves,
            }
            for d in metrics.days
        ]
        figures["heatmap"] = metrics.heatmap
        figures["steps"] = [
            {
                "sop": r.sop,
                "step": r.step,
                "variant": r.variant,
                "sent": r.sent,
                "answered": r.answered,
            }
            for r in metrics.steps
        ]
        figures["comparisons"] = [
            {
                "sop": c.sop,
                "step": c.step,
                "better": c.better.variant,
                "worse": c.worse.variant,
                "p_value": c.p_value,
                "significant": c.significant,
            }
            for c in metrics.comparisons
        ]
        sys.stdout.write(json.dumps(figures, ensure_ascii=False, indent=2) + "\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["metric", "value"])
        writer.writerows(figures.items())
    else:
        width = max(len(name) for name in figures)
        lines = [
            f"{name.ljust(width)}  {'' if value is None else value}"
            for name, value in figures.items()
        ]
        lines += [
            f"{'step ' + r.sop + ' · ' + r.step + ' · ' + str(r.variant)}: {r.answered}/{r.sent}"
            for r in metrics.steps
        ]
        lines += [
            f"compare {c.sop} · {c.step}: {c.better.variant} over {c.worse.variant}, "
            + ("too few to test" if c.p_value is None else f"p = {c.p_value:.4f}")
            + (" (significant)" if c.significant else "")
            for c in metrics.comparisons
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


async def _console(args: argparse.Namespace, settings: Settings) -> int:
    from bot.clock import clock_for
    from bot.console._auth import LINK_MINUTES, SignIn
    from bot.db import create_engine, upgrade

    owner = args.user in settings.owner_ids
    if args.action != "link" and not owner:
        raise Failure(f"API tokens are for owners: {args.user} is not in OWNER_IDS", 2)
    if args.action == "link" and not settings.console_public_url:
        raise Failure("the console is off (CONSOLE_LISTEN=off and no CONSOLE_URL)", 2)
    engine = _engine(create_engine, settings)
    try:
        await _with_database_errors(upgrade(engine))
        sign_in = SignIn(engine, clock_for(settings.clock_file), settings.require_token())
        if args.action == "link":
            token = await _with_database_errors(sign_in.issue_link(args.user))
            sys.stdout.write(f"{settings.console_public_url}/signin/{token}\n")
            sys.stderr.write(
                f"valid {LINK_MINUTES} minutes, once; it signs in as {args.user}"
                + (" (an owner)" if owner else " (admin of the groups Telegram says)")
                + "\n"
            )
        elif args.action == "token":
            token = await _with_database_errors(sign_in.issue_token(args.user, args.label))
            sys.stdout.write(f"{token}\n")
            sys.stderr.write(
                "send it as: Authorization: Bearer <token>; shown once, keep it safe\n"
            )
        else:
            revoked = await _with_database_errors(sign_in.revoke_tokens(args.user))
            sys.stdout.write(f"{_plural(revoked, 'token')} revoked\n")
    finally:
        await engine.dispose()
    return 0


async def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from bot.sandbox import SandboxError, run_sandbox

    port = getattr(args, "port", None) or settings.sandbox_port
    try:
        return await run_sandbox(
            settings, settings.data_dir, "127.0.0.1", port, getattr(args, "reset", False)
        )
    except (SandboxError, OSError) as exc:
        raise Failure(str(exc), 1) from None


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from bot.sandbox import SandboxError, TranscriptError, replay

    try:
        found = await replay(args.file, settings)
    except OSError as exc:
        raise Failure(f"cannot read {args.file}: {exc.strerror or exc}", 2) from None
    except TranscriptError as exc:
        raise Failure(f"{args.file}: {exc}", 2) from None
    except SandboxError as exc:
        raise Failure(str(exc), 1) from None
    if found.same:
        sys.stdout.write(f"{args.file}: {found.steps} steps, the bot answered the same\n")
        return 0
    sys.stdout.write(found.diff)
    sys.stdout.write(f"{args.file}: the bot now answers differently (- recorded, + now)\n")
    return 1


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
    "run": _run,
    "db": _db,
    "export": _export,
    "check": _check,
    "simulate": _simulate,
    "lottery": _lottery,
    "broadcast": _broadcast,
    "stats": _stats,
    "report": _stats,
    "emulator": _emulator,
    "console": _console,
    "sandbox": _sandbox,
    "replay": _replay,
}
