"""The sandbox page: the emulated chats as a Telegram client shows them, the operator's controls,
the time bar and what the bot is thinking. Server-rendered; a small script swaps the parts in
when the emulator's world changes (server-sent events) and posts the operator's actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from loguru import logger

from bot.console._auth import SignIn
from bot.emulator import EmulatorError
from bot.emulator._state import ControlError
from bot.sandbox._labels import labels_for
from bot.sandbox._operator import ActionError
from bot.sandbox._render import message_view, name_of, plain_text
from bot.sandbox._sandbox import TOKEN, Sandbox
from bot.sandbox._time import BotBusy
from bot.sandbox._transcript import build

HERE = Path(__file__).parent
KEEPALIVE = 25.0  # seconds between comments on an idle event stream
MOVES = {"10m": 600, "1h": 3600, "1d": 86400}


class SandboxPage:
    """The aiohttp routes of the page, over one running `Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals["static"] = _static_url

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/view", self.view),
                web.get("/events", self.events),
                web.post("/act", self.act),
                web.get("/transcript", self.transcript),
                web.get("/console", self.console),
                web.static("/static", HERE / "static"),
            ]
        )
        return app

    # ----- pages ------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        context = await self._context(request)
        html = self.templates.get_template("page.html").render(**context)
        return web.Response(text=html, content_type="text/html")

    async def view(self, request: web.Request) -> web.Response:
        context = await self._context(request)
        parts = {
            name: self.templates.get_template(f"{name}.html").render(**context)
            for name in ("chats", "chat", "people", "mind", "clock")
        }
        return web.json_response({"version": context["version"], "parts": parts})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the world's version each time it changes (no polling)."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        world = self.sandbox.world
        seen = int(request.query.get("since", "-1"))
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while True:
                version = await world.changed(seen, timeout=KEEPALIVE)
                if version == seen:
                    await response.write(b": idle\n\n")
                    continue
                seen = version
                await response.write(f"data: {version}\n\n".encode())
        return response

    async def transcript(self, request: web.Request) -> web.Response:
        sandbox = self.sandbox
        assert sandbox.meta is not None
        text = build(
            sandbox.journal.entries,
            sandbox.world.calls,
            sandbox.operator.chat_name,
            {"language": sandbox.meta.language},
        )
        folder = sandbox.files.transcripts
        folder.mkdir(parents=True, exist_ok=True)
        name = f"transcript-{sandbox.clock.now():%Y%m%d-%H%M%S}.yaml"
        (folder / name).write_text(text, encoding="utf-8")
        logger.info("sandbox: transcript saved to {}", folder / name)
        return web.Response(
            text=text,
            content_type="application/x-yaml",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Saved-To": str(folder / name),
            },
        )

    async def console(self, request: web.Request) -> web.Response:
        """The bot's console, signed in as the sandbox's owner (a fresh one-time link)."""
        sandbox = self.sandbox
        assert sandbox.meta is not None and sandbox.engine is not None
        sign_in = SignIn(sandbox.engine, sandbox.clock, TOKEN)
        token = await sign_in.issue_link(sandbox.meta.owner_id)
        raise web.HTTPFound(f"{sandbox.console_url}/signin/{token}?auto=1")

    # ----- actions ----------------------------------------------------------------------------
    async def act(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            return _problem("the request is not JSON")
        if not isinstance(data, dict):
            return _problem("the request must be a JSON object")
        labels = labels_for(data.get("lang") or self._language())
        try:
            said = await self._act(data, labels)
        except (ActionError, EmulatorError, ControlError) as exc:
            return _problem(str(exc))
        except BotBusy as exc:
            return _problem(f"{labels['busy']}: {exc}")
        except (KeyError, ValueError, TypeError) as exc:
            return _problem(f"bad request: {exc}")
        return web.json_response({"ok": True, **said})

    async def _act(self, data: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
        operator = self.sandbox.operator
        action = data.get("action")
        chat = int(data["chat"]) if data.get("chat") is not None else None
        person = int(data["as"]) if data.get("as") is not None else None
        if action == "say" and chat is not None and person is not None:
            reply = data.get("reply_to")
            await operator.say(
                chat, person, str(data.get("text", "")), int(reply) if reply else None
            )
            return {}
        if action == "press" and chat is not None and person is not None:
            query = await operator.press(chat, person, int(data["message_id"]), str(data["data"]))
            answer = await self._answer_of(query)
            return {"answer": answer} if answer else {}
        if action == "new" and chat is not None:
            user_id = await operator.new_person(str(data.get("name", "")), self._language())
            await operator.join(chat, user_id, new=True)
            return {"as": user_id}
        if action in ("join", "leave", "admin") and chat is not None and person is not None:
            act = {"join": operator.join, "leave": operator.leave, "admin": operator.make_admin}
            await act[action](chat, person)
            return {}
        if action == "start" and person is not None:
            await operator.start(person)
            return {"chat": person}
        if action == "clock":
            if data.get("by") == "next":
                due = await operator.to_next_due()
                return {"note": labels["nothing_due"] if due is None else ""}
            seconds = MOVES.get(str(data.get("by")))
            if seconds is None:
                raise ActionError("the clock moves by 10m, 1h, 1d or to the next due step")
            steps = await operator.advance(seconds)
            return {"note": labels["moved"].format(steps=steps)}
        raise ActionError(f"unknown action {action!r} (or a chat or person is missing)")

    async def _answer_of(self, query_id: str, seconds: float = 5.0) -> str | None:
        """The text the bot answered a button press with (a toast), once it answered."""
        world = self.sandbox.world
        deadline = asyncio.get_running_loop().time() + seconds
        version = world.version
        while asyncio.get_running_loop().time() < deadline:
            record = world.callbacks.get(query_id)
            if record is not None and record.answer is not None:
                text = record.answer.get("text")
                return str(text) if text else None
            version = await world.changed(
                version, timeout=deadline - asyncio.get_running_loop().time()
            )
        return None

    # ----- what the page shows ----------------------------------------------------------------
    def _language(self) -> str:
        return self.sandbox.meta.language if self.sandbox.meta else "zh"

    async def _context(self, request: web.Request) -> dict[str, Any]:
        sandbox = self.sandbox
        world = sandbox.world
        assert sandbox.meta is not None
        language = request.query.get("lang") or self._language()
        labels = labels_for(language)
        chat_id = _int(request.query.get("chat")) or sandbox.meta.chat_id
        if chat_id not in world.chats:
            chat_id = sandbox.meta.chat_id
        chat = world.chats[chat_id]
        me = _int(request.query.get("as")) or sandbox.meta.owner_id
        if me not in world.users:
            me = sandbox.meta.owner_id
        if chat.type == "private":
            me = chat_id
        group = await sandbox.mind.group(chat_id) if chat.type != "private" else None
        zone = ZoneInfo((group.timezone if group else None) or sandbox.settings.timezone)
        now = sandbox.clock.now()
        due = await sandbox.mind.next_due(now)
        messages = [message_view(rec, zone, labels) for _, rec in sorted(chat.messages.items())]
        pinned = next(
            (view for view in reversed(messages) if view.pinned and not view.deleted), None
        )
        return {
            "L": labels,
            "lang": language,
            "other_lang": "en" if language == "zh" else "zh",
            "version": world.version,
            "chat": {
                "id": chat_id,
                "title": _chat_title(world, chat),
                "private": chat.type == "private",
            },
            "me": me,
            "me_name": name_of(world.users.get(me)),
            "chats": _chat_list(world, sandbox.meta.chat_id),
            "messages": messages,
            "pinned": pinned,
            "people": _people(world, chat) if chat.type != "private" else [],
            "started": me in world.started,
            "mind": await _mind_context(sandbox, chat_id, chat.type == "private", me, zone),
            "clock": {
                "now": _moment(now.astimezone(zone), labels),
                "zone": zone.key,
                "due": f"{due.astimezone(zone):%m-%d %H:%M}" if due else None,
            },
            "bot_exited": sandbox.bot.exited if sandbox.bot else None,
            "state": json.dumps(
                {"chat": chat_id, "as": me, "lang": language, "version": world.version}
            ),
        }


async def _mind_context(
    sandbox: Sandbox, chat_id: int, private: bool, me: int, zone: ZoneInfo
) -> dict[str, Any]:
    def when(moment: datetime | None) -> str:
        return f"{moment.astimezone(zone):%m-%d %H:%M:%S}" if moment else ""

    runs = await sandbox.mind.runs(chat_id, None if private else me)
    return {
        "runs": runs,
        "when": when,
        "member": None if private else await sandbox.mind.member(chat_id, me),
        "pushes": await sandbox.mind.pushes(chat_id),
    }


def _chat_title(world: Any, chat: Any) -> str:
    if chat.type == "private":
        return name_of(world.users.get(chat.id))
    return str(chat.title or chat.id)


def _chat_list(world: Any, demo: int) -> list[dict[str, Any]]:
    chats = []
    for chat in world.chats.values():
        if chat.migrated_to is not None:
            continue
        last = next(
            (rec for _, rec in sorted(chat.messages.items(), reverse=True) if not rec.deleted),
            None,
        )
        preview = ""
        if last is not None:
            text = last.message.text or last.message.caption or ""
            preview = plain_text(text, last.parse_mode).split("\n", 1)[0][:40]
        chats.append(
            {
                "id": chat.id,
                "title": _chat_title(world, chat),
                "private": chat.type == "private",
                "preview": preview,
                "count": len(chat.messages),
            }
        )
    chats.sort(key=lambda item: (item["private"], item["id"] != demo, item["title"]))
    return chats


def _people(world: Any, chat: Any) -> list[dict[str, Any]]:
    people = []
    for user in world.users.values():
        membership = chat.member(user.id)
        role = {
            "creator": "owner",
            "administrator": "admin",
            "member": "member",
            "restricted": "restricted",
        }.get(membership.status, "gone")
        if not membership.present:
            role = "gone"
        people.append(
            {
                "id": user.id,
                "name": name_of(user),
                "role": role,
                "started": user.id in world.started,
                "until": membership.until_date,
            }
        )
    order = {"owner": 0, "admin": 1, "member": 2, "restricted": 3, "gone": 4}
    people.sort(key=lambda person: (order[person["role"]], person["id"]))
    return people


def _moment(local: datetime, labels: dict[str, str]) -> str:
    """`2026-12-08 Tue 20:16` (周二 in Chinese)."""
    weekday = labels["weekdays"].split()[local.weekday()]
    return f"{local:%Y-%m-%d} {weekday} {local:%H:%M}"


def _static_url(name: str) -> str:
    """A static file's address, with its modification time so a changed file is fetched anew."""
    return f"/static/{name}?v={int((HERE / 'static' / name).stat().st_mtime)}"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _problem(message: str, status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        logger.exception("sandbox page: {} failed", request.path)
        return _problem(f"internal error: {type(exc).__name__}: {exc}", 500)
    return response


async def serve_page(sandbox: Sandbox, host: str, port: int) -> web.AppRunner:
    """Start serving the page; the caller cleans the runner up."""
    runner = web.AppRunner(SandboxPage(sandbox).app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            f"cannot serve the sandbox page on {host}:{port} ({exc.strerror}): "
            "another program uses the port; set SANDBOX_PORT to another one"
        ) from None
    return runner
