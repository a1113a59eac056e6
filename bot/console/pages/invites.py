"""The invites page: one group's invitations, as /invites shows them to its admins and more.

    GET  /groups/{chat_id}/invites              the page: K and the cycle time over 30 days,
                                                the month's inviters, the campaigns, the latest
                                                referrals, and the console's changes to them
    GET  /api/groups/{chat_id}/invites          the same as JSON
    POST /api/groups/{chat_id}/campaigns/{name}/revoke
                                                revoke a campaign's link (as /campaign revoke)

The numbers come from `bot.invites.numbers` (through `invites_data`), the functions /invites
reads, so the page and the chat never disagree. A revoke goes through
`InviteLinks.revoke_campaign`: Telegram first, then the database, so a link Telegram refused to
revoke is never shown as revoked.
"""

from __future__ import annotations

from aiogram.exceptions import TelegramAPIError
from aiohttp import web
from loguru import logger

from bot.console._web import Console
from bot.console.pages import invites_data as data
from bot.console.pages.members import change_rows, when
from bot.invites.links import CampaignError

CHANGES_SHOWN = 20


def share(value: float | None) -> str:
    """A retention share as the page shows it; "–" when nobody is old enough to count."""
    return "–" if value is None else f"{value:.0%}"


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    invites = app.invites

    def chat_of(request: web.Request) -> int:
        """The path's group, once the viewer may see it (else 400, 403 or 404)."""
        console.group(request)
        return int(request.match_info["chat_id"])

    async def page(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        found = await data.overview(invites, chat_id)
        changes = await console.changes.recent(
            chat_ids=[chat_id], areas=("invite",), limit=CHANGES_SHOWN
        )
        fission = found.fission
        return console.page(
            request,
            "invites.html",
            chat_id=chat_id,
            group_title=app.registry.title(chat_id),
            o=found,
            k="–" if fission.k is None else f"{fission.k:.2f}",
            cycle=None if fission.cycle_days is None else f"{fission.cycle_days:.1f}",
            month=f"{found.month_start:%Y-%m}",
            reasons=data.REASONS,
            share=share,
            when=lambda at: when(console, at, chat_id),
            changes=change_rows(console, request, changes),
        )

    async def api(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        found = await data.overview(invites, chat_id)
        return web.json_response({**found.as_dict(), "title": app.registry.title(chat_id)})

    async def revoke(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        name = request.match_info["name"]
        t = console.t(request)
        try:
            revoked = await invites.links.revoke_campaign(chat_id, name)
        except CampaignError:
            raise web.HTTPNotFound(text=t("invites.no_campaign", name=name)) from None
        except TelegramAPIError as exc:
            logger.bind(chat_id=chat_id).warning(
                "console: Telegram refused to revoke campaign {}: {}", name, exc
            )
            raise web.HTTPBadGateway(
                text=t("invites.revoke_refused", name=name, reason=exc.message)
            ) from None
        await console.record(
            request, "invite", "campaign_revoked", chat_id, campaign=revoked.name, link=revoked.link
        )
        return web.json_response({"revoked": {"name": revoked.name, "link": revoked.link}})

    return [
        web.get(r"/groups/{chat_id:-?\d+}/invites", page),
        web.get(r"/api/groups/{chat_id:-?\d+}/invites", api),
        web.post(r"/api/groups/{chat_id:-?\d+}/campaigns/{name}/revoke", revoke),
    ]
