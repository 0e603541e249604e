"""Hyperplane simulation: the paper's appendices G and H (Fig. 18) on a 2-pixel image, interactively."""

import streamlit as st

from mlvis.app import cache, widgets
from mlvis.viz import flips_per_step_figure, flips_vs_eps_figure, plane_figure
from mlvis.viz.hyperplane import LOSS_TITLES

#: the last configuration that ran, kept so that a bad edit does not blank the page
LAST_RUN = "hp._last_run"

st.title("Hyperplane simulation")
st.markdown(
    """
Appendix G of the paper argues that a classifier's decision space is close to linear, so the
boundary where a label's confidence crosses 0.5 is a **hyperplane**, and a maximum-flip attack
becomes a geometric game: cross as many hyperplanes as possible without leaving the L∞ box of
the budget ε. Appendix H plays that game on a **2-pixel image** (its Fig. 18), and so does this
page. Each grey line is one label's decision boundary, logit = w₁·x₁ + w₂·x₂ + b = 0 (↑: the
label starts absent and must be flipped up; ↓: it starts present). The walk starts at the red
dot and takes sign steps of ±α per pixel, as MI-FGSM does. By equation 4 its direction is a sum
of the boundaries' normals, each weighted by the loss's derivative at that label's confidence.
The **linear** loss is *greedy*: its derivative peaks at the threshold, so the nearest boundaries
steer. **BCE** is *patient*: every label not yet flipped pulls about equally, so the walk follows
the sum of their normals. On the Fig. 18 preset the greedy walk flips more in the small box and
the patient one in the large box, which is why SLAM (section V-A) blends the two according to
the budget.
"""
)

controls = widgets.hyperplane_controls()
if controls.link_problem:
    st.warning(controls.link_problem)

try:
    run = cache.hyperplane_run(controls.config)
except ValueError as exc:
    st.error(str(exc))
    run = st.session_state.get(LAST_RUN)
    if run is None:
        st.stop()
    st.caption("The figures below still show the last configuration that ran.")
else:
    st.session_state[LAST_RUN] = run
    if controls.source == "custom":
        widgets.keep_custom_table_in_url(run.simulation.boundaries.rows())

sim, curve = run.simulation, run.curve
num_labels = sim.boundaries.num_labels
boxes = sim.boxes
losses = tuple(dict.fromkeys(sim.losses))


def flips_text(n: int) -> str:
    return f"{n} flip{'s' * (n != 1)}"


st.subheader("Flips in each box")
columns = st.columns(len(boxes))
for col, eps in zip(columns, boxes):
    with col.container(border=True):
        steps = int(sim.steps[sim.row(losses[0], eps)])
        st.markdown(f"**ε = {eps:g}** ({steps} steps of α = {sim.alpha:g})")
        for loss, mcol in zip(losses, st.columns(len(losses))):
            tr = sim.trajectory(loss, eps)
            mcol.metric(
                f"{LOSS_TITLES.get(loss, loss)}, ε = {eps:g}",
                f"{tr.final_flips} / {num_labels}",
                help=f"Labels flipped at the end of the walk; SLAM's p = {tr.p:.2f}" if loss == "slam" else None,
            )

if {"linear", "bce"} <= set(losses) and len(boxes) == 2:
    small, large = sorted(boxes)
    g_small, p_small = (sim.trajectory(loss, small).final_flips for loss in ("linear", "bce"))
    g_large, p_large = (sim.trajectory(loss, large).final_flips for loss in ("linear", "bce"))
    verdict = (
        "as in the paper's Fig. 18: greedy wins the small box, patient the large one."
        if g_small > p_small and p_large > g_large
        else "so here the paper's pattern (greedy wins small, patient wins large) does not show in full."
    )
    st.markdown(
        f"In the small box (ε = {small:g}) the greedy walk makes {flips_text(g_small)} and the patient one "
        f"{flips_text(p_small)}; in the large box (ε = {large:g}) greedy makes {flips_text(g_large)} and patient "
        f"{flips_text(p_large)}, {verdict}"
    )

st.plotly_chart(plane_figure(sim), key="hp.fig.plane", config={"displayModeBar": False})
left, right = st.columns(2)
left.plotly_chart(flips_per_step_figure(sim), key="hp.fig.steps", config={"displayModeBar": False})
fixed = run.config.steps
curve_title = "Flips vs budget (ε / α steps each)" if fixed is None else f"Flips vs budget ({fixed} steps each)"
right.plotly_chart(
    flips_vs_eps_figure(curve, boxes, title=curve_title),
    key="hp.fig.curve",
    config={"displayModeBar": False},
)

with st.expander("How the walk is computed"):
    st.markdown(
        r"""
Label $i$ has the logit $z_i = w_i \cdot x + b_i$, the confidence $y_i = \sigma(z_i)$ and is predicted
present when $y_i \ge 0.5$. The target is $t = 1 - $ the clean prediction for every label, and a flip is
a label whose prediction differs from the clean one. With $m = 1$ for BCE, $m = 0$ for the linear loss
$|t - y|$ and $m = p\,q$ for SLAM (equation 6), the loss is
$L = \sum_i m\,\mathrm{BCE}(y_i, t_i) + (1 - m)\,|t_i - y_i|$ and its gradient is

$$\nabla_x L = \sum_i \big(m\,(y_i - t_i) + (1 - m)(1 - 2t_i)\,y_i(1 - y_i)\big)\, w_i .$$

Each step does $g \leftarrow \mu g + \nabla_x L / \lVert \nabla_x L \rVert_1$ and
$x \leftarrow x - \alpha\,\mathrm{sign}(g)$, then clips $x$ to the ε box around the start and to
$[0, 1]$. With the paper's rule of $\lfloor ε/α \rfloor$ steps the walk never presses against its box,
so the flips-vs-budget curve is the prefix of one long walk. SLAM's $p$ comes from the toy's own
profile when its box is ticked: $E(ε)$ = the larger of the greedy and
patient flips in that box, $p = E(ε)/C$ (equation 7).
"""
    )
