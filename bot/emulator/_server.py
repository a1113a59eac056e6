"""The emulator application, an in-process server context manager and a run-forever entry point."""

from __future__ import annotations

import asyncio

from aiohttp import web
from loguru import logger

from . import _botapi, _chatapi, _joinrequests  # noqa: F401  (they register their handlers)
from ._control import ControlApi, control_errors
from ._state import ApiError, World
from .client import EmulatorClient


class Emulator:
    """One emulated Telegram Bot API for one bot: its world state plus the aiohttp app.

    ``world`` (e.g. ``World.from_snapshot(data)``) replaces the fresh one; the token and bot
    identity are then the world's."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        bot_username: str = "tidepool_test_bot",
        bot_first_name: str = "Tidepool",
        *,
        world: World | None = None,
    ) -> None:
        self.world = world if world is not None else World(token, bot_username, bot_first_name)

    @property
    def token(self) -> str:
        """The only token accepted by the Bot API routes."""
        return self.world.token

    @property
    def bot_id(self) -> int:
        """The bot's user id (the number before the colon in the token)."""
        return self.world.bot_id

    def reset(self) -> None:
        """Empty the world (keeps token and bot identity)."""
        self.world.reset()

    async def _bot_api(self, request: web.Request) -> web.Response:
        return await _botapi.handle(self.world, request)

    async def _not_found(self, request: web.Request) -> web.Response:
        if request.path.startswith("/control/"):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(ApiError(404, "Not Found").payload(), status=404)

    def make_app(self) -> web.Application:
        """The aiohttp application serving ``/bot{token}/{method}`` and ``/control/...``."""
        app = web.Application(middlewares=[control_errors], client_max_size=64 * 1024 * 1024)
        app.add_routes(ControlApi(self.world).routes())
        app.router.add_route("*", "/bot{token}/{method}", self._bot_api)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app


class EmulatorServer:
    """``async with EmulatorServer(token=...) as srv:`` runs an emulator on a local port.

    ``EmulatorServer(world=World.from_snapshot(data))`` carries on from a snapshot (the token
    and bot identity are then the snapshot's)."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_username: str = "tidepool_test_bot",
        bot_first_name: str = "Tidepool",
        world: World | None = None,
    ) -> None:
        self.emulator = Emulator(token, bot_username, bot_first_name, world=world)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._client: EmulatorClient | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (for ``TelegramAPIServer.from_base``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def client(self) -> EmulatorClient:
        """A control-API client bound to this server (available inside the context)."""
        if self._client is None:
            raise RuntimeError("EmulatorServer is not running")
        return self._client

    async def start(self) -> None:
        """Bind and start serving."""
        self.emulator.world.closing = False
        runner = web.AppRunner(self.emulator.make_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        self._client = EmulatorClient(self.base_url)
        logger.debug("emulator listening on {}", self.base_url)

    async def stop(self) -> None:
        """Close the client and stop serving."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            self.emulator.world.close()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def serve(host: str, port: int, token: str) -> None:
    """Run an emulator until cancelled."""
    async with EmulatorServer(token=token, host=host, port=port) as srv:
        logger.info("Telegram Bot API emulator for bot {} on {}", srv.emulator.bot_id, srv.base_url)
        await asyncio.Event().wait()
