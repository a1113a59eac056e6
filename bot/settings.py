"""Settings from the environment and `.env`, validated once, with one-line errors."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.push.rules import QuietHours

TELEGRAM_API = "https://api.telegram.org"
TOKEN_PATTERN = re.compile(r"^\d+:[A-Za-z0-9_-]{1,}$")
LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line meant for the operator."""


class Settings(BaseSettings):
    """Every setting of the bot. Names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: SecretStr | None = None
    telegram_api_base: str = TELEGRAM_API
    database_url: str = "sqlite+aiosqlite:///data/tidepool.db"
    timezone: str = "Asia/Shanghai"
    owner_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    sops_dir: Path = Path("sops")
    content_dir: Path = Path("content")
    log_level: LogLevel = "INFO"
    store_text: bool = False
    language: Literal["zh", "en"] = "zh"
    # Pushes (broadcasts, live reminders) wait out each group's quiet hours, in its time zone,
    # and stop at its daily cap; /group changes both for one group.
    quiet_hours: str = "22:00-08:00"
    daily_cap: int = Field(default=6, ge=0, le=1000)
    # Group health alerts: a fall of this share of the score week over week, or this many days
    # without a message, tells the group's admins and the owners (once per week or silence).
    health_drop: float = Field(default=0.3, gt=0, lt=1)
    health_silent_days: int = Field(default=3, ge=1, le=365)
    # Files the bot keeps beside a server database (with SQLite they sit beside its file).
    data_dir: Path = Path("data")
    # The sandbox's page (tidepool sandbox; make run without a token) listens on this port.
    sandbox_port: int = Field(default=8080, ge=1, le=65535)
    # The operator console (a web page for owners and admins): where `tidepool run` serves it
    # ("off": not at all), and its public address when it sits behind a reverse proxy with TLS.
    console_listen: str = "127.0.0.1:8090"
    console_url: str | None = None
    # For end-to-end tests: a file holding seconds to add to the bot's clock.
    clock_file: Path | None = None

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        token = value.get_secret_value().strip()
        if not TOKEN_PATTERN.match(token):
            raise ValueError("must look like 123456789:AAE... (the token @BotFather gave you)")
        return SecretStr(token)

    @field_validator("telegram_api_base")
    @classmethod
    def _api_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL such as {TELEGRAM_API}")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("sqlite://") or value.startswith("sqlite:///"):
            raise ValueError("use the async driver: sqlite+aiosqlite:///data/tidepool.db")
        if value.startswith(("postgresql://", "postgres://", "postgresql+psycopg")):
            raise ValueError("use the async driver: postgresql+asyncpg://user:pass@host/db")
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://user:pass@host/db"
            )
        return value

    @field_validator("console_listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "off":
            return "off"
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT such as 127.0.0.1:8090 or 0.0.0.0:8090, or off")
        return value

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be the console's public address, e.g. https://console.example.com"
            )
        return value.strip().rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai"
            ) from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str) -> str:
        window = QuietHours.parse(value)
        return str(window) if window is not None else "off"

    @field_validator("owner_ids", mode="before")
    @classmethod
    def _comma_separated_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",")]
            try:
                return [int(part) for part in parts if part]
            except ValueError:
                raise ValueError(
                    "must be Telegram user ids separated by commas, e.g. 123456789,987654321"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @cached_property
    def tz(self) -> ZoneInfo:
        """The default time zone of groups."""
        return ZoneInfo(self.timezone)

    @property
    def console_address(self) -> tuple[str, int]:
        """Where the console listens (host, port); CONSOLE_LISTEN must not be off."""
        host, _, port = self.console_listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def console_public_url(self) -> str:
        """The console's address in links: CONSOLE_URL, or where it listens."""
        if self.console_url:
            return self.console_url
        if self.console_listen == "off":
            return ""
        host, port = self.console_address
        return f"http://{host}:{port}"

    def require_token(self) -> str:
        """The bot token, or a SettingsError saying how to get one."""
        if self.bot_token is None:
            raise SettingsError(
                "BOT_TOKEN is not set: create a bot with @BotFather and put its token in .env "
                "(see .env.example)"
            )
        return self.bot_token.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one SettingsError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if name == "BOT_TOKEN" or isinstance(value, dict) else f" (got {value!r})"
        raise SettingsError(
            f"{name} is invalid{shown}: {message}; fix it in .env or the environment"
        ) from None
