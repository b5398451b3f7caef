"""EWA projection of 3D Gaussians to 2D splats in compiled numba, forward and backward.

The same mathematics as :func:`render.rasterize.project.project` (the torch version,
which the tests hold against gsplat's own), fused into one pass per Gaussian: torch spends
~100 separate elementwise ops on it, each a pass over memory (and, under load, a thread
barrier), which cost more than the whole rasterization. Colours from SH: cpu_sh.

Per Gaussian, with q = quat / |quat|, R_q its rotation, s = exp(log_scales), (R, t) the
view: m_c = R m + t, M = R R_q diag(s) (so the camera covariance is M M^T), and with the
pinhole Jacobian J at the mean clamped to 1.3x the field of view, the 2D covariance is
(J M)(J M)^T = [[u.u, u.v], [u.v, v.v]] where u, v are the rows of J M.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians
from render.jit import njit
from render.options import RenderOptions
from render.rasterize.cpu_kernels import chunk_range
from render.rasterize.cpu_sh import drawn_colors, sh_colors
from render.rasterize.cpu_sort import SCRATCH
from render.rasterize.cpu_threads import GAUSSIAN_CHUNKS, chunk_count, next_chunk, run_chunks

_JIT = {"nogil": True, "cache": True, "fastmath": {"nsz", "arcp", "contract", "reassoc"},
        "error_model": "numpy"}


@njit(inline="always", **_JIT)
def _rotmat(w, x, y, z):
    return (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))


@njit(inline="always", **_JIT)
def _fov_limits(cam):
    """(x+, x-, y+, y-): how far x/z and y/z may go before the pinhole Jacobian is clamped
    (1.3x the field of view, as gsplat), for cam as in :func:`project_forward`."""
    fx, fy, cx, cy, w, h = cam[12], cam[13], cam[14], cam[15], cam[16], cam[17]
    return ((w - cx) / fx + 0.15 * w / fx, cx / fx + 0.15 * w / fx,
            (h - cy) / fy + 0.15 * h / fy, cy / fy + 0.15 * h / fy)


@njit(inline="always", **_JIT)
def _camera_point(means, n, cam):
    """Gaussian n's mean in camera axes, R m + t (float64)."""
    mx, my, mz = np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2])
    return (cam[0] * mx + cam[1] * my + cam[2] * mz + cam[9],
            cam[3] * mx + cam[4] * my + cam[5] * mz + cam[10],
            cam[6] * mx + cam[7] * my + cam[8] * mz + cam[11])


@njit(inline="always", **_JIT)
def _unit_quat(quats, n):
    """Gaussian n's quaternion over its length, and the length: (w, x, y, z, |q|)."""
    qw, qx, qy, qz = (np.float64(quats[n, 0]), np.float64(quats[n, 1]),
                      np.float64(quats[n, 2]), np.float64(quats[n, 3]))
    qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    return qw / qn, qx / qn, qy / qn, qz / qn, qn


@njit(inline="always", **_JIT)
def _jm_column(r, q0, q1, q2, s, ku, kv, jx, jy):
    """Column j of M = R R_q diag(s) (r: R as 9 scalars, row-major; q0, q1, q2: column j
    of R_q; s: scale j), then its u and v, the rows of J M: (u_j, v_j)."""
    m0 = (r[0] * q0 + r[1] * q1 + r[2] * q2) * s
    m1 = (r[3] * q0 + r[4] * q1 + r[5] * q2) * s
    m2 = (r[6] * q0 + r[7] * q1 + r[8] * q2) * s
    return ku * m0 + jx * m2, kv * m1 + jy * m2


# Row offsets as unsigned constants: with signed indices numba adds negative-index
# wraparound code, and LLVM then cannot see the rows' addresses as a stride (no vectors).
_U1, _U2, _U3, _U4 = (np.uint64(k) for k in range(1, 5))

# Culling goes by blocks of this many Gaussians (see project_forward): small enough that
# whole blocks of a scene fall outside a view, large enough that the vector loop's entry
# (overlap checks, remainder) is paid rarely (a scene wholly in view: its projection
# took 5 % longer than without blocks at 256 a block, 20 % at 64).
CULL_BLOCK = 256
# Gaussians tested at a time within a block: the test stops at the first run with a hit.
CULL_RUN = 16


