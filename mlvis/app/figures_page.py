"""Glue of the Paper figures page (pages/figures.py): one section per figure the paper draws and mlvis redraws.

Each section is *controls, compute, view*: Fig. 9 (CLASS's look-ahead tree for one image,
:func:`mlvis.analysis.class_tree.class_tree`), Fig. 13 (SLAM's loss and derivative for chosen p·q,
:func:`mlvis.analysis.loss_curves.slam_curves`), Fig. 19 (BCE and its limits, ``bce_curves``) and Fig. 21 (the
gallery of adversarial examples at the Table IV budgets, :func:`mlvis.analysis.gallery.gallery`, run through
:func:`mlvis.app.jobs.run_section`). Every widget is bound to the URL under a ``figs.*`` key. The image the
tree and the gallery attack is chosen once, at the top (:func:`image_controls`): a demo scene of the
sidebar's seed block or an uploaded picture, resized by the model card's rule.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import streamlit as st

import mlvis
from mlvis.analysis.evaluation import DEFAULT_METHODS
from mlvis.analysis.gallery import PAPER_FIG21_EPS, gallery
from mlvis.analysis.profiles import FRACTIONS
from mlvis.app import cache, jobs, state
from mlvis.app.budget_input import budget_input
from mlvis.app.page import DIMS, parse_numbers
from mlvis.attacks import DEFAULT_ALPHA
from mlvis.attacks.plan import as_spec, image_steps, row_name
from mlvis.data import images as uploads

FIG_SOURCE = "figs.source"
FIG_SCENE = "figs.scene"
FIG_UPLOAD = "figs.upload"
TREE = "figs.tree"  # the tree's budget control (mlvis.app.budget_input): ?figs.tree.eps=
TREE_GAMMA = "figs.tree.gamma"
TREE_BRANCHES = "figs.tree.branches"
TREE_DEPTH = "figs.tree.depth"
TREE_LENGTH = "figs.tree.length"
TREE_ITERATION = "figs.tree.iteration"
TREE_CORR = "figs.tree.correlations"  # the run section that measures flip-up correlations when none exist
SLAM = "figs.slam"  # budget control of "this model's p·q"
SLAM_SHARES = "figs.slam.shares"
SLAM_TARGET = "figs.slam.target"
SLAM_AXIS = "figs.slam.axis"
SLAM_MODEL = "figs.slam.model"
SLAM_Q = "figs.slam.q"
BCE_TARGETS = "figs.bce.targets"
BCE_RANGE = "figs.bce.range"
BCE_AXIS = "figs.bce.axis"
GAL = "figs.gallery"  # the gallery's run section
GAL_METHODS = "figs.gallery.methods"
GAL_FRACTIONS = "figs.gallery.fractions"
GAL_EPS = "figs.gallery.eps"
GAL_SHOW = "figs.gallery.show"
GAL_NAMES = "figs.gallery.labels"

SHARES = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)
AXES = {"logit": "logit x (the paper's axis)", "confidence": "confidence y = σ(x)"}
CORR_IMAGES = 8  # demo scenes the in-page flip-up matrix is measured on (the shipped ones used 100)


# ------------------------------------------------------------------------------------------------ the image


@dataclasses.dataclass(frozen=True)
class Picture:
    """The image the tree and the gallery attack: ``(3, H, W)`` float32 in [0, 1], its name and digest."""

    image: np.ndarray
    name: str
    digest: str


def image_controls(model: mlvis.MultiLabelModel) -> Picture | None:
    """A demo scene of the sidebar's seed block (by number) or an uploaded picture; ``None`` (with a sentence
    shown) when there is no usable image."""
    h, w = (int(v) for v in model.spec.input_size)
    c1, c2 = st.columns([1, 3])
    source = c1.radio(
        "Image",
        ["demo scene", "upload"],
        horizontal=True,
        key=FIG_SOURCE,
        bind="query-params",
        help="The image Fig. 9's tree and Fig. 21's gallery attack.",
    )
    if source == "demo scene":
        if h != w:
            st.info(f"The demo scenes are square; {model.spec.name} expects {h}×{w}: upload a picture.")
            return None
        k = c2.number_input(
            "Scene of the sidebar's seed block",
            min_value=0,
            max_value=mlvis.data.BLOCK - 1,
            value=1,
            step=1,
            key=FIG_SCENE,
            bind="query-params",
            help="A held-out test scene of the demo world.",
        )
        image = cache.lab_scenes("test", state.seed(), int(k), 1, h)[0]
        name = f"scene {state.seed() * mlvis.data.BLOCK + int(k)}"
    else:
        file = c2.file_uploader(
            "Picture (PNG, JPEG or WebP)",
            type=list(uploads.EXTENSIONS),
            key=FIG_UPLOAD,
            help=f"Converted to RGB and resized to the model's {w}×{h} by its card's rule.",
        )
        if file is None:
            st.info("Upload a picture to attack.")
            return None
        pre = mlvis.models.preprocess_for(model.spec)
        loaded, errors = cache.lab_uploads(((file.name, file.getvalue()),), h, w, pre.fit, 1, pre.interpolation)
        for e in errors:
            st.error(e)
        if not loaded:
            return None
        image, name = uploads.to_batch(loaded)[0], loaded[0].name
    image = np.asarray(image, np.float32)
    return Picture(image, name, uploads.image_digest(image))


# ---------------------------------------------------------------------------------------------- Fig. 9: the tree


@dataclasses.dataclass(frozen=True)
class TreeSettings:
    eps: float
    gamma: float = 0.5
    branches: int = 4
    depth: int = 4
    length: int = 0  # 0: from the profile, floor(1.66 E(eps))


def tree_controls(model: mlvis.MultiLabelModel, profile) -> TreeSettings:
    """The budget, gamma, the tree's shape and the subset length (from the profile unless given)."""
    default = float(profile.grid()[1]) if profile is not None else 0.01
    budget = budget_input(TREE, default=default, max_value=1.0, slider_range=(0.0005, 0.25), caption=False)
    c1, c2, c3, c4 = st.columns(4)
    gamma = c1.slider(
        "γ (correlation weight)",
        0.0,
        1.0,
        0.5,
        0.05,
        key=TREE_GAMMA,
        bind="query-params",
        help="S = γ·Z + (1 − γ)·P (equation 8): 0 ranks by ease alone, 1 by correlation alone.",
    )
    branches = c2.number_input(
        "Branches b",
        1,
        6,
        4,
        1,
        key=TREE_BRANCHES,
        bind="query-params",
        help="Children per node: the b best-scoring labels (4 in the paper).",
    )
    depth = c3.number_input(
        "Depth d",
        1,
        5,
        4,
        1,
        key=TREE_DEPTH,
        bind="query-params",
        help="Levels looked ahead per added label (4 in the paper).",
    )
    c = model.num_labels
    lo = 0 if profile is not None else 1
    length = c4.number_input(
        "Subset length",
        lo,
        c,
        lo if profile is not None else min(4, c),
        1,
        key=TREE_LENGTH,
        bind="query-params",
        help="0: ⌊1.66·E(ε)⌋ from the model's profile, as the CLASS attack sizes it.",
    )
    return TreeSettings(budget.linf[0], float(gamma), int(branches), int(depth), int(length))


