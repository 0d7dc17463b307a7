"""The demo's work without the web page: which checkpoint serves which task, the same files as the
commands, and requests that fail leaving nothing behind."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from avfusion.cli import main
from avfusion.demo.runner import MAX_REGIONS, Options, Runner, parse_regions
from avfusion.errors import ConfigError, DataError, DecodeError
from tests.inference_media import tiny_models, truncate, write_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def runner(models, tmp_path_factory):
    names = ("classify", "localize", "separate", "segment", "encoder")
    return Runner([models[n] for n in names], tmp_path_factory.mktemp("work"))


def upload(runner, path):
    """A file as the web page receives it: inside the app's work directory."""
    folder = runner.workdir / "uploads" / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.copy(path, folder / path.name)


def test_regions_typed_on_the_page():
    assert parse_regions("") is None
    assert parse_regions("0,0,288,288; 288,0,576,288\n(20, 30)") == [(0, 0, 288, 288), (288, 0, 576, 288), (20, 30)]
    for bad, message in (("1,2,3", "x0,y0,x1,y1"), ("a,b", "x0,y0,x1,y1"), ("10,10,5,20", "x1 > x0"),
                         ("; ".join(["1,1"] * (MAX_REGIONS + 1)), f"at most {MAX_REGIONS}")):
        with pytest.raises(ConfigError, match=message):
            parse_regions(bad)


def test_each_task_runs_on_a_checkpoint_of_its_kind(runner, models, tmp_path):
    assert {t: s.pipe.task for t, s in runner.tasks.items()} == {
        "classify": "classify", "localize": "localize", "separate": "separate", "segment": "segment",
        "embed": "encoder"}
    alone = Runner([models["encoder"]], tmp_path)       # an encoder: its fusion attention localizes, it embeds
    assert list(alone.tasks) == ["localize", "embed"]
    with pytest.raises(Exception, match="none of the loaded checkpoints can separate"):
        alone.run(upload(alone, write_clip(tmp_path / "a.mp4", 1.0)), ["separate"])


def test_outputs_are_the_files_the_commands_write(runner, models, tmp_path):
    clip = upload(runner, write_clip(tmp_path / "clip.mp4", 1.6, size=(64, 48)))
    steps = []
    out = runner.run(clip, ["separate", "localize", "classify"], Options(top_k=2, regions=[(20, 30), (0, 0, 32, 48)]),
                     progress=lambda fraction, message: steps.append(fraction))
    assert list(out) == ["classify", "localize", "separate"] and steps == [0, 1 / 3, 2 / 3, 1.0]
    assert out["classify"].path.name == "clip.classify.json" and out["localize"].path.name == "clip_localize"
    assert out["separate"].download.name == "clip_separate.zip" and out["classify"].download == out["classify"].path
    for task, extra in (("classify", ["--top-k", "2"]), ("localize", []),
                        ("separate", ["--point", "20,30", "--box", "0,0,32,48"])):
        target = tmp_path / (f"cli_{task}" + (".json" if task == "classify" else ""))
        assert main([task, str(clip), "-c", str(runner.tasks[task].source), "-o", str(target), *extra]) == 0
        ours = out[task].path
        if task == "classify":
            theirs, mine = json.loads(target.read_text()), json.loads(ours.read_text())
        else:
            assert sorted(p.name for p in target.rglob("*")) == sorted(p.name for p in ours.rglob("*"))
            theirs, mine = (json.loads((d / "result.json").read_text()) for d in (target, ours))
        assert mine == theirs, task


def test_class_names_from_a_labels_file(models, tmp_path):
    labels = tmp_path / "digits.txt"
    labels.write_text("zero\none\ntwo\nthree\n")
    named = Runner([models["classify"]], tmp_path / "work", labels=labels)
    out = named.run(upload(named, write_clip(tmp_path / "a.mp4", 1.0)), ["classify"], Options(top_k=4))
    assert {t["label"] for t in out["classify"].result.top(out["classify"].result.clip_scores)} == {
        "zero", "one", "two", "three"}
    labels.write_text("zero\none\n")
    with pytest.raises(DataError, match="holds 2 names but the classifier has 4 classes"):
        Runner([models["classify"]], tmp_path / "work", labels=labels)


def test_bad_input_is_refused_with_the_commands_messages(runner, tmp_path):
    before = set((runner.workdir / "runs").glob("*"))
    mute = upload(runner, write_clip(tmp_path / "mute.mp4", 1.0, audio=None))
    with pytest.raises(DecodeError, match="has no audio stream, and localize needs the sound"):
        runner.run(mute, ["localize"])
    cut = upload(runner, truncate(write_clip(tmp_path / "cut.mp4", 2.0), 0.5))
    with pytest.raises(DecodeError, match="cut.mp4"):
        runner.run(cut, ["segment"])
    with pytest.raises(ConfigError, match="not an upload of this app"):
        runner.run(write_clip(tmp_path / "outside.mp4", 1.0), ["classify"])
    with pytest.raises(ConfigError, match="no video"):
        runner.run(None, ["classify"])
    with pytest.raises(ConfigError, match="choose at least one"):
        runner.run(mute, [])
    small = Runner([runner.tasks["classify"].source], tmp_path / "small", max_upload_mb=0.001)
    with pytest.raises(ConfigError, match="over the upload limit"):
        small.run(upload(small, write_clip(tmp_path / "big.mp4", 1.0)), ["classify"])
    assert set((runner.workdir / "runs").glob("*")) == before              # nothing left of the failures


def test_a_request_failing_half_way_leaves_nothing(runner, tmp_path, monkeypatch):
    clip = upload(runner, write_clip(tmp_path / "half.mp4", 1.0))
    before = set((runner.workdir / "runs").glob("*"))

    def fail(*args, **kwargs):
        raise DecodeError(clip, "decoding failed (damaged or truncated file?)")

    monkeypatch.setattr(runner.tasks["segment"].pipe, "segment", fail)
    with pytest.raises(DecodeError, match="decoding failed"):
        runner.run(clip, ["classify", "segment"])                       # classify wrote its file first
    assert set((runner.workdir / "runs").glob("*")) == before


def test_old_requests_are_pruned(runner, tmp_path):
    clip = upload(runner, write_clip(tmp_path / "old.mp4", 1.0))
    out = runner.run(clip, ["embed"])
    assert out["embed"].path.is_file()
    runner.prune(max_age_s=-1)
    assert not out["embed"].path.exists()


def test_without_gradio_the_command_says_how_to_install_it(models, monkeypatch, caplog):
    """The core package (the CLI included) does without gradio; `avfusion demo` says what to install."""
    monkeypatch.setitem(sys.modules, "gradio", None)                 # import gradio -> ImportError
    assert main(["demo", "-c", str(models["classify"])]) == 1
    assert "needs Gradio" in caplog.text and "pip install 'avfusion[demo]'" in caplog.text
