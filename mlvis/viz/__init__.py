"""Plotly figure builders and display helpers: pure functions that return figures or arrays.

Nothing here imports Streamlit or the attack code; pages decide how to show what these return.
"""

from mlvis.viz.gallery import confidence_bars, shown_label_indices, upscale_image

__all__ = ["confidence_bars", "shown_label_indices", "upscale_image"]

from mlvis.viz.hyperplane import flips_per_step_figure, flips_vs_eps_figure, plane_figure  # noqa: E402

__all__ += ["flips_per_step_figure", "flips_vs_eps_figure", "plane_figure"]

from mlvis.viz.attack import (  # noqa: E402
    amplified_perturbation,
    confidence_change_figure,
    flips_figure,
    perturbation_heatmaps,
)

__all__ += ["amplified_perturbation", "confidence_change_figure", "flips_figure", "perturbation_heatmaps"]

from mlvis.viz.profiles import profile_figure, profiles_figure  # noqa: E402

__all__ += ["profile_figure", "profiles_figure"]

from mlvis.viz.landscape import attackability_figure, matrix_heatmap  # noqa: E402

__all__ += ["attackability_figure", "matrix_heatmap"]

from mlvis.viz.sweep import (  # noqa: E402
    bce_linear_figure,
    norm_comparison_figure,
    q_totals_figure,
    sweep_flips_figure,
    targets_figure,
)

__all__ += ["bce_linear_figure", "norm_comparison_figure", "q_totals_figure", "sweep_flips_figure", "targets_figure"]

from mlvis.viz.histograms import confidence_histograms, histogram_counts  # noqa: E402

__all__ += ["confidence_histograms", "histogram_counts"]
