"""The findings report (F1-F6) runs end to end on an analytic model and reports what it measured."""

from __future__ import annotations

from attack_models import linear_findings_inputs

import mlvis
from mlvis.analysis.findings import paper_findings


def test_findings_report_on_a_linear_model():
    model, x, inputs = linear_findings_inputs(8)
    prof = inputs["profile"]
    f = paper_findings(model, x, gamma_step=0.5, other_model=model, **inputs)
    assert f.table.methods[:3] == ("BCE", "Linear", "SLAM(q=0.5)") and f.table.flips.shape == (7, 3, 8)
    assert f.gamma_table.methods == ("BCE", "CLASS(γ=0)", "CLASS(γ=0.5)", "CLASS(γ=1)")
    # Fig. 8's numbers are the profile's probe curves, i.e. the engine's BCE at those budgets
    e = f.bce_vs_linear["eps"][0]
    assert f.bce_vs_linear["bce"][0] == mlvis.attack(model, x, "bce", e).flips.mean()
    # F3's last column is eps_max itself, not the last probed point (the probe runs on past convergence)
    assert prof.eps[-1] > prof.eps_max and f.bce_vs_linear["eps"][-1] == prof.eps_max
    assert f"eps_max {prof.eps_max:.3g}:" in f.verdicts["F3 linear > BCE at small eps, BCE >= linear at eps_max"][1]
    assert len(f.verdicts) == 6 and all(isinstance(ok, bool) for ok, _ in f.verdicts.values())
    assert f.transfer and f.transfer[0]["transfer_flips"] == f.transfer[0]["source_flips"]  # same model
    md = f.to_markdown()
    assert "| F1 SLAM > BCE" in md and "Table II analogue" in md