def correlations_or_measure(model_name: str, model: mlvis.MultiLabelModel):
    """The model's flip-up matrix (flip-down from the shipped one, else 1 - up); without one, a Run section
    measures it on a few demo scenes (Algorithm 1 at eps 0.005) so the tree can be drawn."""
    arts = cache.lab_artifacts(model_name)
    if arts.correlations() is not None:
        return arts.correlations()
    h, w = (int(v) for v in model.spec.input_size)
    st.info(
        f"{model_name} has no correlation matrices yet; CLASS's scores need the flip-up one. Measure it here on "
        f"{CORR_IMAGES} demo scenes (or on the Label landscape page, or `mlvis correlations --model {model_name}`)."
    )
    if h != w:
        st.error(f"The demo scenes are square; {model_name} expects {h}×{w}: measure it with the CLI on your images.")
        return None
    steps = image_steps(
        [mlvis.attacks.AttackSpec("single-label")],
        [0.005],
        CORR_IMAGES * model.num_labels,
        alpha=DEFAULT_ALPHA,
        dims=DIMS,
    )

    def compute(progress):
        x = cache.lab_scenes("test", state.seed(), 0, CORR_IMAGES, h)
        up = mlvis.correlations(model, x, eps=0.005, direction="up", progress=progress)
        cache.forget_artifacts()
        return up

    out = jobs.run_section(
        TREE_CORR,
        (model_name, state.seed()),
        compute,
        jobs.estimate(model_name, steps, "figs.correlations"),
        label="Measuring flip-up correlations",
        run_label="Measure",
        model_name=model_name,
    )
    jobs.show_status(out, "The matrix")
    return out.result


