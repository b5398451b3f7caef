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

__all__ = ["njit"]
