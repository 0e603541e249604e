"""Fingerprint of the library's results: one SHA-256 per result of a representative set of calls.

Run it on two trees (before and after a restructuring) and diff the outputs: every line must match,
except the cases a change is meant to alter. It uses the public API only (``mlvis.attack``, ``run_job``,
``mlvis.profile`` / ``correlations`` / ``evaluate``, ``compare_related``, the findings pieces, the recipe),
on the shipped demo models, with small images counts and caps so that it runs in a few minutes on one
CPU thread.

Each line is ``<case> <sha256 of the result's arrays> <sha256 of its config / exports>``; the arrays and
the metadata are hashed apart, so a diff says whether the numbers or only the descriptions changed.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/fingerprint.py [--out FILE] [--only SUBSTRING]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import torch

import mlvis
from mlvis.attacks import AttackSpec, run_job

LINES: list[str] = []


def _h(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, torch.Tensor):
            _h_upd(h, p.detach().cpu().numpy())
        elif isinstance(p, (bytes, bytearray)):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _h_upd(h, a: np.ndarray) -> None:
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())


def emit(case: str, numbers: str, meta: str = "-") -> None:
    line = f"{case:<48} {numbers} {meta}"
    LINES.append(line)
    print(line, flush=True)


def result_hashes(r) -> tuple[str, str]:
    arrays = [getattr(r, k) for k in ("eps", "adv", "adv_8bit", "clean_probs", "adv_probs", "adv_probs_8bit",
                                       "flips", "flips_8bit", "linf", "l2", "steps")]  # fmt: skip
    if r.targets is not None:
        arrays.append(r.targets)
    meta = [r.method, r.name, r.norm, list(r.labels), r.threshold, r.config, r.to_frame().to_csv(index=False)]
    return _h(*arrays), _h(*meta)


def emit_result(case: str, r) -> None:
    emit(case, *result_hashes(r))


def emit_results(case: str, results) -> None:
    for i, r in enumerate(results):
        emit(f"{case}[{i}:{r.name}]", *result_hashes(r))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="run only the cases whose group name contains this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    asl = mlvis.create_model("demo-asl")
    q2l = mlvis.create_model("demo-q2l")
    x4, _ = mlvis.data.demo_batch(4)
    x2 = x4[:2]
    prof = mlvis.profile(asl)
    up = mlvis.correlations(asl, direction="up")
    down = mlvis.correlations(asl, direction="down")
    dims = int(np.prod(x4.shape[1:]))
    eps_list = [0.002, 0.004, 0.008]
    r_l2 = [mlvis.attacks.equal_volume_l2_radius(e, dims) for e in eps_list]

    def group(name: str) -> bool:
        return args.only is None or args.only in name

    emit("shipped.profile", _h(prof.to_dict()))
    emit("shipped.up", _h(up.to_dict()))
    emit("shipped.down", _h(down.to_dict()))

    # ---- every registered method, L-inf and L2, eps lists (prefix sharing)
    if group("methods"):
        cases = {
            "bce": {},
            "linear": {},
            "slam.profile": {"method": "slam", "profile": prof},
            "slam.p": {"method": "slam", "p": 0.3, "q": 0.25},
            "slam.pK": {"method": "slam", "p": [0.1, 0.2, 0.4]},
            "class.profile": {"method": "class", "profile": prof, "correlations": up, "gamma": 0.5},
            "class.pair": {"method": "class", "profile": prof, "correlations": (up, down), "gamma": 0.0},
            "class.length": {"method": "class", "length": 3, "correlations": up, "gamma": 1.0},
            "random.profile": {"method": "random", "profile": prof},
            "random.length": {"method": "random", "length": 4},
            "closest": {"method": "closest", "k": 3},
            "single-label": {"method": "single-label", "labels": [0, 5, 7, 11], "direction": "up"},
        }
        prof_l2 = mlvis.profile(asl, norm="l2")  # an L2 attack reads the profile of its own norm (issue 12)
        for case, opts in cases.items():
            o = dict(opts)
            method = o.pop("method", case)
            emit_result(f"methods.linf.{case}", mlvis.attack(asl, x4, method, eps_list, **o))
            o2 = {k: (prof_l2 if v is prof else v) for k, v in o.items()}
            emit_result(f"methods.l2.{case}", mlvis.attack(asl, x4, method, r_l2, norm="l2", **o2))
        emit_result("methods.linf.bce.q2l", mlvis.attack(q2l, x4, "bce", eps_list))
        emit_result("methods.linf.slam.q2l", mlvis.attack(q2l, x4, "slam", eps_list, profile=mlvis.profile(q2l)))
        emit_result("methods.linf.bce.alpha", mlvis.attack(asl, x4, "bce", 0.004, alpha=1 / 1000))
        emit_result("methods.linf.bce.seed", mlvis.attack(asl, x4, "random", 0.004, length=5, seed=3))

    if group("related"):
        emit_result("related.ml-cw", mlvis.attack(asl, x2, "ml-cw", [1.0], preset="fast", binary_steps=1, max_iter=5))
        emit_result("related.ml-cw.linf",
                    mlvis.attack(asl, x2, "ml-cw", [0.05], binary_steps=1, max_iter=5, distance="linf"))
        emit_result("related.ml-deepfool", mlvis.attack(asl, x2, "ml-deepfool", [1.0, 0.01], max_iter=3))
        emit_result("related.mla-lp", mlvis.attack(asl, x2, "mla-lp", [1.0], max_iter=2, basis=4))

    if group("job"):
        specs = ["bce", "linear", AttackSpec("slam", {"p": [0.2, 0.5, 0.7], "q": 0.5}),
                 AttackSpec("class", {"gamma": 0.0, "profile": prof, "correlations": up}, name="c0"),
                 AttackSpec("slam", {"profile": prof, "alpha": 1 / 1280}, name="slam-fast")]  # fmt: skip
        emit_results("job.mixed", run_job(asl, x4, specs, eps_list))
        emit_results("job.mixed.l2", run_job(asl, x4, specs[:3], r_l2, norm="l2"))
        emit_results("job.norm-override", run_job(asl, x4, ["bce", AttackSpec("bce", {"norm": "l2"}, name="b2")],
                                                  [0.003, 0.3]))  # fmt: skip
        emit_results("job.chunked", run_job(asl, x4, specs[:3], eps_list, max_batch=3))

    if group("probe"):
        p = mlvis.profile(asl, x4, max_eps=0.06, cache=False)
        emit("probe.asl.max_eps", _h(p.eps, p.flips_bce, p.flips_linear, p.coefficients, p.per_image_bce,
                                     p.per_image_linear), _h(p.to_dict()))  # fmt: skip
        p2 = mlvis.profile(q2l, x2, max_eps=0.03, interval=5, degree=3, cache=False)
        emit("probe.q2l.interval5", _h(p2.eps, p2.flips_bce, p2.flips_linear, p2.per_image_bce), _h(p2.to_dict()))
        d = mlvis.analysis.probe(asl, x2, max_eps=0.04, max_batch=1)
        emit("probe.asl.batch1", _h(*[np.asarray(d[k]) for k in ("eps", "flips_bce", "per_image_linear")]),
             _h({k: v for k, v in d.items() if not isinstance(v, np.ndarray)}))

    if group("correlations"):
        for direction in ("up", "down"):
            cm = mlvis.correlations(asl, x2, eps=0.002, direction=direction, cache=False)
            emit(f"correlations.{direction}", _h(cm.matrix, cm.attackability, cm.confidence), _h(cm.to_dict()))

    if group("evaluate"):
        t = mlvis.evaluate(asl, x4, eps_fractions=(0.05, 0.1))
        emit("evaluate.default", _h(t.flips, t.flips_8bit, t.p_values, t.same_as_baseline),
             _h(t.to_json(), t.to_markdown(), t.to_frame().to_csv(index=False)))
        t = mlvis.evaluate(asl, x4, ["bce", "linear", ("slam", {"q": 0.25})], eps=[0.003, 0.006])
        emit("evaluate.eps", _h(t.flips, t.p_values), _h(t.to_json()))
        from mlvis.analysis import bce_vs_linear, flips_vs_targets, gamma_search, q_sweep

        t = q_sweep(asl, x2, qs=(0.5, 1.0), eps_fractions=(0.05,))
        emit("evaluate.q_sweep", _h(t.flips), _h(t.to_json()))
        g, t = gamma_search(asl, x2, step=0.5, eps_fractions=(0.05,))
        emit("evaluate.gamma_search", _h(t.flips, np.float64(g)), _h(t.to_json()))
        tg = flips_vs_targets(asl, x2, [0.004], targets=[1, 3])
        emit("evaluate.targets", _h(*tg))
        bl = bce_vs_linear(asl, x2, [0.002, 0.006])
        emit("evaluate.bce_vs_linear", _h(*[np.asarray(v) for k in sorted(bl) for v in bl[k]]))
        tr = mlvis.transfer(mlvis.attack(asl, x2, "bce", [0.004, 0.01]), q2l)
        emit("evaluate.transfer", _h(tr.flips, tr.flips_8bit, tr.source_flips), _h(tr.summary()))

    if group("compare"):
        from mlvis.analysis.related import compare_related

        cmp = compare_related(asl, x2, ("ml-deepfool", "mla-lp"), options={"ml-deepfool": {"max_iter": 3},
                              "mla-lp": {"max_iter": 2, "basis": 4}})  # fmt: skip
        d = cmp.to_dict()
        d.pop("seconds", None)
        emit("compare_related.p", _h(cmp.flips, cmp.mifgsm_flips, cmp.slam_flips, cmp.linf),
             _h(d, cmp.to_frame().to_csv(index=False)))
        cmp = compare_related(asl, x2, ("ml-deepfool",), options={"ml-deepfool": {"max_iter": 3}}, profile=prof)
        emit("compare_related.profile", _h(cmp.flips, cmp.slam_flips, cmp.slam_p))

    if group("findings"):
        from mlvis.analysis.findings import paper_findings
        from mlvis.data.stats import scene_statistics

        fp = mlvis.profile(asl, x4, max_eps=0.06, cache=False)
        stats = scene_statistics("train", 2_000)
        f = paper_findings(asl, x4, profile=fp, up=up, down=down, frequencies=stats.frequencies,
                           cooccurrence={"conditional": stats.conditional, "lift": stats.lift}, gamma_step=0.5,
                           other_model=q2l)  # fmt: skip
        emit("findings.markdown", _h(f.to_markdown()))
        emit("findings.table", _h(f.table.flips, f.gamma_table.flips, np.float64(f.best_gamma)))

    if group("recipe"):
        try:
            from mlvis import recipe as rc  # after the restructuring
        except ImportError:
            from mlvis.app import recipe as rc  # type: ignore[no-redef]  # before it moved
        for norm in ("linf", "l2"):
            r = rc.Recipe("demo-asl", ("bce", "linear", "slam", "class", "random"), 0.01, rc.ImageSource(count=2),
                          norm=norm, q=0.25, gamma=0.75, seed=1)  # fmt: skip
            images = rc.demo_images(r.images, asl.spec.input_size)
            emit(f"recipe.{norm}.json", _h(r.to_json()))
            emit_results(f"recipe.{norm}", rc.run_recipe(r, asl, images))

    print(f"# {len(LINES)} cases in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
