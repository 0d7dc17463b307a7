"""`avfusion demo` served on a free local port and driven through its HTTP API, as a browser would."""
from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avfusion.media import probe
from tests.inference_media import tiny_models, truncate, write_clip

pytest.importorskip("gradio", reason="the demo needs the optional extra: pip install 'avfusion[demo]'")
gradio_client = pytest.importorskip("gradio_client", reason="pip install gradio_client")

TASKS = ["classify", "localize", "separate", "segment", "embed"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, runner, client) of a running demo with the tiny checkpoints of every kind."""
    import os

    from avfusion.demo.page import serve
    from avfusion.demo.runner import Runner

    models = tiny_models(tmp_path_factory.mktemp("models"))
    runner = Runner([models[n] for n in ("classify", "localize", "separate", "segment", "encoder")],
                    tmp_path_factory.mktemp("work"))
    saved = os.environ.get("GRADIO_TEMP_DIR")
    app = serve(runner, port=free_port(), block=False, quiet=True)
    client = gradio_client.Client(app.local_url, verbose=False,
                                  download_files=str(tmp_path_factory.mktemp("downloads")))
    yield app, runner, client
    app.close()
    if saved is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = saved


def outputs(result) -> dict:
    """The /run outputs by name, component updates reduced to their values."""
    from avfusion.demo.page import OUTPUTS

    assert len(result) == len(OUTPUTS)
    return {name: (r.get("value") if isinstance(r, dict) and r.get("__type__") == "update" else r)
            for name, r in zip(OUTPUTS, result)}


def run(client, video: Path, tasks=TASKS, top_k: int = 3, readout: str = "default", regions: str = ""):
    return outputs(client.predict(gradio_client.handle_file(str(video)), tasks, top_k, readout, regions,
                                  api_name="/run"))


def test_serves_on_localhost_with_the_examples(served):
    app, runner, _ = served
    assert app.server_name == "127.0.0.1"
    examples = sorted(p.name for p in (runner.workdir / "examples").iterdir())
    assert examples == ["avdigits_duet.mp4", "avdigits_scenes.mp4"]
    assert all(probe(runner.workdir / "examples" / name).has_audio for name in examples)


def test_every_output_of_a_clip(served, tmp_path):
    _, runner, client = served
    clip = write_clip(tmp_path / "street.mp4", 1.6, size=(64, 48))
    out = run(client, clip, regions="0,0,32,48; 40,20")
    assert "**classify**" in out["status"] and "`street_localize/`" in out["status"]
    # classify: the whole clip's top labels with scores, a row per window
    assert {c["label"] for c in out["clip_labels"]["confidences"]} <= {"dog", "cat", "bird", "car"}
    assert len(out["clip_labels"]["confidences"]) == 3
    assert [row[0] for row in out["window_labels"]["data"]] == ["0.00-0.50 s", "0.50-1.00 s", "1.00-1.50 s",
                                                                 "1.10-1.60 s"]
    # localize: the overlay video (with the clip's sound) and the heatmap strip
    video = probe(out["localize_video"])
    assert (video.width, video.height) == (64, 48) and video.has_audio
    assert Path(out["localize_sheet"]).stat().st_size > 1000
    # separate: the mixture, one source per region, the residual; spectrograms and the regions drawn
    mixture, rate = sf.read(out["mixture"])
    assert rate == 16000 and len(mixture) == pytest.approx(1.6 * 16000, abs=400)
    for k in range(2):
        assert len(sf.read(out[f"source_{k}"])[0]) == len(mixture)
    assert out["source_2"] is None and out["source_3"] is None
    assert len(sf.read(out["residual"])[0]) == len(mixture)
    assert Path(out["spectrograms"]).stat().st_size > 1000 and Path(out["regions_picture"]).stat().st_size > 1000
    # segment: the overlay video and the mask strip; embed: a summary
    assert probe(out["segment_video"]).has_audio and Path(out["segment_sheet"]).stat().st_size > 1000
    assert "dimension 32" in out["embed_summary"]
    # downloads: the commands' files (directories zipped), byte for byte the ones the page shows
    downloads = {Path(p).name: Path(p) for p in out["downloads"]}
    assert set(downloads) == {"street.classify.json", "street_localize.zip", "street_separate.zip",
                              "street_segment.zip", "embeddings.npz"}
    with zipfile.ZipFile(downloads["street_separate.zip"]) as z:
        assert z.read("street_separate/mixture.wav") == Path(out["mixture"]).read_bytes()
        assert json.loads(z.read("street_separate/result.json"))["command"] == "separate"
    with zipfile.ZipFile(downloads["street_localize.zip"]) as z:
        assert z.read("street_localize/overlay.mp4") == Path(out["localize_video"]).read_bytes()
    classify = json.loads(downloads["street.classify.json"].read_text())
    assert classify["command"] == "classify" and classify["checkpoint"] == runner.tasks["classify"].source
    with np.load(downloads["embeddings.npz"]) as f:
        assert f["image"].shape == (4, 32)


def test_an_example_clip_and_one_task(served):
    _, runner, client = served
    out = run(client, runner.workdir / "examples" / "avdigits_duet.mp4", tasks=["separate"],
              regions="0,0,288,288; 288,0,576,288")
    assert not out["clip_labels"] and out["localize_video"] is None
    assert out["source_1"] is not None and out["source_2"] is None
    (archive,) = out["downloads"]
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == [f"avdigits_duet_separate/{name}" for name in (
            "mixture.wav", "regions.png", "residual.wav", "result.json", "source_0.mp4", "source_0.wav",
            "source_1.mp4", "source_1.wav", "spectrograms.png")]


def test_bad_input_gets_the_message_and_the_app_keeps_serving(served, tmp_path):
    _, runner, client = served
    before = set((runner.workdir / "runs").glob("*"))
    cut = truncate(write_clip(tmp_path / "cut.mp4", 2.0), 0.5)
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        run(client, cut, tasks=["classify", "localize"])
    message = str(caught.value)
    assert message.startswith("cut.mp4: ") and "damaged" in message and "Traceback" not in message
    mute = write_clip(tmp_path / "mute.mp4", 1.0, audio=None)
    with pytest.raises(gradio_client.exceptions.AppError, match="mute.mp4: has no audio stream, and classify needs"):
        run(client, mute, tasks=["classify"])
    with pytest.raises(gradio_client.exceptions.AppError, match="region '1,2,3'"):
        run(client, mute, tasks=["separate"], regions="1,2,3")
    assert set((runner.workdir / "runs").glob("*")) == before             # nothing written by the failures
    out = run(client, write_clip(tmp_path / "fine.mp4", 1.0), tasks=["classify"])
    assert len(out["window_labels"]["data"]) == 2
