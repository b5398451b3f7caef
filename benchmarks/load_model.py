"""Time loading and saving model files; prints one JSON object (figures, not verdicts).

Target (issue 2): the real 45k-Gaussian donut loads well under a second.
Usage: python benchmarks/load_model.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# run as a script, this folder is sys.path[0], and benchmarks/render.py would shadow the
# render package: look up packages from the repository root instead
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
DATA = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    t = time.perf_counter()
    from render.io import load_model, save_compressed_ply, save_ply, save_splat
    import_ms = round((time.perf_counter() - t) * 1000.0, 1)

    result = {"import_ms": import_ms, "repeat": args.repeat, "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("donut_mipsplat_sh0.ply", "inria_iter7000_sh3.ply"):
            path = DATA / name
            if not path.exists():
                result["files"][name] = f"missing: {path} (set MIPVIEW_DATA)"
                continue
            g = load_model(path).gaussians
            variants = {
                "inria_ply": path,
                "compressed_ply": save_compressed_ply(g, Path(tmp) / "c.ply"),
                "splat": save_splat(g, Path(tmp) / "s.splat"),
            }
            entry = {"gaussians": len(g), "sh_degree": g.sh_degree,
                     "save_ply_ms": median_ms(lambda g=g: save_ply(g, Path(tmp) / "o.ply"),
                                              args.repeat)}
            for fmt, p in variants.items():
                entry[f"load_{fmt}_ms"] = median_ms(lambda p=p: load_model(p), args.repeat)
                entry[f"{fmt}_bytes"] = p.stat().st_size
            result["files"][name] = entry
    print(json.dumps(result))


if __name__ == "__main__":
    main()
