"""Token buckets, on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_rate():
    clock = Clock()
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 1]
    clock.now += 0.5  # one token back at 2/s
    assert buckets.take("a") == 0
    assert buckets.take("a") == 1


def test_retry_after_rounds_up_the_wait_for_one_token():
    clock = Clock()
    buckets = TokenBuckets(0.1, 1, clock=clock)
    assert buckets.take("a") == 0
    assert buckets.take("a") == 10
    clock.now += 4
    assert buckets.take("a") == 6


def test_clients_have_separate_buckets():
    buckets = TokenBuckets(1.0, 1, clock=Clock())
    assert buckets.take("a") == 0
    assert buckets.take("b") == 0
    assert buckets.take("a") == 1


def test_bucket_never_holds_more_than_burst():
    clock = Clock()
    buckets = TokenBuckets(10.0, 2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 1]


def test_forgotten_clients_start_full_and_memory_stays_bounded():
    buckets = TokenBuckets(1.0, 1, max_clients=2, clock=Clock())
    for client in ("a", "b", "c"):
        assert buckets.take(client) == 0
    assert buckets.take("a") == 0  # "a" was the least recently seen: forgotten
    assert buckets.take("c") == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0)])
def test_rate_and_burst_must_be_positive(rate, burst):
    with pytest.raises(ValueError):
        TokenBuckets(rate, burst)
