"""The console's pages, one module each; each has `routes(console)` for its pages and API."""

from __future__ import annotations

from bot.console.pages import (
    broadcasts,
    group,
    groups,
    invites,
    lotteries,
    members,
    moderation,
    orders,
    sops,
)

PAGES = (groups, group, invites, moderation, sops, broadcasts, members, lotteries, orders)
