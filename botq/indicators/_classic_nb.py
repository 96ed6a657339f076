"""Numba kernels for the classic (TA-Lib-defined) indicators.

Every public kernel takes 1-D float64 arrays and returns float64 arrays of the same length,
following the TA-Lib 0.6+/0.8 C library definition named in its docstring: same warm-up (the
first ``lookback`` values are NaN), same seeding, same smoothing. Optional ``out`` arguments
take preallocated arrays (every element is written): NumPy allocates large arrays on huge
pages, numba's allocator does not, and the page faults of a fresh 8 MB array can cost more than
the indicator itself, so the registry allocates with NumPy and passes ``out``.

NaN handling, identical for every kernel in this module: a bar is unusable when any input the
kernel reads is NaN. Each maximal run of usable bars is computed as its own series, exactly as
TA-Lib would compute that run if it were given alone (TA-Lib itself lets one NaN poison
everything after it). So a gap costs one warm-up, never the rest of the series, and output at
unusable bars is NaN.

Numerics: rolling sums and variances are updated in O(1) per bar but keep a bound of their own
rounding error and re-sum the window exactly when that bound could exceed ~1e-9 of the value
(see ``_rolling_mean_run`` and ``_mean_m2_run``). A variance is never taken from running sums
of x and x**2 around zero, which loses all digits at prices near 60,000.

Speed: the rolling engines work in blocks of ``_CHUNK`` bars, each starting from an exact sum:
the running sums alone in a tight loop (two bars per step where it pays), everything else -
updates, error bounds, checks, square roots, divisions - in branch-free loops that LLVM
vectorises; a block whose check fails is redone bar by bar. numba has no vector math library
here, so a loop with a scalar sqrt, division or log in it runs one bar at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from botq._intrinsics import fma

# A guarded running sum re-sums its window when |value| < _TOL * (sum of magnitudes it has
# absorbed since the last exact sum), bounding relative error by about eps / _TOL ~ 2e-9 in
# the worst case; in practice errors stay near 1e-14.
_TOL = 1e-7
# A min-max spread at most this fraction of the values is rounding noise (see stochf_nb).
_FLAT_REL = 1e-12


# --------------------------------------------------------------------------- helpers


@njit(cache=True, nogil=True, error_model="numpy")
def _alloc(out: np.ndarray | None, n: int) -> np.ndarray:
    """out if given (must have length n), else a new array."""
    if out is None:
        return np.empty(n, dtype=np.float64)
    if out.shape[0] != n:
        raise ValueError("out has the wrong length")
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _nan_like(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float64)
    out[:] = np.nan
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _run1(x: np.ndarray, i: int) -> tuple[int, int]:
    """Return (start, end) of the next NaN-free run of x at or after i; start == n if none."""
    n = x.shape[0]
    while i < n and np.isnan(x[i]):
        i += 1
    j = i
    while j < n and not np.isnan(x[j]):
        j += 1
    return i, j


@njit(cache=True, nogil=True, error_model="numpy")
def _run4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, i: int) -> tuple[int, int]:
    """Next run where none of a, b, c, d is NaN (pass an array twice for fewer inputs).

    Tested through the sum, one branch per bar: a bar mixing +inf and -inf also counts as bad.
    """
    n = a.shape[0]
    while i < n and np.isnan(a[i] + b[i] + c[i] + d[i]):
        i += 1
    j = i
    while j < n and not np.isnan(a[j] + b[j] + c[j] + d[j]):
        j += 1
    return i, j


# --------------------------------------------------------------------------- run engines
# A *_run(x, s, e, ...) computes the run that starts at bar s (x[s] is not NaN) and goes on
# until the first NaN or e, writes every element of out over that span (NaN during warm-up)
# and returns where it stopped. Hot loops index views from 0 so that LLVM can drop numba's
# negative-index wraparound, and multiply by 1/p instead of dividing.


@njit(cache=True, nogil=True, error_model="numpy")
def _warm(x: np.ndarray, s: int, w: int, out: np.ndarray) -> int:
    """Index of the first NaN in x[s:w] (w if none); out[s:that] is set to NaN if one is found."""
    for k in range(s, w):
        if np.isnan(x[k]):
            out[s:k] = np.nan
            return k
    return w


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _magnitude(xa: np.ndarray, xb: np.ndarray, m: int) -> float:
    """Sum of |xa[j]| + |xb[j]| for j < m, reassociated (vectorised); for error bounds."""
    acc = 0.0
    for j in range(m):
        acc += abs(xa[j]) + abs(xb[j])
    return acc


@njit(cache=True, nogil=True, error_model="numpy")
def _count_small(v: np.ndarray, thr: float, m: int) -> int:
    """How many of |v[0]|, ..., |v[m-1]| are below thr or NaN (vectorised)."""
    bad = 0
    for j in range(m):
        bad += not abs(v[j]) >= thr
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _mean_steps(
    x: np.ndarray,
    s: int,
    p: int,
    xa: np.ndarray,
    xb: np.ndarray,
    j0: int,
    j1: int,
    acc: float,
    o: np.ndarray,
) -> int:
    """Bars j0..j1-1 of _rolling_mean_run one at a time from the exact sum at j0, checking the
    bound at every bar and re-summing where it fails; returns the first NaN bar (j1 if none)."""
    ip = 1.0 / p
    err = 0.0
    for j in range(j0, j1):
        a = xa[j]
        b = xb[j]
        acc += a - b
        err += abs(a) + abs(b) + abs(acc)
        # one test for both rare cases: a NaN makes acc NaN, and NaN >= anything is False
        if not abs(acc) >= _TOL * err:
            if np.isnan(a):
                return j
            acc = _exact_sum(x, s + j + 1, s + j + 1 + p)
            err = 0.0
        o[j] = acc * ip
    return j1


# Windows of at most this many values are summed directly (see _direct_means).
_DIRECT_P = 4


@njit(cache=True, nogil=True, error_model="numpy")
def _direct_means(x: np.ndarray, w: int, p: int, o: np.ndarray, n: int) -> int:
    """o[j] = mean of x[w + j - p + 1 .. w + j] for j < n, each window summed directly (p
    vectorised passes per block): for short windows as fast as a running sum, and exact, e.g.
    the SMA of a stochastic's %K, often 0 for several bars, needs no re-sums. Stops at the
    first NaN bar and returns its index (n if none)."""
    ip = 1.0 / p
    for j0 in range(0, n, _CHUNK):
        j1 = min(j0 + _CHUNK, n)
        m = j1 - j0
        oo = o[j0:j1]
        y = x[w - p + 1 + j0 : w - p + 1 + j1]
        for j in range(m):
            oo[j] = y[j]
        for k in range(p - 2, -1, -1):
            y = x[w - k + j0 : w - k + j1]
            for j in range(m):
                oo[j] += y[j]
        for j in range(m):
            oo[j] *= ip
        if _count_small(oo, 0.0, m):  # a NaN: the run ends at the first NaN bar
            xa = x[w + j0 : w + j1]
            for j in range(m):
                if np.isnan(xa[j]):
                    return j0 + j
    return n


@njit(cache=True, nogil=True, error_model="numpy")
def _rolling_mean_run(x: np.ndarray, s: int, e: int, p: int, out: np.ndarray) -> int:
    """Mean of x[i-p+1..i] along the run from s: O(1) per bar with an error-bounded sum.

    The running sum's rounding error is at most eps * err, where err accumulates the
    magnitudes it has absorbed; when that could exceed eps/_TOL of the sum, the window is
    re-summed exactly (so a window of zeros after large values yields exactly 0).
    Done in blocks of _CHUNK bars (at least p), each starting from an exact sum: a loop doing
    only the running sum and the outputs (few floating-point operations per bar, so it keeps
    its speed when the other hyperthread of the core is busy), then the block's err and the
    bound at every bar against it, vectorised. A block that fails (a re-sum due, a NaN) is
    redone bar by bar (_mean_steps).
    """
    w = min(s + p, e)
    k = _warm(x, s, w, out)
    if k < w:
        return k
    if w - s < p:
        out[s:w] = np.nan
        return w
    ip = 1.0 / p
    acc = _exact_sum(x, s, w)
    out[s : w - 1] = np.nan
    out[w - 1] = acc * ip
    xa = x[w:e]
    xb = x[s : e - p]
    o = out[w:e]
    n = xa.shape[0]
    if p <= _DIRECT_P:
        return w + _direct_means(x, w, p, o, n)
    chunk = max(_CHUNK, p)
    for j0 in range(0, n, chunk):
        j1 = min(j0 + chunk, n)
        m = j1 - j0
        if j0 > 0:
            acc = _exact_sum(x, s + j0, s + j0 + p)
        ya = xa[j0:j1]
        yb = xb[j0:j1]
        oo = o[j0:j1]
        t = acc
        j = 0
        while j + 1 < m:  # two bars per step: one addition per two bars on the chain
            d0 = ya[j] - yb[j]
            oo[j] = (t + d0) * ip
            t += d0 + (ya[j + 1] - yb[j + 1])
            oo[j + 1] = t * ip
            j += 2
        if j < m:
            oo[j] = (t + (ya[j] - yb[j])) * ip
        # err as in _mean_steps, over the whole block (|sum| = |output| * p)
        err = _magnitude(ya, yb, m) + _abs_total(oo, m) * p
        if _count_small(oo, _TOL * err * ip, m):
            stop = _mean_steps(x, s, p, xa, xb, j0, j1, acc, o)
            if stop < j1:
                return w + stop
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def _exact_sum(x: np.ndarray, lo: int, hi: int) -> float:
    acc = 0.0
    for k in range(lo, hi):
        acc += x[k]
    return acc


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _centre(x: np.ndarray, lo: int, hi: int) -> tuple[float, bool]:
    """(centre, flat) of x[lo:hi]: the mean, or the value itself when all values are equal
    (flat), so that a flat window's centred sums are exactly 0 (a plain two-pass mean of 0.1,
    0.1, ... is not exactly 0.1, and would leave a spurious spread)."""
    c = 0.0
    mn = x[lo]
    mx = x[lo]
    for k in range(lo, hi):
        v = x[k]
        c += v
        mn = v if v < mn else mn
        mx = v if v > mx else mx
    if mn == mx:
        return mn, True
    return c / (hi - lo), False


@njit(cache=True, nogil=True, error_model="numpy")
def _exact_centred(x: np.ndarray, lo: int, hi: int) -> tuple[float, float, float]:
    """Two-pass sums over x[lo:hi]: centre c (see `_centre`), S1 = sum(x-c), S2 = sum((x-c)**2)."""
    c, flat = _centre(x, lo, hi)
    if flat:
        return c, 0.0, 0.0
    s1 = 0.0
    s2 = 0.0
    for k in range(lo, hi):
        d = x[k] - c
        s1 += d
        s2 += d * d
    return c, s1, s2


# What a _mean_m2_run writes per bar (o0, o1, o2 are its three output arrays):
_VAR = 0  # o0 = M2 / (p - ddof)
_STD = 1  # o0 = sqrt(M2 / (p - ddof))
_BANDS = 2  # o0 = mean + width * std, o2 = mean - width * std, o1 = mean unless o1 is empty
_ZSCORE = 3  # o0 = (x - mean) / std, NaN where std is 0


# Bars per block of _mean_m2_run's sequential pass: its means and variances (2 x 4 KB) stay in
# L1 until the block's outputs are written.
_CHUNK = 512


@njit(cache=True, nogil=True, error_model="numpy")
def _finish(
    mode: int,
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    width: float,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
    m: int,
) -> None:
    """Write the outputs of `mode` (see _VAR ...) for bars 0..m-1 from their window means and
    variances. Kept out of the sequential pass so that these loops have no loop-carried
    dependency: LLVM vectorises them, taking square roots and divisions four at a time."""
    if mode == _VAR:
        for j in range(m):
            o0[j] = var[j]
    elif mode == _STD:
        for j in range(m):
            o0[j] = np.sqrt(var[j])
    elif mode == _BANDS:
        for j in range(m):
            d = np.sqrt(var[j]) * width
            o0[j] = mean[j] + d
            o2[j] = mean[j] - d
        if o1.shape[0]:
            for j in range(m):
                o1[j] = mean[j]
    else:
        for j in range(m):
            sd = np.sqrt(var[j])
            o0[j] = (x[j] - mean[j]) / sd if sd > 0.0 else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def _emit_nan(mode: int, o0: np.ndarray, o1: np.ndarray, o2: np.ndarray, lo: int, hi: int) -> None:
    o0[lo:hi] = np.nan
    if mode == _BANDS:
        o2[lo:hi] = np.nan
        if o1.shape[0]:
            o1[lo:hi] = np.nan


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _sq_steps(
    xa: np.ndarray, xb: np.ndarray, c: float, d1: np.ndarray, d2: np.ndarray, m: int
) -> float:
    """The first m steps of the centred running sums: d1[j] = a - b, d2[j] = a**2 - b**2 with
    a = xa[j] - c entering and b = xb[j] - c leaving; returns the sum of a**2 + b**2 (what
    the sum of squares absorbs). No loop-carried dependency but the total, which may be
    reassociated, so LLVM vectorises it."""
    acc = 0.0
    for j in range(m):
        a = xa[j] - c
        b = xb[j] - c
        a2 = a * a
        b2 = b * b
        d1[j] = a - b
        d2[j] = a2 - b2
        acc += a2 + b2
    return acc


@njit(cache=True, nogil=True, error_model="numpy")
def _scan2(v1: np.ndarray, v2: np.ndarray, t1: float, t2: float, m: int) -> tuple[float, float]:
    """In place, v1 and v2 become running sums starting from t1 and t2 (v[j] = t + v[0] + ...
    + v[j]). Two steps per iteration, t += (v[j] + v[j + 1]), so the dependency chain is
    one addition per two bars; returns the final sums."""
    j = 0
    while j + 1 < m:
        a0 = v1[j]
        b0 = v2[j]
        v1[j] = t1 + a0
        v2[j] = t2 + b0
        t1 += a0 + v1[j + 1]
        t2 += b0 + v2[j + 1]
        v1[j + 1] = t1
        v2[j + 1] = t2
        j += 2
    if j < m:
        t1 += v1[j]
        t2 += v2[j]
        v1[j] = t1
        v2[j] = t2
    return t1, t2


@njit(cache=True, nogil=True, error_model="numpy")
def _scan1(v: np.ndarray, t: float, m: int) -> float:
    """_scan2 for one array."""
    j = 0
    while j + 1 < m:
        a0 = v[j]
        v[j] = t + a0
        t += a0 + v[j + 1]
        v[j + 1] = t
        j += 2
    if j < m:
        t += v[j]
        v[j] = t
    return t


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _total(v: np.ndarray, m: int) -> float:
    """v[0] + ... + v[m-1], reassociated (vectorised); for error bounds, not for results."""
    acc = 0.0
    for j in range(m):
        acc += v[j]
    return acc


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _abs_total(v: np.ndarray, m: int) -> float:
    """|v[0]| + ... + |v[m-1]|, reassociated (vectorised); for error bounds, not results."""
    acc = 0.0
    for j in range(m):
        acc += abs(v[j])
    return acc


@njit(cache=True, nogil=True, error_model="numpy")
def _mean_m2_steps(
    x: np.ndarray,
    s: int,
    p: int,
    xa: np.ndarray,
    xb: np.ndarray,
    j0: int,
    j1: int,
    c: float,
    s1: float,
    s2: float,
    err4: float,
    mb: np.ndarray,
    vb: np.ndarray,
    idn: float,
) -> tuple[float, float, float, float, int]:
    """Bars j0..j1-1 of _mean_m2_run one at a time, checking the rounding bound at every bar
    and re-summing exactly where it fails. Returns the new (c, s1, s2, err4) and the bar of
    the first NaN (j1 if none; the bars before it are in mb, vb)."""
    ip = 1.0 / p
    tol4 = 4.0 * _TOL
    for j in range(j0, j1):
        xj = xa[j]
        a = xj - c
        b = xb[j] - c
        s1 += a - b
        a2 = a * a
        b2 = b * b
        s2 += a2 - b2
        # eps * err4 bounds the rounding of s2 and of s1**2/p (2|s1|(|a|+|b|+|s1|)/p per
        # step, and s1**2/p <= s2): 3 (a2 + b2 + s1**2/p) + s2 <= 4 (a2 + b2 + s2)
        err4 += (a2 + b2) + s2
        m2 = s2 - s1 * s1 * ip
        # one test for both rare cases: a NaN makes m2 NaN, and NaN >= anything is False
        if not m2 >= tol4 * err4:
            if np.isnan(xj):
                return c, s1, s2, err4, j
            c, s1, s2 = _exact_centred(x, s + j + 1, s + j + 1 + p)
            m2 = s2 - s1 * s1 * ip
            err4 = 0.0
        mb[j - j0] = c + s1 * ip
        vb[j - j0] = max(m2, 0.0) * idn
    return c, s1, s2, err4, j1


@njit(cache=True, nogil=True, error_model="numpy")
def _check_emit(
    mode: int,
    x: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    c: float,
    ip: float,
    idn: float,
    thr: float,
    width: float,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
    m: int,
) -> int:
    """The fast path's last loop in _mean_m2_run: from the running sums s1, s2 of bars 0..m-1
    (about c), M2 = s2 - s1**2 / p checked against thr and the outputs of `mode` written as
    _finish does; returns how many bars fail (M2 < thr or NaN; their outputs are then
    rewritten). One vectorised loop per mode."""
    bad = 0
    if mode == _VAR:
        for j in range(m):
            u = s1[j]
            m2 = s2[j] - u * u * ip
            bad += not m2 >= thr
            o0[j] = m2 * idn
    elif mode == _STD:
        for j in range(m):
            u = s1[j]
            m2 = s2[j] - u * u * ip
            bad += not m2 >= thr
            o0[j] = np.sqrt(m2 * idn)
    elif mode == _BANDS:
        for j in range(m):
            u = s1[j]
            m2 = s2[j] - u * u * ip
            bad += not m2 >= thr
            mean = c + u * ip
            d = np.sqrt(m2 * idn) * width
            o0[j] = mean + d
            o2[j] = mean - d
        if o1.shape[0]:
            for j in range(m):
                o1[j] = c + s1[j] * ip
    else:
        for j in range(m):
            u = s1[j]
            m2 = s2[j] - u * u * ip
            bad += not m2 >= thr
            sd = np.sqrt(m2 * idn)
            o0[j] = (x[j] - (c + u * ip)) / sd if sd > 0.0 else np.nan
    return bad


@njit(cache=True, nogil=True, error_model="numpy")
def _mean_m2_run(
    x: np.ndarray,
    s: int,
    e: int,
    p: int,
    ddof: int,
    mode: int,
    width: float,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
) -> int:
    """Rolling mean and M2 (sum of squared deviations) over windows of p along the run from s,
    written as `mode` says (a variance M2 / (p - ddof), a std, Bollinger bands or a z-score)
    in the same pass, so no intermediate array is stored.

    Sums are kept about a centre c near the window mean (set at each exact re-sum), so no
    digits are lost to the price level. eps * err4 bounds the rounding error of M2, where err4
    adds up what the sums absorb (see _mean_m2_steps); where M2 < 4e-7 err4 the window is
    re-summed exactly (two-pass), so flat windows after a move give exactly 0.

    Blocks of _CHUNK bars (at least p) take a fast path: the updates of the whole block in
    vectorised loops, the two running sums in a loop of two bars per step (the only
    dependency chains), then the block's err4, and in one vectorised loop per mode the bound
    checked at every bar against that end-of-block err4 (a stricter test, err4 only grows)
    and the outputs (_check_emit). Each block starts re-centred (an exact re-sum). A block
    that fails the check (a NaN, a re-sum due) is redone bar by bar by _mean_m2_steps, whose
    means and variances _finish turns into outputs.
    """
    w = min(s + p, e)
    k = _warm(x, s, w, o0)
    if k < w or w - s < p:
        _emit_nan(mode, o0, o1, o2, s, k)
        return k
    _emit_nan(mode, o0, o1, o2, s, w - 1)
    ip = 1.0 / p
    idn = 1.0 / (p - ddof)
    chunk = max(_CHUNK, p)  # so that re-centring each block costs at most ~3 steps per bar
    mb = np.empty(chunk, dtype=np.float64)
    vb = np.empty(chunk, dtype=np.float64)
    c, s1, s2 = _exact_centred(x, s, w)
    mb[0] = c + s1 * ip
    vb[0] = max(s2 - s1 * s1 * ip, 0.0) * idn
    g = w - 1
    _finish(mode, x[g:w], mb, vb, width, o0[g:w], o1[g:w], o2[g:w], 1)
    xa = x[w:e]
    xb = x[s : e - p]
    v0 = o0[w:e]
    v1 = o1[w:e]
    v2 = o2[w:e]
    tol4 = 4.0 * _TOL
    n = xa.shape[0]
    for j0 in range(0, n, chunk):
        j1 = min(j0 + chunk, n)
        m = j1 - j0
        if j0 > 0:  # re-centre: a drifted centre would fail the check of ~1/4 of the blocks
            c, s1, s2 = _exact_centred(x, s + j0, s + j0 + p)
        xc = xa[j0:j1]
        bc = xb[j0:j1]
        err4 = _sq_steps(xc, bc, c, mb, vb, m)
        _scan2(mb, vb, s1, s2, m)  # mb, vb hold the running sums until checked
        err4 += _total(vb, m)
        v0b = v0[j0:j1]
        v1b = v1[j0:j1]
        v2b = v2[j0:j1]
        stop = j1
        if _check_emit(mode, xc, mb, vb, c, ip, idn, tol4 * err4, width, v0b, v1b, v2b, m):
            _, _, _, _, stop = _mean_m2_steps(x, s, p, xa, xb, j0, j1, c, s1, s2, 0.0, mb, vb, idn)
            _finish(mode, xc, mb, vb, width, v0b, v1b, v2b, stop - j0)
        if stop < j1:
            return w + stop
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def _mean_m2(
    x: np.ndarray,
    period: int,
    ddof: int,
    mode: int,
    width: float,
    o0: np.ndarray,
    o1: np.ndarray,
    o2: np.ndarray,
) -> None:
    """_mean_m2_run over every NaN-free run of x (NaN outputs at NaN bars)."""
    n = x.shape[0]
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            _emit_nan(mode, o0, o1, o2, i, i + 1)
            i += 1
        else:
            i = _mean_m2_run(x, i, n, period, ddof, mode, width, o0, o1, o2)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ema_k(p: int) -> tuple[float, float]:
    """(1 - k, k) for k = 2 / (p + 1), k rounded so that the two add up to exactly 1."""
    keep = 1.0 - 2.0 / (p + 1)
    return keep, 1.0 - keep


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ema_step(prev: float, v: float, keep: float, k: float) -> float:
    """The EMA step prev + k (v - prev), as (1 - k) prev + k v rounded once: the chain from
    one bar to the next is a single multiply-add (4 cycles, against 7 for a subtraction then a
    multiply-add), and with (1 - k) + k == 1 a value equal to prev stays exactly prev (the
    rounding of k v moves the sum by less than half an ulp while k < 1/2)."""
    return fma(keep, prev, k * v)


@njit(cache=True, nogil=True, error_model="numpy")
def _seed_mean(x: np.ndarray, lo: int, hi: int) -> float:
    """Mean of x[lo:hi] (no NaN), corrected by the mean of the residuals: within an ulp of
    TA-Lib's sum / p, and exactly the value when all are equal (sum / p alone is often an ulp
    off, and an EMA seeded there never moves back to a flat price)."""
    acc = 0.0
    for j in range(lo, hi):
        acc += x[j]
    m = acc / (hi - lo)
    d = 0.0
    for j in range(lo, hi):
        d += x[j] - m
    return m + d / (hi - lo)


@njit(cache=True, nogil=True, error_model="numpy")
def _ema_run(x: np.ndarray, s: int, e: int, p: int, first: int, out: np.ndarray) -> int:
    """TA-Lib EMA along the run from s: seed = SMA of the p values ending at s+first (see
    _seed_mean), then prev += k (x - prev) with k = 2 / (p + 1) (see _ema_step). first >= p - 1
    reproduces TA_INT_EMA called with a later start index (how TA-Lib's MACD seeds its fast
    EMA)."""
    f = s + first
    w = min(f + 1, e)
    k = _warm(x, s, w, out)
    if k < w:
        return k
    if f >= e:
        out[s:e] = np.nan
        return e
    out[s:f] = np.nan
    prev = _seed_mean(x, f - p + 1, f + 1)
    out[f] = prev
    keep, kk = _ema_k(p)
    xa = x[f + 1 : e]
    o = out[f + 1 : e]
    for j in range(xa.shape[0]):
        v = xa[j]
        if np.isnan(v):
            return f + 1 + j
        prev = _ema_step(prev, v, keep, kk)
        o[j] = prev
    return e


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _rsi_run(x: np.ndarray, s: int, e: int, p: int, out: np.ndarray) -> int:
    """TA-Lib RSI (Wilder) along the run from s; 0 when average gain + loss is exactly 0.

    avg = (avg * (p - 1) + move) / p is evaluated as avg * ((p - 1) / p) + move / p."""
    w = min(s + p + 1, e)
    k = _warm(x, s, w, out)
    if k < w:
        return k
    if e - s <= p:
        out[s:e] = np.nan
        return e
    out[s : s + p] = np.nan
    prev = x[s]
    gain = 0.0
    loss = 0.0
    for j in range(s + 1, s + p + 1):
        d = x[j] - prev
        prev = x[j]
        if d < 0.0:
            loss -= d
        else:
            gain += d
    gain /= p
    loss /= p
    tot = gain + loss
    out[s + p] = 100.0 * (gain / tot) if tot != 0.0 else 0.0
    ip = 1.0 / p
    a = (p - 1) * ip
    xa = x[s + p + 1 : e]
    o = out[s + p + 1 : e]
    for j in range(xa.shape[0]):
        v = xa[j]
        if np.isnan(v):
            return s + p + 1 + j
        d = v - prev
        prev = v
        up = d if d > 0.0 else 0.0
        dn = -d if d < 0.0 else 0.0
        gain = gain * a + up * ip
        loss = loss * a + dn * ip
        tot = gain + loss
        o[j] = 100.0 * (gain / tot) if tot != 0.0 else 0.0
    return e


# --------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True, error_model="numpy")
def sma_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Simple moving average: TA-Lib SMA (mean of the last `period` values, lookback p-1)."""
    n = x.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _rolling_mean_run(x, i, n, period, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def ema_offset_nb(
    x: np.ndarray, period: int, first: int, out: np.ndarray | None = None
) -> np.ndarray:
    """TA-Lib EMA whose first output (the SMA seed) sits `first` bars into each run.

    first = period - 1 is TA-Lib EMA; first = slow - 1 is the fast EMA inside TA-Lib MACD.
    """
    n = x.shape[0]
    res = _alloc(out, n)
    if first < period - 1:
        first = period - 1
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _ema_run(x, i, n, period, first, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def ema_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Exponential moving average: TA-Lib EMA, k = 2/(p+1), seeded with the SMA of the first
    p values (TA_COMPATIBILITY_DEFAULT), lookback p-1."""
    return ema_offset_nb(x, period, period - 1, out)


@njit(cache=True, nogil=True, error_model="numpy")
def ema_pair_nb(x: np.ndarray, p1: int, p2: int, out1: np.ndarray, out2: np.ndarray) -> None:
    """Two TA-Lib EMAs of x in one pass, equal bit for bit to `ema_nb` of each: the runs are
    seeded one series at a time, then both recursions advance in the same loop. Each is a
    dependency chain bound by the latency of its multiply-add, so two side by side cost
    little more than one (the EMAs of a crossover, a sweep's grid)."""
    n = x.shape[0]
    if p1 > p2:
        p1, p2 = p2, p1
        out1, out2 = out2, out1
    keep1, k1 = _ema_k(p1)
    keep2, k2 = _ema_k(p2)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            out1[i] = np.nan
            out2[i] = np.nan
            i += 1
            continue
        # both series up to the slower one's seed; they stop at the same NaN, if any
        lim = min(i + p2, n)
        r = _ema_run(x, i, lim, p1, p1 - 1, out1)
        _ema_run(x, i, lim, p2, p2 - 1, out2)
        if r < lim or lim == n:
            i = r
            continue
        a = out1[lim - 1]
        b = out2[lim - 1]
        xa = x[lim:n]
        o1 = out1[lim:n]
        o2 = out2[lim:n]
        i = n
        for j in range(xa.shape[0]):
            v = xa[j]
            if np.isnan(v):
                i = lim + j
                break
            a = _ema_step(a, v, keep1, k1)
            b = _ema_step(b, v, keep2, k2)
            o1[j] = a
            o2[j] = b


@njit(cache=True, nogil=True, error_model="numpy")
def rsi_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Relative Strength Index: TA-Lib RSI (Wilder smoothing; the first averages are plain
    means of p gains/losses), lookback p; 0 on a flat window, as TA-Lib."""
    n = x.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _rsi_run(x, i, n, period, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _macd_run(
    x: np.ndarray,
    s: int,
    e: int,
    fast: int,
    slow: int,
    signal: int,
    line: np.ndarray,
    sig: np.ndarray,
    hist: np.ndarray,
    slow_ema: np.ndarray,
) -> int:
    """One pass of TA-Lib MACD along the run from s (three EMA chains interleaved)."""
    i0 = s + slow - 1  # both EMAs are seeded here (TA-Lib starts the fast one late too)
    w = min(i0 + 1, e)
    k = _warm(x, s, w, line)
    if k < w or i0 >= e:
        line[s:k] = np.nan
        sig[s:k] = np.nan
        hist[s:k] = np.nan
        slow_ema[s:k] = np.nan
        return k
    line[s:i0] = np.nan
    sig[s:i0] = np.nan
    hist[s:i0] = np.nan
    slow_ema[s:i0] = np.nan
    se = _seed_mean(x, s, i0 + 1)
    fe = _seed_mean(x, i0 - fast + 1, i0 + 1)
    keep_slow = slow_ema.shape[0] != 0
    if keep_slow:
        slow_ema[i0] = se
    lv = fe - se
    lsum = lv
    sv = lv
    if signal == 1:
        line[i0] = lv
        sig[i0] = sv
        hist[i0] = lv - sv
    else:
        line[i0] = np.nan
        sig[i0] = np.nan
        hist[i0] = np.nan
    keep_s, ks = _ema_k(slow)
    keep_f, kf = _ema_k(fast)
    keep_g, kg = _ema_k(signal)
    nwarm = signal - 1  # bars after i0 whose line values only feed the signal's seed
    xa = x[i0 + 1 : e]
    so = slow_ema[i0 + 1 : e]
    lo = line[i0 + 1 : e]
    go = sig[i0 + 1 : e]
    ho = hist[i0 + 1 : e]
    for j in range(xa.shape[0]):
        v = xa[j]
        if np.isnan(v):
            return i0 + 1 + j
        se = _ema_step(se, v, keep_s, ks)
        fe = _ema_step(fe, v, keep_f, kf)
        if keep_slow:
            so[j] = se
        lv = fe - se
        if j < nwarm:
            lsum += lv
            if j == nwarm - 1:
                sv = lsum / signal
                lo[j] = lv
                go[j] = sv
                ho[j] = lv - sv
            else:
                lo[j] = np.nan
                go[j] = np.nan
                ho[j] = np.nan
            continue
        sv = _ema_step(sv, lv, keep_g, kg)
        lo[j] = lv
        go[j] = sv
        ho[j] = lv - sv
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def macd_slow_nb(
    x: np.ndarray,
    fast: int,
    slow: int,
    signal: int,
    out_line: np.ndarray | None = None,
    out_signal: np.ndarray | None = None,
    out_hist: np.ndarray | None = None,
    out_slow: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MACD line, signal, hist and the slow EMA in one pass (see macd_nb).

    The slow EMA equals ema_nb(x, slow) bit for bit, so a requested EMA of the same period
    is served by this pass instead of being computed again; an empty out_slow (length 0)
    skips it.
    """
    if slow < fast:
        fast, slow = slow, fast
    n = x.shape[0]
    line = _alloc(out_line, n)
    sig = _alloc(out_signal, n)
    hist = _alloc(out_hist, n)
    se = _alloc(out_slow, n) if out_slow is None or out_slow.shape[0] else out_slow
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(x[i]):
            line[i] = np.nan
            sig[i] = np.nan
            hist[i] = np.nan
            se[i : i + 1] = np.nan  # a no-op when the slow EMA is skipped
            i += 1
        else:
            i = _macd_run(x, i, n, fast, slow, signal, line, sig, hist, se)
    return line, sig, hist, se


@njit(cache=True, nogil=True, error_model="numpy")
def macd_nb(
    x: np.ndarray, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD: TA-Lib MACD (not MACDEXT). Slow EMA as TA-Lib EMA; the fast EMA is seeded with the
    SMA of the `fast` values ending at bar slow-1 (TA-Lib starts both EMAs there); signal = EMA
    of the line seeded with the mean of its first `signal` values; line, signal and hist all
    start at bar slow - 1 + signal - 1. Periods are swapped when slow < fast, as TA-Lib does.
    Returns (line, signal, hist)."""
    none = np.empty(0, dtype=np.float64)
    line, sig, hist, _ = macd_slow_nb(x, fast, slow, signal, None, None, None, none)
    return line, sig, hist


@njit(cache=True, nogil=True, error_model="numpy")
def rolling_std_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rolling population standard deviation: TA-Lib STDDEV with nbdev = 1 (lookback p-1),
    computed with re-centred, error-bounded sums (accurate to ~1e-12 at any price level)."""
    res = _alloc(out, x.shape[0])
    none = np.empty(0, dtype=np.float64)
    z = period - period  # int64 0, not a literal: one compilation of the engine for all modes
    _mean_m2(x, period, z, z + _STD, 1.0, res, none, none)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def rolling_var_nb(
    x: np.ndarray, period: int, ddof: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Rolling variance with divisor period - ddof (ddof=0: TA-Lib VAR; ddof=1: pandas var)."""
    res = _alloc(out, x.shape[0])
    none = np.empty(0, dtype=np.float64)
    _mean_m2(x, period, ddof, period - period + _VAR, 1.0, res, none, none)  # non-literal mode
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def bbands_nb(
    x: np.ndarray,
    period: int,
    width: float,
    out_upper: np.ndarray | None = None,
    out_middle: np.ndarray | None = None,
    out_lower: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger Bands: TA-Lib BBANDS with matype SMA and nbdevup = nbdevdn = width.

    Returns (upper, middle, lower); middle = SMA, band = width * population std (STDDEV),
    all three from one pass over x. An empty out_middle (length 0) skips the middle line.
    """
    n = x.shape[0]
    up = _alloc(out_upper, n)
    lo = _alloc(out_lower, n)
    mid = _alloc(out_middle, n) if out_middle is None or out_middle.shape[0] else out_middle
    z = period - period  # int64 0, not a literal: one compilation of the engine for all modes
    _mean_m2(x, period, z, z + _BANDS, width, up, mid, lo)
    return up, mid, lo


@njit(cache=True, nogil=True, error_model="numpy")
def _fastk_block(
    x: np.ndarray, t0: int, t1: int, fastk: int, hb: np.ndarray, lb: np.ndarray, k: np.ndarray
) -> None:
    """Fast %K of bars t0..t1-1 (windows of fastk values, NaN-free): the highs and lows of the
    windows in passes over the block, two lags per pass (with one lag per pass LLVM kept the
    loop scalar, ~4x slower: measured), then %K; every loop runs over the bars with selects,
    not branches, so LLVM vectorises it."""
    m = t1 - t0
    y = x[t0:t1]
    for j in range(m):
        hb[j] = y[j]
        lb[j] = y[j]
    lag = 1
    while lag < fastk:
        z1 = x[t0 - lag : t1 - lag]
        q = min(lag + 1, fastk - 1)  # the last pass may take its one lag twice
        z2 = x[t0 - q : t1 - q]
        for j in range(m):
            hi = hb[j]
            lo = lb[j]
            v = z1[j]
            hi = v if v > hi else hi
            lo = v if v < lo else lo
            v = z2[j]
            hi = v if v > hi else hi
            lo = v if v < lo else lo
            hb[j] = hi
            lb[j] = lo
        lag += 2
    for j in range(m):
        hi = hb[j]
        lo = lb[j]
        diff = (hi - lo) / 100.0
        flat = hi - lo <= _FLAT_REL * max(abs(hi), abs(lo))
        k[j] = 0.0 if flat else (y[j] - lo) / diff


@njit(cache=True, nogil=True, error_model="numpy")
def stochf_nb(
    x: np.ndarray,
    fastk: int,
    fastd: int,
    out_k: np.ndarray | None = None,
    out_d: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fast stochastic of one series against itself: TA-Lib STOCHF(x, x, x, fastk, fastd,
    SMA) - fastk = 100 * (x - min) / (max - min) over fastk bars, fastd = SMA(fastk, fastd);
    both start fastk - 1 + fastd - 1 bars into each run, as TA-Lib.

    A flat window gives fastk 0, as TA-Lib; unlike TA-Lib, "flat" includes a spread of at
    most 1e-12 of the values (rounding noise, e.g. an RSI on a flat price after a move, whose
    ratio stays constant up to an ulp), where TA-Lib returns 0 or 100 at random.
    """
    n = x.shape[0]
    k = _alloc(out_k, n)
    hb = np.empty(_CHUNK, dtype=np.float64)
    lb = np.empty(_CHUNK, dtype=np.float64)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run1(x, i)
        k[i:s] = np.nan
        k[s : min(s + fastk - 1, e)] = np.nan
        for t0 in range(s + fastk - 1, e, _CHUNK):
            t1 = min(t0 + _CHUNK, e)
            _fastk_block(x, t0, t1, fastk, hb, lb, k[t0:t1])
        i = e
    d = sma_nb(k, fastd, out_d)
    for t in range(n):
        k[t] = np.nan if np.isnan(d[t]) else k[t]  # a select: vectorised
    return k, d


@njit(cache=True, nogil=True, error_model="numpy")
def stoch_rsi_nb(
    x: np.ndarray, period: int, fastk: int, fastd: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic RSI: TA-Lib STOCHRSI(x, period, fastk, fastd, SMA) = STOCHF of RSI(period);
    returns (fastk, fastd), both with lookback period + fastk - 1 + fastd - 1."""
    r = rsi_nb(x, period)
    return stochf_nb(r, fastk, fastd)


@njit(cache=True, nogil=True, error_model="numpy")
def roc_nb(x: np.ndarray, period: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rate of change: TA-Lib ROC = (x / x[-p] - 1) * 100, 0 where x[-p] == 0; lookback p."""
    n = x.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run1(x, i)
        res[i : min(s + period, e)] = np.nan
        if s + period < e:
            xa = x[s + period : e]
            xb = x[s : e - period]
            o = res[s + period : e]
            for j in range(xa.shape[0]):
                prev = xb[j]
                o[j] = ((xa[j] / prev) - 1.0) * 100.0 if prev != 0.0 else 0.0
        i = e
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _tr_at(h: float, lo: float, prev_close: float) -> float:
    """True range of one bar (TA-Lib TRANGE)."""
    g = h - lo
    v = abs(prev_close - h)
    if v > g:
        g = v
    v = abs(prev_close - lo)
    if v > g:
        g = v
    return g


@njit(cache=True, nogil=True, error_model="numpy")
def _tr(high: np.ndarray, low: np.ndarray, close: np.ndarray, t: int) -> float:
    return _tr_at(high[t], low[t], close[t - 1])


@njit(cache=True, nogil=True, error_model="numpy")
def trange_nb(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """True range: TA-Lib TRANGE = max(h - l, |h - prev close|, |l - prev close|), lookback 1."""
    n = close.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run4(high, low, close, close, i)
        res[i : min(s + 1, n)] = np.nan
        for t in range(s + 1, e):
            res[t] = _tr(high, low, close, t)
        i = e
    return res


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _atr_run(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    s: int,
    e: int,
    p: int,
    out: np.ndarray,
) -> int:
    """TA-Lib ATR along the run from s (bars with no NaN in high, low, close)."""
    f = s + p
    w = min(f + 1, e)
    for k in range(s, w):
        if np.isnan(high[k] + low[k] + close[k]):
            out[s:k] = np.nan
            return k
    if f >= e:
        out[s:e] = np.nan
        return e
    out[s:f] = np.nan
    acc = 0.0
    for j in range(s + 1, f + 1):
        acc += _tr(high, low, close, j)
    prev = acc / p
    out[f] = prev
    ip = 1.0 / p
    a = (p - 1) * ip
    a2 = a * a
    hh = high[f + 1 : e]
    ll = low[f + 1 : e]
    cc = close[f + 1 : e]
    pc = close[f:e]
    o = out[f + 1 : e]
    m = hh.shape[0]
    j = 0
    # Two bars per step: atr[j+1] = a^2 atr[j-1] + (a u[j] + u[j+1]) with u = tr / p, so the
    # loop-carried chain is one multiply-add per two bars instead of one per bar.
    while j + 1 < m:
        if np.isnan(hh[j] + ll[j] + cc[j] + hh[j + 1] + ll[j + 1] + cc[j + 1]):
            break
        u0 = _tr_at(hh[j], ll[j], pc[j]) * ip
        u1 = _tr_at(hh[j + 1], ll[j + 1], pc[j + 1]) * ip
        o[j] = prev * a + u0
        prev = prev * a2 + (u0 * a + u1)
        o[j + 1] = prev
        j += 2
    while j < m:  # the last bar, or bar by bar up to the NaN that stopped the pairs
        if np.isnan(hh[j] + ll[j] + cc[j]):
            return f + 1 + j
        prev = prev * a + _tr_at(hh[j], ll[j], pc[j]) * ip
        o[j] = prev
        j += 1
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def atr_nb(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    period: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Average true range: TA-Lib ATR - seed = mean of the first p true ranges, then Wilder
    smoothing atr = (atr * (p - 1) + tr) / p, evaluated as atr * ((p-1)/p) + tr / p;
    lookback p (period 1 is TRANGE)."""
    n = close.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(high[i] + low[i] + close[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _atr_run(high, low, close, i, n, period, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def _obv_run(close: np.ndarray, volume: np.ndarray, s: int, e: int, out: np.ndarray) -> int:
    acc = volume[s]
    prev = close[s]
    out[s] = acc
    ca = close[s + 1 : e]
    va = volume[s + 1 : e]
    o = out[s + 1 : e]
    for j in range(ca.shape[0]):
        c = ca[j]
        v = va[j]
        if np.isnan(c + v):
            return s + 1 + j
        # branch-free: +volume on an up close, -volume on a down close, nothing if equal
        acc += v * (np.float64(c > prev) - np.float64(c < prev))
        o[j] = acc
        prev = c
    return e


@njit(cache=True, nogil=True, error_model="numpy")
def obv_nb(close: np.ndarray, volume: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """On-balance volume: TA-Lib OBV - starts at the first bar's volume, then adds volume on
    an up close and subtracts it on a down close; lookback 0. Restarts after a NaN gap."""
    n = close.shape[0]
    res = _alloc(out, n)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        if np.isnan(close[i] + volume[i]):
            res[i] = np.nan
            i += 1
        else:
            i = _obv_run(close, volume, i, n, res)
    return res


@njit(cache=True, nogil=True, error_model="numpy")
def ttm_trend_nb(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    period: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """TTM Trend (J. Carter, "Mastering the Trade"; ProRealCode "TTM trend price" formula):
    +1 when close > mean of (high + low) / 2 over the previous `period` bars (not the current
    one), -1 when below, 0 when equal; lookback = period."""
    n = close.shape[0]
    res = _alloc(out, n)
    hl2 = np.empty(n, dtype=np.float64)
    for t in range(n):
        hl2[t] = (high[t] + low[t]) / 2.0
    avg = np.empty(n, dtype=np.float64)
    i = n - n  # int64, not Literal[int](0): a literal would compile the engine twice
    while i < n:
        s, e = _run4(high, low, close, close, i)
        res[i : min(s + period, e)] = np.nan
        if e > s:
            _rolling_mean_run(hl2, s, e, period, avg)
        for t in range(s + period, e):
            a = avg[t - 1]
            c = close[t]
            res[t] = 1.0 if c > a else (-1.0 if c < a else 0.0)
        i = e
    return res
