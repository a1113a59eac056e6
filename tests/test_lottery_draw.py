"""The verifiable draw: known answers anyone can recompute, rerolls, and a fair chance for all."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.lottery.draw import (
    commitment,
    draw,
    entrants_digest,
    entrants_text,
    is_seed,
    new_seed,
    picks,
)

ZERO_SEED = "00" * 32
TEN = list(range(1, 11))

# The 0.999 quantile of the chi-square distribution with 9 degrees of freedom (10 entrants),
# from the regularized incomplete gamma function: a fair draw exceeds it one run in a thousand,
# and the seeds below are fixed, so the test is deterministic.
CHI2_9DF_999 = 27.877


def test_commitment_is_sha256_of_the_seed_hex_text() -> None:
    seed = new_seed()
    assert commitment(seed) == hashlib.sha256(seed.encode("ascii")).hexdigest()
    # `printf %s 000…000 | sha256sum`
    assert commitment(ZERO_SEED) == (
        "60e05bd1b195af2f94112fa7197a5c88289058840ce7c6df9693756bc6250f55"
    )


def test_new_seeds_are_well_formed_and_fresh() -> None:
    seeds = {new_seed() for _ in range(20)}
    assert len(seeds) == 20
    assert all(is_seed(seed) for seed in seeds)


@pytest.mark.parametrize(
    "text", ["", "00" * 31, "00" * 33, "AB" * 32, "0g" * 32, " " + "0" * 63, "0" * 64 + "\n"]
)
def test_malformed_seeds_are_refused(text: str) -> None:
    assert not is_seed(text)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        picks(text, TEN)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        commitment(text)


def test_entrant_list_is_distinct_ids_ascending_as_integers() -> None:
    assert entrants_text([333, 101, 205, 101, 333]) == "101,205,333"
    assert entrants_text([10, 9, 100]) == "9,10,100", "numeric order, not text order"
    assert entrants_text([]) == ""


def test_entrant_digest_of_a_known_list() -> None:
    # `printf %s 101,205,333 | sha256sum`
    assert entrants_digest([205, 333, 101]) == (
        "e71df1e9bfa50be78f47f771b45e3c7730077dda1582a6f46829097dcd050ff2"
    )
    assert entrants_digest([]) == hashlib.sha256(b"").hexdigest()


def test_known_answer_recomputed_by_hand() -> None:
    # The published algorithm, written out again without the module.
    digest = hashlib.sha256(b"1,2,3,4,5,6,7,8,9,10").hexdigest()
    pool = list(range(1, 11))
    counter = 0
    expected = []
    while pool:
        while True:
            message = f"{ZERO_SEED}:{digest}:{counter}".encode()
            h = int.from_bytes(hashlib.sha256(message).digest(), "big")
            counter += 1
            if h < 2**256 - (2**256 % len(pool)):
                expected.append(pool.pop(h % len(pool)))
                break

    assert list(picks(ZERO_SEED, TEN)) == expected
    # Pinned, so a change to the algorithm cannot pass by changing both sides.
    assert expected == [6, 8, 4, 3, 5, 1, 10, 2, 9, 7]
    assert draw(ZERO_SEED, TEN, 3) == [6, 8, 4]


@given(st.lists(st.integers(min_value=1, max_value=10**12), max_size=40), st.randoms())
def test_entry_order_and_duplicates_do_not_change_the_draw(
    ids: list[int], rnd: random.Random
) -> None:
    shuffled = ids + ids[: len(ids) // 2]
    rnd.shuffle(shuffled)
    assert draw(ZERO_SEED, shuffled, 5) == draw(ZERO_SEED, ids, 5)
    assert entrants_digest(shuffled) == entrants_digest(ids)


def test_the_same_seed_and_entrants_give_the_same_winners() -> None:
    seed = new_seed()
    ids = [7_000_000 + 37 * i for i in range(500)]
    assert draw(seed, ids, 10) == draw(seed, iter(ids), 10)


def test_rerolls_continue_the_order_and_never_repeat_a_winner() -> None:
    seed = hashlib.sha256(b"reroll").hexdigest()
    ids = list(range(1000, 1300))
    order = list(picks(seed, ids))
    assert sorted(order) == ids, "every entrant is picked exactly once"
    for winners in (0, 1, 3, 299, 300):
        assert draw(seed, ids, winners) == order[:winners]


def test_a_large_lottery_draws_distinct_entrants() -> None:
    ids = range(5_000_000_000, 5_000_020_000)
    winners = draw(ZERO_SEED, ids, 10)
    assert len(set(winners)) == 10
    assert set(winners) <= set(ids)


def test_fewer_entrants_than_winners_means_everyone_wins() -> None:
    assert sorted(draw(ZERO_SEED, [42, 7, 42, 19], 10)) == [7, 19, 42]


def test_no_entrants_no_winners() -> None:
    assert draw(ZERO_SEED, [], 3) == []
    assert list(picks(ZERO_SEED, [])) == []


def test_a_negative_number_of_winners_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        draw(ZERO_SEED, TEN, -1)


def test_every_entrant_is_equally_likely_to_win() -> None:
    draws = 20_000
    first: Counter[int] = Counter()
    among_three: Counter[int] = Counter()
    for i in range(draws):
        seed = hashlib.sha256(f"test-{i}".encode()).hexdigest()
        winners = draw(seed, TEN, 3)
        first[winners[0]] += 1  # a one-winner lottery (draw is a prefix of the pick order)
        among_three.update(winners)

    expected = draws / len(TEN)
    chi2_one = sum((first[i] - expected) ** 2 / expected for i in TEN)
    assert chi2_one < CHI2_9DF_999, (chi2_one, first)

    # Three winners are three distinct entrants, so the inclusion counts are negatively
    # correlated and Pearson's sum is (N-1)/(N-k) = 7/9 of a chi-square with 9 degrees of
    # freedom; scaling by 9/7 restores the usual threshold.
    expected = 3 * draws / len(TEN)
    pearson = sum((among_three[i] - expected) ** 2 / expected for i in TEN)
    chi2_three = pearson * (len(TEN) - 1) / (len(TEN) - 3)
    assert chi2_three < CHI2_9DF_999, (chi2_three, among_three)


def test_picks_are_lazy() -> None:
    order = picks(ZERO_SEED, range(1, 100_001))
    assert len(list(islice(order, 2))) == 2