@njit(inline="always", **_JIT)
def _may_show(means, scales, n0, n1, cam, eps, lx2, ly2):
    """Whether any of Gaussians n0..n1 can reach the image, by a bound that never says no
    to one that project_forward draws, with neither a division nor a root (so that the
    test vectorises). lx2, ly2: the squares of the Jacobian's clamps on x/z and y/z.

    With z > 0 the depth, d_x the mean's distance outside the image (px) and s the
    largest scale, the x radius (3.33 sqrt(a) rounded up, a = |row 0 of J M|^2 + eps <=
    fx^2 s^2 (1 + c^2) / z^2 + eps, c = x/z clamped) is below 3.33 sqrt(a) + 1, whose
    square is below 1.25 * 3.33^2 a + 5; multiplied by z^4 (e_x = z d_x):
    e_x^2 z^2 < 13.87 (fx^2 s^2 (z^2 + min(x^2, lx2 z^2)) + eps z^4) + 5 z^4; so for y."""
    fx, fy, cx, cy = cam[12], cam[13], cam[14], cam[15]
    hw, hh, near, far = 0.5 * cam[16], 0.5 * cam[17], cam[18], cam[19]
    hits = 0
    for r0 in range(n0, n1, CULL_RUN):
        if hits > 0:
            break
        for i in range(r0, min(r0 + CULL_RUN, n1)):
            n3 = _U3 * np.uint64(i)
            mx, my, mz = (np.float64(means[n3]), np.float64(means[n3 + _U1]),
                          np.float64(means[n3 + _U2]))
            tx = cam[0] * mx + cam[1] * my + cam[2] * mz + cam[9]
            ty = cam[3] * mx + cam[4] * my + cam[5] * mz + cam[10]
            tz = cam[6] * mx + cam[7] * my + cam[8] * mz + cam[11]
            z = tz if abs(tz) >= 1e-8 else 1e-8  # as the projection divides
            s = max(max(np.float64(scales[n3]), np.float64(scales[n3 + _U1])),
                    np.float64(scales[n3 + _U2]))
            ex = max(abs(fx * tx + (cx - hw) * z) - hw * z, 0.0)
            ey = max(abs(fy * ty + (cy - hh) * z) - hh * z, 0.0)
            z2 = z * z
            z4 = z2 * z2
            bx = 13.87 * (fx * fx * s * s * (z2 + min(tx * tx, lx2 * z2)) + eps * z4) + 5.0 * z4
            by = 13.87 * (fy * fy * s * s * (z2 + min(ty * ty, ly2 * z2)) + eps * z4) + 5.0 * z4
            show = (tz > near) & (tz < far) & (ex * ex * z2 < bx) & (ey * ey * z2 < by)
            hits += 1 if show else 0
    return hits > 0


@njit(**_JIT)
def project_forward(means, quats, scales, sigmoids, cam, eps, compensate, cull, means2d,
                    conics, depths, opacities, radii, ticket, n_chunks):
    """means [N, 3], quats [N, 4], scales [N, 3] (exp of the log-scales), sigmoids [N]
    float64 (of the opacity logits; both from :func:`activations`); cam [20] float64 = R
    (9, row-major), t (3), fx, fy, cx, cy, width, height, near, far -> means2d [N, 2],
    conics [N, 3], depths [N], opacities [N], radii [N, 2] int32. Every array is passed
    flat (row-major, [N * k]).

    With `cull` (frames without a gradient), a Gaussian outside the depth range gets its
    depth, radii 0 and zeros elsewhere, and a block of CULL_BLOCK Gaussians none of which
    can reach the image (:func:`_may_show`) costs only that test: radii and means2d 0,
    its conics, depths and opacities left as they were. Branch-free within a block, so
    that LLVM vectorises the loop (8 Gaussians a step in float64 with AVX-512): every
    Gaussian's covariance is computed and the culled ones' are then dropped by selects.
    """
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(cam)
    lx2, ly2 = max(lim_xp, lim_xn) ** 2, max(lim_yp, lim_yn) ** 2
    n_all = sigmoids.shape[0]
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(n_all, chunk, n_chunks)
        for g0 in range(n0, n1, CULL_BLOCK):
            g1 = min(g0 + CULL_BLOCK, n1)
            if cull and not _may_show(means, scales, g0, g1, cam, eps, lx2, ly2):
                for i in range(_U2 * np.uint64(g0), _U2 * np.uint64(g1)):
                    means2d[i] = 0.0
                    radii[i] = 0
                continue
            _project_block(means, quats, scales, sigmoids, cam, eps, compensate, cull,
                           means2d, conics, depths, opacities, radii, g0, g1)
        chunk = next_chunk(ticket)


