"""A fused multiply-add for numba kernels: a * b + c with one rounding.

numba has no ``math.fma``, and ``fastmath={"contract"}`` leaves it to LLVM which product of an
expression like ``a * b + c * d`` to fuse, which can differ between two loops computing the
same formula (seen: an EMA alone and inside a pair an ulp apart). ``fma`` is LLVM's
``llvm.fma.f64``: one instruction where the CPU has FMA (every x86-64 since 2013, every
AArch64), a correctly rounded library call elsewhere; the same bits everywhere.
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


# called from jitted code as fma(a, b, c); numba passes the typing context itself
fma = cast(Callable[[float, float, float], float], _fma)
