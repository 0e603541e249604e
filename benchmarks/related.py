"""MLA-LP's linear program and the related attacks' Jacobian, measured side by side on a demo model.

1. The LP of one MLA-LP iteration at 3 x 64 x 64 x 24 labels (a real one: BCE gradients of demo-asl at a
   test image, level 0.5), solved (a) as the textbook LP ``min z`` with 2d rows ``|u_j| <= z`` by HiGHS's
   interior point (and, with ``--simplex``, its dual simplex: minutes), (b) by :func:`min_linf_solve`
   (Newton on the fixed-radius LP, C rows). Same optimum, times and solve counts.
2. ``min_linf_solve`` per reduced basis (None, 32, 16, 8): time per LP against :func:`mla_lp_cost`'s estimate.
3. The Jacobian of all C logits for ``--images`` images: one forward and one vmapped backward (what the
   attacks do), one backward over C copies of each image (their fallback), C backward passes per image.

Run: .venv/bin/python benchmarks/related.py [--model demo-asl] [--images 8] [--simplex]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

import mlvis
from mlvis.attacks.related import _GridBasis, min_linf_solve, mla_lp_cost


def lp_problem(model, x, basis):
    """g (C, m), b (C,), down, up (m,) of MLA-LP's first LP for image x (1, 3, H, W) at level 0.5."""
    grid = _GridBasis(tuple(x.shape[1:]), basis, x.device)
    jac = torch.autograd.functional.jacobian(lambda xx: model(xx)[0], x).reshape(len(model.labels), -1)
    with torch.no_grad():
        z = model(x)[0].double().numpy()
    s = np.where(torch.sigmoid(torch.from_numpy(z)).numpy() >= model.threshold, -1.0, 1.0)  # target = 1 - pred
    g = grid.reduce(jac).double().numpy() * (-s / (1 + np.exp(s * z)))[:, None]
    b = np.log(2.0) - np.logaddexp(0, -s * z)
    down, up = grid.room(x.double())
    return g, b, down[0].numpy(), up[0].numpy()


def textbook(g, b, down, up, method):
    c, m = g.shape
    eye = sp.identity(m, format="csr")
    col = sp.csr_matrix(np.ones((m, 1)))
    a = sp.vstack([sp.hstack([sp.csr_matrix(g), sp.csr_matrix((c, 1))]), sp.hstack([eye, -col]),
                   sp.hstack([-eye, -col])], format="csr")  # fmt: skip
    cost = np.r_[np.zeros(m), 1.0]
    bounds = np.column_stack([np.r_[-down, 0.0], np.r_[up, np.inf]])
    t = time.perf_counter()
    res = linprog(cost, A_ub=a, b_ub=np.r_[b, np.zeros(2 * m)], bounds=bounds, method=method)
    return res.fun, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo-asl")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--simplex", action="store_true", help="also time HiGHS's dual simplex on the textbook LP")
    args = ap.parse_args()
    model = mlvis.create_model(args.model, device="cpu")
    x, _ = mlvis.data.demo_batch(args.images, seed=0)
    c = len(model.labels)
    print(f"{args.model}, torch threads {torch.get_num_threads()}")

    g, b, down, up = lp_problem(model, x[:1], None)
    t = time.perf_counter()
    _v, z, solves = min_linf_solve(g, b, down, up)
    t_newton = time.perf_counter() - t
    z_ipm, t_ipm = textbook(g, b, down, up, "highs-ipm")
    print(f"\n1. LP at full resolution ({g.shape[1]} variables, {c} labels)")
    print(f"   textbook LP, HiGHS interior point : z = {z_ipm:.8f}  {t_ipm:7.2f} s")
    if args.simplex:
        z_ds, t_ds = textbook(g, b, down, up, "highs-ds")
        print(f"   textbook LP, HiGHS dual simplex   : z = {z_ds:.8f}  {t_ds:7.2f} s")
    print(f"   Newton on the fixed-radius LP     : z = {z:.8f}  {t_newton:7.2f} s ({solves} HiGHS solves)")

    print("\n2. per basis: measured time per LP vs mla_lp_cost's estimate")
    for basis in (None, 32, 16, 8):
        g, b, down, up = lp_problem(model, x[:1], basis)
        t = time.perf_counter()
        _v, z, solves = min_linf_solve(g, b, down, up)
        dt = time.perf_counter() - t
        est = mla_lp_cost(tuple(x.shape[1:]), c, basis)["seconds_per_lp"]
        print(f"   basis {basis!s:>4}: {g.shape[1]:6d} variables, z = {z:.5f}, {solves} solves, {dt:6.2f} s "
              f"(estimate {est:6.2f} s)")  # fmt: skip

    print(f"\n3. Jacobian of {c} logits for {args.images} images")
    t = time.perf_counter()
    xa = x.clone().requires_grad_(True)
    out = model(xa)
    eye = torch.eye(c).unsqueeze(1).expand(c, args.images, c)
    (jv,) = torch.autograd.grad(out, xa, grad_outputs=eye, is_grads_batched=True)
    t_vmap = time.perf_counter() - t
    xr = x.repeat_interleave(c, 0).requires_grad_(True)
    t = time.perf_counter()
    out = model(xr).view(args.images, c, c)
    (jb,) = torch.autograd.grad(out.diagonal(0, 1, 2).sum(), xr)
    t_copies = time.perf_counter() - t
    t = time.perf_counter()
    rows = []
    for i in range(args.images):
        xi = x[i : i + 1].clone().requires_grad_(True)
        logits = model(xi)
        for k in range(c):
            (gk,) = torch.autograd.grad(logits[0, k], xi, retain_graph=k < c - 1)
            rows.append(gk)
    t_loop = time.perf_counter() - t
    loop = torch.cat(rows).reshape(-1)
    same = torch.allclose(jv.transpose(0, 1).reshape(-1), loop, atol=1e-5) and torch.allclose(jb.reshape(-1), loop,
                                                                                                atol=1e-5)  # fmt: skip
    print(f"   one forward + vmapped backward (used): {t_vmap:6.2f} s;  one backward over C copies (fallback): "
          f"{t_copies:6.2f} s;  C backward passes per image: {t_loop:6.2f} s; equal: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
