"""Command line: ``mlvis <command> ...`` (also ``python -m mlvis``).

Commands register themselves in ``COMMANDS`` with a function that adds their arguments and a
function that runs them; every user error is reported as one clear sentence and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from mlvis.errors import InvalidInput

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
    p.add_argument("--out", default=None, help="output folder for the weights and the card")
    p.add_argument("--ship", action="store_true", help="replace the package's shipped weights (instead of --out)")
    p.add_argument("--train-images", type=int, default=None, help="override the number of training scenes")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--eval-images", type=int, default=None, help="override the number of held-out test scenes")


@command("train-demo", "reproduce a demo model's weights from a seed", _train_demo_args)
def train_demo_cmd(args: argparse.Namespace) -> int:
    from mlvis.models.training import TrainConfig, train_demo

    if bool(args.out) == bool(args.ship):
        raise InvalidInput("Give --out FOLDER for the new weights, or --ship to replace the package's demo weights.")
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


@command("models", "list the registered models (demo models, the models folder's cards, plugins)", _models_args)
def models_cmd(args: argparse.Namespace) -> int:
    from mlvis.models import cards
    from mlvis.models.registry import FAMILIES, list_models, model_description, model_source

    names = list_models(args.pattern)
    width = max([16, *(len(n) + 1 for n in names)])
    for name in names:
        print(f"{name:<{width}} {model_description(name)}  [{model_source(name)}]")
    print(f"\nmodels folder: {cards.models_dir().resolve()} ($MLVIS_MODELS_DIR)")
    for error in cards.card_errors():
        print(f"  ! {error}")
    print("families (create_model(name, checkpoint=PATH), or a card): " + ", ".join(FAMILIES)
          + ", timm:<arch>, torchvision:<arch>")  # fmt: skip
    return 0


# --------------------------------------------------------------------- real models: add-model (issue 10)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="registry name of the new card (lower-case, digits, . _ -)")
    p.add_argument("--family", default=None, help="asl-tresnet-m/-l/-xl, q2l-r101-448, torchscript, timm:<arch>, ...")
    p.add_argument("--checkpoint", default=None, help="the weights file (copied into the models folder if outside)")
    p.add_argument("--labels", default=None, help="labels file (a line each, or JSON), or coco/voc/nus-wide")
    p.add_argument("--input-size", default=None, help="S or HxW, e.g. 448 or 384x512")
    p.add_argument("--resize", default=None, choices=["crop", "stretch"], help="image fit (ASL/Q2L: stretch)")
    p.add_argument("--interpolation", default=None, choices=["lanczos", "bilinear", "bicubic", "nearest"])
    p.add_argument("--mean", default=None, help="R,G,B mean (timm/torchvision/torchscript)")
    p.add_argument("--std", default=None, help="R,G,B std (timm/torchvision/torchscript)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default 0.5)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="family option, e.g. normalize=false (Q2L, the paper's setup) or config=config_new.json")
    p.add_argument("--source", default=None, help="where the weights come from (a URL, a paper)")
    p.add_argument("--licence", default=None, help="the weights' licence")
    p.add_argument("--description", default=None, help="one line for people")
    p.add_argument("--official", default=None,
                   help="download an official ASL checkpoint and write its card (needs network): asl-coco-m-224, "
                        "asl-coco-l-448, asl-coco-xl-640, asl-voc-xl-448, asl-nuswide-l-448")  # fmt: skip
    p.add_argument("--models-dir", default=None, help="the models folder (default $MLVIS_MODELS_DIR or ./models)")
    p.add_argument("--no-check", action="store_true", help="write the card without loading the model once")


def _option_value(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError:
        return {"true": True, "false": False}.get(text.lower(), text)


def _numbers(text: str | None, n: int, what: str):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise InvalidInput(f"{what} must be {n} comma-separated numbers, not {text!r}.") from None
    if len(values) != n:
        raise InvalidInput(f"{what} must be {n} comma-separated numbers, not {text!r}.")
    return values


@command("add-model", "write a model card into the models folder (atomically), copying the weights in", _add_model_args)
def add_model_cmd(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    import mlvis
    from mlvis.models import cards, official
    from mlvis.store import atomic_write

    folder = Path(args.models_dir) if args.models_dir else cards.models_dir()
    if args.official:
        bar = ProgressBar(f"download {args.official}")
        path = official.download(args.official, folder, progress=lambda f, _: bar(int(f * 100), 100))
        print(f"wrote {path}")
        return 0
    if not args.family or not args.checkpoint:
        raise InvalidInput("add-model needs --family and --checkpoint (or --official NAME).")
    name = args.name or Path(args.checkpoint).stem.lower().replace(" ", "-")
    data: dict = {"name": name, "family": args.family}
    src = Path(args.checkpoint)
    if not src.is_file():
        raise FileNotFoundError(f"There is no checkpoint file at {src}.")
    folder.mkdir(parents=True, exist_ok=True)
    inside = folder.resolve() in src.resolve().parents and not src.is_symlink()
    target = src.resolve() if inside else folder / src.name
    if not inside:
        if target.exists():
            raise InvalidInput(f"{target} already exists; give the checkpoint another file name or --models-dir.")
        atomic_write(target, lambda tmp: shutil.copyfile(src, tmp))
    data["checkpoint"] = str(target.relative_to(folder.resolve()) if inside else target.name)
    if args.labels:
        lab = Path(args.labels)
        if args.labels.lower() in ("coco", "voc", "nus-wide"):
            data["labels"] = args.labels.lower()
        elif lab.is_file():
            dest = folder / f"{name}.labels{lab.suffix or '.txt'}"
            atomic_write(dest, lambda tmp: shutil.copyfile(lab, tmp))
            data["labels"] = dest.name
        else:
            raise FileNotFoundError(f"There is no labels file at {lab}.")
    size = _numbers(args.input_size, 2, "--input-size") if args.input_size and "x" in args.input_size else None
    if args.input_size and size is None:
        side = _numbers(args.input_size, 1, "--input-size")[0]
        size = [side, side]
    if size:
        data["input_size"] = [int(v) for v in size]
    for key, n in (("mean", 3), ("std", 3)):
        v = _numbers(getattr(args, key), n, f"--{key}")
        if v is not None:
            data[key] = v
    for key in ("resize", "interpolation", "threshold", "source", "licence", "description"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.family in ("asl-tresnet-m", "asl-tresnet-l", "asl-tresnet-xl", "q2l-r101-448"):
        data.setdefault("resize", "stretch")
        data.setdefault("interpolation", "bilinear")
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--option takes KEY=VALUE, not {item!r}.")
        options[key.strip()] = _option_value(value.strip())
    if options:
        data["options"] = options
    path = cards.write_card(data, folder)
    if not args.no_check:
        try:
            import os

            old = os.environ.get(cards.ENV)
            os.environ[cards.ENV] = str(folder)
            model = mlvis.create_model(name, device="cpu")
        except (ValueError, FileNotFoundError) as exc:
            path.unlink(missing_ok=True)
            raise InvalidInput(f"The card was not kept: {exc}") from None
        finally:
            if old is None:
                os.environ.pop(cards.ENV, None)
            else:
                os.environ[cards.ENV] = old
        spec = model.spec
        print(f"{name}: {spec.family}, {spec.num_labels} labels, {spec.input_size[1]}×{spec.input_size[0]}, "
              f"{spec.resize} ({spec.interpolation}); loaded once to check it")  # fmt: skip
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------- profiles, correlations, evaluation


def _images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `mlvis models`)")
    p.add_argument("--data", default=None, metavar="KIND:PATH",
                   help="a dataset folder instead of demo scenes: coco:, voc:, nuswide: or folder:PATH (its "
                        "evaluation split, labels matched to the model's by name)")  # fmt: skip
    p.add_argument("--images", type=int, default=100,
                   help="number of images (default 100): demo test scenes, or a seeded sample of --data")  # fmt: skip
    p.add_argument("--split", default=None,
                   help="demo scenes: train, val or test (default test); --data: the dataset's split (default: "
                        "the paper's evaluation split, e.g. val2014)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="scene block seed, or --data's sampling seed (default 0)")
    p.add_argument(
        "--order",
        default="sampled",
        choices=["sampled", "listed"],
        help="--data: a seeded random sample (default) or the first --images in the dataset's order",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    _real_model_args(p)


def _run_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", "--run", default=None, metavar="RUN_DIR", dest="out",
                   help=f"compute in chunks into this run directory (resumable: the same command continues "
                        f"it after a crash) and print {what} from it")  # fmt: skip
    p.add_argument("--save-images", action="store_true", help="--out: also write the adversarial images (PNG)")
    _chunk_args(p, "--out")


def _chunk_args(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument("--chunk", type=int, default=25, help=f"{flag}: images per chunk (default 25)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help=f"{flag}: run the chunks here or on Ray")  # fmt: skip
    p.add_argument(
        "--address",
        default=None,
        help="--backend ray: auto (the running cluster) or HOST:PORT (default: a local Ray on 127.0.0.1)",
    )


def _bf16_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast of the attacks' gradient passes (fast on a GPU; works on a CPU; the clean "
                        "and final evaluations stay float32)")  # fmt: skip


def _staged_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--run RUN_DIR`` of profile, correlations and compare-related (their ``--out`` keeps its meaning)."""
    p.add_argument("--run", default=None, metavar="RUN_DIR",
                   help=f"compute in chunks of images into this run directory (resumable: the same command "
                        f"continues it after a crash), {what} computed from it and written into it")  # fmt: skip
    _chunk_args(p, "--run")