def compute_tree(model, picture: Picture, s: TreeSettings, profile, correlations):
    """One library call: the trees CLASS explores for this image (``mlvis.analysis.class_tree``)."""
    from mlvis.analysis.class_tree import class_tree

    return class_tree(
        model,
        picture.image,
        s.eps,
        correlations=correlations,
        profile=profile,
        length=s.length or None,
        gamma=s.gamma,
        branches=s.branches,
        depth=s.depth,
    )


def tree_view(tree) -> None:
    """The chosen subset, one iteration's tree (picked with a slider) and its best leaves."""
    from mlvis.viz.class_tree import class_tree_figure

    names = tree.labels
    c1, c2, c3 = st.columns(3)
    c1.metric("Subset length", tree.length)
    c2.metric("Root (easiest label)", names[tree.root], help=f"P = {tree.ease[tree.root]:.3f}, the largest ease.")
    c3.metric("Trees explored", len(tree.iterations))
    st.markdown(
        "**Chosen subset**, in the order the labels joined: " + " → ".join(f"`{names[i]}`" for i in tree.subset)
    )
    with st.expander("Every label: clean confidence, target and ease P"):
        order = {int(lab): k + 1 for k, lab in enumerate(tree.subset)}
        st.dataframe(
            [
                {
                    "label": names[i],
                    "confidence": float(tree.probs[i]),
                    "target": "flip up (to present)" if tree.target[i] else "flip down (to absent)",
                    "ease P": float(tree.ease[i]),
                    "joins the subset": order.get(i),
                }
                for i in np.argsort(-tree.ease, kind="stable")
            ],
            hide_index=True,
        )
    if not tree.iterations:
        st.plotly_chart(class_tree_figure(tree), key="figs.tree.chart")
        return
    n = len(tree.iterations)
    it = st.slider("Iteration", 1, n, 1, key=TREE_ITERATION, help="Each iteration adds one label.") if n > 1 else 1
    st.plotly_chart(class_tree_figure(tree, it - 1), key="figs.tree.chart")
    nodes = tree.nodes(it - 1)
    leaves = sorted((nd for nd in nodes if np.isfinite(nd.objective)), key=lambda nd: -nd.objective)[:8]
    rows = []
    for leaf in leaves:
        path, nd = [], leaf
        while nd.parent >= 0:
            path.append(names[nd.label])
            nd = nodes[nd.parent]
        rows.append(
            {
                "leaf set adds": " → ".join(reversed(path)),
                "objective O": leaf.objective,
                "best": "✓" if leaf.on_path else "",
            }
        )
    st.caption(
        f"The best leaves of iteration {it} (of {sum(np.isfinite(nd.objective) for nd in nodes)}): the first "
        "label of the best one joins the set."
    )
    st.dataframe(rows, hide_index=True)


# ------------------------------------------------------------------------------------- Fig. 13 and 19: losses


@dataclasses.dataclass(frozen=True)
class SlamSettings:
    shares: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    target: int = 0
    axis: str = "logit"