@njit(**_JIT)
def _project_block(means, quats, scales, sigmoids, cam, eps, compensate, cull, means2d,
                   conics, depths, opacities, radii, g0, g1):
    """Gaussians g0..g1 of :func:`project_forward`. A function of its own: inlined into
    project_forward's loop it compiled to slower code (the 1.2 M scene in view, one
    thread: 11.1 against 9.4 ms)."""
    fx, fy, cx, cy = cam[12], cam[13], cam[14], cam[15]
    w, h, near, far = cam[16], cam[17], cam[18], cam[19]
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(cam)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = (cam[0], cam[1], cam[2], cam[3], cam[4],
                                                   cam[5], cam[6], cam[7], cam[8])
    rot = (r00, r01, r02, r10, r11, r12, r20, r21, r22)
    for i in range(g0, g1):
        n = np.uint64(i)
        n2, n3, n4 = _U2 * n, _U3 * n, _U4 * n
        mx, my, mz = (np.float64(means[n3]), np.float64(means[n3 + _U1]),
                      np.float64(means[n3 + _U2]))
        tx = r00 * mx + r01 * my + r02 * mz + cam[9]
        ty = r10 * mx + r11 * my + r12 * mz + cam[10]
        tz = r20 * mx + r21 * my + r22 * mz + cam[11]
        qw, qx, qy, qz = (np.float64(quats[n4]), np.float64(quats[n4 + _U1]),
                          np.float64(quats[n4 + _U2]), np.float64(quats[n4 + _U3]))
        qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
        q = _rotmat(qw / qn, qx / qn, qy / qn, qz / qn)
        s0, s1, s2 = (np.float64(scales[n3]), np.float64(scales[n3 + _U1]),
                      np.float64(scales[n3 + _U2]))
        op = sigmoids[n]  # loaded before any select: a load under a branch is no vector
        z = tz if abs(tz) >= 1e-8 else 1e-8
        iz = 1.0 / z
        jx = -fx * min(max(tx * iz, -lim_xn), lim_xp) * iz
        jy = -fy * min(max(ty * iz, -lim_yn), lim_yp) * iz
        ku, kv = fx * iz, fy * iz
        u0, v0 = _jm_column(rot, q[0], q[3], q[6], s0, ku, kv, jx, jy)
        u1, v1 = _jm_column(rot, q[1], q[4], q[7], s1, ku, kv, jx, jy)
        u2, v2 = _jm_column(rot, q[2], q[5], q[8], s2, ku, kv, jx, jy)
        a0 = u0 * u0 + u1 * u1 + u2 * u2
        b0 = u0 * v0 + u1 * v1 + u2 * v2
        c0 = v0 * v0 + v1 * v1 + v2 * v2
        px = fx * tx * iz + cx
        py = fy * ty * iz + cy
        det_orig = a0 * c0 - b0 * b0
        a, c = a0 + eps, c0 + eps
        det_raw = a * c - b0 * b0
        det = max(det_raw, 1e-10)
        if compensate:
            op *= math.sqrt(max(det_orig / det, 0.0))
        # Integer-valued float64: ceil without a libm call (the values are >= 0).
        rxf, ryf = 3.33 * math.sqrt(max(a, 0.0)), 3.33 * math.sqrt(max(c, 0.0))
        rx, ry = np.float64(np.int64(rxf)), np.float64(np.int64(ryf))
        rx = rx + 1.0 if rx < rxf else rx
        ry = ry + 1.0 if ry < ryf else ry
        in_depth = (tz > near) & (tz < far)
        keep = in_depth | (not cull)
        ok = (det_raw > 0.0) & in_depth & (px + rx > 0) & (px - rx < w) & (
            py + ry > 0) & (py - ry < h)
        means2d[n2] = px if keep else 0.0
        means2d[n2 + _U1] = py if keep else 0.0
        conics[n3] = c / det if keep else 0.0
        conics[n3 + _U1] = -b0 / det if keep else 0.0
        conics[n3 + _U2] = a / det if keep else 0.0
        depths[n] = tz
        opacities[n] = op if keep else 0.0
        radii[n2] = np.int32(rx) if ok else 0
        radii[n2 + _U1] = np.int32(ry) if ok else 0