def _source(args: argparse.Namespace, model):
    """The images of ``args`` as a source with ``load_for`` (a :class:`Dataset` or :class:`DemoImages`)."""
    from mlvis.runs import DemoImages

    if args.images < 1:
        raise InvalidInput("--images must be at least 1.")
    if getattr(args, "data", None):
        if args.image_dir:
            raise InvalidInput("Give --data KIND:PATH or --image-dir FOLDER, not both.")
        from mlvis.data import open_dataset

        ds = open_dataset(args.data, split=args.split).align(model.labels)
        if args.order == "listed":
            ds = ds.subset(range(min(args.images, len(ds))), {"first": args.images})
        else:
            ds = ds.sample(args.images, args.seed)
        print(f"{len(ds)} image(s) of {ds.kind}:{ds.root} ({ds.split}), {ds.fingerprint}", file=sys.stderr)
        return ds
    split = args.split or "test"
    if split not in ("train", "val", "test"):
        raise InvalidInput(f"The demo scenes' split is train, val or test, not {split!r}.")
    _check_demo_world(model)
    size = model.spec.input_size
    if size[0] != size[1]:
        raise InvalidInput(f"The demo scenes are square; {args.model} expects {size}.")
    return DemoImages(args.images, split, args.seed, size[0])


def _load(args: argparse.Namespace):
    import torch

    import mlvis

    if args.images < 1:
        raise InvalidInput("--images must be at least 1.")
    model = _create(args)
    if args.image_dir and not getattr(args, "data", None):
        return model, _folder_images(model, args.image_dir, args.images)
    source = _source(args, model)
    if not getattr(args, "data", None):  # today's demo path, unchanged: demo_batch's tensors
        images, _ = mlvis.data.demo_batch(source.n, split=source.split, seed=source.seed, size=source.size)
        return model, images
    return model, torch.from_numpy(source.load_for(model, range(len(source))))


def _model_ref(args: argparse.Namespace):
    from mlvis.runs import ModelRef

    checkpoint = getattr(args, "checkpoint", None)
    return ModelRef(args.model, (("checkpoint", checkpoint),) if checkpoint else ())


def _check_run_args(args: argparse.Namespace, flag: str = "--out") -> None:
    if args.chunk < 1:
        raise InvalidInput("--chunk must be at least 1.")
    if args.image_dir:
        raise InvalidInput(
            f"{flag} RUN_DIR reads --data KIND:PATH or demo scenes; use --data folder:PATH for a folder."
        )
    if args.address and args.backend != "ray":
        raise InvalidInput("--address is for --backend ray.")
    if getattr(args, "ship", False):
        raise InvalidInput(f"--ship writes what one in-memory run measured; leave out {flag}, or --ship.")


def _check_chunk_flags(args: argparse.Namespace) -> None:
    """``--chunk``, ``--backend`` and ``--address`` given without ``--run`` would be silently ignored: a sentence."""
    if not args.run and (args.chunk != 25 or args.backend != "local" or args.address):
        raise InvalidInput("--chunk, --backend and --address are for --run RUN_DIR.")


# ----------------------------------------------------------- real models: --checkpoint, --image-dir (issue 10)


def _real_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="weights file for a family (asl-tresnet-l, timm:<arch>, ...)")
    p.add_argument("--image-dir", default=None,
                   help="attack the PNG/JPEG/WebP files of this folder (sorted, the first --images), resized by the "
                        "model card's rule, instead of demo scenes")  # fmt: skip
    p.add_argument("--deterministic", action="store_true", help="bit-reproducible CUDA kernels (slower on a GPU)")


def _create(args: argparse.Namespace):
    import mlvis

    if getattr(args, "deterministic", False):
        mlvis.models.set_deterministic(True)
    checkpoint = getattr(args, "checkpoint", None)
    return mlvis.create_model(args.model, device=args.device, **({"checkpoint": checkpoint} if checkpoint else {}))


def _check_demo_world(model) -> None:
    spec = model.spec
    if spec.world and spec.world != "demo":
        raise InvalidInput(
            f"{spec.name} was trained on {spec.world}, not on the demo scenes; give --image-dir FOLDER with "
            f"{spec.world} to attack."
        )


def _folder_images(model, folder: str, limit: int):
    from pathlib import Path

    import torch

    from mlvis.data.images import EXTENSIONS, load_image, to_batch
    from mlvis.models import preprocess_for

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"There is no image folder at {root}.")
    files = sorted(p for p in root.iterdir() if p.suffix.lower().lstrip(".") in EXTENSIONS and p.is_file())[:limit]
    if not files:
        raise InvalidInput(f"{root} holds no PNG, JPEG or WebP images.")
    pre = preprocess_for(model.spec)
    loaded = [load_image(p.read_bytes(), pre.size, name=p.name, fit=pre.fit, interpolation=pre.interpolation)
              for p in files]  # fmt: skip
    print(f"{len(loaded)} image(s) from {root}, {pre.describe()}", file=sys.stderr)
    return torch.from_numpy(to_batch(loaded))


def _ship_path(kind: str, args: argparse.Namespace, norm: str = "linf"):
    from mlvis.analysis.artifacts import shipped_path

    if not args.model.startswith("demo-"):
        raise InvalidInput("--ship writes into the package's demo weights folder; it is for the demo models only.")
    return shipped_path(kind, args.model, norm)


def _protocol_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="paper", choices=["paper", "authors"],
                   help="as the paper says (default) or as the authors ran it: clip once, their profile "
                        "convergence, p = 1 at eps_max, CLASS's int(1.66*int(E)), raw Z, global min-max "
                        "(see mlvis.attacks.protocol)")  # fmt: skip