def slam_controls(model: mlvis.MultiLabelModel, profile) -> SlamSettings:
    """The p·q values, the target, the axis, and optionally this model's own p·q at a budget (equation 7)."""
    c1, c2, c3 = st.columns([3, 1, 2])
    shares = c1.multiselect(
        "p·q (BCE's share)",
        list(SHARES),
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        key=SLAM_SHARES,
        bind="query-params",
        help="Appendix D fixes q = 1 and varies p; only the product counts.",
    )
    target = c2.radio(
        "Target t",
        [0, 1],
        horizontal=True,
        key=SLAM_TARGET,
        bind="query-params",
        help="t = 1 is the reflection x → −x of t = 0.",
    )
    axis = c3.radio("x axis", list(AXES), format_func=AXES.get, horizontal=True, key=SLAM_AXIS, bind="query-params")
    extra: list[float] = []
    if profile is not None and st.toggle(
        f"Add {model.spec.name}'s p·q at a budget", key=SLAM_MODEL, bind="query-params"
    ):
        c4, c5 = st.columns([3, 1])
        with c4:
            budget = budget_input(SLAM, default=float(profile.grid()[1]), slider_range=(0.0005, 0.25), caption=False)
        q = c5.number_input("q", 0.0, 1.0, 0.5, 0.05, key=SLAM_Q, bind="query-params")
        p = float(mlvis.attacks.methods.profile_flip_ratio(profile, np.array(budget.linf), model.num_labels)[0])
        extra = [round(p * float(q), 4)]
        st.caption(
            f"At ε = {budget.linf[0]:.4g}, E(ε) = {profile.expected_flips(budget.linf[0]):.2f} of "
            f"{model.num_labels} labels, so p = {p:.3f} (equation 7) and p·q = {extra[0]:g}."
        )
    chosen = sorted({float(v) for v in shares} | set(extra))
    return SlamSettings(tuple(chosen), int(target), str(axis))


def slam_view(s: SlamSettings) -> None:
    from mlvis.analysis.loss_curves import slam_curves
    from mlvis.viz.loss_curves import loss_curves_figure

    if not s.shares:
        st.info("Pick at least one value of p·q.")
        return
    curves = slam_curves(s.shares, target=s.target)
    st.plotly_chart(loss_curves_figure(curves, axis=s.axis), key="figs.slam.chart")
    rows = [
        {
            "p·q": w,
            "|dL/dx| peaks at confidence": (f"{y:.3f}" if 0 < y < 1 else "the edge (no peak)"),
            "labels beyond the peak": "de-prioritised" if 0 < y < 1 else "never de-prioritised",
        }
        for w, y in zip(curves.weights, curves.peak_confidence, strict=True)
    ]
    st.dataframe(rows, hide_index=True)


@dataclasses.dataclass(frozen=True)
class BceSettings:
    targets: tuple[int, ...] = (0, 1)
    logit_range: tuple[float, float] = (-8.0, 8.0)
    axis: str = "logit"


def bce_controls() -> BceSettings:
    c1, c2, c3 = st.columns([1, 2, 2])
    targets = c1.multiselect("Targets", [0, 1], default=[0, 1], key=BCE_TARGETS, bind="query-params")
    lo, hi = c2.slider(
        "Logit range",
        -30.0,
        30.0,
        (-8.0, 8.0),
        1.0,
        key=BCE_RANGE,
        bind="query-params",
        help="Wider ranges show the losses meeting their limits (equations 17-18).",
    )
    axis = c3.radio("x axis", list(AXES), format_func=AXES.get, horizontal=True, key=BCE_AXIS, bind="query-params")
    return BceSettings(tuple(sorted(int(t) for t in targets)), (float(lo), float(hi)), str(axis))


def bce_view(s: BceSettings) -> None:
    from mlvis.analysis.loss_curves import bce_curves
    from mlvis.viz.loss_curves import loss_curves_figure

    if not s.targets:
        st.info("Pick at least one target.")
        return
    if s.logit_range[0] >= s.logit_range[1]:
        st.info("Give a logit range with low < high.")
        return
    curves = bce_curves(s.targets, logit_range=s.logit_range)
    st.plotly_chart(loss_curves_figure(curves, axis=s.axis), key="figs.bce.chart")
    x = curves.logits
    rows = []
    for i, t in enumerate(curves.targets):
        rows.append(
            {
                "target": t,
                "x": f"{x[0]:g} … {x[-1]:g}",
                "loss at the ends": f"{curves.loss[i][0]:.4f} … {curves.loss[i][-1]:.4f}",
                "limit at the ends": f"{curves.asymptote[i][0]:.4f} … {curves.asymptote[i][-1]:.4f}",
                "dL/dx at the ends": f"{curves.dlogit[i][0]:+.4f} … {curves.dlogit[i][-1]:+.4f}",
            }
        )
    st.dataframe(rows, hide_index=True)


