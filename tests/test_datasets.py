"""Dataset folders in their official layouts, built here as tiny fake trees: reading, alignment, sampling, safety."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlvis.analysis.observations import absent_confidence_correlation
from mlvis.data import (
    LABELS,
    DatasetError,
    demo_batch,
    open_dataset,
    parse_data_spec,
    preprocessing,
    write_scene_dataset,
)
from mlvis.data.datasets import VOC_LABELS, Dataset, resolve_folder
from mlvis.data.images import load_image
from mlvis.models import ModelSpec


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "cache"))


def _png(path: Path, seed: int, size=(12, 8), fmt="PNG") -> bytes:
    """A small random RGB image written to ``path`` (``size`` = width, height); returns its bytes."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ COCO


def _coco_tree(root: Path, top_level_json=False, images_subdir=False) -> Path:
    cats = [{"id": 7, "name": "dining table"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]  # not in id order
    images = [
        {"id": 42, "file_name": "COCO_val2014_000000000042.jpg"},
        {"id": 5, "file_name": "COCO_val2014_000000000005.jpg"},
    ]
    images.append({"id": 9, "file_name": "COCO_val2014_000000000009.jpg"})  # no annotation
    anns = [
        {"id": 1, "image_id": 42, "category_id": 1},
        {"id": 2, "image_id": 42, "category_id": 7},
        {"id": 3, "image_id": 42, "category_id": 1},  # a second person: still one label
        {"id": 4, "image_id": 5, "category_id": 3},
    ]
    doc = {"images": images, "annotations": anns, "categories": cats}
    ann = root / ("instances_val2014.json" if top_level_json else "annotations/instances_val2014.json")
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(doc))
    img_dir = root / ("images/val2014" if images_subdir else "val2014")
    for k, im in enumerate(images):
        _png(img_dir / im["file_name"], k, fmt="JPEG")
    return root


@pytest.mark.parametrize("top_level_json,images_subdir", [(False, False), (True, True)])
def test_coco_reads_labels_in_category_id_order_and_skips_unannotated_images(tmp_path, top_level_json, images_subdir):
    root = _coco_tree(tmp_path / "coco", top_level_json, images_subdir)
    ds = open_dataset("coco", root)
    assert ds.split == "val2014" and ds.labels == ("person", "car", "dining table")
    assert ds.ids == ("5", "42")  # sorted by image id; image 9 has no annotation (ASL's loader drops it)
    assert ds.truth.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert ds.files[0].endswith("val2014/COCO_val2014_000000000005.jpg")
    assert open_dataset("coco", root, keep_unannotated=True).ids == ("5", "9", "42")
    x = ds.load(size=(8, 8), fit="stretch")
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_coco_index_is_cached_and_rebuilt_when_the_annotations_change(tmp_path):
    root = _coco_tree(tmp_path / "coco")
    first = open_dataset("coco", root)
    (cached,) = (tmp_path / "cache" / "datasets").glob("coco-*.npz")
    again = open_dataset("coco", root)
    assert again.ids == first.ids and np.array_equal(again.truth, first.truth) and again.labels == first.labels
    ann = root / "annotations" / "instances_val2014.json"
    doc = json.loads(ann.read_text())
    doc["annotations"].append({"id": 9, "image_id": 9, "category_id": 7})
    ann.write_text(json.dumps(doc, indent=1))  # a new size and mtime: a new index
    assert open_dataset("coco", root).ids == ("5", "9", "42")
    (newer,) = set((tmp_path / "cache" / "datasets").glob("coco-*.npz")) - {cached}
    newer.write_bytes(b"garbage")  # a damaged cache is rebuilt, never trusted
    assert open_dataset("coco", root).ids == ("5", "9", "42") and newer.read_bytes() != b"garbage"