@njit(**_JIT)
def activations(log_scales, opacity_logits, scales, sigmoids, ticket, n_chunks):
    """scales [N, 3] float32 = exp(log_scales [N, 3]), sigmoids [N] float64 =
    sigmoid(opacity_logits [N]): the inputs of :func:`project_forward` (apart, so that its
    loop, free of libm calls, vectorises)."""
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(log_scales.shape[0], chunk, n_chunks)
        for n in range(n0, n1):
            scales[n, 0] = math.exp(log_scales[n, 0])
            scales[n, 1] = math.exp(log_scales[n, 1])
            scales[n, 2] = math.exp(log_scales[n, 2])
            sigmoids[n] = 1.0 / (1.0 + math.exp(-np.float64(opacity_logits[n])))
        chunk = next_chunk(ticket)


@njit(**_JIT)
def project_backward(means, quats, log_scales, opacity_logits, cam, eps, compensate,
                     v_means2d, v_conics, v_depths, v_opacities,
                     v_means, v_quats, v_log_scales, v_opacity_logits, ticket, n_chunks):
    """Adjoint of :func:`project_forward` (recomputes the forward per Gaussian)."""
    fx, fy = cam[12], cam[13]
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(cam)
    # Scratch, allocated once per call: allocating it per Gaussian took half the pass.
    mc = np.empty((3, 3))  # mc[i, j]: camera axis i of column j of M
    uu = np.empty(3)
    vv = np.empty(3)
    v_mc = np.empty((3, 3))
    g = np.empty(9)  # dL/dR_q, row-major
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(means.shape[0], chunk, n_chunks)
        for n in range(n0, n1):
            gx, gy = np.float64(v_means2d[n, 0]), np.float64(v_means2d[n, 1])
            vA, vB, vC = (np.float64(v_conics[n, 0]), np.float64(v_conics[n, 1]),
                          np.float64(v_conics[n, 2]))
            vz, vo = np.float64(v_depths[n]), np.float64(v_opacities[n])
            if gx == 0.0 and gy == 0.0 and vA == 0.0 and vB == 0.0 and vC == 0.0 and vz == 0.0 \
                    and vo == 0.0:
                for k in range(3):
                    v_means[n, k] = 0.0
                    v_log_scales[n, k] = 0.0
                for k in range(4):
                    v_quats[n, k] = 0.0
                v_opacity_logits[n] = 0.0
                continue
            # ---- forward again -------------------------------------------------------------
            tx, ty, tz = _camera_point(means, n, cam)
            nw, nx, ny, nz, qn = _unit_quat(quats, n)
            q = _rotmat(nw, nx, ny, nz)
            s = (math.exp(log_scales[n, 0]), math.exp(log_scales[n, 1]),
                 math.exp(log_scales[n, 2]))
            z_small = abs(tz) < 1e-8
            z = 1e-8 if z_small else tz
            iz = 1.0 / z
            xr, yr = tx * iz, ty * iz
            x_in = -lim_xn <= xr <= lim_xp
            y_in = -lim_yn <= yr <= lim_yp
            xcl = min(max(xr, -lim_xn), lim_xp)
            ycl = min(max(yr, -lim_yn), lim_yp)
            jx, jy = -fx * xcl * iz, -fy * ycl * iz
            ku, kv = fx * iz, fy * iz
            a0 = 0.0
            b0 = 0.0
            c0 = 0.0
            for j in range(3):
                for i in range(3):
                    mc[i, j] = (cam[3 * i] * q[j] + cam[3 * i + 1] * q[3 + j]
                                + cam[3 * i + 2] * q[6 + j]) * s[j]
                uu[j] = ku * mc[0, j] + jx * mc[2, j]
                vv[j] = kv * mc[1, j] + jy * mc[2, j]
                a0 += uu[j] * uu[j]
                b0 += uu[j] * vv[j]
                c0 += vv[j] * vv[j]
            det_orig = a0 * c0 - b0 * b0
            a, c = a0 + eps, c0 + eps
            det_raw = a * c - b0 * b0
            det = max(det_raw, 1e-10)
            sig = 1.0 / (1.0 + math.exp(-np.float64(opacity_logits[n])))
            # ---- opacity and its compensation -------------------------------------------------
            v_det = 0.0
            v_a0 = 0.0
            v_b0 = 0.0
            v_c0 = 0.0
            v_sig = vo
            if compensate:
                ratio = det_orig / det
                comp = math.sqrt(max(ratio, 0.0))
                v_sig = vo * comp
                if ratio > 0.0:
                    v_ratio = vo * sig * 0.5 / comp
                    v_do = v_ratio / det
                    v_det -= v_ratio * ratio / det
                    v_a0 += v_do * c0
                    v_c0 += v_do * a0
                    v_b0 -= 2.0 * b0 * v_do
            v_opacity_logits[n] = v_sig * sig * (1.0 - sig)
            # ---- conic = (c, -b, a) / det ---------------------------------------------------
            v_det -= (vA * c - vB * b0 + vC * a) / (det * det)
            v_a0 += vC / det
            v_c0 += vA / det
            v_b0 -= vB / det
            if det_raw > 1e-10:
                v_a0 += v_det * c
                v_c0 += v_det * a
                v_b0 -= 2.0 * b0 * v_det
            # ---- rows u, v of J M ---------------------------------------------------------------
            v_ku = 0.0
            v_kv = 0.0
            v_jx = 0.0
            v_jy = 0.0
            for j in range(3):
                vu = 2.0 * v_a0 * uu[j] + v_b0 * vv[j]
                vv_ = 2.0 * v_c0 * vv[j] + v_b0 * uu[j]
                v_mc[0, j] = ku * vu
                v_mc[1, j] = kv * vv_
                v_mc[2, j] = jx * vu + jy * vv_
                v_ku += vu * mc[0, j]
                v_kv += vv_ * mc[1, j]
                v_jx += vu * mc[2, j]
                v_jy += vv_ * mc[2, j]
            v_iz = fx * v_ku + fy * v_kv - fx * xcl * v_jx - fy * ycl * v_jy
            v_tx = 0.0
            v_ty = 0.0
            if x_in:
                v_xr = -fx * iz * v_jx
                v_tx += v_xr * iz
                v_iz += v_xr * tx
            if y_in:
                v_yr = -fy * iz * v_jy
                v_ty += v_yr * iz
                v_iz += v_yr * ty
            # ---- means2d = f t / z + c ----------------------------------------------------------
            v_tx += fx * iz * gx
            v_ty += fy * iz * gy
            v_iz += fx * tx * gx + fy * ty * gy
            v_tz = vz
            if not z_small:
                v_tz -= v_iz * iz * iz
            # m_c = R m + t
            for k in range(3):
                v_means[n, k] = cam[k] * v_tx + cam[3 + k] * v_ty + cam[6 + k] * v_tz
            # ---- M = R R_q diag(s) -----------------------------------------------------------
            for j in range(3):
                v_s = 0.0
                for i in range(3):
                    wij = cam[i] * v_mc[0, j] + cam[3 + i] * v_mc[1, j] + cam[6 + i] * v_mc[2, j]
                    g[3 * i + j] = wij * s[j]
                    v_s += wij * q[3 * i + j]
                v_log_scales[n, j] = v_s * s[j]
            vw = 2.0 * (-nz * g[1] + ny * g[2] + nz * g[3] - nx * g[5] - ny * g[6] + nx * g[7])
            vx = 2.0 * (ny * g[1] + nz * g[2] + ny * g[3] - 2.0 * nx * g[4] - nw * g[5]
                        + nz * g[6] + nw * g[7] - 2.0 * nx * g[8])
            vy = 2.0 * (-2.0 * ny * g[0] + nx * g[1] + nw * g[2] + nx * g[3] + nz * g[5]
                        - nw * g[6] + nz * g[7] - 2.0 * ny * g[8])
            vzq = 2.0 * (-2.0 * nz * g[0] - nw * g[1] + nx * g[2] + nw * g[3] - 2.0 * nz * g[4]
                         + ny * g[5] + nx * g[6] + ny * g[7])
            # q / |q|: remove the radial part, divide by the length.
            dot = nw * vw + nx * vx + ny * vy + nz * vzq
            v_quats[n, 0] = (vw - nw * dot) / qn
            v_quats[n, 1] = (vx - nx * dot) / qn
            v_quats[n, 2] = (vy - ny * dot) / qn
            v_quats[n, 3] = (vzq - nz * dot) / qn
        chunk = next_chunk(ticket)


