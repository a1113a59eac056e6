"""Tidepool: a Telegram bot that runs community operations from declarative SOP files."""

__version__ = "0.1.0"