def test_coco_problems_are_one_sentence(tmp_path):
    root = _coco_tree(tmp_path / "coco")
    with pytest.raises(DatasetError, match="instances_train2014.json"):
        open_dataset("coco", root, split="train2014")
    (root / "val2014" / "COCO_val2014_000000000005.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of the 2 images .* missing .*000000000005"):
        open_dataset("coco", root)
    doc = json.loads((root / "annotations/instances_val2014.json").read_text())
    doc["images"][0]["file_name"] = "../../etc/passwd"
    (root / "annotations/instances_val2014.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        open_dataset("coco", root)
    (root / "annotations/instances_val2014.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a COCO annotation file"):
        open_dataset("coco", root)


# ------------------------------------------------------------------------------------------- VOC


def _voc_xml(objects) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{int(d)}</difficult></object>" for n, d in objects)
    return f"<annotation><folder>VOC2007</folder>{body}</annotation>"


def _voc_tree(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2007"
    ann = {
        "000001": [("dog", False), ("person", False)],
        "000002": [("train", False), ("chair", True)],  # the chair is difficult only
        "000004": [("tvmonitor", False), ("tvmonitor", False)],
    }
    for k, (i, objs) in enumerate(ann.items()):
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{i}.xml").write_text(_voc_xml(objs))
        _png(base / "JPEGImages" / f"{i}.jpg", k, fmt="JPEG")
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n000004\n")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000004\n")
    return root


def test_voc_reads_xml_objects_with_difficult_only_classes_absent(tmp_path):
    root = _voc_tree(tmp_path / "voc")
    ds = open_dataset("voc", root)
    assert ds.split == "test" and ds.labels == VOC_LABELS and ds.ids == ("000001", "000002", "000004")
    pos = {ds.ids[i]: {ds.labels[j] for j in np.flatnonzero(ds.truth[i])} for i in range(len(ds))}
    assert pos == {"000001": {"dog", "person"}, "000002": {"train"}, "000004": {"tvmonitor"}}
    assert open_dataset("voc", root / "VOCdevkit" / "VOC2007", split="trainval").ids == ("000004",)
    assert ds.load([2], size=(6, 6)).shape == (1, 3, 6, 6)


def test_voc_problems_are_one_sentence(tmp_path):
    root = _voc_tree(tmp_path / "voc")
    with pytest.raises(DatasetError, match=r"ImageSets/Main/val.txt"):
        open_dataset("voc", root, split="val")
    xml = root / "VOCdevkit/VOC2007/Annotations/000002.xml"
    xml.write_text(_voc_xml([("unicorn", False)]))
    with pytest.raises(DatasetError, match="'unicorn'.*20 classes"):
        open_dataset("voc", root)
    xml.write_text("<annotation><object>")
    with pytest.raises(DatasetError, match="not a VOC annotation"):
        open_dataset("voc", root)
    with pytest.raises(DatasetError, match="no JPEGImages"):
        open_dataset("voc", tmp_path)


# -------------------------------------------------------------------------------------- NUS-WIDE


def test_nuswide_reads_asl_csv_with_sorted_label_order(tmp_path):
    root = tmp_path / "nus"
    rows = [
        ("images/0_111_a_m.jpg", "['sky', 'clouds']", "val"),
        ("images/0_222_b_m.jpg", "['person']", "train"),
        ("0_333_c_m.jpg", "[]", "val"),  # ASL's CSV may name an image without images/
        ("images/0_444_d_m.jpg", "['water', 'sky']", "val"),
    ]
    for k, (f, _, _) in enumerate(rows):
        _png(root / "images" / Path(f).name, k, fmt="JPEG")
    text = "filename,label,split_name\n" + "".join(f'{f},"{lab}",{s}\n' for f, lab, s in rows)
    (root / "nus_wid_data.csv").write_text(text)
    ds = open_dataset("nuswide", root)
    assert ds.split == "val" and ds.labels == ("clouds", "person", "sky", "water")  # over every split, sorted
    assert ds.ids == ("0_333_c_m.jpg", "images/0_111_a_m.jpg", "images/0_444_d_m.jpg")
    assert ds.files[0] == "images/0_333_c_m.jpg"
    assert ds.truth.tolist() == [[0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]]
    assert open_dataset("nuswide", root, split="train").truth.tolist() == [[0, 1, 0, 0]]
    assert ds.load(size=(5, 5)).shape == (3, 3, 5, 5)
    # NUS-WIDE's label list is the names that occur: a model label never seen is absent, not a mismatch
    aligned = ds.align(["water", "sky", "clouds", "person", "rainbow"])
    assert aligned.truth[:, 4].sum() == 0 and aligned.truth[:, :4].tolist() == [
        [0, 0, 0, 0],
        [0, 1, 1, 0],
        [1, 1, 0, 0],
    ]
    with pytest.raises(DatasetError, match=r"the dataset's 'person' is not in the model"):
        ds.align(["water", "sky", "clouds"])
    with pytest.raises(DatasetError, match="no images in split 'test'; its splits are train, val"):
        open_dataset("nuswide", root, split="test")


# ---------------------------------------------------------------------------------------- folder


def test_folder_without_labels_is_unlabelled_and_takes_the_model_labels(tmp_path):
    root = tmp_path / "photos"
    _png(root / "b.png", 0)
    _png(root / "a.jpg", 1, fmt="JPEG")
    _png(root / "sub" / "c.webp", 2, fmt="WEBP")
    (root / "notes.txt").write_text("not an image")
    _png(root / ".hidden.png", 3)
    ds = open_dataset("folder", root)
    assert ds.files == ("a.jpg", "b.png", "sub/c.webp") and ds.truth is None and ds.labels == ()
    aligned = ds.align(["x", "y"])
    assert aligned.labels == ("x", "y") and aligned.truth is None
    with pytest.raises(DatasetError, match="no labels"):
        ds.statistics()
    with pytest.raises(DatasetError, match="no splits"):
        open_dataset("folder", root, split="val")


def test_folder_labels_csv_long_and_wide_forms(tmp_path):
    root = tmp_path / "photos"
    for k, n in enumerate(("one.png", "two.png", "three.png")):
        _png(root / n, k)
    (root / "labels.csv").write_text("image,labels\ntwo.png,cat;dog\none.png,dog\nthree.png,\n")
    long = open_dataset("folder", root)
    assert long.ids == ("one.png", "three.png", "two.png") and long.labels == ("cat", "dog")
    assert long.truth.tolist() == [[0, 1], [0, 0], [1, 1]]
    (root / "wide.csv").write_text("file,Dog,Cat\ntwo.png,1,1\none.png,1,0\nthree.png,0,0\n")
    wide = open_dataset("folder", root, labels_csv="wide.csv")
    assert wide.labels == ("Dog", "Cat") and wide.truth.tolist() == [[1, 0], [0, 0], [1, 1]]
    (root / "bad.csv").write_text("file,Dog\ntwo.png,maybe\n")
    with pytest.raises(DatasetError, match=r"line 2: the cell 'maybe' for 'Dog' is not 0 or 1"):
        open_dataset("folder", root, labels_csv="bad.csv")
    (root / "missing.csv").write_text("file,Dog\nfour.png,1\n")
    with pytest.raises(DatasetError, match="missing .*four.png"):
        open_dataset("folder", root, labels_csv="missing.csv")
    (root / "escape.csv").write_text("file,Dog\n../outside.png,1\n")
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        open_dataset("folder", root, labels_csv="escape.csv")


# -------------------------------------------------------------------------------- paths and links


def test_paths_stay_inside_the_data_root_and_the_dataset_folder(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    inside = data_root / "photos"
    _png(inside / "a.png", 0)
    outside = tmp_path / "elsewhere"
    _png(outside / "secret.png", 1)
    assert open_dataset("folder", "photos", root=data_root).root == inside.resolve()
    with pytest.raises(DatasetError, match="must not contain '..'"):
        open_dataset("folder", "../elsewhere", root=data_root)
    with pytest.raises(DatasetError, match="outside the data root"):
        open_dataset("folder", outside, root=data_root)
    (data_root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match="outside the data root"):
        open_dataset("folder", "link", root=data_root)
    monkeypatch.setenv("MLVIS_DATA_ROOT", str(data_root))
    with pytest.raises(DatasetError, match="outside the data root"):
        resolve_folder(outside)
    monkeypatch.delenv("MLVIS_DATA_ROOT")
    # a link inside the dataset folder that leads out of it: never listed, never read
    (inside / "leak.png").symlink_to(outside / "secret.png")
    assert open_dataset("folder", inside).files == ("a.png",)
    (inside / "labels.csv").write_text("image,x\na.png,1\nleak.png,0\n")
    with pytest.raises(DatasetError, match="link that leads outside"):
        open_dataset("folder", inside)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("folder", tmp_path / "nope")


def test_kind_path_spec():
    assert parse_data_spec("coco:/data/coco2014") == ("coco", "/data/coco2014")
    assert parse_data_spec("folder:rel/dir:with:colons") == ("folder", "rel/dir:with:colons")
    for bad in ("coco", "imagenet:/x", "voc:"):
        with pytest.raises(DatasetError, match="KIND:PATH"):
            parse_data_spec(bad)


# ------------------------------------------------------------------------- alignment and sampling


def _toy(labels, truth, ids=None) -> Dataset:
    truth = np.asarray(truth, np.uint8)
    ids = tuple(ids or (f"im{i:03d}" for i in range(len(truth))))
    return Dataset("folder", Path("/nowhere"), "all", tuple(labels), ids, ids, truth)


def test_align_matches_by_normalised_name_and_reorders_columns():
    ds = _toy(["diningtable", "Person", "tv_monitor"], [[1, 0, 0], [0, 1, 1]])
    out = ds.align(["person", "TV monitor", "dining table"])
    assert out.labels == ("person", "TV monitor", "dining table")
    assert out.truth.tolist() == [[0, 0, 1], [1, 1, 0]]
    with pytest.raises(DatasetError) as err:
        ds.align(["person", "tv", "dining table", "motorcycle"])
    msg = str(err.value)
    assert "the model's 'tv', 'motorcycle' are not in the dataset" in msg
    assert "the dataset's 'tv_monitor' is not in the model" in msg and msg.count(".") == 1
    assert ds.align(["person", "tv", "dining table"], aliases={"tv monitor": "TV"}).truth[:, 1].tolist() == [0, 1]


def test_sample_is_a_keyed_hash_ranking_independent_of_listing_order():
    n = 50
    ds = _toy(["a"], np.zeros((n, 1)))
    shuffled = ds.subset(np.random.default_rng(3).permutation(n))
    s1, s2 = ds.sample(10, seed=7), shuffled.sample(10, seed=7)
    assert s1.ids == s2.ids and len(set(s1.ids)) == 10
    assert ds.sample(20, seed=7).ids[:10] == s1.ids  # a larger draw extends a smaller one
    assert ds.sample(10, seed=8).ids != s1.ids
    # the rule, independently: BLAKE2b of the id keyed by the seed, smallest first
    expect = sorted(
        ds.ids, key=lambda i: hashlib.blake2b(i.encode(), digest_size=16, key=(7).to_bytes(8, "little")).digest()
    )
    assert s1.ids == tuple(expect[:10])
    assert ds.sample(None, seed=1).ids != ds.ids and sorted(ds.sample(None, seed=1).ids) == list(ds.ids)
    assert dict(s1.selection[-1]) == {"sample": 10, "seed": 7}
    for bad in (0, -3, 2.5):
        with pytest.raises(DatasetError, match="positive integer"):
            ds.sample(bad)


def test_statistics_count_frequencies_and_cooccurrence_and_feed_observation_1():
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    st = _toy(["a", "b", "c"], truth).statistics()
    assert st.n == 4 and st.counts.tolist() == [3, 3, 2]
    assert st.cooccurrence.tolist() == (truth.T @ truth).tolist() and st.frequencies.tolist() == [0.75, 0.75, 0.5]
    probs = np.array([[0.9, 0.8, 0.1], [0.8, 0.3, 0.05], [0.2, 0.9, 0.7], [0.9, 0.9, 0.9]])
    obs = absent_confidence_correlation(probs, truth, st.frequencies)
    assert obs.mean_absent_confidence.tolist() == pytest.approx([0.2, 0.3, 0.075])


def test_fingerprint_and_description_follow_the_images_not_the_location():
    ds = _toy(["a", "b"], [[1, 0], [0, 1], [1, 1]])
    moved = dataclasses.replace(ds, root=Path("/elsewhere"))
    assert moved.fingerprint == ds.fingerprint
    assert ds.subset([0, 1]).fingerprint != ds.fingerprint
    flipped = dataclasses.replace(ds, truth=np.array([[1, 0], [0, 1], [0, 1]], np.uint8))
    assert flipped.fingerprint != ds.fingerprint
    d = json.loads(json.dumps(ds.sample(2, seed=1).describe()))
    assert d["images"] == 2 and d["selection"] == [{"sample": 2, "seed": 1}] and d["labels"] == ["a", "b"]


# -------------------------------------------------------------------------- preprocessing rules


def test_the_model_cards_resize_rule_reaches_load_image(tmp_path):
    root = tmp_path / "photos"
    data = _png(root / "wide.png", 5, size=(30, 10))
    ds = open_dataset("folder", root)
    base = ModelSpec(name="toy", labels=("x",), input_size=(8, 8))
    assert preprocessing(base) == {"size": (8, 8), "fit": "crop", "interpolation": "lanczos"}
    stretch = dataclasses.make_dataclass("Card", [("resize", str, "stretch")], bases=(ModelSpec,), frozen=True)
    card = stretch(name="toy", labels=("x",), input_size=(8, 8))
    assert preprocessing(card)["fit"] == "stretch"
    got = ds.load_for(card)
    assert np.array_equal(got[0], load_image(data, (8, 8), fit="stretch").array)
    assert not np.array_equal(got[0], ds.load_for(base)[0])
    with pytest.raises(ValueError, match="'fisheye'"):  # a ModelSpec refuses the rule itself
        stretch(name="toy", labels=("x",), input_size=(8, 8), resize="fisheye")
    bad = types.SimpleNamespace(input_size=(8, 8), resize="fisheye")  # a duck-typed spec does not
    with pytest.raises(DatasetError, match="'fisheye'"):
        preprocessing(bad)


# ------------------------------------------------------------------------ demo scenes as datasets


@pytest.mark.parametrize("layout,kind", [("folder", "folder"), ("coco", "coco"), ("nuswide", "nuswide")])
def test_scene_dataset_reads_back_bit_for_bit(tmp_path, layout, kind):
    n, split, seed = 9, "test", 2
    path = write_scene_dataset(tmp_path / layout, layout, n=n, split=split, seed=seed)
    spec = ModelSpec(name="demo", labels=LABELS, input_size=(64, 64))
    ds = open_dataset(kind, path).align(spec.labels)
    x, y = demo_batch(n, split, seed)
    assert len(ds) == n
    assert np.array_equal(ds.load_for(spec), x.numpy())  # same float32 bits, in the same order
    assert np.array_equal(ds.truth, y.numpy().astype(np.uint8))
    assert all(p.suffix == ".png" for p in path.rglob("*") if p.parent.name in ("images", "val2014"))
    with pytest.raises(DatasetError, match="not an empty folder"):
        write_scene_dataset(path, layout, n=2)


def test_scene_dataset_coco_layout_has_boxes_for_present_labels(tmp_path):
    path = write_scene_dataset(tmp_path / "c", "coco", n=4, split="val", seed=0)
    doc = json.loads((path / "annotations" / "instances_val2014.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(LABELS)
    _, y = demo_batch(4, "val", 0)
    for i, im in enumerate(doc["images"]):
        cats = {a["category_id"] - 1 for a in doc["annotations"] if a["image_id"] == im["id"]}
        assert cats == set(np.flatnonzero(y[i].numpy()).tolist())
        assert all(0 <= a["bbox"][0] < 64 and a["bbox"][2] > 0 for a in doc["annotations"] if a["image_id"] == im["id"])
    assert os.path.isfile(path / "mlvis-scenes.json")