def camera_array(cam: Camera) -> np.ndarray:
    """The camera as the flat float64 array the kernels read. [20]"""
    vm = cam.viewmat.numpy().astype(np.float64)
    return np.concatenate([vm[:3, :3].ravel(), vm[:3, 3],
                           [cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, cam.near,
                            cam.far]])


def numpy_f32(t: Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy view (or copy) of a CPU tensor, outside autograd.

    detach() only for a tensor in a graph: it is an autograd call that lets go of the
    GIL, and a render thread that lets go of it waits to get it back for as long as
    another thread runs Python (measured: ~10 ms a detach() against a thread running
    Python; a viewer frame made ~14 of them, now none).
    """
    if t.requires_grad:
        t = t.detach()
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    return np.ascontiguousarray(t.numpy())


def _flat(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """C-contiguous arrays as flat views ([N, k] -> [N * k]), as project_forward reads."""
    return tuple(a.reshape(-1) for a in arrays)


def _activations(log_scales: np.ndarray, opacity_logits: np.ndarray):
    """(scales [N, 3] float32, sigmoids [N] float64), see :func:`activations`."""
    n = log_scales.shape[0]
    scales, sigmoids = np.empty((n, 3), np.float32), np.empty(n, np.float64)
    run_chunks(activations, chunk_count(GAUSSIAN_CHUNKS), log_scales, opacity_logits, scales,
               sigmoids)
    return scales, sigmoids


class ProjectCPU(torch.autograd.Function):
    """(means, quats, log_scales, opacity_logits) -> (means2d, conics, depths, opacities,
    radii); differentiable in the four inputs."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacity_logits, cam_arr, eps, compensate):
        n = means.shape[0]
        means2d = np.empty((n, 2), np.float32)
        conics = np.empty((n, 3), np.float32)
        depths = np.empty(n, np.float32)
        opacities = np.empty(n, np.float32)
        radii = np.empty((n, 2), np.int32)
        args = (*(numpy_f32(t) for t in (means, quats, log_scales, opacity_logits)), cam_arr,
                float(eps), bool(compensate))
        scales, sigmoids = _activations(args[2], args[3])
        run_chunks(project_forward, chunk_count(GAUSSIAN_CHUNKS), *_flat(
            args[0], args[1], scales), sigmoids, cam_arr, float(eps), bool(compensate), False,
            *_flat(means2d, conics, depths, opacities, radii))
        ctx.args = args
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        return (torch.from_numpy(means2d), torch.from_numpy(conics), torch.from_numpy(depths),
                torch.from_numpy(opacities), radii_t)

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_opacities, _v_radii):
        n = ctx.args[0].shape[0]

        def grad(t, shape):
            return numpy_f32(t) if t is not None else np.zeros(shape, np.float32)

        outs = (np.empty((n, 3), np.float32), np.empty((n, 4), np.float32),
                np.empty((n, 3), np.float32), np.empty(n, np.float32))
        run_chunks(project_backward, chunk_count(GAUSSIAN_CHUNKS), *ctx.args,
                   grad(v_means2d, (n, 2)), grad(v_conics, (n, 3)), grad(v_depths, n),
                   grad(v_opacities, n), *outs)
        return (*(torch.from_numpy(o) for o in outs), None, None, None)


