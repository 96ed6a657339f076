"""The LLVM intrinsics botq's kernels use: fma rounds once (the EMA step relies on it), ctz counts
trailing zero bits (the backtest walk scans bitsets with it)."""

from fractions import Fraction

import numpy as np
from numba import njit

from botq._intrinsics import ctz, fma


@njit(cache=True)
def _fma_nb(a: float, b: float, c: float) -> float:
    return fma(a, b, c)


@njit(cache=True)
def _two_roundings_nb(a: float, b: float, c: float) -> float:
    return a * b + c


def test_fma_rounds_once() -> None:
    """(1 + 2^-30)^2 - (1 + 2^-29) is exactly 2^-60: a product rounded first loses it."""
    a = 1.0 + 2.0**-30
    c = -(1.0 + 2.0**-29)
    assert _fma_nb(a, a, c) == 2.0**-60
    assert _two_roundings_nb(a, a, c) == 0.0


def test_fma_is_the_correctly_rounded_result() -> None:
    rng = np.random.default_rng(3)
    for a, b, c in rng.normal(0.0, 1e3, (2000, 3)):
        exact = Fraction(a) * Fraction(b) + Fraction(c)
        assert _fma_nb(a, b, c) == float(exact)
    assert np.isnan(_fma_nb(np.inf, 0.0, 1.0))
    assert _fma_nb(2.0, 3, np.float32(1.5)) == 7.5  # integer and float32 arguments are cast


@njit(cache=True)
def _ctz_nb(x: np.uint64) -> int:
    return ctz(x)


def test_ctz_counts_trailing_zero_bits() -> None:
    for k in range(64):
        assert _ctz_nb(np.uint64(1) << np.uint64(k)) == k
        assert _ctz_nb(np.uint64(2**64 - 1) << np.uint64(k)) == k
    rng = np.random.default_rng(5)
    for x in rng.integers(1, 2**63, 500, dtype=np.uint64):
        assert _ctz_nb(x) == (int(x) & -int(x)).bit_length() - 1