# --------------------------------------------------------------------------------------------- Fig. 21: gallery


@dataclasses.dataclass(frozen=True)
class GallerySettings:
    methods: tuple[str, ...]  # row names of DEFAULT_METHODS
    eps: tuple[float, ...]
    fractions: tuple[float, ...] | None  # the budgets as fractions of eps_max (None: explicit eps)
    show: str = "adversarial"
    labels_shown: int = 3
    seed: int = 0


def method_rows() -> dict[str, object]:
    """Tables IV-VI's methods by their row names (``CLASS(γ=0.5)`` -> ``("class", {"gamma": 0.5})``)."""
    return {row_name(as_spec(m)): m for m in DEFAULT_METHODS}


def gallery_controls(model_name: str, profile) -> GallerySettings | None:
    """The methods (those the model's artifacts allow), the budgets and the view."""
    arts = cache.lab_artifacts(model_name)
    rows = method_rows()
    problems = {name: arts.problem(as_spec(m).method) for name, m in rows.items()}
    usable = [name for name in rows if not problems[name]]
    for sentence in sorted({p for p in problems.values() if p}):
        st.caption(sentence)
    c1, c2 = st.columns([3, 2])
    methods = c1.multiselect("Methods (columns)", usable, default=usable, key=GAL_METHODS, bind="query-params")
    if profile is not None:
        labels = {f: f"{f:.0%} (ε = {f * profile.eps_max:.4g})" for f in FRACTIONS}
        fr = c2.multiselect(
            "Budgets (rows): Table IV's fractions of ε_max",
            list(FRACTIONS),
            default=list(FRACTIONS),
            format_func=lambda f: labels[f],
            key=GAL_FRACTIONS,
            bind="query-params",
        )
        fractions: tuple[float, ...] | None = tuple(sorted(float(f) for f in fr))
        eps = tuple(f * profile.eps_max for f in fractions or ())
    else:
        text = c2.text_input(
            "Budgets (rows): ε values",
            ", ".join(f"{e:g}" for e in PAPER_FIG21_EPS),
            key=GAL_EPS,
            bind="query-params",
            help="Without a profile there is no ε_max: the default is Fig. 21's own budgets "
            "(Table IV, Query2Label MS-COCO).",
        )
        try:
            eps = parse_numbers(text, "the budgets", 0.0, 1.0)
        except ValueError as e:
            st.error(str(e))
            return None
        fractions = None
    c3, c4 = st.columns(2)
    show = c3.radio(
        "Tiles",
        ["adversarial", "perturbation"],
        horizontal=True,
        key=GAL_SHOW,
        bind="query-params",
        help="The 8-bit adversarial images, or their perturbations amplified by one factor for all.",
    )
    names = c4.slider("Flipped labels named per tile", 0, 8, 3, key=GAL_NAMES, bind="query-params")
    if not methods or not eps:
        st.info("Pick at least one method and one budget.")
        return None
    return GallerySettings(tuple(methods), tuple(float(e) for e in eps), fractions, str(show), int(names), state.seed())


def gallery_cost(model_name: str, s: GallerySettings) -> jobs.Estimate:
    rows = method_rows()
    specs = [as_spec(rows[m]) for m in s.methods]
    return jobs.estimate(model_name, image_steps(specs, list(s.eps), 1, alpha=DEFAULT_ALPHA, dims=DIMS), "figs.gallery")


def compute_gallery(model_name: str, picture: Picture, s: GallerySettings, progress=None):
    """One library call: every chosen method at every budget on the image (``mlvis.analysis.gallery``)."""
    model = cache.load_model(model_name)
    arts = cache.lab_artifacts(model_name)
    rows = method_rows()
    return gallery(
        model,
        picture.image,
        [rows[m] for m in s.methods],
        eps=list(s.eps),
        profile=arts.profile,
        correlations=arts.correlations(),
        seed=s.seed,
        progress=progress,
    )


def gallery_section(model_name: str, picture: Picture, s: GallerySettings) -> jobs.Outcome:
    """The Run button with the cost; the gallery of these settings, or the last one kept (``Outcome.current``)."""
    key = (model_name, picture.digest, s.methods, s.eps, s.seed)
    out = jobs.run_section(
        GAL,
        key,
        lambda progress: compute_gallery(model_name, picture, s, progress),
        gallery_cost(model_name, s),
        label="Attacking",
        model_name=model_name,
    )
    jobs.show_status(out, "The gallery")
    return out