class _Activations:
    """exp(log_scales) and sigmoid(opacity_logits) of the last model drawn without a
    gradient (see :func:`activations`): a viewer draws the same model frame after frame,
    and those four libm calls per Gaussian were ~40 % of the projection.

    The entry holds the two tensors themselves, so their memory cannot go to another
    tensor while it is kept, and their `_version` (which every in-place torch write bumps,
    views included): a key of (data pointer, shape, strides, version) is then never stale.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._keep: tuple = ()
        self._out: tuple = ()

    @staticmethod
    def _key_of(t: Tensor) -> tuple:
        return (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t._version)

    def get(self, log_scales: Tensor, opacity_logits: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(scales [N, 3] float32, sigmoids [N] float64) for these tensors."""
        key = (self._key_of(log_scales), self._key_of(opacity_logits))
        with self._lock:
            if key != self._key:
                scales, sigmoids = _activations(numpy_f32(log_scales),
                                                numpy_f32(opacity_logits))
                self._key, self._keep, self._out = key, (log_scales, opacity_logits), (
                    scales, sigmoids)
            return self._out


ACTIVATIONS = _Activations()


def _project_frame(params, cam_arr, eps, compensate, reuse: bool):
    """The projection of a frame without a gradient (no autograd node), culling (see
    project_forward). With `reuse`, conics, depths and opacities are this thread's
    scratch buffers (valid until its next such frame); means2d and radii, which the
    RenderResult hands out, are too once nothing holds the last ones (see
    Scratch.unshared)."""
    n = params[0].shape[0]

    def buf(name, tail, dtype=np.float32, handed_out=False):
        if not reuse:
            return np.empty((n, *tail), dtype)
        if handed_out:
            return SCRATCH.unshared(name, n, tail, dtype)
        return SCRATCH.get(name, n, tail, dtype)

    means2d = buf("p_means2d", (2,), handed_out=True)
    radii = buf("p_radii", (2,), np.int32, handed_out=True)
    conics, depths, opacities = buf("p_conics", (3,)), buf("p_depths", ()), buf("p_opac", ())
    scales, sigmoids = ACTIVATIONS.get(params[2], params[3])
    run_chunks(project_forward, chunk_count(GAUSSIAN_CHUNKS),
               *_flat(numpy_f32(params[0]), numpy_f32(params[1]), scales), sigmoids, cam_arr,
               float(eps), bool(compensate), True,
               *_flat(means2d, conics, depths, opacities, radii))
    return tuple(torch.from_numpy(a) for a in (means2d, conics, depths, opacities, radii))


