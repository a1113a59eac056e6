"""Routers of the bot, one per feature, assembled by `bot.app.create_dispatcher`."""
