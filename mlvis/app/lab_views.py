"""What the Attack Lab draws (pages/attack_lab.py): one function per part of the page, each reading a run.

- :func:`intro`: what the methods are, with the paper's sections (folded away in lecture mode);
- :func:`controls_messages`, :func:`default_view_note`, :func:`results_holder`: around the controls and the run;
- :func:`summary_view` (table, flips chart, the image picker; returns the image shown), :func:`unbounded_view`,
  :func:`model_sees_view`, :func:`images_view` (returns the row's one amplification), :func:`budget_map_view`,
  :func:`audit_view`, :func:`confidence_view`, :func:`transfer_view`, :func:`downloads_view`.

No computation here beyond reading results: the run and the tables are :mod:`mlvis.app.lab`'s.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import streamlit as st

import mlvis
from mlvis.app import cooccurrence, default_view, jobs, lab, models_page
from mlvis.app.budget_input import EIGHT_BIT
from mlvis.app.replay_view import replay_section
from mlvis.viz import confidence_change_figure, flips_figure, perturbation_heatmaps, upscale_image
from mlvis.viz.audit import amplified, blink_html, common_factor, level_histogram_figure, loupe_html

IMAGE_SCALE = 3
PER_ROW = 4  # methods per row of images and charts
NO_BAR = {"displayModeBar": False}
CHIP = {
    "present": ":blue-badge[{}]",
    "up": ":red-badge[↑ {}]",
    "down": ":orange-badge[↓ {}]",
    "absent": ":gray-badge[{}]",
}

INTRO = """
Pick images and attack methods, set the budget, and compare what each method does to the **same**
images. Every method is the paper's MI-FGSM loop (Algorithm 2, fixed step α, ⌊ε/α⌋ steps, section VI-C)
with a different loss or label weights: **BCE** pushes all labels at once (the baseline), **Linear**
is greedy (section IV-D), **SLAM** blends the two by how many flips the budget buys (section V-A,
equations 6-7, using the model's flip profile), and **CLASS** spends the budget on a subset of labels
chosen by how close they are to flipping and how they move together (section V-B, Algorithm 3, using
the model's label correlations); the **random subset** of the same length is its control. A *flip* is
a label whose prediction differs from the clean one (equation 3). Because α is a tenth of an 8-bit level,
an ordinary 8-bit PNG rounds part of the attack away: the flips are shown exact and after 8-bit rounding,
and the lossless downloads keep every bit.
"""


def intro(lecture: bool = False) -> None:
    """What the page does and where each method comes from in the paper; folded away in lecture mode."""
    if lecture:
        with st.expander("The methods and the paper's sections", expanded=False):
            st.markdown(INTRO)
    else:
        st.markdown(INTRO)


def controls_messages(controls: lab.LabControls) -> None:
    """The uploads' notes and the sentences that keep the Lab from running; stops the page when it cannot run."""
    for note in controls.notes:
        st.caption(note)
    for message in controls.errors:
        st.error(message)
    if controls.recipe is None:
        if controls.images is None and not controls.errors:
            st.info("Upload one or more images to attack (or switch to the sample scenes).")
        st.stop()


def default_view_note(model_name: str, controls: lab.LabControls) -> None:
    """The default view's rule and numbers, while the settings are the rule's (``mlvis.app.default_view``)."""
    view = default_view.default_view(model_name)
    recipe = controls.recipe
    if recipe is None or view is None:
        return
    source = recipe.images
    if source.kind == "demo" and source.seed == 0 and source.start == view.scene and recipe.eps == view.eps:
        st.info(view.sentence(), icon=":material/rule:")


def outcome_view(outcome: jobs.Outcome) -> lab.LabRun:
    """The run's status line; the run to show (the page stops when there is none)."""
    jobs.show_status(outcome)
    if outcome.result is None:
        st.stop()
    return outcome.result


def results_holder(outcome: jobs.Outcome) -> contextlib.AbstractContextManager:
    """Where the results go: the page itself, or (a result of other settings) an expander collapsed until Run,
    so nobody reads old numbers as the current ones."""
    if outcome.current:
        return st.container()
    return st.expander("Results of the last run, whose settings differ from those above (press Run)", expanded=False)


# ---------------------------------------------------------------------------------------------------- summary


def summary_view(run: lab.LabRun, outcome: jobs.Outcome) -> int:
    """The settings line, the table of every method, the flips chart and the image picker; returns the image shown."""
    results, c, recipe = run.results, run.num_labels, run.recipe
    st.header("Results")
    st.caption(
        f"{recipe.model}, ε = {recipe.eps:.6g} ({lab.rc.NORM_TITLES[recipe.norm]}"
        + (f", L2 radius {run.budget:.4f}" if recipe.norm == "l2" else "")
        + f"), α = {recipe.alpha:.6g}, {recipe.steps(int(np.prod(results[0].clean.shape[1:])))} steps, "
        + f"{len(run.names)} image"
        + ("s" if len(run.names) != 1 else "")
        + (f"; computed in {jobs.format_seconds(outcome.seconds)}" if outcome.seconds is not None else "")
        + "."
    )
    summary = lab.summary_frame(run)
    left, right = st.columns([3, 2])
    left.dataframe(
        summary,
        hide_index=True,
        key="lab.summary",
        column_config={
            "flips": st.column_config.NumberColumn(
                format="%.2f", help=f"Labels flipped (of {c}), mean over the images."
            ),
            "flips (8-bit)": st.column_config.NumberColumn(
                format="%.2f", help="Flips of the image an 8-bit file holds (rounded inside the budget)."
            ),
            "L∞": st.column_config.NumberColumn(format="%.5f", help="Largest change of any pixel."),
            "L2": st.column_config.NumberColumn(format="%.4f", help="Length of the whole perturbation."),
            "PSNR (dB)": st.column_config.NumberColumn(
                format="%.1f", help="Peak signal-to-noise ratio: higher is subtler."
            ),
            "SSIM": st.column_config.NumberColumn(
                format="%.4f", help="Structural similarity to the clean image (1 = same)."
            ),
        },
    )
    right.plotly_chart(
        flips_figure(summary["method"], summary["flips"], summary["flips (8-bit)"], c),
        key="lab.fig.flips",
        config=NO_BAR,
    )
    if not np.isfinite(summary["flips"]).all():  # never expected; keeps the page honest if the engine changes
        st.warning("Some flip counts are not finite numbers.")
    unbounded_view(run)
    if len(run.names) <= 1:
        return 0
    shown = st.selectbox(
        "Image to show",
        list(range(len(run.names))),
        format_func=lambda i: run.names[i],
        key=lab.LAB_SHOW,
        bind="query-params",
        help="The images, perturbations and confidences below are of this image; the table above averages all.",
    )
    i = int(shown or 0)
    return i if i < len(run.names) else 0


def unbounded_sentence(run: lab.LabRun, result) -> str:
    """What an unbounded method reached: its mean L∞ (in 8-bit levels and against ε) and L2 over the images."""
    linf, l2 = float(result.linf[0].mean()), float(result.l2[0].mean())
    ratio = linf / run.recipe.eps
    per = "" if len(run.names) == 1 else f" (means over the {len(run.names)} images)"
    return (
        f"**{result.name}** ran without a budget and reached L∞ {linf:.5f} ({linf / EIGHT_BIT:.2f} 8-bit levels, "
        f"{ratio:.2g} × ε) and L2 {l2:.4f}{per}."
    )


def unbounded_view(run: lab.LabRun) -> None:
    """One sentence per method that ran without a budget: the budget it reached, beside the others' ε."""
    for r in run.unbounded:
        st.markdown(unbounded_sentence(run, r))


# ---------------------------------------------------------------------------------------------------- images


def chips_line(run: lab.LabRun, image: int, method: int) -> str:
    """One method's labels on ``image`` as chips in the common order (:func:`mlvis.app.lab.label_states`)."""
    order, states = lab.label_states(run, image)
    r = run.results[method]
    return " ".join(CHIP[s].format(r.labels[j]) for j, s in zip(order, states[r.name]))


def model_sees_view(run: lab.LabRun, i: int) -> None:
    """What the model sees: per method, the labels as chips in one common order, so "1 / 24" names the label."""
    st.subheader(f"Image: {run.names[i]}")
    _, states = lab.label_states(run, i)
    st.markdown(
        "**What the model sees**: per method, every label present before the attack or flipped by any method, in one "
        "common order (clean confidence, highest first): :blue-badge[present] still present, :red-badge[↑ flipped up] "
        "switched on by the attack, :orange-badge[↓ flipped down] switched off, :gray-badge[absent] off."
    )
    for k, r in enumerate(run.results):
        n = sum(s in ("up", "down") for s in states[r.name])
        st.markdown(f"**{r.name}** ({n} / {run.num_labels} flipped): {chips_line(run, i, k)}")


def row_factor(run: lab.LabRun, i: int) -> float:
    """The one amplification of the row (``mlvis.viz.audit.common_factor``): the largest that keeps all visible."""
    return common_factor(run.results[0].clean[i], [r.adv[0, i] for r in run.results])


def images_view(run: lab.LabRun, i: int) -> float:
    """Clean, each method's adversarial image and its perturbation at the row's one amplification; returns it."""
    results, c = run.results, run.num_labels
    clean = results[0].clean[i]
    factor = row_factor(run, i)
    st.caption(
        f"Every perturbation below is amplified × {factor:g}, one factor for the whole row (the largest that keeps "
        "every method's change visible), so a stronger perturbation looks stronger. Grey means unchanged."
    )
    for row in range(0, len(results), PER_ROW):
        cols = st.columns(PER_ROW + 1)
        if row == 0:
            cols[0].image(upscale_image(clean, IMAGE_SCALE), caption="clean")
        for col, r in zip(cols[1:], results[row : row + PER_ROW]):
            with col:
                f8 = int(r.flips_8bit[0, i])
                st.metric(
                    f"{r.name}: flips",
                    f"{int(r.flips[0, i])} / {c}",
                    help=f"Labels flipped by {r.name} on this image; after 8-bit rounding: {f8}.",
                )
                st.caption(f"8-bit: {f8} flip{'s' * (f8 != 1)} · PSNR {r.psnr[0, i]:.1f} dB · SSIM {r.ssim[0, i]:.4f}")
                st.image(upscale_image(r.adv[0, i], IMAGE_SCALE), caption=f"{r.name}: adversarial")
                amp = amplified(clean, r.adv[0, i], factor)
                st.image(upscale_image(amp, IMAGE_SCALE), caption=f"{r.name}: perturbation × {factor:g}")
    return factor


def budget_map_view(run: lab.LabRun, i: int) -> None:
    """Where each method spent its budget: the largest change of each pixel, in 8-bit levels, on one scale."""
    results, eps = run.results, run.recipe.eps
    st.markdown(
        "**Where each method spent its budget**: the largest change of each pixel over the three colour channels, "
        f"in 8-bit levels (ε is {eps * 255:.2f} levels). Grey in the amplified images above means unchanged."
    )
    st.plotly_chart(
        perturbation_heatmaps(results[0].clean[i], [r.adv[0, i] for r in results], [r.name for r in results], eps=eps),
        key="lab.fig.heatmaps",
        config=NO_BAR,
    )


# ---------------------------------------------------------------------------------------------------- audit


def audit_view(run: lab.LabRun, i: int, factor: float, model: mlvis.MultiLabelModel) -> None:
    """The imperceptibility audit: blink, loupe, PSNR / SSIM, the 8-bit level histogram and the semantic check."""
    results = run.results
    clean = results[0].clean[i]
    st.header("Imperceptibility audit")
    st.caption(
        f"One amplification for every method: × {factor:g} (stated once, as above). Blink flickers the clean and the "
        "adversarial image in place; the loupe magnifies under the pointer; the histogram counts how many 8-bit levels "
        "each pixel channel moved in the image an 8-bit file holds."
    )
    audit_method = st.selectbox(
        "Method to look at closely",
        list(range(len(results))),
        format_func=lambda k: results[k].name,
        key="lab.audit",
        help="The blink and the loupe below show this method's adversarial image of the image shown.",
    )
    ra = results[int(audit_method or 0)]
    b1, b2, b3 = st.columns(3)
    with b1:
        st.html(blink_html(clean, ra.adv[0, i], size=256, caption=f"clean ⇄ {ra.name}, once a second"))
    with b2:
        st.iframe(loupe_html(ra.adv[0, i], size=256, zoom=4), height=266, tab_index=-1)
        st.caption(f"{ra.name}: adversarial, under a ×4 loupe")
    with b3:
        st.metric(f"{ra.name}: PSNR", f"{ra.psnr[0, i]:.1f} dB", help="Peak signal-to-noise ratio: higher is subtler.")
        st.metric(
            f"{ra.name}: SSIM", f"{ra.ssim[0, i]:.4f}", help="Structural similarity to the clean image (1 = same)."
        )
    st.plotly_chart(
        level_histogram_figure(clean, [r.adv_8bit[0, i] for r in results], [r.name for r in results]),
        key="lab.fig.levels",
        config=NO_BAR,
    )
    semantic_view(run, i, model)


def semantic_view(run: lab.LabRun, i: int, model: mlvis.MultiLabelModel) -> None:
    """Would a co-occurrence check flag the adversarial prediction? (the demo world's statistics only)"""
    if not (model.spec.world == "demo" and tuple(run.results[0].labels) == tuple(mlvis.data.LABELS)):
        st.caption(
            "The semantic check needs the label statistics of the model's training data; the demo world's are shipped."
        )
        return
    rules = cooccurrence.demo_rules()
    st.markdown(
        "**Semantic detectability**: would a co-occurrence check (Melacci et al., the paper's related work) "
        "flag the adversarial prediction? Rules learned from the demo world's first 20,000 training scenes: "
        "two labels that "
        "never meet although chance predicts they should, and labels that always come with another. *Coherence* is "
        "the mean log-lift of the predicted set's label pairs (negative: pairs that rarely meet). Over all images:"
    )
    st.dataframe(
        lab.detectability_frame(run, rules),
        hide_index=True,
        key="lab.detect",
        column_config={"implausible share": st.column_config.NumberColumn(format="%.2f")},
    )
    for method, sentences in lab.new_violations(run, rules, i).items():
        if sentences:
            st.markdown(f"**{method}** on this image breaks: " + " ".join(sentences))
        else:
            st.markdown(f"**{method}** on this image breaks no co-occurrence rule the clean prediction kept.")


# ---------------------------------------------------------------------------------------------------- confidences


def confidence_view(run: lab.LabRun, i: int) -> None:
    """Each method's confidences before and after, flipped labels marked, then the top labels as chips."""
    results = run.results
    st.markdown(
        "**Confidences before and after**: grey bars before the attack, blue after, red where the label "
        "flipped (⇄); the dashed line is the threshold and the orange ticks the confidences after 8-bit rounding. "
        "Shown: every flipped or present label and the largest changes."
    )
    for row in range(0, len(results), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, r in zip(cols, results[row : row + PER_ROW]):
            col.plotly_chart(
                confidence_change_figure(
                    r.clean_probs[i], r.adv_probs[0, i], r.labels, r.threshold, r.adv_probs_8bit[0, i], title=r.name
                ),
                key=f"lab.fig.conf.{row}.{r.name}",
                config=NO_BAR,
            )
    models_page.result_chips(run)  # top labels before and after, as chips (issue 10)


def transfer_view(run: lab.LabRun) -> None:
    """The flips of the same adversarial images on the other model, when asked."""
    if not run.transfers:
        return
    st.subheader(f"Transfer to {run.transfer_model}")
    st.caption(
        "The same adversarial images fed to the other model; its flips are counted against its own clean "
        "prediction. Attacks made for one model usually transfer poorly to another."
    )
    st.dataframe(lab.transfer_frame(run), hide_index=True, key="lab.transfer_table")


# ---------------------------------------------------------------------------------------------------- downloads


def downloads_view(run: lab.LabRun, i: int, factor: float) -> None:
    """Per method: the lossless 16-bit PNG, the .npy, the slides, the 8-bit PNG; then CSV, JSON and the recipe."""
    results, recipe = run.results, run.recipe
    order, _ = lab.label_states(run, i)
    st.subheader("Downloads")
    st.caption(
        "The 16-bit PNG and the .npy keep the attack exactly (reload them with mlvis.attacks.load_png16 / load_npy). "
        "The config reruns this attack with `mlvis attack --config FILE`."
    )
    for row in range(0, len(results), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, r in zip(cols, results[row : row + PER_ROW]):
            with col.container(border=True):
                method_downloads(run, results.index(r), i, factor, order)
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Results (CSV)",
        lambda: lab.csv_bytes(run),
        file_name=f"{recipe.model}_attack_lab.csv",
        mime="text/csv",
        key="lab.dl.csv",
        on_click="ignore",
        help="One row per method and image: flips, 8-bit flips, L∞, L2, PSNR, SSIM, steps (and transfer flips).",
        width="stretch",
    )
    c2.download_button(
        "Results (JSON)",
        lambda: lab.json_bytes(run),
        file_name=f"{recipe.model}_attack_lab.json",
        mime="application/json",
        key="lab.dl.json",
        on_click="ignore",
        help="The recipe, every method's engine config and per-image numbers, and the transfer summary.",
        width="stretch",
    )
    c3.download_button(
        "Config (JSON, rerunnable)",
        lab.recipe_bytes(run),
        file_name=f"{recipe.model}_attack_recipe.json",
        mime="application/json",
        key="lab.dl.recipe",
        on_click="ignore",
        help="`mlvis attack --config FILE` reruns exactly this attack "
        "(uploaded images: give their folder with --images).",
        width="stretch",
    )


def method_downloads(run: lab.LabRun, k: int, i: int, factor: float, order) -> None:
    """The download buttons of method ``k`` for image ``i`` (and all its images as .npy)."""
    r = run.results[k]
    st.markdown(f"**{r.name}**")
    st.download_button(
        "16-bit PNG (lossless)",
        lab.png16_bytes(r, i),
        file_name=lab.file_stem(run, r.name, i) + "_16bit.png",
        mime="image/png",
        key=f"lab.dl.png16.{r.name}",
        on_click="ignore",
        help="This image's adversarial version as a 16-bit RGB PNG: no flip is lost.",
        width="stretch",
    )
    st.download_button(
        ".npy (all images)",
        lambda: lab.npy_bytes(r),
        file_name=lab.file_stem(run, r.name) + ".npy",
        mime="application/octet-stream",
        key=f"lab.dl.npy.{r.name}",
        on_click="ignore",
        help="Every adversarial image of this method, float32 (N, 3, H, W), bit-exact.",
        width="stretch",
    )
    for kind, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
        st.download_button(
            f"Slide ({kind.upper()})",
            functools.partial(lab.slide_bytes, run, k, i, factor, order, kind),
            file_name=lab.file_stem(run, r.name, i) + f"_slide.{kind}",
            mime=mime,
            key=f"lab.dl.slide.{kind}.{r.name}",
            on_click="ignore",
            help="One slide-ready panel: clean | adversarial | perturbation (the row's one "
            "amplification) | confidence bars, pixels enlarged ×6 with nearest neighbour"
            + (" (text and bars as vectors)." if kind == "svg" else "."),
            width="stretch",
        )
    lost = int(r.flips[0, i]) - int(r.flips_8bit[0, i])
    st.download_button(
        "8-bit PNG (lossy)",
        lab.png8_bytes(r, i),
        file_name=lab.file_stem(run, r.name, i) + "_8bit.png",
        mime="image/png",
        key=f"lab.dl.png8.{r.name}",
        on_click="ignore",
        help="Rounded to 8-bit levels inside the budget: what an ordinary image file can hold.",
        width="stretch",
    )
    if lost > 0:
        st.warning(f"8 bits lose {lost} of this image's {int(r.flips[0, i])} flips.", icon=":material/warning:")
    elif lost < 0:
        st.caption(f"8-bit rounding happens to add {-lost} flip{'s' * (lost != -1)} here.")
    else:
        st.caption("8-bit rounding keeps this image's flips, but not the exact perturbation.")


def replay_view(run: lab.LabRun) -> None:
    """Attack replay: every method of the run moved through its recorded MI-FGSM steps in sync."""
    if run.replay is None:
        return
    st.header("Replay")
    st.caption(
        "The run's own MI-FGSM steps, recorded while it ran (not recomputed): move the step slider and every "
        "method moves with it; the race shows each method's flips so far."
    )
    replay_section(run.replay, key="replay")