def _profile_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    _protocol_arg(p)
    p.add_argument("--degree", type=int, default=4, choices=[3, 4], help="polynomial degree (default 4)")
    p.add_argument("--interval", type=int, default=10, help="steps between flip measurements (default 10)")
    p.add_argument("--max-eps", type=float, default=None,
                   help="stop the probes here at the latest (default 0.5; under --norm l2 a radius, default the "
                        "same 1,280 steps)")  # fmt: skip
    p.add_argument("--norm", default="linf", choices=["linf", "l2"],
                   help="probe with the L-inf (default) or the L2 attack (appendix B; the profile L2 attacks read)")
    p.add_argument("--out", default=None, help="also write the profile JSON to this file")
    p.add_argument("--ship", action="store_true", help="write it as the demo model's shipped profile")
    _staged_args(p, "the profile (profile.json) probed in rounds of --round-steps steps,")
    p.add_argument("--round-steps", type=int, default=None,
                   help="--run: probe steps per round (default 10 x --interval)")  # fmt: skip
    _bf16_arg(p)


@command("profile", "measure a model's flip profile E(eps) (section V-C)", _profile_args)
def profile_cmd(args: argparse.Namespace) -> int:
    import mlvis
    from mlvis.analysis import artifacts
    from mlvis.analysis.profiles import images_sha

    _check_chunk_flags(args)
    if args.round_steps is not None and not args.run:
        raise InvalidInput("--round-steps is for --run RUN_DIR.")
    ship = _ship_path("profile", args, args.norm) if args.ship else None
    if args.run and args.norm != "linf":
        raise InvalidInput("A profile run directory (--run) probes under L-inf only; drop --run for an L2 profile.")
    if args.run and args.protocol != "paper":
        raise InvalidInput("A profile run directory (--run) probes under the paper's protocol only; drop --run for "
                           "--protocol authors.")  # fmt: skip
    if args.run:
        from mlvis.analysis.chunked import profile_run

        _check_run_args(args, "--run")
        model = _create(args)
        prof = profile_run(model, _source(args, model), args.run, degree=args.degree, interval=args.interval,
                           max_eps=args.max_eps, chunk_size=args.chunk, round_steps=args.round_steps,
                           backend=args.backend, address=args.address, model_ref=_model_ref(args),
                           progress=ProgressBar(f"profile {args.model} (chunks)"), autocast=args.bf16)  # fmt: skip
        images = None
    else:
        model, images = _load(args)
        prof = mlvis.profile(model, images, degree=args.degree, interval=args.interval, max_eps=args.max_eps,
                             norm=args.norm, progress=ProgressBar(f"profile {args.model}"),
                             autocast=args.bf16, protocol=args.protocol)  # fmt: skip
    if args.out:
        prof.save(args.out)
    if ship:  # the profile just measured, under the settings key mlvis.profile cached it with
        key = {k: prof.settings[k] for k in ("alpha", "interval", "max_eps", "images")}
        key |= {"norm": prof.norm} if prof.norm != "linf" else {}
        key |= {"degree": prof.degree, "rel": prof.settings["rel"], "patience": prof.settings["patience"],
                "images_sha": images_sha(images)}  # fmt: skip
        key |= {"protocol": args.protocol} if args.protocol != "paper" else {}
        artifacts.save("profile", model, key, {"profile": prof.to_dict()}, path=ship)
    conv = "converged" if prof.settings.get("converged") else "NOT converged (raise --max-eps)"
    cost = prof.cost["measured"]
    l2 = "L2 " if prof.norm == "l2" else ""
    print(f"{args.model}: {l2}eps_max {prof.eps_max:.4f} ({conv}), E(eps_max) {prof.expected_flips(prof.eps_max):.2f} "
          f"of {prof.labels} labels; cost per image {cost['forward']} fp + {cost['backward']} bp")  # fmt: skip
    return 0


def _correlations_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--eps", default="0.005",
                   help="budget of each single-label attack (default 0.005), or 'approach': section IV-B's rule, "
                        "the smallest eps at which the attacked label's mean confidence moves half-way to the "
                        "threshold, measured on --held-out further images")  # fmt: skip
    p.add_argument("--held-out", type=int, default=16,
                   help="--eps approach: the held-out images that pick the budget (the next ones after --images; "
                        "default 16)")  # fmt: skip
    p.add_argument("--all-images-down", action="store_true",
                   help="flip-down over every image (mlvis before the budget rule) instead of those with the label")
    p.add_argument("--direction", default="both", choices=["up", "down", "both"], help="which matrices")
    p.add_argument("--out", default=None, help="also write each matrix as JSON into this folder")
    p.add_argument("--ship", action="store_true", help="write them as the demo model's shipped matrices")
    _staged_args(p, "the matrices")
    _bf16_arg(p)


@command("correlations", "extract label correlation matrices and attackabilities (Algorithm 1)", _correlations_args)
def correlations_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    import mlvis
    from mlvis.analysis import artifacts
    from mlvis.analysis.profiles import images_sha

    directions = ("up", "down") if args.direction == "both" else (args.direction,)
    _check_chunk_flags(args)
    ship = {d: _ship_path(f"correlations-{d}", args) for d in directions} if args.ship else {}
    eps: float | str = args.eps
    held_out = None
    if args.eps != "approach":
        try:
            eps = float(args.eps)
        except ValueError:
            raise InvalidInput(f"--eps must be a number or 'approach', not {args.eps!r}.") from None
    elif args.held_out < 1:
        raise InvalidInput("--held-out must be at least 1.")
    if args.run and eps == "approach":
        raise InvalidInput("A correlations run directory (--run) attacks at a fixed --eps; find the budget rule's "
                           "eps with --eps approach first (without --run), then pass it as --eps.")  # fmt: skip
    rule = None
    if args.run:
        from mlvis.analysis.chunked import correlations_from_run, correlations_run

        _check_run_args(args, "--run")
        model = _create(args)
        correlations_run(model, _source(args, model), args.run, eps=float(eps), directions=directions,
                         chunk_size=args.chunk, backend=args.backend, address=args.address,
                         model_ref=_model_ref(args), autocast=args.bf16, present_only=not args.all_images_down,
                         progress=ProgressBar(f"correlations {args.model} (chunks)"))  # fmt: skip
        matrices = correlations_from_run(args.run)
        for d in directions:
            matrices[d].save(Path(args.run) / f"{args.model}.correlations-{d}.json")
    elif eps == "approach":  # the held-out images are the next ones of the same source
        n = args.images
        args.images = n + args.held_out
        model, both = _load(args)
        args.images = n
        images, held_out = both[:n], both[n:]
        if len(held_out) < 1:
            raise InvalidInput(f"The image source holds only {len(both)} image(s); --eps approach needs more.")
        from mlvis.analysis.correlation_matrices import approach_budget

        rule = approach_budget(model, held_out, "up")
        eps = rule.eps
        med = ", ".join(f"{e:g}: {m:.2f}" for e, m in zip(rule.grid, rule.median))
        print(f"{args.model}: budget rule on {len(held_out)} held-out images picks eps {eps:g} "
              f"(median progress {med}){'' if rule.reached else ' (NOT reached: the largest tried)'}")  # fmt: skip
        check_correlations_work(model, len(images), float(eps), len(directions))
    else:
        model, images = _load(args)
        check_correlations_work(model, len(images), float(eps), len(directions))
    for d in directions:
        if args.run:
            cm = matrices[d]
        else:
            cm = mlvis.correlations(model, images, eps=eps, direction=d, progress=ProgressBar(f"flip-{d}"),
                                    present_only=not args.all_images_down, autocast=args.bf16)  # fmt: skip
        if rule is not None:
            import dataclasses

            cm = dataclasses.replace(cm, budget={**rule.to_dict(), **cm.budget})
        if args.out:
            cm.save(Path(args.out) / f"{args.model}.correlations-{d}.json")
        if args.ship:
            settings = {"eps": cm.eps, "alpha": cm.alpha, "images": cm.images, "images_sha": images_sha(images)}
            settings |= {"budget": "approach", "held_out_sha": rule.images_sha} if rule is not None else {}
            artifacts.save(f"correlations-{d}", model, settings, {"correlations": cm.to_dict()}, path=ship[d])
        off = cm.matrix[~np.eye(cm.num_labels, dtype=bool)]
        print(f"{args.model} flip-{d}: off-diagonal {off.min():+.4f} .. {off.max():+.4f}, mean attackability "
              f"{np.nanmean(cm.attackability):.3f}; cost {cm.cost['forward']} fp + "
              f"{cm.cost['backward']} bp")  # fmt: skip
    return 0


