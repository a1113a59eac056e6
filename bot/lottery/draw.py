"""The verifiable lottery draw: seed, commitment, entrant digest and the published pick order.

This docstring is the reference the README's "Checking a draw by hand" points to. Anyone with
the seed and the entrant list can recompute a draw with nothing but SHA-256:

1. Seed. 32 random bytes from `secrets`, used as their 64-character lowercase hex text.
2. Commitment. When the lottery opens the bot publishes SHA-256 of the seed's ASCII hex text,
   as lowercase hex (`printf %s SEED | sha256sum`). The seed stays secret until the draw, so
   members cannot time or choose their entries to suit it, and it cannot be swapped afterwards.
   (Whoever can read the bot's database can read the seed early: the commitment proves the
   seed was fixed before entries opened, not that the operator did not look at it.)
3. Entrant list. The eligible entrants' Telegram user ids, each counted once, sorted ascending
   as integers, written in decimal and joined by "," with no spaces: "101,205,333" (no
   entrants is the empty text). Its digest is SHA-256 of that text (UTF-8), lowercase hex.
4. Picks. The pool is the sorted id list and a counter c starts at 0, shared by all picks.
   For each pick, repeat: h = SHA-256 of the text "{seed}:{digest}:{c}" read as a big-endian
   256-bit integer; add 1 to c; with m = the pool size, if h < 2**256 - (2**256 mod m), remove
   the id at position h mod m (counting from 0) from the pool; that is the pick. Otherwise try
   again with the next c. Rejecting the top few values of h keeps every position equally likely
   (no modulo bias); it happens with probability below m / 2**256, so in practice never. When
   the pool is empty there are no more picks.
5. Winners. A lottery for W winners takes the first W picks (everyone, if fewer entered). A
   reroll takes the next pick in the same sequence (pick W, W+1, …), so it can never choose
   anyone picked before.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from itertools import islice

SEED_BYTES = 32
_SEED = re.compile(r"[0-9a-f]{64}")
_SPACE = 2**256


def new_seed() -> str:
    """A fresh secret seed: 32 random bytes as 64 lowercase hex characters."""
    return secrets.token_hex(SEED_BYTES)


def is_seed(text: str) -> bool:
    """Whether `text` is a well-formed seed: exactly 64 lowercase hex characters."""
    return _SEED.fullmatch(text) is not None


def commitment(seed: str) -> str:
    """The commitment published when a lottery opens: SHA-256 of the seed's hex text."""
    _check_seed(seed)
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def entrants_text(user_ids: Iterable[int]) -> str:
    """The canonical entrant list: distinct ids, ascending, in decimal, joined by ","."""
    return ",".join(str(user_id) for user_id in _pool(user_ids))


def entrants_digest(user_ids: Iterable[int]) -> str:
    """SHA-256 (lowercase hex) of the canonical entrant list, as the draw announcement shows."""
    return _digest(_pool(user_ids))


def picks(seed: str, user_ids: Iterable[int]) -> Iterator[int]:
    """The whole pick order for `seed` and these entrants, one id at a time.

    The seed and the entrants are read at once (a bad seed raises `ValueError` here, not on
    the first `next()`); picks are computed lazily, so taking a few from a long list is cheap.
    """
    _check_seed(seed)
    pool = _pool(user_ids)
    return _picks(f"{seed}:{_digest(pool)}:", pool)


def draw(seed: str, user_ids: Iterable[int], winners: int) -> list[int]:
    """The first `winners` picks: the winners of a lottery (everyone, if fewer entered)."""
    if winners < 0:
        raise ValueError(f"the number of winners cannot be negative, got {winners}")
    return list(islice(picks(seed, user_ids), winners))


def _check_seed(seed: str) -> None:
    if not is_seed(seed):
        raise ValueError("a seed is 64 lowercase hex characters")


def _pool(user_ids: Iterable[int]) -> list[int]:
    return sorted({int(user_id) for user_id in user_ids})


def _digest(pool: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, pool)).encode()).hexdigest()


def _picks(prefix: str, pool: list[int]) -> Iterator[int]:
    counter = 0
    while pool:
        size = len(pool)
        limit = _SPACE - _SPACE % size
        while True:
            h = int.from_bytes(hashlib.sha256(f"{prefix}{counter}".encode()).digest(), "big")
            counter += 1
            if h < limit:
                yield pool.pop(h % size)
                break
