"""Kraken request signing (published example vector) and nonce generation."""

from __future__ import annotations

import threading

import pytest

from botq.market.signing import NonceGenerator, encode_body, next_nonce, sign

# Kraken's documentation example (Spot REST Authentication); not a real credential.
DOC_SECRET = (
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
)
DOC_NONCE = "1616492376594"
DOC_PATH = "/0/private/AddOrder"
DOC_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
DOC_SIGNATURE = (
    "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
)


def test_sign_matches_krakens_published_example() -> None:
    assert sign(DOC_PATH, DOC_BODY, DOC_NONCE, DOC_SECRET) == DOC_SIGNATURE


def test_sign_accepts_a_mapping_and_an_int_nonce() -> None:
    data = {
        "nonce": 1616492376594,
        "ordertype": "limit",
        "pair": "XBTUSD",
        "price": 37500,
        "type": "buy",
        "volume": "1.25",
    }
    assert encode_body(data) == DOC_BODY
    assert sign(DOC_PATH, data, 1616492376594, DOC_SECRET) == DOC_SIGNATURE


def test_sign_depends_on_path_body_and_nonce() -> None:
    other = {
        sign("/0/private/Balance", DOC_BODY, DOC_NONCE, DOC_SECRET),
        sign(DOC_PATH, DOC_BODY + "&x=1", DOC_NONCE, DOC_SECRET),
        sign(DOC_PATH, DOC_BODY, "1616492376595", DOC_SECRET),
    }
    assert DOC_SIGNATURE not in other and len(other) == 3


def test_sign_rejects_a_non_base64_secret_without_echoing_it() -> None:
    bad = "not-base64-secret-value!!"
    with pytest.raises(ValueError, match="not valid base64") as info:
        sign(DOC_PATH, DOC_BODY, DOC_NONCE, bad)
    assert bad not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_nonce_never_repeats_when_the_clock_goes_back() -> None:
    times = iter([100.0, 100.0, 99.0, 50.0, 100.0005, 200.0])
    gen = NonceGenerator(lambda: next(times))
    got = [gen() for _ in range(6)]
    assert got == [100_000, 100_001, 100_002, 100_003, 100_004, 200_000]
    assert gen.last == 200_000


def test_nonce_is_strictly_increasing_across_threads() -> None:
    gen = NonceGenerator(lambda: 1_700_000_000.0)  # frozen clock: worst case for collisions
    per_thread: list[list[int]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(out: list[int]) -> None:
        barrier.wait()
        for _ in range(500):
            out.append(gen())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [n for out in per_thread for n in out]
    assert len(set(everything)) == 4000
    assert all(a < b for out in per_thread for a, b in zip(out, out[1:], strict=False))
    assert max(everything) == 1_700_000_000_000 + 3999


def test_process_nonce_increases() -> None:
    a, b, c = next_nonce(), next_nonce(), next_nonce()
    assert a < b < c
