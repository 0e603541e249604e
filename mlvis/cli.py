"""Command line: ``mlvis <command> ...`` (also ``python -m mlvis``).

Commands register themselves in ``COMMANDS`` with a function that adds their arguments and a
function that runs them; every user error is reported as one clear sentence and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn(args) -> exit code`` as ``mlvis NAME``; ``arguments(parser)`` adds its options."""

    def deco(fn):
        COMMANDS[name] = (help, arguments, fn)
        return fn

    return deco


class ProgressBar:
    """A text progress bar on stderr (no dependency). On a terminal one line redrawn in place at every
    percent; otherwise (a log file, a pipe) one line per 10 %, so logs stay readable."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream, self._last = label, stream or sys.stderr, -1
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def __call__(self, done: int, total: int, *info) -> None:
        pct = int(100 * done / max(total, 1))
        shown = pct if self.tty else pct // 10 * 10
        if shown == self._last and done != total:
            return
        self._last = shown
        bar = "#" * (pct // 4)
        extra = f" loss {info[0]:.3f}" if info else ""
        line = f"{self.label} [{bar:<25}] {pct:3d}% ({done}/{total}){extra}"
        if self.tty:
            self.stream.write(f"\r{line}" + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _train_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=["demo-asl", "demo-q2l"], help="which demo model")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0, the shipped weights)")
    p.add_argument("--out", default=None, help="output folder (default: the package's weights folder)")
    p.add_argument("--train-images", type=int, default=None, help="override the number of training scenes")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--eval-images", type=int, default=None, help="override the number of held-out test scenes")


@command("train-demo", "reproduce a demo model's weights from a seed", _train_demo_args)
def train_demo_cmd(args: argparse.Namespace) -> int:
    from mlvis.models.training import TrainConfig, train_demo

    overrides = {"seed": args.seed}
    if args.train_images is not None:
        overrides["train_images"] = args.train_images
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.eval_images is not None:
        overrides["eval_images"] = args.eval_images
    card = train_demo(TrainConfig.for_model(args.model, **overrides), args.out, progress=ProgressBar(args.model))
    print(f"{args.model}: test mAP {card['test_mAP']:.4f}, trained in {card['training_time_s'] / 60:.1f} min")
    return 0


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'demo-*'")


@command("models", "list the registered models", _models_args)
def models_cmd(args: argparse.Namespace) -> int:
    from mlvis.models.registry import list_models, model_description

    for name in list_models(args.pattern):
        print(f"{name:<16} {model_description(name)}")
    return 0


# --------------------------------------------------------------------- profiles, correlations, evaluation


def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `mlvis models`)")
    p.add_argument("--images", type=int, default=100, help="number of demo test scenes (default 100)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="scene split (default test)")
    p.add_argument("--seed", type=int, default=0, help="scene block seed (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _load(args: argparse.Namespace):
    import mlvis

    if args.images < 1:
        raise ValueError("--images must be at least 1.")
    model = mlvis.create_model(args.model, device=args.device)
    size = model.spec.input_size
    if size[0] != size[1]:
        raise ValueError(f"The demo scenes are square; {args.model} expects {size}.")
    images, _ = mlvis.data.demo_batch(args.images, split=args.split, seed=args.seed, size=size[0])
    return model, images


def _ship_path(kind: str, args: argparse.Namespace):
    from mlvis.analysis.artifacts import shipped_path

    if not args.model.startswith("demo-"):
        raise ValueError("--ship writes into the package's demo weights folder; it is for the demo models only.")
    return shipped_path(kind, args.model)


def _profile_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--degree", type=int, default=4, choices=[3, 4], help="polynomial degree (default 4)")
    p.add_argument("--interval", type=int, default=10, help="steps between flip measurements (default 10)")
    p.add_argument("--max-eps", type=float, default=0.5, help="stop the probes here at the latest (default 0.5)")
    p.add_argument("--out", default=None, help="also write the profile JSON to this file")
    p.add_argument("--ship", action="store_true", help="write it as the demo model's shipped profile")


@command("profile", "measure a model's flip profile E(eps) (section V-C)", _profile_args)
def profile_cmd(args: argparse.Namespace) -> int:
    import mlvis
    from mlvis.analysis import artifacts

    model, images = _load(args)
    prof = mlvis.profile(model, images, degree=args.degree, interval=args.interval, max_eps=args.max_eps,
                         progress=ProgressBar(f"profile {args.model}"))  # fmt: skip
    if args.out:
        prof.save(args.out)
    if args.ship:
        doc = artifacts.find("profile", model, None)  # the one just cached
        assert doc is not None
        artifacts.save("profile", model, doc["settings"], {"profile": doc["profile"]}, path=_ship_path("profile", args))
    conv = "converged" if prof.settings.get("converged") else "NOT converged (raise --max-eps)"
    cost = prof.cost["measured"]
    print(f"{args.model}: eps_max {prof.eps_max:.4f} ({conv}), E(eps_max) {prof.expected_flips(prof.eps_max):.2f} "
          f"of {prof.labels} labels; cost per image {cost['forward']} fp + {cost['backward']} bp")  # fmt: skip
    return 0


def _correlations_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--eps", type=float, default=0.005, help="budget of each single-label attack (default 0.005)")
    p.add_argument("--direction", default="both", choices=["up", "down", "both"], help="which matrices")
    p.add_argument("--out", default=None, help="also write each matrix as JSON into this folder")
    p.add_argument("--ship", action="store_true", help="write them as the demo model's shipped matrices")


@command("correlations", "extract label correlation matrices and attackabilities (Algorithm 1)", _correlations_args)
def correlations_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    import mlvis
    from mlvis.analysis import artifacts
    from mlvis.analysis.profiles import images_sha

    model, images = _load(args)
    for d in ("up", "down") if args.direction == "both" else (args.direction,):
        cm = mlvis.correlations(model, images, eps=args.eps, direction=d, progress=ProgressBar(f"flip-{d}"))
        if args.out:
            cm.save(Path(args.out) / f"{args.model}.correlations-{d}.json")
        if args.ship:
            settings = {"eps": cm.eps, "alpha": cm.alpha, "images": cm.images, "images_sha": images_sha(images)}
            artifacts.save(f"correlations-{d}", model, settings, {"correlations": cm.to_dict()},
                           path=_ship_path(f"correlations-{d}", args))  # fmt: skip
        off = cm.matrix[~np.eye(cm.num_labels, dtype=bool)]
        print(f"{args.model} flip-{d}: off-diagonal {off.min():+.4f} .. {off.max():+.4f}, mean attackability "
              f"{np.nanmean(cm.attackability):.3f}; cost {cm.cost['forward']} fp + "
              f"{cm.cost['backward']} bp")  # fmt: skip
    return 0


def parse_method(text: str):
    """``bce``, ``slam:0.25`` (its first exposed option, q), ``class:gamma=0.5``, ``NAME:OPTION=VALUE[:...]``."""
    from mlvis.attacks.plan import parse_method as parse

    return parse(text)


def _method_syntax() -> str:
    from mlvis.attacks.plan import method_syntax

    return method_syntax().replace("%", "%%")


def _fractions() -> str:
    from mlvis.analysis.profiles import FRACTIONS

    return ",".join(f"{f:g}" for f in FRACTIONS)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--methods", default="bce,slam,random,class:0,class:0.5,class:1",
                   help="comma-separated, from the method registry: " + _method_syntax())  # fmt: skip
    p.add_argument("--fractions", default=_fractions(), help="fractions of eps_max (default: section VI-C's grid)")
    p.add_argument("--format", default="md", choices=["md", "csv", "json"], help="table format on stdout")
    p.add_argument("--out", default=None, help="also write table.md, table.csv and table.json into this folder")


@command("evaluate", "Tables IV-VI: flips per method and budget with paired t-tests", _evaluate_args)
def evaluate_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import mlvis
    from mlvis.store import atomic_write_text

    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        raise ValueError(f"--fractions must be comma-separated numbers, not {args.fractions!r}.") from None
    methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
    model, images = _load(args)
    table = mlvis.evaluate(model, images, methods, fractions, progress=ProgressBar(f"evaluate {args.model}"))
    texts = {"md": table.to_markdown(), "csv": table.to_frame().to_csv(index=False), "json": table.to_json()}
    print(texts[args.format])
    if args.out:
        for fmt, text in texts.items():
            atomic_write_text(Path(args.out) / f"table.{fmt}", text + "\n")
    return 0


def _findings_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--other", default=None, help="a second model for the transfer rows (e.g. demo-q2l)")
    p.add_argument("--gamma-step", type=float, default=0.05, help="CLASS gamma search step (default 0.05)")
    p.add_argument("--out", default=None, help="also write findings-MODEL.md into this folder")


@command("findings", "measure the paper's findings F1-F6 on a demo model (uses its profile and matrices)",
         _findings_args)  # fmt: skip
def findings_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import mlvis
    from mlvis.analysis.findings import paper_findings
    from mlvis.data.stats import scene_statistics
    from mlvis.store import atomic_write_text

    model, images = _load(args)
    stats = scene_statistics("train", 20_000)
    other = mlvis.create_model(args.other, device=args.device) if args.other else None
    f = paper_findings(
        model,
        images,
        profile=mlvis.profile(model),
        up=mlvis.correlations(model, direction="up"),
        down=mlvis.correlations(model, direction="down"),
        frequencies=stats.frequencies,
        cooccurrence={"conditional": stats.conditional, "lift": stats.lift},
        other_model=other,
        gamma_step=args.gamma_step,
        progress=ProgressBar(f"findings {args.model}"),
    )
    text = f.to_markdown()
    print(text)
    if args.out:
        atomic_write_text(Path(args.out) / f"findings-{args.model}.md", text)
    return 0


def _attack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="an attack recipe JSON (the Attack Lab's 'Config' download)")
    p.add_argument("--images", default=None, help="folder of the image files a recipe names (default: the config's)")
    p.add_argument("--out", default=None, help="write results.csv, results.json and 16-bit PNGs into this folder")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


@command("attack", "rerun an Attack Lab recipe (--config FILE): every method as one job", _attack_args)
def attack_cmd(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    import mlvis
    from mlvis import recipe as rc
    from mlvis.store import atomic_write_text

    config = Path(args.config)
    if not config.is_file():
        raise FileNotFoundError(f"No recipe at {config}.")
    recipe = rc.Recipe.from_json(config.read_text())
    model = mlvis.create_model(recipe.model, device=args.device)
    size = model.spec.input_size
    if recipe.images.kind == "demo":
        images = rc.demo_images(recipe.images, size)
    else:
        images = rc.file_images(recipe.images, size, rc.read_files_from(args.images or config.parent))
    results = rc.run_recipe(recipe, model, images, progress=ProgressBar(f"attack {recipe.model}"))
    frame = pd.concat([r.to_frame() for r in results], ignore_index=True)
    c = len(model.labels)
    print(f"{recipe.model}, eps {recipe.eps:g} ({recipe.norm}), {len(images)} image(s): mean flips of {c} labels")
    for r in results:
        print(f"  {r.name:<14} {r.flips[0].mean():6.2f}   8-bit {r.flips_8bit[0].mean():6.2f}   "
              f"per image {r.flips[0].tolist()}")  # fmt: skip
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "results.csv", frame.to_csv(index=False))
        doc = {"recipe": recipe.to_dict(), "results": [json.loads(r.to_json()) for r in results]}
        atomic_write_text(out / "results.json", json.dumps(doc) + "\n")
        for r in results:
            r.export(out, fmt="png16")
        print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------- related-work attacks (Table VII)


def _compare_related_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--methods", default="mla-lp,ml-cw,ml-deepfool", help="comma-separated: mla-lp, ml-cw, ml-deepfool")
    p.add_argument("--preset", default="original", choices=["original", "fast"],
                   help="ML-CW budget: original = 10 x 1,000 Adam steps (Song et al.), fast = 5 x 100")  # fmt: skip
    p.add_argument("--distance", default="l2", choices=["l2", "linf"], help="ML-CW distance (default l2, the original)")
    p.add_argument("--cw-rounds", type=int, default=None, help="override ML-CW's binary-search rounds")
    p.add_argument("--cw-iters", type=int, default=None, help="override ML-CW's Adam steps per round")
    p.add_argument("--deepfool-iters", type=int, default=None, help="ML-DeepFool iterations (default 20)")
    p.add_argument("--lp-iters", type=int, default=None, help="MLA-LP iterations (default 10)")
    p.add_argument("--lp-basis", type=int, default=None, help="MLA-LP perturbation grid side (default: every pixel)")
    p.add_argument("--p", type=float, default=0.5, help="SLAM's p when no profile is used (default 0.5)")
    p.add_argument("--q", type=float, default=0.5, help="SLAM's q (default 0.5)")
    p.add_argument("--profile", default=None, help="SLAM's p per image from a profile JSON, or 'auto' (shipped/cached)")
    p.add_argument("--format", default="md", choices=["md", "csv", "json"], help="table format on stdout")
    p.add_argument("--out", default=None, help="also write table.md, table.csv, per_image.csv, related.json here")


@command("compare-related", "Table VII: ML-CW, ML-DeepFool, MLA-LP vs MI-FGSM and SLAM at their budgets",
         _compare_related_args)  # fmt: skip
def compare_related_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import mlvis
    from mlvis.analysis.profiles import FlipProfile
    from mlvis.analysis.related import compare_related
    from mlvis.store import atomic_write_text

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options: dict[str, dict] = {m: {} for m in methods}
    for method, key, value in (
        ("ml-cw", "distance", args.distance),
        ("ml-cw", "binary_steps", args.cw_rounds),
        ("ml-cw", "max_iter", args.cw_iters),
        ("ml-deepfool", "max_iter", args.deepfool_iters),
        ("mla-lp", "max_iter", args.lp_iters),
        ("mla-lp", "basis", args.lp_basis),
    ):
        if method in options and value is not None and not (key == "distance" and value == "l2"):
            options[method][key] = value
    options = {m: o for m, o in options.items() if o}
    model, images = _load(args)
    profile = None
    if args.profile == "auto":
        profile = mlvis.profile(model)
    elif args.profile:
        profile = FlipProfile.load(args.profile)
    cmp = compare_related(model, images, methods, preset=args.preset, options=options, p=args.p, q=args.q,
                          profile=profile, progress=ProgressBar(f"compare-related {args.model}"))  # fmt: skip
    texts = {
        "md": cmp.to_markdown(),
        "csv": cmp.summary().to_csv(index=False),
        "json": cmp.to_json(),
    }
    print(texts[args.format])
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "table.md", texts["md"] + "\n")
        atomic_write_text(out / "table.csv", texts["csv"])
        atomic_write_text(out / "per_image.csv", cmp.to_frame().to_csv(index=False))
        atomic_write_text(out / "related.json", texts["json"] + "\n")
        print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlvis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"mlvis {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlvis {args.command}: interrupted", file=sys.stderr)
        return 130
