"""VGGSounder protocol: class names matched to the package's real classes, the prediction file through the
package's own metrics, the chance row, and `avfusion evaluate classify --protocol vggsounder`."""
from __future__ import annotations

import csv
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from avfusion.cli import main
from avfusion.data.indexes.vggsound import folder_name, vocabulary
from avfusion.errors import ConfigError, DataError
from avfusion.metrics import vggsounder as vgs
from avfusion.tasks.evaluation import EvaluationReport

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = str(ROOT / "configs/avdigits/classify_finetune.yaml")
CLASSES_CSV = Path(__file__).resolve().parent / "reference" / "vggsound_test_classes.csv"
EXTRA = "an extra class vggsounder lacks"  # stands for the 310th name of vggsound.csv

pytest.importorskip("vggsounder", reason="the vggsounder package is not installed: pip install 'avfusion[vggsounder]'")


@pytest.fixture(scope="module")
def gt():
    return vgs.labels()


@pytest.fixture(scope="module")
def package_classes(gt):
    return list(gt.get_all_labels())


def real_classes() -> list[dict[str, str]]:
    with open(CLASSES_CSV, newline="") as f:
        return list(csv.DictReader(f))


def gt_labels(gt, ids, modality: str) -> dict[str, set[str]]:
    """{id: that clip's labels of the modality} as the package's own filter gives them (ids without one left out)."""
    gt.set_modality(modality.upper())
    return {vid: set(gt[vid].labels) for vid in ids if vid in gt}


# ----------------------------------------------------------------------------- class names
@pytest.mark.parametrize("name", ["police car (siren)", "police_car__siren_", "police_car_(siren)",
                                  " Police Car (Siren) "])
def test_class_key_gives_one_key_for_every_spelling(name):
    assert vgs.class_key(name) == "police_car_siren"
    assert vgs.class_key("bee, wasp, etc. buzzing") == vgs.class_key("bee_wasp_etc._buzzing") == "bee_wasp_etc._buzzing"
    assert vgs.class_key("dog barking") != vgs.class_key("dog baying")


def test_the_309_vggsound_classes_in_folder_order_map_onto_the_package_classes(package_classes):
    labels = [r["label"] for r in real_classes()]
    names, _ = vocabulary(labels, None, Path("."))           # the order of a VGGSound classifier's logits
    assert len(package_classes) == len(names) == 309 and list(names) != package_classes
    for model_names in (names, [folder_name(n) for n in names]):
        cmap = vgs.map_classes(model_names, package_classes)
        assert (cmap.matched, cmap.dropped, cmap.missing) == (309, (), ())
        assert [names[c] for c in cmap.columns] == package_classes  # each package class reads its own column


def test_deepavfusion_metadata_names_map_onto_the_same_classes(package_classes):
    rows = real_classes()
    official = sorted(r["deepavfusion_folder"] for r in rows)  # sorted(os.listdir(clips)) of the official code
    label_of = {r["deepavfusion_folder"]: r["label"] for r in rows}
    cmap = vgs.map_classes(official, package_classes)
    assert cmap.matched == 309
    assert [label_of[official[c]] for c in cmap.columns] == package_classes


def test_310_names_drop_the_extra_class_from_the_scores(package_classes):
    names, _ = vocabulary([r["label"] for r in real_classes()] + [EXTRA], None, Path("."))
    cmap = vgs.map_classes(names, package_classes)
    assert len(names) == 310 and (cmap.matched, cmap.dropped, cmap.missing) == (309, (EXTRA,), ())
    logits = np.zeros((2, 310))
    logits[:, names.index(EXTRA)] = 10.0                      # the model's top class is the extra one ...
    logits[0, names.index("dog barking")] = 5.0                # ... then dog barking / cat meowing
    logits[1, names.index("cat meowing")] = 5.0
    top = np.argmax(cmap.apply(logits), axis=1)                # ... which is top-1 among the package's classes
    assert [package_classes[t] for t in top] == ["dog barking", "cat meowing"]


def test_a_package_class_the_model_lacks_is_never_predicted(package_classes):
    names = [n for n in package_classes if n != "dog barking"]
    cmap = vgs.map_classes(names, package_classes)
    assert cmap.missing == ("dog barking",) and cmap.matched == 308
    mapped = cmap.apply(np.full((3, 308), -1e30))
    column = package_classes.index("dog barking")
    assert np.all(mapped[:, column] == vgs.MISSING_SCORE) and np.all(np.isfinite(mapped))
    assert not np.any(np.argmax(mapped, axis=1) == column)