def project_cpu(g: Gaussians, cam: Camera, options: RenderOptions, reuse: bool = False):
    """Projection with the numba kernels; returns the same :class:`Projection` as
    :func:`render.rasterize.project.project`. Colours from SH: cpu_sh's kernels, in the
    autograd graph when they need a gradient.

    Culled Gaussians skip their SH colour (0). Without a gradient, those in blocks wholly
    out of view also skip their covariance (see project_forward): a culled Gaussian's
    conics, depths and opacities are then undefined (its radii and means2d are 0), as the
    rasterizers read only the visible ones. With `reuse` (a display frame, consumed
    before the thread's next one) the per-Gaussian arrays other than means2d and radii
    live in per-thread buffers reused across frames, and the culled ones' colours are
    left unwritten there too.
    """
    from render.rasterize.project import sh_degree_used
    from render.rasterize.types import Projection

    eps, compensate = options.dilation()
    params = (g.means, g.quats, g.log_scales, g.opacity_logits)
    if torch.is_grad_enabled() and any(t.requires_grad for t in params):
        means2d, conics, depths, opacities, radii = ProjectCPU.apply(
            *params, camera_array(cam), eps, compensate)
    else:
        means2d, conics, depths, opacities, radii = _project_frame(
            params, camera_array(cam), eps, compensate, reuse)
    if torch.is_grad_enabled() and (g.sh.requires_grad or g.means.requires_grad):
        colors = drawn_colors(g, cam, options, radii)
    else:
        n, degree = g.means.shape[0], sh_degree_used(g, options)
        out = (SCRATCH.get("p_colors", n, (3,), np.float32) if reuse
               else np.empty((n, 3), np.float32))
        campos = cam.position.numpy().astype(np.float64)
        # Under ~0.5 ms of work (measured: degree 0, 31,708 Gaussians, 0.3 ms) handing
        # chunks to the pool costs more than it saves: one chunk, on this thread.
        small = n * (degree + 1) ** 2 < 1_000_000
        run_chunks(sh_colors, 1 if small else chunk_count(GAUSSIAN_CHUNKS),
                   numpy_f32(g.means), numpy_f32(g.sh), campos, degree, radii.numpy(),
                   not reuse, out)
        colors = torch.from_numpy(out)
    return Projection(means2d, conics, depths, radii, opacities, colors)