def gallery_view(g, s: GallerySettings, picture_name: str) -> None:
    """The slide (PNG), the flips as a table (rows budgets, columns methods) and the downloads."""
    from mlvis.viz.adversarial_gallery import gallery_png, gallery_svg

    png = gallery_png(g, show=s.show, labels_shown=s.labels_shown)
    st.image(png, caption=f"{picture_name}: rows are budgets, columns methods (upscaled with nearest neighbour).")
    best = g.best()
    rows = []
    for k, e in enumerate(g.eps):
        row = {"ε": f"{e:.4g}" + (f" ({g.fractions[k]:.0%})" if np.isfinite(g.fractions[k]) else "")}
        for m, name in enumerate(g.methods):
            cell = g.cell(m, k)
            row[name] = f"{cell.flips}" + (" *" if cell.same_as_baseline else "")
        row["most flips"] = g.methods[best[k]] if g.flips[:, k].max() > 0 else "none flips"
        rows.append(row)
    st.dataframe(rows, hide_index=True)
    stem = f"fig21-{g.model}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("PNG", png, f"{stem}.png", "image/png", key="figs.gallery.png")
    c2.download_button(
        "SVG",
        gallery_svg(g, show=s.show, labels_shown=s.labels_shown),
        f"{stem}.svg",
        "image/svg+xml",
        key="figs.gallery.svg",
    )
    c3.download_button(
        "JSON", json.dumps(g.to_dict(), indent=1), f"{stem}.json", "application/json", key="figs.gallery.json"
    )


# ------------------------------------------------------------------------------------------------------ Fig. 17

SPACE = "figs.space"  # the Fig. 17 run section and its budget control (?figs.space.eps=)
SPACE_METHODS = "figs.space.methods"
SPACE_CHOICES = ("bce", "slam", "class")  # the methods that run on the engine's loop, so their path is recorded


@dataclasses.dataclass(frozen=True)
class SpaceSettings:
    """Fig. 17's run: the methods whose trajectories are drawn, at one budget."""

    methods: tuple[str, ...]
    eps: float
    seed: int = 0


def space_controls(model_name: str) -> SpaceSettings | None:
    """The methods (those the model's artifacts allow) and the budget of the recorded attack."""
    arts = cache.lab_artifacts(model_name)
    problems = {m: arts.problem(m) for m in SPACE_CHOICES}
    usable = [m for m in SPACE_CHOICES if not problems[m]]
    for sentence in sorted({p for p in problems.values() if p}):
        st.caption(sentence)
    titles = {m: row_name(as_spec(m)) for m in usable}
    methods = st.multiselect(
        "Methods (one path each)", usable, default=usable, format_func=lambda m: titles[m], key=SPACE_METHODS,
        bind="query-params",
    )  # fmt: skip
    budget = budget_input(SPACE, default=0.02, slider_range=(0.0005, 0.1), caption=False)
    if not methods:
        st.info("Pick at least one method.")
        return None
    return SpaceSettings(tuple(methods), budget.eps[0], state.seed())


def space_section(model_name: str, picture: Picture, s: SpaceSettings) -> jobs.Outcome:
    """The Run button with the cost; the recording of these settings (:func:`mlvis.analysis.trajectory.record`)."""
    from mlvis.analysis.trajectory import record

    def compute(progress):
        model = cache.load_model(model_name)
        arts = cache.lab_artifacts(model_name)
        return record(
            model,
            picture.image[None],
            list(s.methods),
            s.eps,
            keep_images=False,
            profile=arts.profile,
            correlations=arts.correlations(),
            seed=s.seed,
            progress=progress,
        )

    cost = jobs.estimate(
        model_name, image_steps([as_spec(m) for m in s.methods], [s.eps], 1, alpha=DEFAULT_ALPHA, dims=DIMS), SPACE
    )
    out = jobs.run_section(
        SPACE, (model_name, picture.digest, s), compute, cost, label="Attacking", model_name=model_name
    )
    jobs.show_status(out, "The trajectories")
    return out
