"""The console's web application: sign-in, sessions, CSRF, access checks and the pages' frame.

Pages live in `bot.console.pages`, one module each, and register their routes (HTML pages and
the JSON API under `/api/`) through `routes(console)`. Everything they need goes through the
`Console`: who is asking (`viewer`), which group they may see (`group`), rendering (`page`),
reading a JSON body (`body`) and recording a change (`record`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from loguru import logger

from bot.console._access import RECHECK, Viewer
from bot.console._auth import COOKIE, SESSION_DAYS, Refused
from bot.console._changes import Changes
from bot.console._labels import LANGUAGES, Labels
from bot.factory import Tidepool
from bot.registry import KnownGroup

HERE = Path(__file__).parent
LANG_COOKIE = "tidepool_lang"
VIEWER = web.RequestKey("viewer", Viewer)
LANGUAGE = web.RequestKey("lang", str)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Scripts and styles come only from the console itself; nothing is inlined into a page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class Console:
    """The console over one assembled application."""

    def __init__(self, app: Tidepool, public_url: str) -> None:
        self.app = app
        self.public_url = public_url.rstrip("/")
        self.secure = self.public_url.startswith("https://")
        self.sign_in = app.sign_in
        self.access = app.console_access
        self.changes = Changes(app.db, app.clock)
        self.labels = Labels.load(HERE / "labels")
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def application(self) -> web.Application:
        from bot.console.pages import PAGES

        web_app = web.Application(middlewares=[self._headers, self._errors, self._signed_in])
        web_app.add_routes(
            [
                web.get("/signin", self._signin_help),
                web.get("/signin/{token}", self._signin_page),
                web.post("/signin/{token}", self._signin),
                web.post("/signout", self._signout),
                web.static("/static", HERE / "static"),
            ]
        )
        for page in PAGES:
            web_app.add_routes(page.routes(self))
        return web_app

    async def link(self, user_id: int) -> str:
        """A one-time sign-in link for `user_id`, at the console's public address."""
        return f"{self.public_url}/signin/{await self.sign_in.issue_link(user_id)}"

    # ----- what pages use ---------------------------------------------------------------------
    @staticmethod
    def viewer(request: web.Request) -> Viewer:
        viewer: Viewer = request[VIEWER]
        return viewer

    def group(self, request: web.Request, chat_id: int | str | None = None) -> KnownGroup:
        """The group of the request (`{chat_id}` in the path): 404 unknown, 403 not theirs."""
        raw = request.match_info.get("chat_id") if chat_id is None else chat_id
        try:
            wanted = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text=f"not a group id: {raw!r}") from None
        if not self.viewer(request).sees(wanted):
            raise web.HTTPForbidden(text="you are not an admin of this group")
        known = self.app.registry.groups.get(wanted)
        if known is None:
            raise web.HTTPNotFound(text=f"no group {wanted}")
        return known

    def visible_groups(self, request: web.Request) -> list[int]:
        """The active groups the viewer may see."""
        viewer = self.viewer(request)
        return [c for c in self.app.registry.active_group_ids() if viewer.sees(c)]

    def t(self, request: web.Request) -> Callable[..., str]:
        language = request[LANGUAGE]
        return lambda key, **values: self.labels(key, language, **values)

    def page(self, request: web.Request, template: str, **context: Any) -> web.Response:
        """A page in the console's frame (navigation, language switch, sign-out)."""
        viewer = request.get(VIEWER)
        html = self.templates.get_template(template).render(
            t=self.t(request),
            lang=request[LANGUAGE],
            languages=LANGUAGES,
            viewer=viewer,
            csrf=viewer.csrf if viewer is not None else "",
            path=request.path,
            # The same page in each language, its other parameters (?days=, filters) kept.
            switch={
                language: str(request.rel_url.update_query(lang=language)) for language in LANGUAGES
            },
            **context,
        )
        return web.Response(text=html, content_type="text/html")

    @staticmethod
    async def body(request: web.Request) -> dict[str, Any]:
        """The request's JSON object; 400 with a clear message when it is not one."""
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return data

    async def record(
        self,
        request: web.Request,
        area: str,
        action: str,
        chat_id: int | None = None,
        **details: Any,
    ) -> None:
        await self.changes.record(self.viewer(request), area, action, chat_id, **details)

    # ----- sign-in ----------------------------------------------------------------------------
    async def _signin_help(self, request: web.Request) -> web.Response:
        return self.page(
            request, "signin.html", state="help", bot=self.app.me.username or "", auto=False
        )

    async def _signin_page(self, request: web.Request) -> web.Response:
        # A GET never uses the link up: link previews and scanners fetch it too.
        return self.page(
            request,
            "signin.html",
            state="confirm",
            bot=self.app.me.username or "",
            auto=request.query.get("auto") == "1",
        )

    async def _signin(self, request: web.Request) -> web.StreamResponse:
        bot = self.app.me.username or ""
        try:
            user_id = await self.sign_in.redeem(request.match_info["token"])
        except Refused as refused:
            response = self.page(
                request, "signin.html", state=refused.why.value, bot=bot, auto=False
            )
            response.set_status(403)
            return response
        groups = await self.access.groups_of(user_id)
        if groups is not None and not groups:
            logger.info("console: {} signed in but administers no group; refused", user_id)
            response = self.page(request, "signin.html", state="nobody", bot=bot, auto=False)
            response.set_status(403)
            return response
        name = await self.access.name_of(user_id)
        session = await self.sign_in.open_session(user_id, name, groups)
        logger.info("console: {} ({}) signed in", name, user_id)
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            self.sign_in.cookie(session.id),
            max_age=SESSION_DAYS * 86400,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.secure,
        )
        raise response

    async def _signout(self, request: web.Request) -> web.StreamResponse:
        viewer = self.viewer(request)
        if viewer.session_id is not None:
            await self.sign_in.end(viewer.session_id)
        response = web.HTTPSeeOther("/signin?signed_out=1")
        response.del_cookie(COOKIE, path="/")
        raise response

    # ----- middlewares ------------------------------------------------------------------------
    @web.middleware
    async def _signed_in(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[LANGUAGE] = self._language(request)
        path = request.path
        if path == "/signin" or path.startswith(("/signin/", "/static/")):
            return await self._language_cookie(request, await handler(request))
        viewer = await self._viewer(request)
        api = path.startswith("/api/")
        if viewer is None:
            if api:
                raise web.HTTPUnauthorized(text="sign in first (send /console to the bot)")
            raise web.HTTPFound("/signin")
        request[VIEWER] = viewer
        if request.method not in SAFE_METHODS and viewer.session_id is not None:
            await self._check_csrf(request, viewer)
        return await self._language_cookie(request, await handler(request))

    async def _viewer(self, request: web.Request) -> Viewer | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            user_id = await self.sign_in.token_user(authorization.removeprefix("Bearer ").strip())
            if user_id is None or user_id not in self.access.owner_ids:
                return None
            return Viewer(user_id=user_id, name=f"token of {user_id}", groups=None)
        session_id = self.sign_in.session_id(request.cookies.get(COOKIE, ""))
        if session_id is None:
            return None
        session = await self.sign_in.session(session_id)
        if session is None:
            return None
        groups = session.groups
        owner = session.user_id in self.access.owner_ids
        if owner:
            groups = None
        elif groups is None or self.app.clock.now() - session.checked_at >= RECHECK:
            groups = await self.access.groups_of(session.user_id)
            await self.sign_in.recheck(session.id, groups)
            if groups is not None and not groups:
                await self.sign_in.end(session.id)
                logger.info("console: {} is no admin any more; signed out", session.user_id)
                return None
        return Viewer(
            user_id=session.user_id,
            name=session.name,
            groups=groups,
            session_id=session.id,
            csrf=session.csrf,
        )

    @staticmethod
    async def _check_csrf(request: web.Request, viewer: Viewer) -> None:
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = str((await request.post()).get("csrf", ""))
        if not sent or not hmac.compare_digest(sent, viewer.csrf):
            raise web.HTTPForbidden(text="the request lacks the page's CSRF token; reload the page")

    def _language(self, request: web.Request) -> str:
        for choice in (request.query.get("lang"), request.cookies.get(LANG_COOKIE)):
            if choice in LANGUAGES:
                return str(choice)
        return self.app.settings.language

    @staticmethod
    async def _language_cookie(
        request: web.Request, response: web.StreamResponse
    ) -> web.StreamResponse:
        if request.query.get("lang") in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE, request[LANGUAGE], max_age=365 * 86400, path="/", samesite="Lax"
            )
        return response

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Errors as JSON on the API and as a page elsewhere; never a traceback."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = (
                exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            )
            return self._error(request, exc.status, message or exc.reason)
        except Exception:
            logger.exception("console: {} {} failed", request.method, request.path)
            return self._error(request, 500, "the console failed; the log says why")

    def _error(self, request: web.Request, status: int, message: str) -> web.StreamResponse:
        if request.path.startswith("/api/") or "application/json" in request.headers.get(
            "Accept", ""
        ):
            return web.json_response({"error": message, "status": status}, status=status)
        request.setdefault(LANGUAGE, self.app.settings.language)
        response = self.page(request, "error.html", status=status, message=message)
        response.set_status(status)
        return response
