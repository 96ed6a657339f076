"""The backtest engine: one numba loop over the candles for a compiled strategy.

`simulate_nb` walks the candles once. Per block of 2048 candles it first works out, with
tight vectorisable loops, where each action's market triggers (technical, price_change,
next_candle, consecutive_candles) all hold (`_masks_nb`), so that the walk can jump from one
candle where something may happen to the next, marking the portfolio on the way (while flat,
while holding positions without per-candle state, and while the book is full, when open_long
signals are only counted as refused); then, on the candles it stops at: fill the orders
decided on the previous candle (``fill="next_open"``), update the peaks and extremes of
trailing triggers for the open positions, evaluate the actions whose market triggers hold, in
order (open_long once, buy/sell once per managed position, checking the position triggers
there) and fill at the close (``fill="close"``) or queue for the next open, then mark the
portfolio to the close and update the running statistics (returns, drawdown, exposure) so that
a sweep needs no equity array. The semantics are those documented in
``botq.backtest.strategy``; the reference for the fill arithmetic is DESIGN.md (qty = cash /
(price * (1 + fee)) for an all-in buy, qty * price * (1 - fee) back for a sell) and vectorbt's
``Portfolio.from_signals``, which the tests reproduce.

`run_batch_nb` runs a range of variants whose tables are concatenated (CSR-style offsets), all
sharing one indicator matrix; it releases the GIL so threads can run ranges side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from botq._intrinsics import ctz
from botq.backtest.enums import (
    ActCol,
    ActionType,
    ActVal,
    AmountKind,
    Op,
    Reason,
    Stat,
    TrigCol,
    TriggerKind,
    TrigVal,
)

# plain ints: numba treats module-level ints as compile-time constants
_A_TYPE = int(ActCol.TYPE)
_A_KIND = int(ActCol.AMOUNT_KIND)
_A_AVG = int(ActCol.AVERAGE)
_A_FIRST = int(ActCol.FIRST_TRIG)
_A_NTRIG = int(ActCol.N_TRIG)
_A_AMOUNT = int(ActVal.AMOUNT)
_A_MAXC = int(ActVal.MAX_COUNT)

_T_KIND = int(TrigCol.KIND)
_T_OP = int(TrigCol.OP)
_T_A = int(TrigCol.COL_A)
_T_B = int(TrigCol.COL_B)
_T_GATE = int(TrigCol.GATE)
_T_P0 = int(TrigVal.P0)
_T_P1 = int(TrigVal.P1)

_OPEN = int(ActionType.OPEN_LONG)
_BUY = int(ActionType.BUY)
_SELL = int(ActionType.SELL)
_QUOTE = int(AmountKind.QUOTE)
_BASE = int(AmountKind.BASE)
_PCT = int(AmountKind.PERCENT)

_ALWAYS = int(TriggerKind.ALWAYS)
_COMPARE = int(TriggerKind.COMPARE)
_RANGE = int(TriggerKind.RANGE)
_POSCHG = int(TriggerKind.POS_CHANGE)
_FOLLOW = int(TriggerKind.FOLLOW)
_TRAIL = int(TriggerKind.TRAILING)
_TIME = int(TriggerKind.TIME_IN_POS)

_GT = int(Op.GT)
_LT = int(Op.LT)
_EQ = int(Op.EQ)
_XUP = int(Op.CROSS_ABOVE)
_XDOWN = int(Op.CROSS_BELOW)

_FILLED = int(Reason.FILLED)
_R_MAXPOS = int(Reason.MAX_POSITIONS)
_R_NOCASH = int(Reason.NO_CASH)
_R_CASH = int(Reason.INSUFFICIENT_CASH)
_R_EXCEEDS = int(Reason.EXCEEDS_POSITION)
_R_NOTHING = int(Reason.NOTHING_TO_SELL)
_R_NONEXT = int(Reason.NO_NEXT_BAR)
_R_NOPRICE = int(Reason.NO_PRICE)
_R_CLOSED = int(Reason.POSITION_CLOSED)

_S_FINAL = int(Stat.FINAL_VALUE)
_S_CASH = int(Stat.CASH)
_S_HOLD = int(Stat.HOLDINGS)
_S_FEES = int(Stat.FEES)
_S_REAL = int(Stat.REALISED)
_S_FILLS = int(Stat.FILLS)
_S_BUYS = int(Stat.BUYS)
_S_SELLS = int(Stat.SELLS)
_S_OPENED = int(Stat.OPENED)
_S_WIN = int(Stat.WINNING)
_S_LOSE = int(Stat.LOSING)
_S_REJ = int(Stat.REJECTED)
_S_RSUM = int(Stat.RET_SUM)
_S_RSQ = int(Stat.RET_SQ)
_S_DSQ = int(Stat.DOWN_SQ)
_S_NRET = int(Stat.N_RET)
_S_MAXDD = int(Stat.MAX_DD)
_S_EXPO = int(Stat.EXPOSED_BARS)
_S_LAST = int(Stat.LAST_FILL_VALUE)
_S_RECS = int(Stat.RECORDS)
_S_GPROF = int(Stat.GROSS_PROFIT)
_S_GLOSS = int(Stat.GROSS_LOSS)
_S_DDVAL = int(Stat.MAX_DD_VALUE)
_S_CAPPED = int(Stat.CAPPED)

# position state columns (float): quantity, cost basis (fees included), average fill price,
# reference price for position triggers; (int): opening tick, number
_P_QTY = 0
_P_COST = 1
_P_AVG = 2
_P_REF = 3
_P_PEAK = 4  # the most the position has held (for the dust rule)
_P_TICK = 0
_P_SEQ = 1
_P_COUNTS = 2  # then, per action, its fills for this position (for max_count)
# the book (int): open positions, positions opened so far, free slots, then the open slots in
# the order they opened, the free slots, and per action its fills over the run
_B_OPEN = 0
_B_SEQ = 1
_B_FREE = 2
_B_ORDER = 3

# relative slack when an amount is compared with the cash or the position it draws on
_EPS = 1e-12
# a sell leaving less than this share of the most the position held sells everything
_DUST = 1e-9


# numba's `_nrt` option (missing from its type stubs) turned off for the two helpers the walk
# calls per event: they allocate nothing and only touch arrays their caller owns, and with it
# every call pays atomic reference counts on each array argument (~2 ms per million candles
# of a crossover backtest, measured)
_NO_NRT: dict[str, Any] = {"_nrt": False}


@njit(cache=True, nogil=True, inline="always")
def _record_nb(recs, k, tick, action, position, reason, price, qty, quote, fee, cash, value, pnl):
    """Write one trade record if there is room; always return the next record number."""
    if k < recs.shape[0]:
        r = recs[k]
        r["tick"] = tick
        r["action"] = action
        r["position"] = position
        r["reason"] = reason
        r["price"] = price
        r["qty"] = qty
        r["quote"] = quote
        r["fee"] = fee
        r["cash"] = cash
        r["value"] = value
        r["pnl"] = pnl
    return k + 1


@njit(cache=True, nogil=True, inline="always")
def _reject_nb(recs, k, verbose, stats, tick, action, position, reason, price, qty, quote):
    """Count an order that could not be carried out; record it in verbose mode."""
    if reason == _R_MAXPOS:
        stats[_S_CAPPED] += 1.0
    else:
        stats[_S_REJ] += 1.0
    if verbose:
        cash = stats[_S_CASH]
        value = cash + stats[_S_HOLD] * price if price == price else cash
        k = _record_nb(
            recs, k, tick, action, position, reason, price, qty, quote, 0.0, cash, value, 0.0
        )
    return k


@njit(cache=True, nogil=True, inline="always")
def _reset_trackers_nb(a, s, px, act_int, trig_int, t_ext, t_act, t_lo):
    """After action a fills for slot s: its trailing peaks restart at px, follows deactivate."""
    first = act_int[a, _A_FIRST]
    for t in range(first, first + act_int[a, _A_NTRIG]):
        kind = trig_int[t, _T_KIND]
        if kind == _TRAIL:
            t_ext[s, t - t_lo] = px
        elif kind == _FOLLOW:
            t_act[s, t - t_lo] = False


@njit(cache=True, nogil=True, inline="always")
def _holdings_nb(pos_f, order, n_open):
    """Base quantity held over the open positions (summed again at every fill: no drift)."""
    total = 0.0
    for j in range(n_open):
        total += pos_f[order[j], _P_QTY]
    return total


@njit(cache=True, nogil=True, inline="always")
def _buy_size_nb(kind, amount, cash, px, fee):
    """(cash debited, quantity) of a buy; the debit includes the fee."""
    if kind == _PCT:
        spend = cash * amount
        return spend, spend / (px * (1.0 + fee))
    if kind == _QUOTE:
        return amount, amount / (px * (1.0 + fee))
    return amount * px * (1.0 + fee), amount


@njit(cache=True, nogil=True, **_NO_NRT)
def _execute_nb(
    ai, s, i, px, typ, kind, amount, average, pos_f, pos_i, book, stats, fee, max_pos, recs, k,
    verbose,
):  # fmt: skip
    """Carry out action ai (of type typ, amount kind/amount) at price px on candle i, for slot
    s (-1 opens a position). Few arguments on purpose: each array passed costs the call seven
    to nine words, and this runs at every fill (the trackers are the caller's, see
    `_after_fill_nb`).

    Returns the next record number, whether a position was closed, and the slot that filled
    (-1 when the order was not carried out).
    """
    seq = pos_i[s, _P_SEQ] if s >= 0 else 0
    if not (px > 0.0):
        return _reject_nb(recs, k, verbose, stats, i, ai, seq, _R_NOPRICE, px, 0.0, 0.0), False, -1
    order = book[_B_ORDER : _B_ORDER + max_pos]
    cash = stats[_S_CASH]
    if typ == _SELL:
        held = pos_f[s, _P_QTY]
        if kind == _PCT:
            qty = held * amount
        elif kind == _QUOTE:
            qty = amount / px
        else:
            qty = amount
        if qty > held:
            if qty <= held * (1.0 + _EPS):
                qty = held
            else:
                k = _reject_nb(recs, k, verbose, stats, i, ai, seq, _R_EXCEEDS, px, qty, qty * px)
                return k, False, -1
        if not (qty > 0.0):
            k = _reject_nb(recs, k, verbose, stats, i, ai, seq, _R_NOTHING, px, qty, qty * px)
            return k, False, -1
        full = qty == held or held - qty <= max(held * _EPS, pos_f[s, _P_PEAK] * _DUST)
        if full:
            qty = held
        quote = qty * px
        fee_amt = quote * fee
        proceeds = quote - fee_amt
        basis = pos_f[s, _P_COST] if full else pos_f[s, _P_COST] * (qty / held)
        pnl = proceeds - basis
        cash += proceeds
        stats[_S_CASH] = cash
        pos_f[s, _P_COST] -= basis
        pos_f[s, _P_QTY] = 0.0 if full else held - qty
        stats[_S_FEES] += fee_amt
        stats[_S_REAL] += pnl
        stats[_S_FILLS] += 1.0
        stats[_S_SELLS] += 1.0
        if pnl > 0.0:
            stats[_S_WIN] += 1.0
            stats[_S_GPROF] += pnl
        else:
            stats[_S_LOSE] += 1.0
            stats[_S_GLOSS] -= pnl
        pos_i[s, _P_COUNTS + ai] += 1
        if full:
            n_open = book[_B_OPEN]
            j = 0
            while order[j] != s:
                j += 1
            while j < n_open - 1:
                order[j] = order[j + 1]
                j += 1
            book[_B_OPEN] = n_open - 1
            book[_B_ORDER + max_pos + book[_B_FREE]] = s
            book[_B_FREE] += 1
        stats[_S_HOLD] = _holdings_nb(pos_f, order, book[_B_OPEN])
        value = cash + stats[_S_HOLD] * px
        stats[_S_LAST] = value
        k = _record_nb(recs, k, i, ai, seq, _FILLED, px, qty, quote, fee_amt, cash, value, pnl)
        return k, full, s

    # open_long and buy
    if typ == _OPEN and book[_B_OPEN] >= max_pos:
        return _reject_nb(recs, k, verbose, stats, i, ai, 0, _R_MAXPOS, px, 0.0, 0.0), False, -1
    spend, qty = _buy_size_nb(kind, amount, cash, px, fee)
    if not (cash > 0.0):
        k = _reject_nb(recs, k, verbose, stats, i, ai, seq, _R_NOCASH, px, qty, qty * px)
        return k, False, -1
    if spend > cash:
        if spend <= cash * (1.0 + _EPS):
            spend = cash
        else:
            k = _reject_nb(recs, k, verbose, stats, i, ai, seq, _R_CASH, px, qty, qty * px)
            return k, False, -1
    quote = qty * px
    fee_amt = spend - quote
    cash = cash - spend
    stats[_S_CASH] = cash
    if typ == _OPEN:
        book[_B_FREE] -= 1
        s = book[_B_ORDER + max_pos + book[_B_FREE]]
        order[book[_B_OPEN]] = s
        book[_B_OPEN] += 1
        book[_B_SEQ] += 1
        seq = book[_B_SEQ]
        pos_f[s, _P_QTY] = qty
        pos_f[s, _P_COST] = spend
        pos_f[s, _P_AVG] = px
        pos_f[s, _P_REF] = px
        pos_f[s, _P_PEAK] = qty
        pos_i[s, _P_TICK] = i
        pos_i[s, _P_SEQ] = seq
        for j in range(_P_COUNTS, pos_i.shape[1]):
            pos_i[s, j] = 0
        book[_B_ORDER + 2 * max_pos + ai] += 1
        stats[_S_OPENED] += 1.0
    else:
        old = pos_f[s, _P_QTY]
        new = old + qty
        pos_f[s, _P_AVG] = (pos_f[s, _P_AVG] * old + px * qty) / new
        pos_f[s, _P_QTY] = new
        pos_f[s, _P_PEAK] = max(pos_f[s, _P_PEAK], new)
        pos_f[s, _P_COST] += spend
        if average != 0:
            pos_f[s, _P_REF] = pos_f[s, _P_AVG]
        pos_i[s, _P_COUNTS + ai] += 1
    stats[_S_HOLD] = _holdings_nb(pos_f, order, book[_B_OPEN])
    stats[_S_FEES] += fee_amt
    stats[_S_FILLS] += 1.0
    stats[_S_BUYS] += 1.0
    value = cash + stats[_S_HOLD] * px
    stats[_S_LAST] = value
    k = _record_nb(recs, k, i, ai, seq, _FILLED, px, qty, quote, fee_amt, cash, value, 0.0)
    return k, False, s


@njit(cache=True, nogil=True, inline="always")
def _after_fill_nb(a, s, px, opened, act_int, trig_int, stateful, s_lo, s_hi, t_ext, t_act, t_lo):
    """The trackers of slot s after action a filled at px: a new position starts every
    stateful trigger afresh (peaks at px, follows inactive); otherwise the action's own
    trailing peaks restart at px and its follows deactivate."""
    if opened:
        for q in range(s_lo, s_hi):
            t = stateful[q]
            t_ext[s, t - t_lo] = px
            t_act[s, t - t_lo] = False
    else:
        _reset_trackers_nb(a, s, px, act_int, trig_int, t_ext, t_act, t_lo)


@njit(cache=True, nogil=True, inline="always")
def _fold_nb(e, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq):
    """Fold the portfolio value e at one close into the running statistics (returns, downside,
    peak, deepest drawdown); an unchanged value adds exactly nothing. Returns them in the same
    order. Branch-free where a branch would be a coin flip."""
    r = e / prev_e - 1.0 if prev_e > 0.0 else 0.0
    down = min(r, 0.0)
    r_sum += r
    r_sq += r * r
    d_sq += down * down
    peak = max(peak, e)
    if peak - e > max_dd * peak:  # a new deepest drawdown: rare
        max_dd = (peak - e) / peak
        dd_val = peak - e
    return e, peak, max_dd, dd_val, r_sum, r_sq, d_sq


@njit(cache=True, nogil=True, **_NO_NRT)
def _held_span_nb(
    close, lo, hi, cash, hold, equity, keep_equity, last_px,
    prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq,
):  # fmt: skip
    """Mark a position held unchanged over candles lo..hi to each close. A function of its own:
    inside the engine's big loop the same lines run several times slower. On a long span the
    returns' sums are taken first in a loop that vectorises (`_return_sums_nb`) and the peak in
    a scan of its own; a missing close (NaN sums) sends the span through the one-by-one loop."""
    if hi - lo >= _VECTOR_SPAN:
        e = cash + hold * close[lo]
        s1, s2, s3 = _return_sums_nb(close[lo : hi - 1], close[lo + 1 : hi], cash, hold)
        if s1 == s1 and e == e:
            r = e / prev_e - 1.0 if prev_e > 0.0 else 0.0
            down = min(r, 0.0)
            r_sum += r + s1
            r_sq += r * r + s2
            d_sq += down * down + s3
            cur = close[lo:hi]
            for k in range(hi - lo):
                e = cash + hold * cur[k]
                if keep_equity:
                    equity[lo + k] = e
                peak = max(peak, e)
                if peak - e > max_dd * peak:  # a new deepest drawdown: rare
                    max_dd = (peak - e) / peak
                    dd_val = peak - e
            return cur[hi - lo - 1], e, peak, max_dd, dd_val, r_sum, r_sq, d_sq
    for q in range(lo, hi):
        c = close[q]
        if c == c:
            last_px = c
        e = cash + hold * last_px
        if keep_equity:
            equity[q] = e
        prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq = _fold_nb(
            e, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq
        )
    return last_px, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq


# spans at least this long take the vectorised sums
_VECTOR_SPAN = 32


@njit(cache=True, nogil=True, fastmath={"reassoc"}, **_NO_NRT)
def _return_sums_nb(before, after, cash, hold):
    """Sums of the returns, squared returns and squared downside returns of the value
    cash + hold * price from each price in `before` to the next in `after`, in any order
    (reassociation lets them vectorise; they differ from a serial sum in the last bits)."""
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for k in range(before.shape[0]):
        p = cash + hold * before[k]
        r = (cash + hold * after[k]) / p - 1.0 if p > 0.0 else 0.0
        down = min(r, 0.0)
        s1 += r
        s2 += r * r
        s3 += down * down
    return s1, s2, s3


# x * _PACK >> 56 gathers the low bits of x's eight bytes (each 0 or 1) into one byte, the
# first byte's in bit 0 (little-endian), so that eight flags become eight bits in a multiply
_PACK = np.uint64(0x0102040810204080)


@njit(cache=True, nogil=True, inline="always")
def _pack_nb(flags, packed, m):
    """packed[k] = flags[8k .. 8k+7] as the bits of one byte, for the first m flags (0 or 1;
    flags' length a multiple of 8). Viewed as uint64, packed is a bitset of 64 candles a word."""
    w8 = flags.view(np.uint64)
    for k in range((m + 7) >> 3):
        packed[k] = np.uint8((w8[k] * _PACK) >> np.uint64(56))


@njit(cache=True, nogil=True, inline="always")
def _next_bit_nb(bits, j, end):
    """First k in [j, end) whose bit is set in the bitset `bits` (uint64 words), else end:
    a word and a count of trailing zeros per 64 candles, with no branch per candle to
    mispredict (a byte-per-candle scan cost ~17% of the walk on a crossover)."""
    w = j >> 6
    word = bits[w] >> np.uint64(j & 63)
    if word != 0:
        r = j + ctz(word)
        return r if r < end else end
    w += 1
    while (w << 6) < end:
        word = bits[w]
        if word != 0:
            r = (w << 6) + ctz(word)
            return r if r < end else end
        w += 1
    return end


@njit(cache=True, nogil=True, **_NO_NRT)
def _count_capped_nb(mask, act_int, act_f, a_lo, a_hi, g_counts, close, blk, lo, hi, stats):
    """Count the open_long signals on candles blk+lo..blk+hi that a full book refuses, as the
    walk would one candle at a time (an open_long past its max_count is not counted; a price
    that is not positive is a rejected order, a missing close no signal at all)."""
    for a in range(a_lo, a_hi):
        if act_int[a, _A_TYPE] != _OPEN or g_counts[a - a_lo] >= act_f[a, _A_MAXC]:
            continue
        row = mask[a - a_lo, lo:hi]
        px = close[blk + lo : blk + hi]
        capped = 0
        bad = 0
        for q in range(hi - lo):
            capped += row[q] & (px[q] > 0.0)
            bad += row[q] & (px[q] <= 0.0)
        stats[_S_CAPPED] += capped
        stats[_S_REJ] += bad


# candles per block for which the position-independent part of every action is precomputed
_BLOCK = 2048


# comparison codes: one byte per candle for a (column, target) pair, from which every operator
# on that pair reads; NaN on either side sets no bit, so every comparison with it is false
_C_GT = 1
_C_LT = 2
_C_EQ = 4


@njit(cache=True, nogil=True)
def _code_sources_nb(trig_int, trig_f, t_lo, t_hi):
    """src[t - t_lo]: the first technical trigger comparing the same column with the same
    target as t (itself if none), so that a pair's codes are computed once per block."""
    src = np.empty(t_hi - t_lo, np.int64)
    for t in range(t_lo, t_hi):
        src[t - t_lo] = t
        if trig_int[t, _T_KIND] != _COMPARE or trig_int[t, _T_OP] == _EQ:
            continue
        for u in range(t_lo, t):
            if (
                trig_int[u, _T_KIND] == _COMPARE
                and trig_int[u, _T_OP] != _EQ
                and trig_int[u, _T_A] == trig_int[t, _T_A]
                and trig_int[u, _T_B] == trig_int[t, _T_B]
                and (trig_int[t, _T_B] >= 0 or trig_f[u, _T_P0] == trig_f[t, _T_P0])
            ):
                src[t - t_lo] = u
                break
    return src


@njit(cache=True, nogil=True)
def _masks_nb(cols, act_int, trig_int, trig_f, a_lo, a_hi, i0, m, mask, codes, src, t_lo):
    """mask[a - a_lo, k]: the market triggers of action a (technical, price_change, next_candle,
    consecutive_candles) all hold on candle i0 + k. Each distinct (column, target) pair is
    compared once per block into a byte of codes (greater, less, equal), and each operator is
    a branch-free loop over those bytes; position triggers are left to the walk."""
    j0 = i0 - 1 if i0 > 0 else 0  # the previous candle too, for crossings (candle 0 has none)
    d = i0 - j0
    width = i0 + m - j0
    for t in range(t_lo, act_int[a_hi - 1, _A_FIRST] + act_int[a_hi - 1, _A_NTRIG]):
        if src[t - t_lo] != t or trig_int[t, _T_KIND] != _COMPARE or trig_int[t, _T_OP] == _EQ:
            continue
        xs = cols[trig_int[t, _T_A], j0 : i0 + m]
        out = codes[t - t_lo, :width]
        cb = trig_int[t, _T_B]
        if cb >= 0:
            ys = cols[cb, j0 : i0 + m]
            for k in range(width):
                x = xs[k]
                y = ys[k]
                out[k] = np.uint8(x > y) | (np.uint8(x < y) << 1) | (np.uint8(x == y) << 2)
        else:
            y = trig_f[t, _T_P0]
            for k in range(width):
                x = xs[k]
                out[k] = np.uint8(x > y) | (np.uint8(x < y) << 1) | (np.uint8(x == y) << 2)
    for a in range(a_lo, a_hi):
        row = mask[a - a_lo, :m]
        row[:] = True
        first = act_int[a, _A_FIRST]
        for t in range(first, first + act_int[a, _A_NTRIG]):
            kind = trig_int[t, _T_KIND]
            if kind == _RANGE:
                xs = cols[trig_int[t, _T_A], i0 : i0 + m]
                lo = trig_f[t, _T_P0]
                hi = trig_f[t, _T_P1]
                for k in range(m):
                    row[k] &= (xs[k] >= lo) & (xs[k] <= hi)
                continue
            if kind != _COMPARE:
                continue
            op = trig_int[t, _T_OP]
            if op == _EQ:
                xs = cols[trig_int[t, _T_A], i0 : i0 + m]
                cb = trig_int[t, _T_B]
                for k in range(m):
                    y = cols[cb, i0 + k] if cb >= 0 else trig_f[t, _T_P0]
                    row[k] &= abs(xs[k] - y) <= 1e-9 * max(1.0, abs(y))
                continue
            # views, so that every loop index starts at 0: a shifted index (k - 1) costs a
            # negative-index check per candle and keeps the loop from vectorising (3x slower)
            code = codes[src[t - t_lo] - t_lo]
            if op == _GT or op == _LT:  # noqa: SIM109
                cur = code[d : d + m]
                bit = _C_GT if op == _GT else _C_LT
                for k in range(m):
                    row[k] &= (cur[k] & bit) != 0
                continue
            if d == 0:
                row[0] = False
            # the previous candle at or below (above) the target, this one strictly above (below)
            was = _C_LT | _C_EQ if op == _XUP else _C_GT | _C_EQ
            now = _C_GT if op == _XUP else _C_LT
            prev = code[0 : m + d - 1]
            cur = code[1 : m + d]
            rest = row[1 - d : m]
            for k in range(m + d - 1):
                rest[k] &= ((prev[k] & was) != 0) & ((cur[k] & now) != 0)


@njit(cache=True, nogil=True)
def simulate_nb(
    close,
    open_,
    time,
    cols,
    act_int,
    act_f,
    a_lo,
    a_hi,
    trig_int,
    trig_f,
    stateful,
    s_lo,
    s_hi,
    max_pos,
    capital,
    fee,
    next_open,
    verbose,
    recs,
    equity,
    stats,
):
    """Backtest one compiled strategy (actions a_lo..a_hi) over the candles.

    close/open_/time: candle columns; cols: the indicator matrix (columns x candles);
    stateful[s_lo:s_hi]: trigger rows that keep per-position state (trailing, follow).
    recs: trade records written while there is room (stats[RECORDS] says how many were
    produced); equity: filled with the portfolio value at every close when its length is the
    number of candles (pass an empty array to skip). stats: the `Stat` vector, overwritten.
    """
    n = close.shape[0]
    n_act = a_hi - a_lo
    t_lo = act_int[a_lo, _A_FIRST]
    t_hi = act_int[a_hi - 1, _A_FIRST] + act_int[a_hi - 1, _A_NTRIG]
    n_trig = t_hi - t_lo
    keep_equity = equity.shape[0] == n
    for j in range(stats.shape[0]):
        stats[j] = 0.0
    stats[_S_CASH] = capital
    stats[_S_LAST] = capital

    pos_f = np.zeros((max_pos, 5))
    pos_i = np.zeros((max_pos, _P_COUNTS + n_act), np.int64)
    counts = pos_i[:, _P_COUNTS:]
    book = np.zeros(_B_ORDER + 2 * max_pos + n_act, np.int64)
    state = book[:_B_ORDER]  # open positions, positions opened, free slots
    order = book[_B_ORDER : _B_ORDER + max_pos]
    free = book[_B_ORDER + max_pos : _B_ORDER + 2 * max_pos]
    g_counts = book[_B_ORDER + 2 * max_pos :]
    for j in range(max_pos):
        free[j] = max_pos - 1 - j
    state[_B_FREE] = max_pos
    t_ext = np.zeros((max_pos, n_trig))
    t_act = np.zeros((max_pos, n_trig), np.bool_)
    q_cap = n_act * (max_pos + 1) if next_open else 0
    q_act = np.empty(q_cap, np.int64)
    q_slot = np.empty(q_cap, np.int64)
    q_seq = np.empty(q_cap, np.int64)
    nq = 0
    # per action: how many of its triggers depend on the position (evaluated per candle)
    n_pos = np.zeros(n_act, np.int64)
    for a in range(a_lo, a_hi):
        first = act_int[a, _A_FIRST]
        for t in range(first, first + act_int[a, _A_NTRIG]):
            kind = trig_int[t, _T_KIND]
            if kind != _COMPARE and kind != _RANGE and kind != _ALWAYS:
                n_pos[a - a_lo] += 1
    mask = np.empty((n_act, min(n, _BLOCK)), np.bool_)
    codes = np.empty((n_trig, min(n, _BLOCK) + 1), np.uint8)
    src = _code_sources_nb(trig_int, trig_f, t_lo, t_hi)
    # per candle of the block: some open_long may act / some buy or sell may act, as bytes,
    # packed into bitsets (for skipping ahead) with a third for either
    width = (min(n, _BLOCK) + 63) // 64 * 64
    any_open = np.zeros(width, np.uint8)
    any_manage = np.zeros(width, np.uint8)
    packed = np.zeros((3, width // 8), np.uint8)
    open_bits = packed[0].view(np.uint64)
    manage_bits = packed[1].view(np.uint64)
    act_bits = packed[2].view(np.uint64)
    has_open = False
    for a in range(a_lo, a_hi):
        if act_int[a, _A_TYPE] == _OPEN:
            has_open = True
    blk = 0  # first candle of the current block
    nxt = 0  # first candle of the next block

    k = 0
    prev_e = capital
    peak = capital
    max_dd = 0.0
    dd_val = 0.0
    r_sum = 0.0
    r_sq = 0.0
    d_sq = 0.0
    exposed = 0
    last_px = np.nan

    i = 0
    while i < n:
        if i == nxt:
            blk = i
            m = min(_BLOCK, n - blk)
            nxt = i + m
            _masks_nb(cols, act_int, trig_int, trig_f, a_lo, a_hi, blk, m, mask, codes, src, t_lo)
            any_open[:] = 0
            any_manage[:] = 0
            for a in range(a_lo, a_hi):
                row = mask[a - a_lo]
                flags = any_open if act_int[a, _A_TYPE] == _OPEN else any_manage
                for q in range(m):
                    flags[q] |= row[q]
            _pack_nb(any_open, packed[0], m)
            _pack_nb(any_manage, packed[1], m)
            for w in range(act_bits.shape[0]):
                act_bits[w] = open_bits[w] | manage_bits[w]
        # Skip ahead to the next candle on which some action may act, marking the portfolio
        # to each close on the way: nothing else can change while no order is queued and no
        # open position has per-candle state (trailing peaks) to follow.
        if nq == 0 and (state[0] == 0 or s_hi == s_lo):
            j = i - blk
            end = nxt - blk
            full = state[0] >= max_pos and not next_open and not verbose
            if state[0] == 0:
                j = _next_bit_nb(open_bits, j, end) if has_open else end
            elif full:
                # fully invested: an open_long signal can only be counted as refused
                j = _next_bit_nb(manage_bits, j, end)
                if has_open and j > i - blk:
                    _count_capped_nb(
                        mask, act_int, act_f, a_lo, a_hi, g_counts, close, blk, i - blk, j, stats
                    )
            else:
                j = _next_bit_nb(act_bits, j, end)
            stop = blk + j
            if stop > i:
                cash = stats[_S_CASH]
                hold = stats[_S_HOLD]
                if state[0] > 0:
                    exposed += stop - i
                if hold > 0.0:
                    last_px, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq = _held_span_nb(
                        close, i, stop, cash, hold, equity, keep_equity, last_px,
                        prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq,
                    )  # fmt: skip
                else:
                    q = stop - 1
                    while q >= i and close[q] != close[q]:
                        q -= 1
                    if q >= i:
                        last_px = close[q]
                    if keep_equity:
                        equity[i:stop] = cash
                    prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq = _fold_nb(
                        cash, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq
                    )
                i = stop
                continue
        # 1. orders decided on the previous candle fill at this open
        if nq > 0:
            px = open_[i]
            for q in range(nq):
                a = q_act[q]
                s = q_slot[q]
                if s >= 0 and (pos_i[s, _P_SEQ] != q_seq[q] or pos_f[s, _P_QTY] == 0.0):
                    # closed (and maybe reused) by an earlier order of the same batch
                    k = _reject_nb(
                        recs, k, verbose, stats, i, a - a_lo, q_seq[q], _R_CLOSED, px, 0.0, 0.0
                    )
                    continue
                k, _, filled = _execute_nb(
                    a - a_lo, s, i, px, act_int[a, _A_TYPE], act_int[a, _A_KIND],
                    act_f[a, _A_AMOUNT], act_int[a, _A_AVG], pos_f, pos_i, book, stats, fee,
                    max_pos, recs, k, verbose,
                )  # fmt: skip
                if filled >= 0 and s_hi > s_lo:
                    _after_fill_nb(
                        a, filled, px, s < 0, act_int, trig_int, stateful, s_lo, s_hi, t_ext,
                        t_act, t_lo,
                    )  # fmt: skip
            nq = 0

        c = close[i]
        if c == c:
            last_px = c
            # 2. peaks and extremes of the trailing triggers of managed positions
            if s_hi > s_lo:
                for j in range(state[0]):
                    s = order[j]
                    if not next_open and pos_i[s, _P_TICK] >= i:
                        continue
                    for q in range(s_lo, s_hi):
                        t = stateful[q]
                        g = trig_int[t, _T_GATE]
                        if g >= 0 and not cols[g, i] > 0.5:
                            continue
                        ti = t - t_lo
                        if trig_int[t, _T_KIND] == _TRAIL:
                            if c > t_ext[s, ti]:
                                t_ext[s, ti] = c
                        else:
                            v = trig_f[t, _T_P0]
                            if t_act[s, ti]:
                                if v >= 0.0:
                                    if c > t_ext[s, ti]:
                                        t_ext[s, ti] = c
                                elif c < t_ext[s, ti]:
                                    t_ext[s, ti] = c
                            else:
                                chg = c / pos_f[s, _P_REF] - 1.0
                                if (v >= 0.0 and chg >= v) or (v < 0.0 and chg <= v):
                                    t_act[s, ti] = True
                                    t_ext[s, ti] = c

            # 3. actions, in the order written: open_long once, buy/sell once per position
            pending_opens = 0
            for a in range(a_lo, a_hi):
                ai = a - a_lo
                maxc = act_f[a, _A_MAXC]
                if not mask[ai, i - blk]:
                    continue
                opening = act_int[a, _A_TYPE] == _OPEN
                first = act_int[a, _A_FIRST]
                last = first + act_int[a, _A_NTRIG]
                j = 0
                while True:
                    if opening:
                        if j > 0 or g_counts[ai] >= maxc:
                            break
                        s = -1
                        if not next_open and state[0] >= max_pos and c > 0.0:
                            # cheap path for the common case of a signal while fully invested
                            k = _reject_nb(
                                recs, k, verbose, stats, i, ai, 0, _R_MAXPOS, c, 0.0, 0.0
                            )
                            break
                    else:
                        if j >= state[0]:
                            break
                        s = order[j]
                        if (not next_open and pos_i[s, _P_TICK] >= i) or counts[s, ai] >= maxc:
                            j += 1
                            continue
                    # the market triggers hold (mask); the position triggers are looked at
                    # here, in the order written. Written out rather than in a helper: calls
                    # with array arguments would cost reference counting on every candle
                    ok = True
                    if n_pos[ai] > 0:
                        for t in range(first, last):
                            kind = trig_int[t, _T_KIND]
                            if kind == _COMPARE or kind == _RANGE or kind == _ALWAYS:  # noqa: SIM109
                                continue
                            g = trig_int[t, _T_GATE]
                            if g >= 0 and not cols[g, i] > 0.5:
                                ok = False
                            elif kind == _POSCHG:
                                v = trig_f[t, _T_P0]
                                chg = c / pos_f[s, _P_REF] - 1.0
                                ok = chg >= v if v >= 0.0 else chg <= v
                            elif kind == _TIME:
                                ok = float(time[i] - time[pos_i[s, _P_TICK]]) >= trig_f[t, _T_P0]
                            elif kind == _TRAIL:
                                ok = c <= t_ext[s, t - t_lo] * (1.0 + trig_f[t, _T_P0])
                            else:  # follow
                                ext = t_ext[s, t - t_lo]
                                tol = trig_f[t, _T_P1]
                                if not t_act[s, t - t_lo]:
                                    ok = False
                                elif trig_f[t, _T_P0] >= 0.0:
                                    ok = c <= ext * (1.0 - tol)
                                else:
                                    ok = c >= ext * (1.0 + tol)
                            if not ok:
                                break
                    if not ok:
                        j += 1
                        continue
                    if next_open:
                        seq = pos_i[s, _P_SEQ] if s >= 0 else 0
                        if i == n - 1:
                            k = _reject_nb(
                                recs, k, verbose, stats, i, ai, seq, _R_NONEXT, c, 0.0, 0.0
                            )
                        elif opening and state[0] + pending_opens >= max_pos:
                            k = _reject_nb(
                                recs, k, verbose, stats, i, ai, 0, _R_MAXPOS, c, 0.0, 0.0
                            )
                        else:
                            q_act[nq] = a
                            q_slot[nq] = s
                            q_seq[nq] = seq
                            nq += 1
                            if opening:
                                pending_opens += 1
                        j += 1
                        continue
                    k, closed, filled = _execute_nb(
                        ai, s, i, c, act_int[a, _A_TYPE], act_int[a, _A_KIND],
                        act_f[a, _A_AMOUNT], act_int[a, _A_AVG], pos_f, pos_i, book, stats, fee,
                        max_pos, recs, k, verbose,
                    )  # fmt: skip
                    if filled >= 0 and s_hi > s_lo:
                        _after_fill_nb(
                            a, filled, c, opening, act_int, trig_int, stateful, s_lo, s_hi,
                            t_ext, t_act, t_lo,
                        )  # fmt: skip
                    if not closed:
                        j += 1
        # 4. mark to the close, running statistics
        px = c if c == c else last_px
        cash = stats[_S_CASH]
        hold = stats[_S_HOLD]
        e = cash + hold * px if hold > 0.0 else cash
        if keep_equity:
            equity[i] = e
        prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq = _fold_nb(
            e, prev_e, peak, max_dd, dd_val, r_sum, r_sq, d_sq
        )
        if state[0] > 0:
            exposed += 1
        i += 1

    stats[_S_FINAL] = prev_e
    stats[_S_RSUM] = r_sum
    stats[_S_RSQ] = r_sq
    stats[_S_DSQ] = d_sq
    stats[_S_NRET] = float(n)
    stats[_S_MAXDD] = max_dd
    stats[_S_DDVAL] = dd_val
    stats[_S_EXPO] = float(exposed)
    stats[_S_RECS] = float(k)
    return k


@njit(cache=True, nogil=True)
def run_batch_nb(
    lo,
    hi,
    close,
    open_,
    time,
    cols,
    act_int,
    act_f,
    v_act,
    trig_int,
    trig_f,
    stateful,
    v_state,
    v_maxpos,
    capital,
    fee,
    next_open,
    recs,
    equity,
    stats,
):
    """Run variants lo..hi: variant v owns actions v_act[v]..v_act[v + 1] and stateful rows
    v_state[v]..v_state[v + 1]; its statistics go to stats[v]. No records, no equity."""
    for v in range(lo, hi):
        simulate_nb(
            close,
            open_,
            time,
            cols,
            act_int,
            act_f,
            v_act[v],
            v_act[v + 1],
            trig_int,
            trig_f,
            stateful,
            v_state[v],
            v_state[v + 1],
            v_maxpos[v],
            capital,
            fee,
            next_open,
            False,
            recs,
            equity,
            stats[v],
        )


@njit(cache=True, nogil=True)
def streak_nb(open_, close):
    """Signed run length of same-coloured candles: +n after n green (close >= open), -n after
    n red (close < open); 0 where a price is missing."""
    n = close.shape[0]
    out = np.zeros(n)
    run = 0.0
    for i in range(n):
        o = open_[i]
        c = close[i]
        if not (o == o and c == c):
            run = 0.0
        elif c >= o:
            run = run + 1.0 if run > 0.0 else 1.0
        else:
            run = run - 1.0 if run < 0.0 else -1.0
        out[i] = run
    return out
