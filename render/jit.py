"""numba, set up for mipview's compiled CPU kernels: import `njit` from here.

On CPUs with AVX-512 LLVM still sizes vectors for 256 bits (its `prefer-256-bit` tuning,
chosen for older chips whose clock dropped under 512-bit work). The blending loops are
bound by vector arithmetic, so we lift that preference: measured on the 2-core Xeon
(Sapphire Rapids) this project is benchmarked on, both at once on its two cores, the
forward blending kernel took 31-45 ms instead of 55-58 ms single-threaded and its
adjoint 90 instead of 116 ms. The setting must be in place before numba builds its code
generator (at the first `@njit` of the process), hence this module. A NUMBA_CPU_FEATURES
or NUMBA_CPU_NAME that the user set wins; MIPVIEW_NUMBA_256=1 keeps LLVM's choice.
numba's on-disk cache is keyed by the feature string, so kernels of either kind never
mix.
"""

from __future__ import annotations

import os

import numba
from numba import njit


def _prefer_512_bit_vectors() -> None:
    if numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None:
        return
    if os.environ.get("MIPVIEW_NUMBA_256") == "1":
        return
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features().flatten()
    except Exception:  # no host feature query on this platform: leave numba's default
        return
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_512_bit_vectors()


def _let_wide_loops_vectorise() -> None:
    """Raise two limits of LLVM's loop vectoriser. The per-Gaussian kernels read and
    write strided rows of several arrays (means [N, 3], conics [N, 3], ...): proving that
    those do not overlap, and that the unsigned row offsets do not wrap, takes more
    runtime checks than LLVM's defaults allow (8 and 16), and past them it leaves the
    loop scalar. The checks run once per chunk; the projection vectorised is ~3x faster."""
    import llvmlite.binding as ll

    ll.set_option("mipview", "-runtime-memory-check-threshold=128")
    ll.set_option("mipview", "-vectorize-scev-check-threshold=256")


_let_wide_loops_vectorise()

__all__ = ["njit"]
