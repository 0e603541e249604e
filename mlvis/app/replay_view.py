"""The attack replay (issue 13 section 2) and Fig. 17 as page sections, over a recorded run.

``replay_section(recording, key=...)`` draws, for a :class:`mlvis.analysis.trajectory.Recording` (the run's
own trajectory, recorded on the engine's step hook):

- a step slider that moves every method in sync: each method's adversarial image at that step beside the
  clean one (or its perturbation, one amplification for all), the labels it has flipped so far, every
  label's confidence at that step (one label order, the threshold line, crossed labels marked), and the
  flips-vs-step race with the step marked;
- a play button: plotly's own animation (frames played in the browser, no rerun loop), in an expander,
  for the confidences and the race; the images follow the slider only;
- Fig. 17 (appendix G): the confidence space of three labels with every method's path, the three labels
  picked by :data:`mlvis.analysis.trajectory.PICK_RULE` unless the user picks others.

Widget keys start with ``key + "."`` (``.image``, ``.step``, ``.perturbation``, ``.labels``).

How a page gets a recording: run its job with a recorder as the engine's hook, then build the recording
from the job's results::

    recorder = mlvis.analysis.trajectory.TrajectoryRecorder(every=1)
    results = run_job(model, images, specs, budget, ..., hook=recorder)   # or recipe.run_recipe(..., hook=)
    replay_section(recorder.recording(results), key="lab.replay")
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from mlvis.analysis.trajectory import PICK_RULE, Recording, pick_labels
from mlvis.viz.audit import amplified, common_factor
from mlvis.viz.confidence_space import confidence_space_figure
from mlvis.viz.gallery import upscale_image
from mlvis.viz.replay import confidence_step_figure, race_figure, replay_animation

SPACE_TEXT = (
    "Appendix G argues that a classifier's decision space is close to linear, so each label's decision "
    "boundary is a hyperplane p = {thr:g}. Here three labels' confidences span a cube; the three planes "
    "cut it into eight octants, one per prediction of the three labels, and each method's path runs from "
    "the clean point (grey) towards the corner where all three are flipped. Crossing a plane flips that label: "
    "BCE heads for the nearest planes first, SLAM and CLASS aim at more of them within the same budget."
)


def _image_width(shape: tuple[int, ...]) -> int:
    """A nearest-neighbour scale that shows a small model's pixels at about 192 px."""
    return max(1, 192 // max(1, int(shape[-1])))


def replay_section(recording: Recording, key: str = "replay") -> int:
    """Draw the replay of ``recording`` (see the module docstring); returns the step shown."""
    for _, why in recording.not_replayable:
        st.caption(why)
    if not recording.traces:
        st.info("No method of this run is replayable: every one ran its own optimiser.")
        return 0
    image = 0
    if recording.num_images > 1:
        image = int(
            st.selectbox(
                "Image to replay",
                list(range(recording.num_images)),
                format_func=lambda i: f"image {i + 1}",
                key=f"{key}.image",
            )
        )
    last = recording.max_step
    step_key = f"{key}.step"
    if step_key not in st.session_state or not 0 <= int(st.session_state[step_key]) <= last:
        st.session_state[step_key] = last  # one source of truth: the session state, no widget default
    step = int(
        st.slider(
            "Step",
            min_value=0,
            max_value=last,
            key=step_key,
            help="MI-FGSM iteration: 0 is the clean image, the last step is the attack's result. Every method "
            "moves in sync (a method with fewer steps holds its result).",
        )
    )
    _images_row(recording, image, step, key)
    st.plotly_chart(confidence_step_figure(recording, step, image), key=f"{key}.confidences")
    st.plotly_chart(race_figure(recording, image, step), key=f"{key}.race")
    with st.expander("▶ Play the replay (animation in the browser)"):
        st.caption("The confidences and the race as an animation with its own play button and slider; the images "
                   "above follow the step slider.")  # fmt: skip
        st.plotly_chart(replay_animation(recording, image), key=f"{key}.animation")
    with st.expander("Fig. 17: the confidence space of three labels", expanded=False):
        confidence_space_section(recording, image, step, key=key)
    return step


def flipped_labels(recording: Recording, name: str, step: int, image: int = 0) -> list[str]:
    """The labels ``name`` has flipped after ``step`` steps (label order)."""
    probs = recording.trace(name).probs_at(step)[image]
    changed = (probs >= recording.threshold) != recording.clean_pred[image]
    return [recording.labels[i] for i in np.flatnonzero(changed)]


def perturbation_factor(recording: Recording, image: int = 0) -> float:
    """One amplification for every method and step: the largest change of any method's last image reaches
    +-0.5 (``mlvis.viz.audit.common_factor``), so the perturbation is seen to grow as the steps go on."""
    finals = [t.images[-1, image] / 255.0 for t in recording.traces if t.images is not None]
    return common_factor(recording.clean[image] / 255.0, finals)


def _images_row(recording: Recording, image: int, step: int, key: str) -> None:
    cols = st.columns(1 + len(recording.traces))
    scale = _image_width(recording.clean.shape)
    kept = recording.clean.shape[-1] > 0 and any(t.images is not None for t in recording.traces)
    factor = perturbation_factor(recording, image) if kept else 1.0
    amplify = kept and st.toggle(
        f"Show the perturbations (× {factor:g}, one factor for every method and step)",
        key=f"{key}.perturbation",
        help="Grey is unchanged; the amplification is the same for every method, so a weaker perturbation looks "
        "weaker, and it stays the same at every step, so the perturbation is seen to grow.",
    )
    clean = recording.clean[image]
    if recording.clean.shape[-1]:
        cols[0].image(upscale_image(clean, scale), caption="clean", width="stretch")
    for col, t in zip(cols[1:], recording.traces):
        flips = int(t.flips_at(step)[image])
        names = flipped_labels(recording, t.name, step, image)
        text = f"{t.name}: {flips} flip{'s' * (flips != 1)} at step {min(step, t.final_step)}"
        text += f" ({', '.join(names)})" if names else ""
        shown = t.image_at(step, image)
        if shown is None:
            col.caption(f"{text} (images not kept)")
            continue
        at, img = shown
        note = "" if at == min(step, t.final_step) else f" (image of step {at})"
        pic = amplified(clean / 255.0, img / 255.0, factor) if amplify else upscale_image(img, 1)
        col.image(upscale_image(pic, scale), caption=text + note, width="stretch")
    if recording.image_every > recording.every:
        st.caption(f"Images are kept every {recording.image_every} steps to bound memory; the confidences at "
                   f"every {recording.every}.")  # fmt: skip


def confidence_space_section(
    recording: Recording, image: int = 0, step: int | None = None, key: str = "replay"
) -> None:
    """Fig. 17 with its teaching text and a label picker (default: :data:`PICK_RULE`)."""
    st.markdown(SPACE_TEXT.format(thr=recording.threshold))
    default = list(pick_labels(recording, image))
    labels_key = f"{key}.labels"
    names = list(recording.labels)
    if labels_key not in st.session_state or not set(st.session_state[labels_key]) <= set(names):
        st.session_state[labels_key] = [names[i] for i in default]
    chosen = st.multiselect("Three labels", names, key=labels_key, max_selections=3,
                            help=f"Default: {PICK_RULE}.")  # fmt: skip
    if len(chosen) != 3:
        st.info("Pick three labels to draw their confidence space.")
        return
    idx = [names.index(n) for n in chosen]
    rule = "picked by the rule: " + PICK_RULE if idx == default else "picked by you"
    st.caption(f"Labels {', '.join(chosen)} ({rule}).")
    fig = confidence_space_figure(recording, idx, image, step)
    st.plotly_chart(fig, key=f"{key}.space")
    p = np.stack([t.probs_at(step if step is not None else t.final_step)[image, idx] for t in recording.traces])
    crossed = (p >= recording.threshold) != recording.clean_pred[image, idx]
    st.caption(
        "; ".join(f"{t.name} crossed {int(c.sum())} of these planes" for t, c in zip(recording.traces, crossed)) + "."
    )