def test_names_that_collide_or_match_nothing_are_refused(package_classes):
    with pytest.raises(DataError, match="same class by name"):
        vgs.map_classes(["police car (siren)", "police_car_(siren)"], package_classes)
    with pytest.raises(DataError, match="none of the model's 10 classes"):
        vgs.map_classes([str(d) for d in range(10)], package_classes)


# ----------------------------------------------------------------------------- prediction file and metrics
def top1_hit_rate(logits: np.ndarray, ids: list[str], truth: dict[str, set[str]], classes: list[str]) -> float:
    """The share of clips (with a label of the modality) whose top class is one of their labels, by hand."""
    hits = [classes[int(np.argmax(logits[i]))] in truth[vid] for i, vid in enumerate(ids) if vid in truth]
    return float(np.mean(hits))


def test_prediction_file_round_trip_through_the_package_metrics(gt, package_classes, tmp_path):
    ids = sorted(vgs.clip_ids(gt))[:40] + ["not_a_clip_000000"]
    rng = np.random.default_rng(5)
    logits = {m: rng.standard_normal((len(ids), 309)) for m in vgs.MODALITIES}
    truths = {m: gt_labels(gt, ids, m) for m in vgs.MODALITIES}
    for m, truth in truths.items():                            # half the clips: their first A / V / AV label on top
        for i, vid in enumerate(ids[:20]):
            if vid in truth:
                logits[m][i, package_classes.index(sorted(truth[vid])[0])] = 100.0
    scores = vgs.evaluate(ids, logits, seed=1, directory=tmp_path, gt=gt)
    stored = pickle.loads((tmp_path / "avfusion.pkl").read_bytes())
    assert list(stored) == ids[:40] and set(stored[ids[0]]["logits"]) == {"a", "v", "av"}
    assert stored[ids[3]]["logits"]["v"] == pytest.approx(logits["v"][3].tolist())
    for m, truth in truths.items():
        assert scores.n[m] == len(truth) and 30 <= len(truth) <= 40
        expected = top1_hit_rate(logits[m], ids, truth, package_classes)
        assert 0.3 < expected < 0.8
        assert scores.results["avfusion"][m]["hit_rate@1"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["version"] == scores.package_version and saved["N"] == scores.n


def test_chance_row_is_seeded_random_scores_through_the_same_path(gt, tmp_path):
    ids = sorted(vgs.clip_ids(gt))[100:160]
    model = vgs.chance_logits(len(ids), 309, seed=7)             # a 'model' that is the chance draw itself
    scores = vgs.evaluate(ids, model, seed=7, gt=gt)
    assert scores.results["chance"] == scores.results["avfusion"]
    assert not np.allclose(vgs.chance_logits(len(ids), 309, seed=8)["a"], model["a"])
    for m in vgs.MODALITIES:
        assert scores.results["chance"][m]["accuracy@1"] < 0.1 and 0.4 < scores.results["chance"][m]["auc_roc"] < 0.6


def test_items_that_are_not_vggsounder_clips_are_refused(gt):
    with pytest.raises(DataError, match="none of the 2 evaluated items is a VGGSounder clip"):
        vgs.evaluate(["0", "1"], vgs.chance_logits(2, 309, 0), gt=gt)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vggsounder", None)
    with pytest.raises(ConfigError, match=r"pip install 'avfusion\[vggsounder\]'"):
        vgs.require_package()


# ----------------------------------------------------------------------------- command
def vggsounder_manifest(root: Path, ids: list[str], labels: list[str], classes: list[str]) -> Path:
    """Clips named by real VGGSounder ids (a still frame and a 2 s tone each), all in the test split."""
    import soundfile as sf
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (vid, label) in enumerate(zip(ids, labels)):
        Image.fromarray(np.full((48, 64, 3), 20 * i, np.uint8)).save(root / f"f{i}.png")
        t = np.arange(32000) / 16000
        sf.write(root / f"a{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 90 * i) * t)).astype(np.float32), 16000)
        rows.append({"media": f"f{i}.png", "audio": f"a{i}.wav", "id": vid, "labels": label, "split": "test"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "classes.txt").write_text("".join(c + "\n" for c in classes))
    return root


def test_evaluate_command_with_protocol_vggsounder(gt, tmp_path):
    import torch

    from avfusion.checkpoints import save_pretrained
    from avfusion.engine import load_config
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for
    from avfusion.tasks.registry import get_recipe

    names, _ = vocabulary([r["label"] for r in real_classes()] + [EXTRA], None, Path("."))
    folders = [folder_name(n) for n in names]                  # the model knows its classes as clip folders
    clips = sorted(vgs.clip_ids(gt))
    seen = gt_labels(gt, clips, "v")
    ids = [v for v in clips if v in seen][:4] + [next(v for v in clips if v not in seen), "not_a_clip_000000"]
    first = {vid: sorted(labels)[0] for vid, labels in gt_labels(gt, ids, "all").items()}
    first["not_a_clip_000000"] = "dog barking"
    root = vggsounder_manifest(tmp_path / "clips", ids, [folder_name(first[v]) for v in ids], folders)
    common = [FINETUNE, "data.name=manifest", f"data.root={root}", f"data.index_options.classes={root / 'classes.txt'}",
              "data.size=null", "data.eval_size=null", "train.batch_size=4", "train.progress=false"]
    cfg = load_config(get_recipe("classify"), common[0], common[1:])
    torch.manual_seed(0)
    model = build_model("classify", encoder_config_for(cfg.model, cfg.data), num_classes=310, class_names=folders)
    save_pretrained(model, tmp_path / "m")
    out = tmp_path / "eval"
    assert main(["evaluate", "classify", *common, "--checkpoint", str(tmp_path / "m"), "--protocol", "vggsounder",
                 "--output", str(out)]) == 0
    report = EvaluationReport.read(out / "evaluation.json")
    assert report.get("joint", "top1").n == 6                  # the dataset's own numbers are still there
    for subject, m in (("image", "v"), ("audio", "a"), ("fusion", "av"), ("chance", "a"), ("chance", "v")):
        row = next(r for r in report.rows
                   if (r.subject, r.metric, r.protocol) == (subject, "accuracy", f"vggsounder/{m}"))
        n = len(gt_labels(gt, ids, m))
        assert row.n == n and 0.0 <= row.value <= 1.0
        expected = {"not in VGGSounder's labels": 1, f"no {m.upper()} label": 5 - n}
        assert row.skipped == {k: c for k, c in expected.items() if c}
    assert report.get("image", "hit_rate").n == 4
    assert report.meta["vggsounder_classes_dropped"] == [folder_name(EXTRA)]
    assert report.meta["vggsounder_classes_matched"] == 309
    stored = pickle.loads((out / "vggsounder" / "avfusion.pkl").read_bytes())
    assert list(stored) == ids[:5] and len(stored[ids[0]]["logits"]["av"]) == 309
    assert (out / "vggsounder" / "chance.pkl").exists() and (out / "vggsounder" / "results.json").exists()


def test_protocol_vggsounder_is_for_classification_only(caplog):
    assert main(["evaluate", "separate", FINETUNE, "--checkpoint", "x", "--protocol", "vggsounder"]) == 1
    assert "--protocol vggsounder applies to the classify task" in caplog.text


@pytest.mark.slow
def test_two_processes_give_the_rows_of_one(gt, tmp_path):
    """Rank 0 scores and broadcasts: every clip once, the same rows as one process, one set of files."""
    import os
    import subprocess

    import torch

    from avfusion.checkpoints import save_pretrained
    from avfusion.engine import load_config
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for
    from avfusion.tasks.registry import get_recipe

    names = [r["label"] for r in real_classes()]
    ids = sorted(vgs.clip_ids(gt))[:7]
    first = {vid: sorted(labels)[0] for vid, labels in gt_labels(gt, ids, "all").items()}
    root = vggsounder_manifest(tmp_path / "clips", ids, [first[v] for v in ids], names)
    common = ["evaluate", "classify", FINETUNE, "data.name=manifest", f"data.root={root}",
              f"data.index_options.classes={root / 'classes.txt'}", "data.size=null", "data.eval_size=null",
              "train.batch_size=2", "train.progress=false"]
    cfg = load_config(get_recipe("classify"), FINETUNE, common[3:])
    torch.manual_seed(1)
    save_pretrained(build_model("classify", encoder_config_for(cfg.model, cfg.data), num_classes=309,
                                class_names=names), tmp_path / "m")
    common += ["--checkpoint", str(tmp_path / "m"), "--protocol", "vggsounder"]
    dist_vars = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in dist_vars}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "avfusion", *common, "--output", str(tmp_path / "two")],
                         env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main([*common, "--output", str(tmp_path / "one")]) == 0
    one, two_report = (EvaluationReport.read(tmp_path / d / "evaluation.json") for d in ("one", "two"))
    vgg = [r for r in two_report.rows if r.protocol.startswith("vggsounder/")]
    assert len(vgg) == 6 * 3 * 2 and two_report.metrics() == pytest.approx(one.metrics(), abs=1e-6)
    assert list(pickle.loads((tmp_path / "two" / "vggsounder" / "avfusion.pkl").read_bytes())) == ids
