"""Separation task: AV-Digits mixture samples, the evaluation pipeline with an oracle, CLI runs."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from avfusion.cli import main
from avfusion.engine import load_config
from avfusion.errors import ConfigError
from avfusion.tasks.evaluation import EvaluationReport
from avfusion.tasks.separate import SeparateRecipe, SeparateTask, flatten_sources
from avfusion.tasks.separate_data import AVDigitsMixtureSamples

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs/avdigits/separate.yaml")
FAST = ["data.size=16", "data.eval_size=6", "train.batch_size=4", "train.max_steps=2", "train.progress=false",
        "train.tensorboard=false", "train.eval_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recipe():
    return load_config(SeparateRecipe, RECIPE, ["data.eval_size=6"])


def test_mixture_sample_is_the_sum_of_its_sources(recipe):
    samples = AVDigitsMixtureSamples("test", recipe.data, size=2, waveforms=True)
    s = samples[1]
    size = recipe.data.image_size
    assert s["image"].shape == (2, 3, size, size) and s["image"].dtype == torch.float32
    assert s["audio"].shape == (1, 64, 64) and s["source_audio"].shape == (2, 1, 64, 64)
    assert torch.allclose(s["mixture_waveform"], s["source_waveform"].sum(0))
    assert s["index"] == 1
    assert torch.equal(samples[1]["audio"], s["audio"])  # deterministic (and cached)


def test_flatten_sources_pairs_each_frame_with_the_mixture():
    batch = {"image": torch.arange(2 * 2 * 3).float().reshape(2, 2, 3, 1, 1),
             "audio": torch.tensor([10.0, 20.0]).reshape(2, 1, 1, 1),
             "source_audio": torch.arange(4).float().reshape(2, 2, 1, 1, 1)}
    image, mix, target, others = flatten_sources(batch, zero_image=False)
    assert image.shape == (4, 3, 1, 1) and torch.equal(image[1], batch["image"][0, 1])
    assert mix.flatten().tolist() == [10.0, 10.0, 20.0, 20.0]
    assert target.flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert others.flatten().tolist() == [1.0, 0.0, 3.0, 2.0]  # with two sources, the other one
    zero = flatten_sources(batch, zero_image=True)[0]
    assert not zero.any()
    swapped = flatten_sources(batch, zero_image=False, shift=1)[0]  # each source gets the other's frame
    assert torch.equal(swapped[0], batch["image"][0, 1]) and torch.equal(swapped[1], batch["image"][0, 0])
    three = {"image": torch.zeros(1, 3, 3, 1, 1), "audio": torch.zeros(1, 1, 1, 1),
             "source_audio": torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)}
    others3 = flatten_sources(three, zero_image=False)[3].flatten()  # log10 of the others' summed power
    assert torch.allclose(others3, torch.log10(torch.tensor([110.0, 101.0, 11.0])))


class OracleSeparator(nn.Module):
    """The ideal binary mask (source louder than the other) of the source whose frame it is given;
    a frame carries the key 2 * mixture + source."""

    def __init__(self, targets: dict[int, torch.Tensor]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.targets = targets

    def forward(self, image, audio_mix):
        keys = image[:, 0, 0, 0].round().long().tolist()  # (B*K,)
        masks = torch.stack([(self.targets[k] > self.targets[k ^ 1]).float() for k in keys])
        return SimpleNamespace(mask_logits=(masks * 2 - 1) * 20.0)


def test_oracle_masks_separate_and_the_mixture_baseline_has_no_improvement(recipe):
    task = SeparateTask(recipe)
    dataset = task.eval_dataset()
    targets = {i * 2 + k: dataset[i]["source_audio"][k] for i in range(len(dataset)) for k in range(2)}

    class Keyed(torch.utils.data.Dataset):
        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            s = dict(dataset[i])
            s["image"] = torch.tensor([i * 2.0, i * 2.0 + 1]).reshape(2, 1, 1, 1).expand(2, 3, 4, 4).clone()
            return s

    report = task.evaluate(OracleSeparator(targets), DataLoader(Keyed(), batch_size=4, collate_fn=task.collate))
    model, mixture = report.get("model", "SDRi"), report.get("mixture", "SDRi")
    assert model.protocol == "bss_eval_sources_v3" and model.n == 6 and model.skipped == {}
    assert model.value > 5.0  # an ideal binary mask separates two voices well
    assert mixture.value == pytest.approx(0.0, abs=1e-9)
    assert report.get("mixture", "SDR").value == pytest.approx(report.get("model", "SDR_mix").value)


#: The official head and target on the AV-Digits recipe (whose own head is the temporal one).
OFFICIAL = ["separate.head=official", "separate.mask_reference=mixture", "model.freeze_encoder=false",
            "separate.cache_features=false", "separate.baselines=[mixture]"]


def test_train_and_evaluate_through_the_commands(tmp_path):
    import avfusion

    out = tmp_path / "sep"
    assert main(["train", "separate", RECIPE, *FAST, *OFFICIAL, "--output", str(out)]) == 0
    trained = EvaluationReport.read(out / "evaluation.json")
    assert {r.subject for r in trained.rows} == {"model", "mixture"}
    for row in trained.rows:
        assert row.protocol == "bss_eval_sources_v3" and row.n + sum(row.skipped.values()) == 6
    avfusion.export_official(avfusion.from_pretrained(out / "final"), tmp_path / "sep.pth")
    assert main(["evaluate", "separate", RECIPE, "data.eval_size=6", "train.batch_size=4", *OFFICIAL,
                 "--checkpoint", str(tmp_path / "sep.pth"), "--output", str(tmp_path / "eval")]) == 0
    official = EvaluationReport.read(tmp_path / "eval" / "evaluation.json")
    assert official.metrics() == pytest.approx(trained.metrics(), abs=1e-4)


def test_audio_only_baseline_feeds_zeros_and_labels_its_rows(recipe, tmp_path):
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, image, audio_mix):
            seen.append(image.abs().sum().item())
            return SimpleNamespace(mask_logits=torch.zeros(image.shape[0], 1, *audio_mix.shape[-2:]))

    cfg = load_config(SeparateRecipe, RECIPE, ["data.eval_size=2", "separate.condition=zeros",
                                                "separate.baselines=[]"])
    task = SeparateTask(cfg)
    report = task.evaluate(Spy(), DataLoader(task.eval_dataset(), batch_size=2, collate_fn=task.collate))
    assert seen == [0.0]
    assert {r.subject for r in report.rows} == {"audio-only"}


def _clip_manifest(root: Path, count: int = 6) -> Path:
    """Still frames with 2 s tones of distinct pitch, two classes, 4 train / 2 test items."""
    import json

    import numpy as np
    import soundfile as sf
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        Image.fromarray(np.full((48, 64, 3), 30 * i, np.uint8)).save(root / f"f{i}.png")
        t = np.arange(32000) / 16000
        sf.write(root / f"a{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 110 * i) * t)).astype(np.float32), 16000)
        rows.append({"media": f"f{i}.png", "audio": f"a{i}.wav", "labels": "ab"[i % 2],
                     "split": "train" if i < 4 else "test"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_clip_mixtures_from_an_index_train_and_evaluate(tmp_path):
    root = _clip_manifest(tmp_path / "clips")
    out = tmp_path / "run"
    assert main(["train", "separate", RECIPE, "data.name=manifest", f"data.root={root}", "data.size=null",
                 "data.eval_size=null", "separate.eval_mixtures=2", "train.batch_size=2", "train.max_steps=1",
                 "separate.cache_features=false",  # clips are augmented anew every epoch: nothing to cache
                 "train.progress=false", "train.tensorboard=false", "train.eval_every=1", "--output", str(out)]) == 0
    report = EvaluationReport.read(out / "evaluation.json")
    assert report.get("model", "SDR").n == 2 and report.get("mixture", "SDRi").value == pytest.approx(0.0, abs=1e-9)


def test_temporal_head_from_cached_features_trains_and_reports_the_swapped_image(tmp_path):
    temporal = ["separate.head=temporal", "separate.mask_reference=sources", "model.freeze_encoder=true",
                "separate.cache_features=true", "data.fresh=false", "separate.baselines=[mixture,swapped]"]
    task = SeparateTask(load_config(SeparateRecipe, RECIPE, [*FAST, *temporal]))
    torch.manual_seed(0)
    model = task.build_model().train()
    data = task.train_dataset()
    batch = task.collate([data[i] for i in (3, 0, 7)])
    cached, _ = task.loss(model, batch)
    image, mix, target, others = flatten_sources(batch, zero_image=False)
    assert torch.allclose(cached, model(image, mix, target, others).loss, atol=1e-5)
    assert len(task._feature_caches[model]) == 16  # one chunk: every training mixture
    out = tmp_path / "sep"
    assert main(["train", "separate", RECIPE, *FAST, *temporal, "--output", str(out)]) == 0
    report = EvaluationReport.read(out / "evaluation.json")
    assert {r.subject for r in report.rows} == {"model", "mixture", "swapped"}
    assert report.get("swapped", "SDRi").n == 6 and report.meta["head"] == "temporal"
    for bad, problem in ((["data.fresh=true"], "data.fresh=false"), (["model.freeze_encoder=false"], "freeze_encoder")):
        with pytest.raises(ConfigError, match=problem):
            SeparateTask(load_config(SeparateRecipe, RECIPE, [*FAST, *temporal, *bad])).train_dataset()
