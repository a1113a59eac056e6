"""The operator console: a web page where owners and admins see every group and steer it.

`tidepool run` serves it on CONSOLE_LISTEN (`bot.console._serve.serve_console`); tests build
the same application with `Console(app, url).application()` (`bot.console._web`). Sign-in links
(`_auth`) and who sees which group (`_access`) are built by the factory, as the bot's /console
command hands out links too.
"""
