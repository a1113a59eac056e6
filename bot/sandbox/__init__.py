"""The sandbox: the real bot process against the emulator, with a page to rehearse flows in."""

from bot.sandbox._replay import Replayed, replay
from bot.sandbox._run import run_sandbox
from bot.sandbox._sandbox import Sandbox, SandboxError, SandboxFiles
from bot.sandbox._transcript import TranscriptError

__all__ = [
    "Replayed",
    "Sandbox",
    "SandboxError",
    "SandboxFiles",
    "TranscriptError",
    "replay",
    "run_sandbox",
]
