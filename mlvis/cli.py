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
    """A one-line text progress bar on stderr (no dependency, safe when not a terminal)."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream, self._last = label, stream or sys.stderr, -1

    def __call__(self, done: int, total: int, *info) -> None:
        pct = int(100 * done / max(total, 1))
        if pct == self._last and done != total:
            return
        self._last = pct
        bar = "#" * (pct // 4)
        extra = f" loss {info[0]:.3f}" if info else ""
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar:<25}] {pct:3d}% ({done}/{total}){extra}{end}")
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
