"""Classification task: loss pieces on hand-computed cases, and train / evaluate on AV-Digits."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from avfusion.checkpoints import save_pretrained
from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.errors import CheckpointError, ConfigError
from avfusion.tasks.classify import (ClassifyRecipe, ClassifyTask, head_loss, mixup, soft_targets)
from avfusion.tasks.classify_data import class_frequency, frequency_bias
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.weights import layer_id_fn

ROOT = Path(__file__).resolve().parents[1]
LINPROBE = str(ROOT / "configs/avdigits/classify_linprobe.yaml")
FINETUNE = str(ROOT / "configs/avdigits/classify_finetune.yaml")
FAST = ["data.size=24", "data.eval_size=10", "train.batch_size=8", "train.max_steps=2", "train.progress=false",
        "train.tensorboard=false", "train.eval_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- pieces
def test_soft_targets_smoothing_single_and_multi_label():
    t = soft_targets(torch.tensor([2, 0]), 4, 0.2, multi_label=False)
    assert torch.allclose(t[0], torch.tensor([0.05, 0.05, 0.85, 0.05]))
    assert torch.allclose(t.sum(1), torch.ones(2))
    m = soft_targets(torch.tensor([[1, 0, 1, 0]]), 4, 0.0, multi_label=True)
    assert torch.equal(m, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))


def test_mixup_mixes_with_the_reversed_batch():
    x = torch.tensor([[1.0], [3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image, audio, targets = mixup(x, x * 10, y, torch.tensor([0.75, 1.0]))
    assert torch.allclose(image, torch.tensor([[0.75 * 1 + 0.25 * 3], [3.0]]))
    assert torch.allclose(audio, image * 10)
    assert torch.allclose(targets, torch.tensor([[0.75, 0.25], [0.0, 1.0]]))


def test_head_loss_matches_hand_computed_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    target = torch.tensor([[0.0, 1.0]])
    assert head_loss(logits, target, False, None).item() == pytest.approx(-math.log(0.75))
    # reweighting: unseen classes leave the loss, single-label loss scaled by mean(1/f) over seen classes
    wide = torch.tensor([[0.0, math.log(3.0), 5.0]])
    freq = torch.tensor([0.5, 0.25, 0.0])
    assert head_loss(wide, torch.tensor([[0.0, 1.0, 0.0]]), False, freq).item() == pytest.approx(
        -math.log(0.75) * (2 + 4) / 2)
    # multi-label: BCE per element divided by the class frequency, then averaged
    bce = torch.tensor([math.log(2.0), math.log(1 + math.exp(-math.log(3.0)))])
    got = head_loss(logits, torch.tensor([[0.0, 1.0]]), True, torch.tensor([0.5, 0.25]))
    assert got.item() == pytest.approx(((bce / torch.tensor([0.5, 0.25])).mean()).item())


def test_class_frequency_and_official_bias():
    samples = [{"label": y} for y in (0, 0, 1, 2)]
    freq = class_frequency(samples, 4, multi_label=False)
    assert torch.allclose(freq, torch.tensor([0.5, 0.25, 0.25, 0.0]))
    bias = frequency_bias(freq)
    assert bias[0].item() == pytest.approx(0.0, abs=1e-6)  # f = 0.5 -> logit 0
    assert bias[3].item() == pytest.approx(math.log(1e-3 / (1 + 1e-3)))


def test_layer_ids_follow_the_official_assignment():
    layer = layer_id_fn(4)
    assert layer("encoder.fusion_tokens") == 0
    assert layer("encoder.image.patch_embed.proj.weight") == 0
    assert layer("encoder.audio.blocks.0.attn.qkv.weight") == 1
    assert layer("encoder.fusion_blocks.3.mlp.fc1.weight") == 4
    assert layer("encoder.fusion_norm.weight") == 5
    assert layer("image_head.weight") == 5


def test_mixup_lambda_is_a_function_of_seed_epoch_and_index():
    cfg = load_config(ClassifyRecipe, FINETUNE, ["classify.mixup=1.0", "classify.mixup_prob=0.5"])
    task = ClassifyTask(cfg)
    batch = {"epoch": torch.tensor([0, 0, 0]), "index": torch.tensor([5, 6, 7])}
    lam = task._mixup_lambda(batch)
    again = task._mixup_lambda({"epoch": torch.tensor([0]), "index": torch.tensor([6])})
    assert lam[1] == again[0]
    assert ((lam > 0) & (lam <= 1)).all()
    other_epoch = task._mixup_lambda({"epoch": torch.tensor([1, 1, 1]), "index": torch.tensor([5, 6, 7])})
    assert not torch.equal(lam, other_epoch)


def test_modality_dropout_silences_samples_and_trains_only_the_image_head_on_them():
    from types import SimpleNamespace

    from avfusion.errors import ConfigError

    cfg = load_config(ClassifyRecipe, FINETUNE, ["classify.modality_dropout=0.5", "classify.label_smoothing=0",
                                                 "model.num_classes=3"])
    task = ClassifyTask(cfg)
    torch.manual_seed(0)
    logits = {h: torch.randn(8, 3) for h in ("image", "audio", "fusion")}
    seen = {}

    def model(image, audio):
        seen["audio"] = audio
        return SimpleNamespace(**{f"logits_{h}": v for h, v in logits.items()})

    audio = torch.rand(8, 1, 4, 5) + 1.0
    batch = {"image": torch.zeros(8, 3, 2, 2), "audio": audio, "label": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
             "epoch": torch.tensor([0] * 8), "index": torch.arange(8)}
    total, parts = task.loss(model, batch)
    heard = seen["audio"].flatten(1).ne(0).all(1)
    silent = seen["audio"].flatten(1).eq(0).all(1)
    assert bool((heard | silent).all()) and 0 < int(silent.sum()) < 8        # whole samples, some of each
    assert torch.equal(seen["audio"][heard], audio[heard])

    def ce(lg, y):
        return float(-torch.log_softmax(lg, -1)[torch.arange(len(y)), y].mean())

    y = batch["label"]
    assert float(parts["loss_image"]) == pytest.approx(ce(logits["image"], y), rel=1e-6)       # every sample
    for h in ("audio", "fusion"):                                                             # heard ones only
        assert float(parts[f"loss_{h}"]) == pytest.approx(ce(logits[h][heard], y[heard]), rel=1e-6)
    assert float(total) == pytest.approx(sum(float(v) for v in parts.values()) / 3, rel=1e-6)
    task.loss(model, batch)                                                   # the same draw again
    assert torch.equal(seen["audio"].flatten(1).eq(0).all(1), silent)
    with pytest.raises(ConfigError, match="loss=heads"):
        load_config(ClassifyRecipe, FINETUNE, ["classify.modality_dropout=0.5", "classify.loss=joint"])


# ----------------------------------------------------------------------------- AV-Digits runs
@pytest.fixture(scope="module")
def linprobe_run(tmp_path_factory):
    """A few linear-probe steps from a 'pretrained' encoder directory; returns (run dir, encoder dir)."""
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for

    base = tmp_path_factory.mktemp("classify")
    cfg = load_config(ClassifyRecipe, LINPROBE)
    torch.manual_seed(1)
    encoder = build_model("encoder", encoder_config_for(cfg.model, cfg.data))
    save_pretrained(encoder, base / "encoder")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "classify", LINPROBE, *FAST, f"model.pretrained={base / 'encoder'}",
                     "--output", str(base / "run")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return base / "run", base / "encoder"


def test_linear_probe_trains_heads_only_and_reports_every_head(linprobe_run):
    run, encoder_dir = linprobe_run
    report = json.loads((run / "evaluation.json").read_text())
    rows = {(r["subject"], r["metric"]): r for r in report["rows"]}
    assert set(rows) == {(h, "top1") for h in ("image", "audio", "fusion", "joint")}
    for row in rows.values():
        assert row["protocol"] == "top1" and row["n"] == 10 and row["skipped"] == {}
        assert 0.0 <= row["value"] <= 1.0
    final = load_file(run / "final" / "model.safetensors")
    start = load_file(encoder_dir / "model.safetensors")
    assert all(torch.equal(final[f"encoder.{k}"], v) for k, v in start.items())  # frozen, loaded strictly
    assert "image_norm.running_mean" in final  # the probe's BatchNorm


def test_evaluate_our_directory_and_an_official_file_give_the_training_numbers(linprobe_run, tmp_path):
    import avfusion

    run, _ = linprobe_run
    trained = EvaluationReport.read(run / "evaluation.json").metrics()
    assert main(["evaluate", "classify", LINPROBE, "data.eval_size=10", "train.batch_size=8",
                 "--checkpoint", str(run / "final"), "--output", str(tmp_path / "ours")]) == 0
    ours = EvaluationReport.read(tmp_path / "ours" / "evaluation.json")
    assert ours.meta["checkpoint"] == str(run / "final")
    assert ours.metrics() == pytest.approx(trained)
    avfusion.export_official(avfusion.from_pretrained(run / "final"), tmp_path / "official.pth")
    assert main(["evaluate", "classify", LINPROBE, "data.eval_size=10", "train.batch_size=8",
                 "--checkpoint", str(tmp_path / "official.pth"), "--output", str(tmp_path / "off")]) == 0
    official = EvaluationReport.read(tmp_path / "off" / "evaluation.json")
    assert official.metrics() == pytest.approx(trained, abs=1e-6)


def test_finetune_from_scratch_with_all_official_options(tmp_path):
    out = tmp_path / "ft"
    assert main(["train", "classify", FINETUNE, *FAST, "classify.mixup=1.0", "classify.bias_init=class_frequency",
                 "classify.reweight=true", "classify.loss=joint", "--output", str(out)]) == 0
    report = EvaluationReport.read(out / "evaluation.json")
    assert report.get("joint", "top1").n == 10
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["loss"]) for m in metrics if "loss" in m)


def test_pretrained_encoder_of_another_architecture_is_refused(linprobe_run, tmp_path):
    _, encoder_dir = linprobe_run
    cfg = load_config(ClassifyRecipe, LINPROBE, ["model.num_heads=2", f"model.pretrained={encoder_dir}"])
    with pytest.raises(CheckpointError, match="num_heads"):
        ClassifyTask(cfg).build_model()
    assert main(["train", "classify", LINPROBE, *FAST, "model.num_heads=2", f"model.pretrained={encoder_dir}",
                 "--output", str(tmp_path / "bad")]) == 1


def test_clip_index_dense_evaluation_and_class_frequencies(tmp_path):
    from tests.test_task_separate import _clip_manifest

    root = _clip_manifest(tmp_path / "clips")
    out = tmp_path / "run"
    assert main(["train", "classify", FINETUNE, "data.name=manifest", f"data.root={root}", "data.size=null",
                 "data.eval_size=null", "classify.dense_windows=3", "classify.bias_init=class_frequency",
                 "classify.reweight=true", "train.batch_size=2", "train.max_steps=1", "train.progress=false",
                 "train.tensorboard=false", "train.eval_every=1", "--output", str(out)]) == 0
    row = EvaluationReport.read(out / "evaluation.json").get("joint", "top1")
    assert (row.protocol, row.n) == ("top1/dense3", 2)


def test_encoder_init_from_an_official_pretraining_checkpoint(tmp_path):
    import avfusion
    from avfusion.models import build_model
    from avfusion.tasks.common import encoder_config_for

    cfg = load_config(ClassifyRecipe, LINPROBE)
    torch.manual_seed(3)
    mae = build_model("pretrain", encoder_config_for(cfg.model, cfg.data), decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=4)
    avfusion.export_official(mae, tmp_path / "checkpoint_latest.pth", epoch=1)
    cfg = load_config(ClassifyRecipe, LINPROBE, [f"model.pretrained={tmp_path / 'checkpoint_latest.pth'}"])
    model = ClassifyTask(cfg).build_model()
    assert all(torch.equal(v, mae.encoder.state_dict()[k]) for k, v in model.encoder.state_dict().items())


def test_prepared_cache_prepares_once_per_index_only_when_enabled():
    from avfusion.tasks.common import PreparedCache

    calls = []

    def prepare(i):
        calls.append(i)
        return {"i": i}

    cache = PreparedCache(True)
    assert [cache.get(i, prepare)["i"] for i in (3, 3, 5, 3)] == [3, 3, 5, 3] and calls == [3, 5]
    calls.clear()
    off = PreparedCache(False)
    assert [off.get(i, prepare)["i"] for i in (3, 3)] == [3, 3] and calls == [3, 3]


def test_evaluate_command_is_strict_and_names_the_broken_file(tmp_path, caplog):
    """`avfusion evaluate` goes through the engine's one evaluation path: with data.on_error=skip (a training
    policy) a test clip that cannot be decoded stops it, naming the file (it used to reach the task's
    collate as a skipped item and end in a message about make_loader)."""
    import logging

    from tests.test_task_separate import _clip_manifest

    root = _clip_manifest(tmp_path / "clips")
    common = [FINETUNE, "data.name=manifest", f"data.root={root}", "data.size=null", "data.eval_size=null",
              "train.batch_size=2", "train.progress=false", "train.tensorboard=false"]
    out = tmp_path / "run"
    assert main(["train", "classify", *common, "train.max_steps=1", "train.eval_every=0", "--output", str(out)]) == 0
    assert main(["evaluate", "classify", *common, "--checkpoint", str(out / "final")]) == 0
    (root / "a5.wav").write_bytes(b"not audio" * 100)  # a test clip
    with caplog.at_level(logging.ERROR):
        assert main(["evaluate", "classify", *common, "data.on_error=skip", "--checkpoint", str(out / "final")]) == 1
    assert "a5.wav" in caplog.text and "make_loader" not in caplog.text


def test_a_trained_classifier_carries_its_class_names(tmp_path):
    """The checkpoint says what each class is (inference used to print `class 9` for a spoken nine)."""
    import avfusion
    from avfusion.data.avdigits import CLASS_NAMES

    out = tmp_path / "run"
    assert main(["train", "classify", LINPROBE, "data.size=16", "data.eval_size=8", "train.batch_size=8",
                 "train.max_steps=1", "train.eval_every=0", "train.progress=false", "train.tensorboard=false",
                 "--output", str(out)]) == 0
    model = avfusion.from_pretrained(out / "final")
    assert model.class_names == list(CLASS_NAMES) and model.class_names[9] == "nine"
    with pytest.raises(ConfigError, match="3 class names for 10 classes"):
        type(model)(model.encoder, 10, class_names=["a", "b", "c"])
