"""The official checkpoints the paper attacks, where they come from, and an optional download.

Nothing here runs unless asked: ``mlvis add-model --official NAME`` (or :func:`download`) fetches an
ASL file from the address in Alibaba-MIIL/ASL's ``MODEL_ZOO.md`` into the models folder and writes its
card. Query2Label's files are shared through Tsinghua cloud / Google Drive pages that need a browser, so
for them this module only says where to get them (docs/model-loading.md).
"""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from pathlib import Path

from mlvis.models.loading import CheckpointError

ASL_ZOO = "https://miil-public-eu.oss-eu-central-1.aliyuncs.com/model-zoo/ASL/"
ASL_LICENCE = "MIT licence (Alibaba-MIIL/ASL); check the dataset's own terms"


@dataclasses.dataclass(frozen=True)
class Official:
    """One official checkpoint: the card it gets and where it is published."""

    name: str
    family: str
    file: str
    size: int
    labels: str
    dataset: str
    url: str | None
    licence: str

    def card(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "checkpoint": self.file,
            "labels": self.labels,
            "input_size": [self.size, self.size],
            "resize": "stretch",
            "interpolation": "bilinear",
            "threshold": 0.5,
            "source": self.url or "https://github.com/SlongLiu/query2labels (README, model links)",
            "licence": self.licence,
            "description": f"{self.family} trained on {self.dataset}, {self.size}×{self.size}.",
        }


OFFICIAL = {
    o.name: o
    for o in (
        Official("asl-coco-m-224", "asl-tresnet-m", "MS_COCO_TRresNet_M_224_81.8.pth", 224, "coco", "MS-COCO 2014",
                 ASL_ZOO + "MS_COCO_TRresNet_M_224_81.8.pth", ASL_LICENCE),
        Official("asl-coco-l-448", "asl-tresnet-l", "MS_COCO_TRresNet_L_448_86.6.pth", 448, "coco", "MS-COCO 2014",
                 ASL_ZOO + "MS_COCO_TRresNet_L_448_86.6.pth", ASL_LICENCE),
        Official("asl-coco-xl-640", "asl-tresnet-xl", "MS_COCO_TResNet_xl_640_88.4.pth", 640, "coco", "MS-COCO 2014",
                 ASL_ZOO + "MS_COCO_TResNet_xl_640_88.4.pth", ASL_LICENCE),
        Official("asl-voc-xl-448", "asl-tresnet-xl", "PASCAL_VOC_TResNet_xl_448_96.0.pth", 448, "voc",
                 "PASCAL VOC 2007", ASL_ZOO + "PASCAL_VOC_TResNet_xl_448_96.0.pth", ASL_LICENCE),
        Official("asl-nuswide-l-448", "asl-tresnet-l", "NUS_WIDE_TRresNet_L_448_65.2.pth", 448, "nus-wide",
                 "NUS-WIDE", ASL_ZOO + "NUS_WIDE_TRresNet_L_448_65.2.pth", ASL_LICENCE),
        Official("q2l-coco-r101-448", "q2l-r101-448", "checkpoint.pkl", 448, "coco", "MS-COCO 2014", None,
                 "MIT licence (SlongLiu/query2labels); check the dataset's own terms"),
    )
}  # fmt: skip


def download(name: str, folder: str | Path | None = None, progress=None, timeout: float = 30.0) -> Path:
    """Fetch the official checkpoint ``name`` into the models folder and write its card; the card's path.

    Raises:
        CheckpointError: unknown name, a file that must be fetched by hand, or no network (one sentence).
    """
    from mlvis.models.cards import models_dir, write_card
    from mlvis.store import atomic_write

    if name not in OFFICIAL:
        raise CheckpointError(f"{name!r} is not an official checkpoint; known: {', '.join(OFFICIAL)}.")
    official = OFFICIAL[name]
    folder = Path(folder) if folder is not None else models_dir()
    if official.url is None:
        raise CheckpointError(
            f"{name} is shared through a web page (see the Query2Label README), not a direct address; download "
            f"{official.file} and config_new.json by hand into {folder} and add the card with mlvis add-model."
        )
    url: str = official.url  # not None past the check above (a name the nested fetch can rely on)
    target = folder / official.file
    if not target.is_file():

        def fetch(tmp: str) -> None:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as out:
                    total = int(r.headers.get("Content-Length") or 0)
                    done = 0
                    while chunk := r.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        if progress and total:
                            progress(done / total, f"Downloading {official.file} ...")
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise CheckpointError(
                    f"{official.file} could not be downloaded from {url} ({reason}); without network, copy "
                    f"the file into {folder} by hand."
                ) from None

        atomic_write(target, fetch)
    return write_card(official.card(), folder, overwrite=True)
