"""The full single-scale-train / multi-scale-test protocol on a NeRF-synthetic scene.

    python benchmarks/stmt.py [DATA] [--out REPORT] [--docs docs] [mipview eval options]

Runs `mipview eval` (training the two bases unless --base-out / --base-in are given),
copies the figures to --docs as stmt_psnr.png, stmt_grid.png and stmt_table.md when asked,
and prints ONE JSON object: PSNR / SSIM per method and scale, base training time and
quality, adaptation time per level and its ratio to the base's training.
DATA defaults to $MIPVIEW_DATA/lego (../shared/data/lego beside the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, where benchmarks/adapt.py would
# shadow the adapt package: look the packages up from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path,
                        default=Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared"
                                                    / "data")) / "lego")
    parser.add_argument("--out", type=Path, default=Path("stmt_report"))
    parser.add_argument("--docs", type=Path, default=None,
                        help="copy the plot, grid and table here (stmt_*.png, stmt_table.md)")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run; summarise an existing --out report")
    args, rest = parser.parse_known_args(argv)

    from adapt import stmt
    from viewer.cli import main as mipview

    if not args.report_only:
        rc = mipview(["eval", str(args.data), "--out", str(args.out), *rest])
        if rc != 0:
            print(json.dumps({"error": f"mipview eval exited with {rc}"}))
            return rc
    res, grid = stmt.load_report(args.out)
    if args.docs is not None:
        from PIL import Image

        args.docs.mkdir(parents=True, exist_ok=True)
        for src, dst in (("psnr_vs_scale.png", "stmt_psnr.png"), ("table.md", "stmt_table.md")):
            shutil.copyfile(args.out / src, args.docs / dst)
        # the committed grid: smaller cells and a 256-colour palette keep it small
        small = Image.fromarray(stmt.grid_image(res, grid, 96)).quantize(
            256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(args.docs / "stmt_grid.png", optimize=True)
    table = {}
    for sc in res.scores:
        col = f"{sc.setting} x{stmt.format_scale(sc.zoom)}"
        table.setdefault(sc.method, {})[col] = {"psnr": round(sc.psnr, 3),
                                                "ssim": round(sc.ssim, 4)}
    adapt_s = {}
    for a in res.adaptation:
        adapt_s.setdefault(a["method"], {})[f"{a['setting']} x{stmt.format_scale(a['zoom'])}"] = {
            "seconds": round(a["seconds"], 1), "ratio_to_base": round(a["ratio_to_base"], 4)}
    print(json.dumps({
        "data": res.data, "test_views": res.n_test_views,
        "base": {k: {"scale": v["scale"], "size": v["size"], "seconds": round(v["seconds"], 1),
                     "psnr": round(v["psnr"], 3), "ssim": round(v["ssim"], 4),
                     "gaussians": v["n_gaussians"]} for k, v in res.base.items()},
        "scores": table, "adaptation": adapt_s, "lpips_skipped": res.lpips_skipped,
        "config": res.config, "report": str(args.out),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