def check_correlations_work(model, num_images: int, eps: float, directions: int) -> None:
    """Before any attack: every label attacked alone on every image, in each direction (Algorithm 1), against
    the run's cap on work (:func:`mlvis.errors.check_run_work`). For flip-down this is an upper bound (equation
    9's count): the job attacks a label only on the images where it is present, which only a forward through
    the model tells (``correlation_image_steps``), and this check refuses an oversized run before any model work
    (each job's exact image-steps are checked again by the engine as it starts)."""
    import numpy as np

    from mlvis.attacks import DEFAULT_ALPHA
    from mlvis.attacks.plan import image_steps
    from mlvis.errors import check_number, check_run_work

    check_number("eps", eps, 0, 1e6, above=True)
    rows = len(model.labels) * int(num_images)
    one = image_steps(["single-label"], [eps], rows, alpha=DEFAULT_ALPHA, dims=3 * int(np.prod(model.spec.input_size)))
    check_run_work(directions * one, f"{directions} direction(s) x {len(model.labels)} labels x {num_images} images")


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
    p.add_argument("--norm", default="linf", choices=["linf", "l2"],
                   help="linf (Tables IV-VI, default) or l2 (Table VIII: L2 attacks, fractions of the L2 profile's "
                        "eps_max)")  # fmt: skip
    p.add_argument("--format", default="md", choices=["md", "csv", "json"], help="table format on stdout")
    _protocol_arg(p)
    _run_args(p, "the table (also written there as table.md, table.csv and table.json)")
    _bf16_arg(p)


@command("evaluate", "Tables IV-VI: flips per method and budget with paired t-tests", _evaluate_args)
def evaluate_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import mlvis
    from mlvis.analysis.evaluation import evaluate_run, table_from_run
    from mlvis.store import atomic_write_text

    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError:
        raise InvalidInput(f"--fractions must be comma-separated numbers, not {args.fractions!r}.") from None
    methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
    job: dict[str, Any] = {"autocast": True} if args.bf16 else {}  # a float32 run's manifest stays as it was
    job.update(_norm_job(args))  # and an L-inf one's too
    if args.out:
        _check_run_args(args)
        model = _create(args)
        source = _source(args, model)
        check_evaluate_work(model, methods, fractions, len(source), norm=args.norm)
        run = evaluate_run(model, source, args.out, methods, fractions, chunk_size=args.chunk, seed=args.seed,
                           save_images=args.save_images, backend=args.backend, address=args.address,
                           model_ref=_model_ref(args), protocol=args.protocol, **job,
                           progress=ProgressBar(f"evaluate {args.model} (chunks)"))  # fmt: skip
        table = table_from_run(run)
    else:
        model, images = _load(args)
        check_evaluate_work(model, methods, fractions, len(images), norm=args.norm)
        table = mlvis.evaluate(model, images, methods, fractions, progress=ProgressBar(f"evaluate {args.model}"),
                               protocol=args.protocol, **job)  # fmt: skip
    texts = {"md": table.to_markdown(), "csv": table.to_frame().to_csv(index=False), "json": table.to_json()}
    print(texts[args.format])
    if args.out:
        for fmt, text in texts.items():
            atomic_write_text(Path(args.out) / f"table.{fmt}", text + "\n")
    return 0


def _norm_job(args: argparse.Namespace) -> dict:
    """``{"norm": "l2"}`` under ``--norm l2`` (an L-inf run passes nothing, as before)."""
    return {"norm": args.norm} if args.norm != "linf" else {}


def _compare_norms_args(p: argparse.ArgumentParser) -> None:
    _images_args(p)
    p.add_argument("--eps", type=float, default=0.024, help="the L-inf budget (default 0.024, Fig. 12's)")
    p.add_argument("--method", default="bce", help="the attack (default bce, MI-FGSM): " + _method_syntax())
    p.add_argument("--format", default="md", choices=["md", "json"], help="table format on stdout")
    p.add_argument("--out", default=None,
                   help="also write table.md, comparison.json and the images (16-bit PNGs of both adversarials, "
                        "8-bit PNGs of the amplified perturbations) into this folder")  # fmt: skip


@command("compare-norms", "Fig. 12: one attack at an L-inf budget and at the L2 ball of the same volume",
         _compare_norms_args)  # fmt: skip
