"""The paper's findings F1-F6 measured on one model, and the transfer to another (issue 4, item 9).

Everything comes from the model's profile and correlation matrices (shipped or passed) plus three
batched jobs on the evaluation images; F3 and Fig. 8 reuse the profile's probe curves, which are
exactly BCE and linear at every 10-step budget (the prefix rule), so the expensive large budgets are
never attacked twice. The evaluation grid is section VI-C's fractions of eps_max; the table covers
the small-budget fractions (where the methods differ; beyond them CLASS's subset is every label)
and the probe covers BCE vs linear up to eps_max.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlvis.analysis.correlation_matrices import CorrelationMatrix
from mlvis.analysis.evaluation import EvaluationTable, flips_vs_targets, transfer
from mlvis.analysis.landscape import cooccurrence_agreement, table_ii
from mlvis.analysis.profiles import FlipProfile
from mlvis.attacks.engine import AttackSpec
from mlvis.attacks.geometry import DEFAULT_ALPHA
from mlvis.attacks.methods import get_method
from mlvis.errors import InvalidInput, check_number, check_run_work


@dataclasses.dataclass
class Findings:
    model: str
    images: int
    profile: FlipProfile
    table: EvaluationTable
    gamma_table: EvaluationTable
    best_gamma: float
    bce_vs_linear: dict[str, Any]
    targets: dict[str, Any]
    table_ii: dict
    cooccurrence: dict
    transfer: list[dict]
    verdicts: dict[str, tuple[bool, str]]
    gamma_step: float = 0.05

    def to_markdown(self) -> str:
        out = [f"### {self.model} ({self.images} test images, eps_max = {self.profile.eps_max:.4g})", ""]
        out += ["| finding | holds | numbers |", "|---|---|---|"]
        for key, (ok, text) in self.verdicts.items():
            out.append(f"| {key} | {'yes' if ok else '**no**'} | {text} |")
        out += ["", "Flips (mean ± std over the images; bold: best of the column and significantly different "
                "from BCE, paired t-test, alpha 0.05; * = the subset is every label, i.e. BCE):", ""]  # fmt: skip
        out += [self.table.to_markdown(), ""]
        g = self.gamma_table
        best = g.total[g.methods.index(f"CLASS(γ={self.best_gamma:g})")]
        out += [f"Gamma search at {g.fractions[0]:.0%} of eps_max (steps of {self.gamma_step:g}): "
                f"best gamma {self.best_gamma:g} ({best:.2f} flips vs BCE {g.total[0]:.2f}).", ""]  # fmt: skip
        bl = self.bce_vs_linear
        out += ["BCE vs linear (the probe curves, Fig. 8): eps, BCE, linear, p (paired t-test)", ""]
        out += ["| eps | BCE | linear | p |", "|---|---|---|---|"]
        for e, b, li, p in zip(bl["eps"], bl["bce"], bl["linear"], bl["p"]):
            out.append(f"| {e:.4g} | {b:.2f} | {li:.2f} | {p:.3g} |")
        t = self.targets
        out += ["", "Flips vs number of targets (the labels closest to the threshold, Fig. 7):", ""]
        out += ["| eps | " + " | ".join(str(k) for k in t["targets"]) + " |", "|---" * (len(t["targets"]) + 1) + "|"]
        for e, row in zip(t["eps"], t["mean"]):
            out.append(f"| {e:.4g} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        out += ["", "Table II analogue (Pearson r, p):", "", "| | flip up | flip down |", "|---|---|---|"]
        for row in ("attackability vs confidence", "occurrence frequency vs confidence"):
            cells = [self.table_ii[d][row] for d in ("flip up", "flip down")]
            out.append(f"| {row} | " + " | ".join(f"{c.r:+.2f} (p {c.p_value:.2g})" for c in cells) + " |")
        if self.transfer:
            out += ["", "Transfer (mean flips on the source model -> on the target model, per eps):", ""]
            for tr in self.transfer:
                pairs = ", ".join(f"{s:.2f} -> {d:.2f}" for s, d in zip(tr["source_flips"], tr["transfer_flips"]))
                out.append(f"- {tr['method']} {tr['source']} -> {tr['target']}: {pairs}")
        return "\n".join(out) + "\n"


def _paired(a, b) -> float:
    from mlvis.analysis.evaluation import paired_p

    return paired_p(a, b)


def paper_findings(
    model,
    images,
    *,
    profile: FlipProfile,
    up: CorrelationMatrix,
    down: CorrelationMatrix,
    frequencies: np.ndarray,
    cooccurrence: dict[str, np.ndarray],
    fractions=(0.05, 0.1, 0.2),
    gamma_step: float = 0.05,
    other_model=None,
    progress=None,
) -> Findings:
    """Measure F1-F6 on ``model`` (see docs/results.md for what each finding says)."""
    gamma_step = check_number("gamma_step", gamma_step, 0.001, 1)
    fr = np.asarray([check_number("each fraction", f, 0, 100, above=True) for f in np.atleast_1d(fractions)])
    if fr.size == 0:
        raise InvalidInput("fractions must list at least one fraction of eps_max.")
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    n = int(images.shape[0])
    methods = ["bce", "linear", "slam", "random", AttackSpec("class", {"gamma": 0.0}),
               AttackSpec("class", {"gamma": 0.5}), AttackSpec("class", {"gamma": 1.0})]  # fmt: skip
    from mlvis.attacks.engine import run_job
    from mlvis.attacks.plan import evaluation_specs

    specs = evaluation_specs(methods, profile, up)
    eps = np.asarray(fractions, np.float64) * profile.eps_max
    gammas = np.round(np.arange(0, 1 + 1e-9, gamma_step), 6)
    g_specs = evaluation_specs(["bce"] + [AttackSpec("class", {"gamma": float(g)}) for g in gammas], profile, up)
    tk = sorted({1, 2, 3, 4, 6, 8, 12, 16, 20, len(up.labels)} & set(range(1, len(up.labels) + 1)))
    _check_findings_work(int(np.prod(images.shape[1:])), n, specs, eps, g_specs, tk)
    results = run_job(model, images, specs, eps, progress=progress)
    table = _table(name, specs, results, eps, np.asarray(fractions, np.float64))
    g_res = run_job(model, images, g_specs, eps[:1], progress=progress)
    g_table = _table(name, g_specs, g_res, eps[:1], np.asarray(fractions[:1], np.float64))
    best_gamma = float(gammas[int(np.argmax(g_table.total[1:]))])
    # F3 / Fig. 8 from the profile's probe curves: exactly BCE and linear at every measured budget
    if profile.per_image_bce is None or profile.per_image_linear is None or profile.per_image_bce.shape[1] != n:
        raise InvalidInput("F3 reads the profile's per-image probe curves: compute the profile on these images.")
    pr: dict[str, np.ndarray] = {
        "eps": profile.eps, "per_image_bce": profile.per_image_bce, "per_image_linear": profile.per_image_linear
    }
    # fractions of eps_max itself: the probe runs on past it (the flat intervals that confirm convergence)
    top = int(np.argmin(np.abs(np.asarray(pr["eps"], np.float64) - profile.eps_max)))
    idx = np.unique(np.clip(np.round(np.array([*fractions, 0.4, 0.6, 0.8, 1.0]) * top), 1, None).astype(int))
    bl = {
        "eps": pr["eps"][idx].tolist(),
        "bce": pr["per_image_bce"][idx].mean(1).tolist(),
        "linear": pr["per_image_linear"][idx].mean(1).tolist(),
        "p": [_paired(pr["per_image_linear"][i], pr["per_image_bce"][i]) for i in idx],
    }
    targets, mean, std = flips_vs_targets(model, images, eps[:2], targets=tk, progress=progress)
    tg = {"eps": eps[:2].tolist(), "targets": targets.tolist(), "mean": mean.tolist(), "std": std.tolist()}
    t2 = table_ii(up, down, frequencies)
    co = {
        "conditional": cooccurrence_agreement(up, cooccurrence["conditional"]),
        "lift": cooccurrence_agreement(up, np.log(np.maximum(cooccurrence["lift"], 1e-3))),
    }
    trans = []
    if other_model is not None:
        for r in results:
            if r.method in ("bce", "slam") or (r.method == "class" and r.name == "CLASS(γ=0)"):
                trans.append(transfer(r, other_model).summary())
    verdicts = _verdicts(table, g_table, best_gamma, bl, tg, t2, co)
    return Findings(name, n, profile, table, g_table, best_gamma, bl, tg, t2, co, trans, verdicts, gamma_step)


def _check_findings_work(dims: int, n: int, specs, eps: np.ndarray, g_specs, targets: list[int]) -> None:
    """Refuse, before the first attack, findings whose three jobs together pass the cap on work of the run
    they are part of (:func:`mlvis.errors.check_run_work`; outside a CLI run or an app job, the cap per call)."""
    from mlvis.attacks.plan import image_steps

    tg = [AttackSpec("closest", {"k": int(t)}) for t in targets]
    steps = (image_steps(specs, eps, n, alpha=DEFAULT_ALPHA, dims=dims)
             + image_steps(g_specs, eps[:1], n, alpha=DEFAULT_ALPHA, dims=dims)
             + image_steps(tg, eps[:2], n, alpha=DEFAULT_ALPHA, dims=dims))  # fmt: skip
    check_run_work(steps, f"{len(specs)} methods x {len(eps)} budgets, {len(g_specs)} for the gamma search and "
                          f"{len(tg)} target counts x {len(eps[:2])} budgets, on {n} images")  # fmt: skip


def _table(name, specs, results, eps, fractions) -> EvaluationTable:
    from mlvis.analysis.evaluation import paired_p

    flips = np.stack([r.flips for r in results]).astype(np.float64)
    m, k = flips.shape[:2]
    p = np.full((m, k), np.nan)
    for i in range(1, m):
        for kk in range(k):
            p[i, kk] = paired_p(flips[i, kk], flips[0, kk])
    same = np.zeros((m, k), bool)
    for i, r in enumerate(results):
        if r.targets is not None and get_method(r.method).subset:
            same[i] = (r.targets > 0).all(axis=(1, 2))
    return EvaluationTable(name, tuple(s.name for s in specs), eps, fractions, flips,
                           np.stack([r.flips_8bit for r in results]).astype(np.float64), p, same)  # fmt: skip


def _verdicts(table, g_table, best_gamma, bl, tg, t2, co) -> dict[str, tuple[bool, str]]:
    mean, pv = table.mean, table.p_values
    b, s = table.methods.index("BCE"), table.methods.index("SLAM(q=0.5)")
    f1 = all(mean[s, k] > mean[b, k] and pv[s, k] < 0.05 for k in (0, 1))
    f1_text = "; ".join(f"{table.fractions[k]:.0%}: SLAM {mean[s, k]:.2f} vs BCE {mean[b, k]:.2f} (p {pv[s, k]:.2g})"
                        for k in (0, 1))  # fmt: skip
    gi = g_table.methods.index(f"CLASS(γ={best_gamma:g})")
    gm, gp = g_table.mean[gi, 0], g_table.p_values[gi, 0]
    f2 = gm > g_table.mean[0, 0] and gp < 0.05
    f2_text = f"CLASS(γ={best_gamma:g}) {gm:.2f} vs BCE {g_table.mean[0, 0]:.2f} (p {gp:.2g}) at 5 %"
    small = [i for i in range(len(bl["eps"])) if i < 2]
    f3 = all(bl["linear"][i] > bl["bce"][i] and bl["p"][i] < 0.05 for i in small) and bl["bce"][-1] >= bl["linear"][-1]
    f3_text = (f"eps {bl['eps'][0]:.3g}: linear {bl['linear'][0]:.2f} vs BCE {bl['bce'][0]:.2f} (p {bl['p'][0]:.2g}); "
               f"eps_max {bl['eps'][-1]:.3g}: BCE {bl['bce'][-1]:.2f} vs linear {bl['linear'][-1]:.2f}")  # fmt: skip
    peaks = [int(np.argmax(row)) for row in tg["mean"]]
    f4 = any(0 < p < len(tg["targets"]) - 1 for p in peaks)
    f4_text = "; ".join(f"eps {e:.3g}: peak {max(row):.2f} flips at {tg['targets'][p]} targets"
                        for e, row, p in zip(tg["eps"], tg["mean"], peaks))  # fmt: skip
    up_ac = t2["flip up"]["attackability vs confidence"]
    dn_ac = t2["flip down"]["attackability vs confidence"]
    fr = t2["flip up"]["occurrence frequency vs confidence"]
    f5 = up_ac.r > 0 and dn_ac.r < 0 and fr.r > 0
    f5_text = f"up: r {up_ac.r:+.2f} (p {up_ac.p_value:.2g}); down: r {dn_ac.r:+.2f} (p {dn_ac.p_value:.2g}); " \
              f"frequency vs confidence (up) r {fr.r:+.2f} (p {fr.p_value:.2g})"  # fmt: skip
    c = co["conditional"]
    f6 = c.r > 0 and c.p_value < 0.05
    f6_text = f"r {c.r:+.2f} (p {c.p_value:.2g}) with P(j | i); with log-lift r {co['lift'].r:+.2f}"
    return {
        "F1 SLAM > BCE at 5 % and 10 % of eps_max (significant)": (bool(f1), f1_text),
        "F2 CLASS (best gamma) > BCE at 5 %": (bool(f2), f2_text),
        "F3 linear > BCE at small eps, BCE >= linear at eps_max": (bool(f3), f3_text),
        "F4 flips vs targets peaks at an interior count": (bool(f4), f4_text),
        "F5 Table II signs (up +, down -, frequency +)": (bool(f5), f5_text),
        "F6 flip-up correlations follow co-occurrence": (bool(f6), f6_text),
    }
