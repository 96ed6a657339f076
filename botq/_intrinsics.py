"""LLVM intrinsics that numba does not offer, for botq's kernels.

``fma(a, b, c)``: a * b + c with one rounding. numba has no ``math.fma``, and
``fastmath={"contract"}`` leaves it to LLVM which product of an expression like
``a * b + c * d`` to fuse, which can differ between two loops computing the same formula (seen:
an EMA alone and inside a pair an ulp apart). This is ``llvm.fma.f64``: one instruction where
the CPU has FMA (every x86-64 since 2013, every AArch64), a correctly rounded library call
elsewhere; the same bits everywhere.

``ctz(x)``: the number of trailing zero bits of a non-zero uint64 (``llvm.cttz``, one
instruction), for scanning bitsets a word at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a * b + c rounded once, in float64 (integer and float32 arguments are converted)."""
    if not all(isinstance(t, (types.Float, types.Integer)) for t in (a, b, c)):
        return None
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, list(args))  # numba has cast the arguments to float64

    return sig, codegen


@intrinsic
def _ctz(typingctx: Any, x: Any) -> Any:
    """Trailing zero bits of x (a uint64, not 0: the result is undefined for 0), as int64."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.int64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, ir.IntType(1)])
        fn = builder.module.declare_intrinsic("llvm.cttz", [i64], fnty)
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])  # 1: 0 is undefined

    return sig, codegen


# called from jitted code as fma(a, b, c) and ctz(x); numba passes the typing context itself
fma = cast(Callable[[float, float, float], float], _fma)
ctz = cast(Callable[[Any], int], _ctz)