def compare_norms_cmd(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from mlvis.analysis.evaluation import linf_vs_l2
    from mlvis.store import atomic_write, atomic_write_text

    method = parse_method(args.method)
    model, images = _load(args)
    cmp = linf_vs_l2(model, images, args.eps, method, progress=ProgressBar(f"compare-norms {args.model}"))
    doc = {"model": cmp.model, "method": cmp.method, "eps_linf": cmp.eps_linf, "radius": cmp.radius,
           "images": int(cmp.linf.flips.shape[1]), "rows": cmp.rows(),
           "per_image_flips": {"linf": cmp.linf.flips[0].tolist(), "l2": cmp.l2.flips[0].tolist()}}  # fmt: skip
    text = cmp.to_markdown() if args.format == "md" else json.dumps(doc, indent=1)
    print(f"{cmp.model}, {cmp.method}, {doc['images']} image(s): L-inf {cmp.eps_linf:g} vs the equal-volume L2 "
          f"radius {cmp.radius:.4g} (appendix C)", file=sys.stderr)  # fmt: skip
    print(text)
    if args.out:
        import io

        from PIL import Image

        from mlvis.viz.attack import amplified_perturbation, nice_factor

        out = Path(args.out)
        atomic_write_text(out / "table.md", cmp.to_markdown() + "\n")
        atomic_write_text(out / "comparison.json", json.dumps(doc, indent=1) + "\n")
        for norm, res in (("linf", cmp.linf), ("l2", cmp.l2)):
            res.export(out / norm, fmt="png16")
        for i in range(doc["images"]):
            clean = cmp.linf.clean[i]
            factor = nice_factor(max(float(np.abs(r.adv[0, i] - clean).max(initial=0.0)) for r in (cmp.linf, cmp.l2)))
            for norm, res in (("linf", cmp.linf), ("l2", cmp.l2)):
                img, _ = amplified_perturbation(clean, res.adv[0, i], factor)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                atomic_write(out / f"perturbation_{norm}_img{i}_x{factor:g}.png", buf.getvalue())
        print(f"wrote {out}", file=sys.stderr)
    return 0

def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a run directory (evaluate, profile, correlations, compare-related)")
    p.add_argument("--partial", action="store_true",
                   help="an unfinished run: the table of its finished chunks' images ('n of N images')")
    p.add_argument("--format", default="md", choices=["md", "csv", "json"], help="table format on stdout")
    p.add_argument("--figure", default=None, metavar="FILE.html",
                   help="also write the run's figure (evaluate: flips vs budget, Fig. 8 style) as a standalone HTML")


@command("table", "the table (and figure) of a run directory, computed from the directory alone", _table_args)
def table_cmd(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from mlvis.analysis.chunked import images_in, result_from_run
    from mlvis.analysis.evaluation import EvaluationTable, table_caption
    from mlvis.analysis.profiles import FlipProfile
    from mlvis.runs import run_status
    from mlvis.store import atomic_write_text

    st = run_status(args.run)
    result = result_from_run(args.run, partial=args.partial)
    n = images_in(result)
    if isinstance(result, EvaluationTable):
        caption = table_caption(result)
        texts = {"md": result.to_markdown(), "csv": result.to_frame().to_csv(index=False), "json": result.to_json()}
    elif isinstance(result, FlipProfile):
        caption = f"{n} images"
        conv = "converged" if result.settings.get("converged") else "NOT converged"
        texts = {"md": f"eps_max {result.eps_max:.6g} ({conv}), E(eps_max) "
                       f"{result.expected_flips(result.eps_max):.3f} of {result.labels} labels",
                 "csv": "eps,flips_bce,flips_linear\n" + "".join(f"{e!r},{b!r},{v!r}\n" for e, b, v in zip(
                     result.eps.tolist(), result.flips_bce.tolist(), result.flips_linear.tolist())),
                 "json": json.dumps(result.to_dict())}  # fmt: skip
    elif isinstance(result, dict):
        caption = f"{n} of {st.num_items} images (the run is not finished)" if n < st.num_items else f"{n} images"
        rows = [f"flip-{d}: mean attackability {float(np.nanmean(cm.attackability)):.3f}, off-diagonal "
                f"{cm.matrix[~np.eye(cm.num_labels, dtype=bool)].min():+.4f} .. "
                f"{cm.matrix[~np.eye(cm.num_labels, dtype=bool)].max():+.4f}" for d, cm in result.items()]  # fmt: skip
        texts = {"md": "\n".join(rows),
                 "csv": "direction,label,attackability,eligible\n" + "".join(
                     f"{d},{lab},{a!r},{e}\n" for d, cm in result.items()
                     for lab, a, e in zip(cm.labels, cm.attackability.tolist(), cm.eligible.tolist())),
                 "json": json.dumps({d: cm.to_dict() for d, cm in result.items()})}  # fmt: skip
    else:
        caption = f"{n} of {st.num_items} images (the run is not finished)" if n < st.num_items else f"{n} images"
        texts = {"md": result.to_markdown(), "csv": result.summary().to_csv(index=False), "json": result.to_json()}
    if args.format == "md":
        print(f"{st.manifest.get('kind')} run {Path(args.run).name}: {caption}\n")
    print(texts[args.format])
    if args.figure:
        from mlvis.viz.runs import run_figure

        html = run_figure(result, caption).to_html(include_plotlyjs=True, full_html=True)
        atomic_write_text(Path(args.figure), html)
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


def check_evaluate_work(model, methods, fractions, num_images: int, norm: str = "linf") -> None:
    """Before any attack: every method x budget x image of the evaluation against the run's cap on work
    (:func:`mlvis.errors.check_run_work`), counted by the engine's dry run with the specs ``evaluate`` makes
    (the profile's budgets, the baseline included). A chunked run (``--out``) makes one engine call per
    chunk, each under the cap alone; this count refuses the whole run at once instead of chunk by chunk."""
    import numpy as np

    import mlvis
    from mlvis.attacks.plan import as_spec, evaluation_specs, image_steps, needs
    from mlvis.errors import check_number, check_run_work

    if not methods:
        return  # evaluate's own sentence
    fr = [check_number("each eps fraction", f, 0, 1e6) for f in fractions]
    profile = mlvis.profile(model, norm=norm)  # the grid is made of fractions of this profile's eps_max
    correlations = mlvis.correlations(model, direction="up") if needs(methods, "correlations") else None
    if "bce" not in [as_spec(m).method for m in methods]:
        methods = ["bce", *methods]
    specs = evaluation_specs(methods, profile, correlations)
    dims = 3 * int(np.prod(model.spec.input_size))
    eps = np.asarray(fr, np.float64) * profile.eps_max
    steps = image_steps(specs, eps, int(num_images), alpha=mlvis.attacks.DEFAULT_ALPHA, dims=dims)
    check_run_work(steps, f"{len(specs)} methods x {len(eps)} budgets x {num_images} images")


def _write_scenes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="the new (or empty) dataset folder to write")
    p.add_argument(
        "--layout",
        default="folder",
        choices=["folder", "coco", "voc", "nuswide"],
        help="folder (images/ + labels.csv), coco (annotations/ + val2014/), voc (JPEGImages/ + Annotations/ + "
             "ImageSets/Main/) or nuswide (nus_wid_data.csv)",
    )
    p.add_argument("--image-format", default="png", choices=["png", "jpeg"],
                   help="png (default: lossless, read back bit for bit; VOC's as JPEGImages/<id>.png) or jpeg "
                        "(real .jpg files, quality 95: lossy)")  # fmt: skip
    p.add_argument("--n", type=int, default=100, help="number of scenes (default 100)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="scene split (default test)")
    p.add_argument("--seed", type=int, default=0, help="scene block seed, as --seed of the demo path (default 0)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64, the demo models')")


@command("write-scenes", "write demo scenes as a dataset folder (lossless PNGs) for --data KIND:PATH",
         _write_scenes_args)  # fmt: skip
def write_scenes_cmd(args: argparse.Namespace) -> int:
    from mlvis.data import write_scene_dataset

    folder = write_scene_dataset(args.out, args.layout, n=args.n, split=args.split, seed=args.seed, size=args.size,
                                 image_format=args.image_format)  # fmt: skip
    split = {"voc": {"train": " --split trainval", "val": " --split val"},
             "coco": {"train": " --split train2014"}, "nuswide": {"train": " --split train"}}  # fmt: skip
    hint = split.get(args.layout, {}).get(args.split, "")
    print(f"wrote {args.n} {args.split} scenes to {folder}; use --data {args.layout}:{folder}{hint}")
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
    from mlvis.errors import check_number
    from mlvis.store import atomic_write_text

    check_number("--gamma-step", args.gamma_step, 0.001, 1)  # before the 20 s of scene statistics
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
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the gradient passes (GPU; clean passes fp32)")
    p.add_argument("--deterministic", action="store_true", help="bit-reproducible CUDA kernels (slower on a GPU)")


@command("attack", "rerun an Attack Lab recipe (--config FILE): every method as one job", _attack_args)
def attack_cmd(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd

    import mlvis
    from mlvis import recipe as rc
    from mlvis.store import atomic_write_text

    config = Path(args.config)
    if not config.is_file():
        raise FileNotFoundError(f"No recipe at {config}.")
    recipe = rc.Recipe.from_json(config.read_text())
    if args.deterministic:
        mlvis.models.set_deterministic(True)
    model = mlvis.create_model(recipe.model, device=args.device)
    size = model.spec.input_size
    if recipe.images.kind == "demo":
        images = rc.demo_images(recipe.images, size)
    else:
        interp = mlvis.models.preprocess_for(model.spec).interpolation  # the card's filter, as in the Lab
        images = rc.file_images(recipe.images, size, rc.read_files_from(args.images or config.parent), interp)
    bar = ProgressBar(f"attack {recipe.model}")
    if args.bf16:  # the engine's bf16 autocast (issue 10): the recipe's one job, with autocast=True
        from mlvis.attacks import run_job

        specs = rc.resolve_specs(recipe, model, None)
        budget = recipe.budget(int(np.prod(images.shape[1:])))
        results = run_job(model, np.asarray(images, np.float32), specs, budget, alpha=recipe.alpha, norm=recipe.norm,
                          seed=recipe.seed, progress=bar, autocast=True)  # fmt: skip
    else:
        results = rc.run_recipe(recipe, model, images, progress=bar)
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
    p.add_argument("--preset", default="original", choices=["original", "fast", "authors"],
                   help="ML-CW budget: original = 10 x 1,000 Adam steps (Song et al.), fast = 5 x 100, "
                        "authors = 1 x 1,000 at lambda 1e5 with the L-inf distance (Table VII as run)")  # fmt: skip
    p.add_argument("--distance", default=None, choices=["l2", "linf"],
                   help="ML-CW distance: linf (default, the paper's Table VII setup) or l2 (Song et al.'s original)")
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
    _staged_args(p, "the table (also table.md, table.csv, per_image.csv, related.json there)")


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
        ("ml-cw", "distance", args.distance or "linf"),  # every preset's Table VII distance unless told
        ("ml-cw", "binary_steps", args.cw_rounds),
        ("ml-cw", "max_iter", args.cw_iters),
        ("ml-deepfool", "max_iter", args.deepfool_iters),
        ("mla-lp", "max_iter", args.lp_iters),
        ("mla-lp", "basis", args.lp_basis),
    ):
        if method in options and value is not None:
            options[method][key] = value
    options = {m: o for m, o in options.items() if o}
    _check_chunk_flags(args)
    if args.run:
        _check_run_args(args, "--run")
        model, images = _create(args), None
    else:
        model, images = _load(args)
    profile = None
    if args.profile == "auto":
        profile = mlvis.profile(model)
    elif args.profile:
        profile = FlipProfile.load(args.profile)
    if args.run:
        from mlvis.analysis.chunked import related_from_run, related_run

        related_run(model, _source(args, model), args.run, methods, preset=args.preset, options=options, p=args.p,
                    q=args.q, profile=profile, chunk_size=args.chunk, backend=args.backend, address=args.address,
                    model_ref=_model_ref(args),
                    progress=ProgressBar(f"compare-related {args.model} (chunks)"))  # fmt: skip
        cmp = related_from_run(args.run)
    else:
        cmp = compare_related(model, images, methods, preset=args.preset, options=options, p=args.p, q=args.q,
                              profile=profile, progress=ProgressBar(f"compare-related {args.model}"))  # fmt: skip
    texts = {
        "md": cmp.to_markdown(),
        "csv": cmp.summary().to_csv(index=False),
        "json": cmp.to_json(),
    }
    print(texts[args.format])
    for folder in [f for f in (args.run, args.out) if f]:
        out = Path(folder)
        atomic_write_text(out / "table.md", texts["md"] + "\n")
        atomic_write_text(out / "table.csv", texts["csv"])
        atomic_write_text(out / "per_image.csv", cmp.to_frame().to_csv(index=False))
        atomic_write_text(out / "related.json", texts["json"] + "\n")
        print(f"wrote {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------- attack replay and Fig. 17 (issue 13, 12)


def _trajectory_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `mlvis models`)")
    p.add_argument("--scene", type=int, default=0,
                   help="demo test scene index (default 0; seed 0's block), or the file's index in --image-dir")
    p.add_argument("--image-dir", default=None, help="attack an image file of this folder (sorted) instead")
    p.add_argument("--checkpoint", default=None, help="weights file for a family (asl-tresnet-l, timm:<arch>, ...)")
    p.add_argument("--eps", type=float, required=True, help="the one L-inf budget, e.g. 0.02")
    p.add_argument("--methods", default="bce,slam,class", help=f"comma-separated: {_method_syntax()}")
    p.add_argument("--every", type=int, default=1, help="record every N steps (default 1)")
    p.add_argument("--labels", default=None, help="Fig. 17's three labels, comma-separated (default: by the rule)")
    p.add_argument("--keep-images", action="store_true", help="JSON: also keep the 8-bit images (base64)")
    p.add_argument("--out", required=True, help="FILE.json (the recording) or FILE.html (Fig. 17 and the race)")
    p.add_argument("--figure", default=None, help="also write Fig. 17 and the race as this .html file")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


@command("trajectory", "record an attack's trajectory (replay) and draw Fig. 17's confidence space", _trajectory_args)
def trajectory_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    import mlvis
    from mlvis.analysis.trajectory import PICK_RULE, pick_labels, record
    from mlvis.store import atomic_write_text, check_out

    outs = [Path(args.out)] + ([check_out(args.figure, "file")] if args.figure else [])
    if Path(args.out).suffix.lower() not in (".json", ".html") or any(o.suffix.lower() != ".html" for o in outs[1:]):
        raise InvalidInput("--out must name a .json or .html file (and --figure an .html file).")
    if args.scene < 0:
        raise InvalidInput("--scene must be 0 or more.")
    model = _create(args)
    if args.image_dir:
        x = _folder_images(model, args.image_dir, args.scene + 1)
        if len(x) <= args.scene:
            raise InvalidInput(f"{args.image_dir} holds {len(x)} image(s); --scene counts from 0.")
    else:
        _check_demo_world(model)
        size = model.spec.input_size
        if size[0] != size[1]:
            raise InvalidInput(f"The demo scenes are square; {args.model} expects {size}: give --image-dir.")
        x, _ = mlvis.data.demo_batch(args.scene + 1, size=size[0])
    methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
    rec = record(model, x[args.scene :], methods, args.eps, every=args.every, keep_images=args.keep_images,
                 progress=ProgressBar(f"trajectory {args.model}"))  # fmt: skip
    names = list(rec.labels)
    chosen = pick_labels(rec)
    if args.labels:
        wanted = [w.strip() for w in args.labels.split(",")]
        unknown = [w for w in wanted if w not in names]
        if len(wanted) != 3 or unknown:
            raise InvalidInput(f"--labels takes three of the model's labels ({', '.join(names)}), not {args.labels!r}.")
        chosen = tuple(names.index(w) for w in wanted)
    where = f"image {args.scene} of {args.image_dir}" if args.image_dir else f"scene {args.scene}"
    print(f"{args.model}, {where}, eps {args.eps:g}: flips after each method's {rec.max_step} steps")
    for t in rec.traces:
        first = next((int(s) for s, f in zip(t.steps, t.flips[:, 0]) if f > 0), None)
        print(f"  {t.name:<14} {int(t.flips[-1, 0]):3d}   first flip at step {first if first is not None else '-'}")
    for _, why in rec.not_replayable:
        print(f"  {why}")
    rule = "" if args.labels else f" ({PICK_RULE})"
    print(f"Fig. 17 labels: {', '.join(names[i] for i in chosen)}{rule}")
    for out in outs:
        if out.suffix.lower() == ".json":
            rec.save(out, images=args.keep_images)
        else:
            from mlvis.viz.confidence_space import confidence_space_figure
            from mlvis.viz.replay import race_figure

            html = confidence_space_figure(rec, chosen).to_html(include_plotlyjs=True, full_html=False)
            html += race_figure(rec, 0).to_html(include_plotlyjs=False, full_html=False)
            atomic_write_text(out, f"<!doctype html><html><head><meta charset='utf-8'><title>mlvis trajectory"
                                   f"</title></head><body>{html}</body></html>\n")  # fmt: skip
        print(f"wrote {out}")
    return 0


# ------------------------------------------------------------- the paper's figures (issue 12 §4): mlvis figure

FIGURES = {  # kind -> the --out suffixes it writes (kaleido, plotly's PNG writer, is not installed)
    "class-tree": (".html", ".json", ".plotly.json"),
    "slam-loss": (".html", ".json", ".plotly.json"),
    "bce-loss": (".html", ".json", ".plotly.json"),
    "gallery": (".png", ".svg", ".json"),
}


def _figure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=list(FIGURES), help="class-tree (Fig. 9), slam-loss (Fig. 13), bce-loss (Fig. 19), "
                   "gallery (Fig. 21)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE",
                   help="class-tree, slam-loss, bce-loss: .html (interactive, self-contained, plotly.js inlined), "
                        ".json (the figure's data) or .plotly.json (the plotly figure; no PNG: kaleido is not "
                        "installed); gallery: .png (lossless), .svg or .json (flips and flipped labels per "
                        "cell)")  # fmt: skip
    p.add_argument("--model", default=None, help="registered model name (class-tree, gallery; slam-loss with --eps)")
    p.add_argument("--checkpoint", default=None, help="weights file for a family (asl-tresnet-l, timm:<arch>, ...)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--image", default=None, help="a PNG/JPEG/WebP file, resized by the model card's rule")
    p.add_argument("--scene", type=int, default=1, help="else this demo test scene of the --seed block (default 1)")
    p.add_argument("--seed", type=int, default=0, help="demo scene block; the random subset's seed (default 0)")
    p.add_argument("--eps", default=None,
                   help="class-tree: the budget (default 10%% of eps_max); gallery: comma-separated budgets instead "
                        "of --fractions; slam-loss: add --model's p·q at this budget")  # fmt: skip
    p.add_argument("--gamma", type=float, default=0.5, help="class-tree: gamma (default 0.5)")
    p.add_argument("--branches", type=int, default=4, help="class-tree: branches per node (default 4)")
    p.add_argument("--depth", type=int, default=4, help="class-tree: look-ahead depth (default 4)")
    p.add_argument("--length", type=int, default=None, help="class-tree: subset length (default floor(1.66 E(eps)))")
    p.add_argument("--iteration", type=int, default=1, help="class-tree .html: the iteration drawn (default 1)")
    p.add_argument("--shares", default="0,0.25,0.5,0.75,1", help="slam-loss: values of p·q (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--q", type=float, default=0.5, help="slam-loss --eps: SLAM's q (default 0.5)")
    p.add_argument("--target", type=int, default=0, choices=[0, 1], help="slam-loss: the target (default 0)")
    p.add_argument("--targets", default="0,1", help="bce-loss: the targets (default 0,1)")
    p.add_argument("--logit-range", default="-8,8", help="slam-loss, bce-loss: LOW,HIGH of the logit, "
                   "written --logit-range=-20,20 (default -8,8)")
    p.add_argument("--axis", default="logit", choices=["logit", "confidence"], help="loss curves' x axis")
    p.add_argument("--methods", default="bce,slam,random,class:0,class:0.5,class:1",
                   help="gallery: the columns (default Tables IV-VI's rows)")  # fmt: skip
    p.add_argument("--fractions", default=_fractions(), help="gallery: fractions of eps_max (default: Table IV's grid)")
    p.add_argument("--show", default="adversarial", choices=["adversarial", "perturbation"], help="gallery tiles")
    p.add_argument("--scale", type=int, default=None, help="gallery: nearest-neighbour upscaling (default: ~144 px)")


@command("figure", "export Fig. 9, 13, 19 or 21 of the paper (HTML/JSON, or PNG/SVG/JSON for the gallery)",
         _figure_args)  # fmt: skip
def figure_cmd(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    import mlvis
    from mlvis.store import atomic_write_bytes, atomic_write_text

    out = str(args.out)
    suffix = next((s for s in sorted(FIGURES[args.kind], key=len, reverse=True) if out.endswith(s)), None)
    if suffix is None:
        raise InvalidInput(f"--out must end in {' or '.join(FIGURES[args.kind])} for {args.kind}, not {out}.")
    lo, hi = _numbers(args.logit_range, 2, "--logit-range")
    lo_hi = (lo, hi)
    if args.kind in ("class-tree", "gallery") and not args.model:
        raise InvalidInput(f"{args.kind} attacks an image of a model: give --model NAME.")
    model: Any = _create(args) if args.model else None
    data: Any
    if args.kind == "slam-loss":
        from mlvis.analysis.loss_curves import slam_curves

        shares = [float(v) for v in _number_list(args.shares, "--shares")]
        if args.eps is not None:
            if model is None:
                raise InvalidInput("--eps adds a model's p·q: give --model NAME too.")
            p = mlvis.attacks.methods.profile_flip_ratio(mlvis.profile(model), np.array([float(args.eps)]),
                                                         model.num_labels)  # fmt: skip
            shares.append(round(float(p[0]) * float(args.q), 4))
        data = slam_curves(sorted(set(shares)), target=args.target, logit_range=lo_hi)
    elif args.kind == "bce-loss":
        from mlvis.analysis.loss_curves import bce_curves

        data = bce_curves([int(t) for t in _number_list(args.targets, "--targets")], logit_range=lo_hi)
    else:
        image = _figure_image(args, model)
        if args.kind == "class-tree":
            from mlvis.analysis.class_tree import class_tree
            from mlvis.attacks.plan import Artifacts

            arts = Artifacts(args.model, **{k: _artifact(model, k) for k in ("profile", "up", "down")})
            if arts.up is None:
                raise InvalidInput(f"{args.model} has no correlation matrices yet; compute them with "
                                 f"`mlvis correlations --model {args.model}`.")  # fmt: skip
            if arts.profile is None and args.length is None:
                raise InvalidInput(f"{args.model} has no flip profile to size the subset: give --length N or run "
                                 f"`mlvis profile --model {args.model}`.")  # fmt: skip
            default = float(arts.profile.grid()[1]) if arts.profile is not None else 0.01  # 10 % of eps_max
            eps = float(args.eps) if args.eps is not None else default
            data = class_tree(model, image, eps, correlations=arts.correlations(), profile=arts.profile,
                              length=args.length, gamma=args.gamma, branches=args.branches,
                              depth=args.depth)  # fmt: skip
        else:
            from mlvis.analysis.gallery import gallery

            methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
            eps_list = [float(v) for v in _number_list(args.eps, "--eps")] if args.eps is not None else None
            fractions = [float(v) for v in _number_list(args.fractions, "--fractions")]
            data = gallery(model, image, methods, fractions, eps=eps_list, seed=args.seed,
                           progress=ProgressBar(f"gallery {args.model}"))  # fmt: skip
    if suffix == ".json":
        atomic_write_text(out, json.dumps(data.to_dict()) + "\n")
    elif args.kind == "gallery":
        from mlvis.viz.adversarial_gallery import gallery_png, gallery_svg

        view = {"show": args.show, "scale": args.scale}
        if suffix == ".png":
            atomic_write_bytes(out, gallery_png(data, **view))
        else:
            atomic_write_text(out, gallery_svg(data, **view))
    else:
        if args.kind == "class-tree":
            from mlvis.viz.class_tree import class_tree_figure

            if data.iterations and not 1 <= args.iteration <= len(data.iterations):
                raise InvalidInput(f"--iteration must be 1 to {len(data.iterations)} for this tree.")
            fig = class_tree_figure(data, args.iteration - 1 if data.iterations else 0)
        else:
            from mlvis.viz.loss_curves import loss_curves_figure

            fig = loss_curves_figure(data, axis=args.axis)
        text = fig.to_json() if suffix == ".plotly.json" else fig.to_html(include_plotlyjs=True, full_html=True)
        atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0


def _figure_image(args: argparse.Namespace, model):
    """``--image FILE`` resized by the card's rule, else demo scene ``--scene`` of block ``--seed``."""
    from pathlib import Path

    import mlvis
    from mlvis.data.images import load_image
    from mlvis.models import preprocess_for

    pre = preprocess_for(model.spec)
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            raise FileNotFoundError(f"There is no image file at {path}.")
        return load_image(path.read_bytes(), pre.size, name=path.name, fit=pre.fit,
                          interpolation=pre.interpolation).array  # fmt: skip
    from mlvis.recipe import ImageSource, demo_images

    if model.spec.world and model.spec.world != "demo":
        raise InvalidInput(
            f"{args.model} was trained on {model.spec.world}, not on the demo scenes; give --image FILE."
        )
    h, w = model.spec.input_size
    if h != w:
        raise InvalidInput(f"The demo scenes are square; {args.model} expects {h}×{w}: give --image FILE.")
    if not 0 <= args.scene < mlvis.data.BLOCK:
        raise InvalidInput(f"--scene must be a scene number from 0 to {mlvis.data.BLOCK - 1}.")
    return demo_images(ImageSource("demo", "test", args.seed, args.scene, 1), (h, w))[0]


def _number_list(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InvalidInput(f"{what} must be comma-separated numbers, not {text!r}.") from None
    if not values:
        raise InvalidInput(f"{what} needs at least one number.")
    return values


def _artifact(model, kind: str):
    """The model's shipped or cached profile / correlation matrix, or ``None``."""
    import mlvis

    try:
        return mlvis.profile(model) if kind == "profile" else mlvis.correlations(model, direction=kind)
    except ValueError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlvis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        _common_args(p)
    return parser


def _common_args(p: argparse.ArgumentParser) -> None:
    """The options every command takes: the cap on work and the traceback switch."""
    p.add_argument("--max-work", default=None, metavar="IMAGE_STEPS",
                   help="cap on image-steps of this run, all its calls together (default $MLVIS_MAX_IMAGE_STEPS "
                        "or 1e7)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error ($MLVIS_DEBUG=1)")


_OUT_IS_FILE = {"profile", "trajectory", "figure"}  # commands whose --out names one file; every other --out is a folder
_WRITES_CACHE = {"profile", "correlations"}  # commands that cache what they compute
_RUN_DIRS = {"profile", "correlations", "compare-related"}  # commands whose --run names a run directory to write


def check_outputs(args: argparse.Namespace) -> None:
    """Before any work: ``--out`` follows the rule of :func:`mlvis.store.check_out` and the artifacts
    cache of a command that writes it is a writable folder (docs/security.md)."""
    from mlvis import store

    if getattr(args, "out", None):
        store.check_out(args.out, "file" if args.command in _OUT_IS_FILE else "folder")
    if args.command in _RUN_DIRS and args.run:
        store.check_out(args.run, "folder")
    if getattr(args, "figure", None):
        store.check_out(args.figure, "file")
    if args.command in _WRITES_CACHE:
        store.check_cache_dir()
    if getattr(args, "device", None):
        check_device(args.device)


def check_device(name: str) -> None:
    """A ``--device`` that names no usable device is a sentence before any work (not CUDA's traceback)."""
    import torch

    from mlvis.errors import InvalidInput

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InvalidInput(f"--device {name!r} is not a device; use cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInput(f"--device {name} asks for a GPU, but this machine has no usable CUDA GPU; use cpu.")
        if dev.index is not None and dev.index >= count:
            raise InvalidInput(f"--device {name}: this machine has {count} CUDA GPU(s), numbered from 0.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInput(f"--device {name} asks for Apple's MPS, which this machine does not have; use cpu.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidInput(f"--device {name!r} is not supported; use cpu or cuda.")


def main(argv: list[str] | None = None) -> int:
    """Run ``mlvis ARGS``; every outcome is an exit code, never a traceback (unless ``--debug``).

    Exit 0 on success, 2 with one sentence on stderr for anything refused (an :class:`~mlvis.errors.MlvisError`,
    any ``ValueError``, a file that cannot be read or written, a recipe nested too deep, memory that ran
    out), 130 when interrupted, and 1 with one sentence naming where to report it for a bug of ours.
    argparse's own errors exit 2 through ``SystemExit``, with its usage line.
    """
    import os

    from mlvis.errors import max_image_steps, work_scope

    args = build_parser().parse_args(argv)  # argparse: usage + one sentence and SystemExit(2), or --help
    debug = args.debug or os.environ.get("MLVIS_DEBUG", "") not in ("", "0")
    saved = os.environ.get("MLVIS_MAX_IMAGE_STEPS")
    try:
        if args.max_work is not None:
            os.environ["MLVIS_MAX_IMAGE_STEPS"] = str(max_image_steps(args.max_work))
        else:
            max_image_steps()  # a bad MLVIS_MAX_IMAGE_STEPS is a sentence before any work
        check_outputs(args)
        with work_scope(None, f"This mlvis {args.command} run", "--max-work N or MLVIS_MAX_IMAGE_STEPS=N"):
            return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print(f"mlvis {args.command}: interrupted.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- the one place every error becomes a sentence
        if debug:
            import traceback

            traceback.print_exc()
        print(f"mlvis {args.command}: {error_sentence(e)}", file=sys.stderr)
        return 1 if _unexpected(e) else 2
    finally:
        if args.max_work is not None:
            if saved is None:
                os.environ.pop("MLVIS_MAX_IMAGE_STEPS", None)
            else:
                os.environ["MLVIS_MAX_IMAGE_STEPS"] = saved


def _unexpected(e: BaseException) -> bool:
    return not isinstance(e, (ValueError, OSError, RecursionError, MemoryError, OverflowError))


def error_sentence(e: BaseException) -> str:
    """One sentence for ``e``: its own message for mlvis's errors, a plain one for the others."""
    from mlvis.errors import MlvisError

    text = str(e).strip() or type(e).__name__
    if isinstance(e, MlvisError):
        return text
    if isinstance(e, FileNotFoundError):
        return f"no such file or folder: {e.filename}." if e.filename else f"{text}."
    if isinstance(e, IsADirectoryError):
        return f"{e.filename} is a folder where a file is meant." if e.filename else f"{text}."
    if isinstance(e, NotADirectoryError):
        return f"{e.filename} is a file where a folder is meant." if e.filename else f"{text}."
    if isinstance(e, PermissionError):
        return f"permission denied: {e.filename}." if e.filename else f"{text}."
    if isinstance(e, OSError):
        return f"cannot read or write {e.filename}: {e.strerror or text}." if e.filename else f"{text}."
    if isinstance(e, RecursionError):
        return "the input is nested too deeply to be read."
    if isinstance(e, MemoryError):
        return "this does not fit in memory; give fewer images or smaller settings."
    if isinstance(e, OverflowError):
        return f"a number is too large ({text})."
    if isinstance(e, ValueError):
        return text if text.endswith((".", "?", "!")) else f"{text}."
    return (
        f"unexpected error ({type(e).__name__}: {text}); this is a bug in mlvis: please report it to the "
        f"mlvis maintainers with the command line (run again with --debug or MLVIS_DEBUG=1 for the traceback)."
    )
