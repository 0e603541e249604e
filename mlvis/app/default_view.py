"""The Attack Lab's default view, chosen by a stated rule from a shipped table (no attack at page load).

``TABLE[model]["flips"][method][k]`` holds, for the budget ``TABLE[model]["eps"][k]``, the flips of each
of the first ``SCENES`` held-out test scenes of seed 0 (``mlvis.data.demo_batch(50)``), one base-36 digit
per scene, measured with the shipped demo models by :func:`measure` (``mlvis.attack`` with the model's
flip profile and upward correlations, the Lab's defaults otherwise). The rule (:func:`pick_scene`): the
scene where CLASS's lead over BCE is largest at ``RULE_EPS``, the first such scene on a tie. Rerun
:func:`measure` after retraining a demo model and paste its output here; ``tests/test_app_lecture.py``
checks the chosen scene against a fresh attack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mlvis.errors import InvalidInput

SCENES = 50
RULE_EPS = 0.02
LEAD, BASE = "class", "bce"

TABLE: dict[str, dict] = {
    "demo-asl": {
        "eps": (0.01, 0.02, 0.03, 0.05),
        "flips": {
            "bce": (
                "10011001000000100000020001101011001101000000100000",
                "10110112201311211211023111110114012001032000211201",
                "30231022111211120300024112112114032112131100221311",
                "55242241151223031311124223322514242100222212133211",
            ),
            "slam": (
                "10111001011000100301020011102010100011010010201000",
                "10232113122311211522043012233125112123043020323310",
                "40363324232442222610045034224126232225243120322431",
                "56683364472414474721236246833737553624666323433331",
            ),
            "class": (
                "11021011101110111311021111112012110011111011211011",
                "32242233232431323312143322333134221313233142424313",
                "51463337515541415535343443533254241315445220535342",
                "A48886799737656348765876946466554558358A5463666654",
            ),
        },
    },
    "demo-q2l": {
        "eps": (0.01, 0.02, 0.03, 0.05),
        "flips": {
            "bce": (
                "00020001000201001000010011000201010100000120001000",
                "10140212000410012011010011010232110111102220002010",
                "11140232101621123021021111121234121323122232102142",
                "63241255333642448352253132242356241424435333326142",
            ),
            "slam": (
                "10020001000111001000020011000211010201111100001000",
                "20141022000621312011120121011233111222212220002121",
                "42342332203631324223323131132334121533233331103143",
                "64442554324843545475364145233458242654535344326365",
            ),
            "class": (
                "10020011000110000000020011000201100010111100001010",
                "11233122020331122312221021101222120022232100012012",
                "22333333232331343332322232213424131332523341423344",
                "73544674345663534333263454414764444556354443335554",
            ),
        },
    },
}


def decode(row: str) -> list[int]:
    """One table row (base-36 digits) as flip counts."""
    return [int(ch, 36) for ch in row]


def pick_scene(flips: Mapping[str, Sequence[int]], lead: str = LEAD, base: str = BASE) -> int:
    """The index where ``flips[lead] - flips[base]`` is largest (the first one on a tie)."""
    a, b = list(flips[lead]), list(flips[base])
    if not a or len(a) != len(b):
        raise InvalidInput(f"Give as many {lead} as {base} flip counts (at least one).")
    gaps = [x - y for x, y in zip(a, b)]
    return gaps.index(max(gaps))


@dataclasses.dataclass(frozen=True)
class DefaultView:
    """The rule's result for one model: the scene index, the budget, that scene's flips per method and the
    mean flips per method over the table's scenes (both at ``eps``)."""

    model: str
    scene: int
    eps: float
    flips: dict[str, int]
    means: dict[str, float]

    def sentence(self) -> str:
        each = ", ".join(f"{m.upper()} {n}" for m, n in self.flips.items())
        means = " / ".join(f"{v:.2f}" for v in self.means.values())
        names = " / ".join(m.upper() for m in self.means)
        return (
            f"Default view, by a stated rule: scene {self.scene}, the scene among the first {SCENES} test scenes "
            f"(seed 0) where {LEAD.upper()}'s lead over {BASE.upper()} is largest at ε = {self.eps:g} "
            f"({each} flips). Mean flips over those {SCENES} scenes at this budget ({names}): {means}."
        )


def default_view(model: str) -> DefaultView | None:
    """The rule's scene and numbers for ``model``, or ``None`` when the table has no row for it."""
    entry = TABLE.get(model)
    if entry is None or RULE_EPS not in entry["eps"]:
        return None
    k = entry["eps"].index(RULE_EPS)
    flips = {m: decode(rows[k]) for m, rows in entry["flips"].items()}
    scene = pick_scene(flips)
    return DefaultView(
        model=model,
        scene=scene,
        eps=RULE_EPS,
        flips={m: f[scene] for m, f in flips.items()},
        means={m: sum(f) / len(f) for m, f in flips.items()},
    )


def measure(model_name: str, eps: Sequence[float] = (0.01, 0.02, 0.03, 0.05)) -> dict:  # pragma: no cover - minutes
    """Recompute ``TABLE[model_name]`` (about a minute per demo model on two CPU cores)."""
    import mlvis

    m = mlvis.create_model(model_name, device="cpu")
    prof, up = mlvis.profile(m), mlvis.correlations(m, direction="up")
    x, _ = mlvis.data.demo_batch(SCENES)
    kw: dict[str, dict[str, Any]] = {
        "bce": {},
        "slam": {"profile": prof},
        "class": {"profile": prof, "correlations": up},
    }
    out = {}
    for method, extra in kw.items():
        r = mlvis.attack(m, x, method, list(eps), **extra)
        out[method] = tuple("".join("0123456789abcdefghijklmnopqrstuvwxyz"[int(v)] for v in row) for row in r.flips)
    return {"eps": tuple(eps), "flips": out}
