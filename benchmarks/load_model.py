"""Time loading and saving model files; prints one JSON object (figures, not verdicts).

Target (issue 2): the real 45k-Gaussian donut loads well under a second.
Usage: python benchmarks/load_model.py [--repeat 5]
       python benchmarks/load_model.py --big 3000000 [--big-path /tmp/big.ply]

With --big N (issue 19: a 3 M-Gaussian SH-3 file, ~700 MB, loads in <= 4 s from a warm
page cache with peak memory <= 2.5x the file; `mipview info` <= 2 s): writes an INRIA
.ply of N random SH-3 rows (not a trained model; kept where written, never in the
repository), reads it once to warm the page cache, then runs each measurement in a
fresh process: `load_model` (wall and CPU seconds, peak resident memory of the process
and above its state before the load), `mipview info` (wall seconds of the whole
command, interpreter and imports included), and plyfile's memory-mapped read of the
same file into the same arrays, for comparison.
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


def write_big_ply(path: Path, n: int, seed: int = 0) -> Path:
    """An SH-3 INRIA .ply of n random rows, written in chunks (little memory)."""
    import numpy as np

    from render.io.inria_ply import inria_property_names
    from render.io.ply_format import ply_bytes

    names = inria_property_names(3)
    empty = np.zeros(0, np.dtype([(p, "<f4") for p in names]))
    header = ply_bytes([("vertex", empty)]).replace(b"element vertex 0",
                                                     f"element vertex {n}".encode())
    rng = np.random.default_rng(seed)
    col = {p: j for j, p in enumerate(names)}
    with open(path, "wb") as f:
        f.write(header)
        for s in range(0, n, 500_000):
            t = rng.standard_normal((min(500_000, n - s), len(names)), dtype=np.float32)
            t[:, [col["x"], col["y"], col["z"]]] *= 10.0
            t[:, [col[f"scale_{i}"] for i in range(3)]] -= 4.0
            t[:, [col[f"f_rest_{i}"] for i in range(45)]] *= 0.1
            f.write(t.tobytes())
    return path


_LOAD = """
import json, resource, sys, time
import render.gaussians  # torch: render.io imports it lazily, not part of the load
from render.io import load_model
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
t, c = time.perf_counter(), time.process_time()
m = load_model(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "gaussians": len(m.gaussians), "peak_bytes": rss(), "before_bytes": before}))
"""

_PLYFILE = """
import json, resource, sys, time
import numpy as np
from plyfile import PlyData
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
t, c = time.perf_counter(), time.process_time()
v = PlyData.read(sys.argv[1], mmap=True)["vertex"].data
n = len(v)
cols = lambda names: np.stack([v[p] for p in names], axis=1).astype(np.float32)
means = cols(["x", "y", "z"]); quats = cols([f"rot_{i}" for i in range(4)])
scales = cols([f"scale_{i}" for i in range(3)]); opac = np.array(v["opacity"], np.float32)
sh = np.empty((n, 16, 3), np.float32); sh[:, 0] = cols([f"f_dc_{i}" for i in range(3)])
sh[:, 1:] = cols([f"f_rest_{i}" for i in range(45)]).reshape(n, 3, 15).transpose(0, 2, 1)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "peak_bytes": rss(), "before_bytes": before}))
"""


def _run_json(code: str, path: Path) -> dict:
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def big_file(n: int, path: Path, repeat: int) -> dict:
    """The --big figures (see the module docstring)."""
    import subprocess

    t = time.perf_counter()
    if not path.exists() or path.stat().st_size < n * 62 * 4:
        write_big_ply(path, n)
    write_s = time.perf_counter() - t
    size = path.stat().st_size
    with open(path, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    loads = [_run_json(_LOAD, path) for _ in range(repeat)]
    infos = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "viewer.cli", "info", str(path)], env=env,
                       check=True, capture_output=True)
        infos.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import render.io, viewer.cli"], env=env, check=True)
    import_s = time.perf_counter() - t
    plyf = [_run_json(_PLYFILE, path) for _ in range(repeat)]

    def med(rows, key):
        return round(statistics.median(r[key] for r in rows), 2)

    peak = max(r["peak_bytes"] for r in loads)
    above = max(r["peak_bytes"] - r["before_bytes"] for r in loads)
    return {
        "path": str(path), "gaussians": n, "file_bytes": size, "write_s": round(write_s, 1),
        "load_s_median": med(loads, "seconds"), "load_cpu_s_median": med(loads, "cpu_s"),
        "load_s_runs": [round(r["seconds"], 2) for r in loads],
        "load_peak_rss_over_file": round(peak / size, 2),
        "load_peak_above_start_over_file": round(above / size, 2),
        "info_s_median": round(statistics.median(infos), 2),
        "info_s_runs": [round(v, 2) for v in infos],
        "python_and_imports_s": round(import_s, 2),
        "plyfile_mmap_s_median": med(plyf, "seconds"),
        "plyfile_mmap_cpu_s_median": med(plyf, "cpu_s"),
        "plyfile_peak_above_start_over_file": round(
            max(r["peak_bytes"] - r["before_bytes"] for r in plyf) / size, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big", type=int, default=0, metavar="N",
                        help="instead: a generated SH-3 .ply of N Gaussians (see above)")
    parser.add_argument("--big-path", type=Path,
                        default=Path(tempfile.gettempdir()) / "mipview_big_sh3.ply")
    args = parser.parse_args()
    if args.big:
        print(json.dumps(big_file(args.big, args.big_path, args.repeat)))
        return

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
