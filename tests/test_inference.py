"""avfusion.inference: windows, media decoding, the Pipeline methods, outputs and rendering."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import torch

from avfusion.errors import CheckpointError, ConfigError, DecodeError
from avfusion.inference import Pipeline, plan_windows
from avfusion.inference.outputs import output_dir, output_file
from avfusion.inference.results import Region
from avfusion.inference.separation import overlap_add, residual_logits
from avfusion.inference.views import model_view, region_box
from avfusion.inference.windows import open_media
from tests.inference_media import NTSC, grey, tiny_models, truncate, write_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {
        "h264": write_clip(root / "h264.mp4", 2.0, size=(64, 48), rotation=90),          # 30000/1001, AAC 48k stereo
        "vp9": write_clip(root / "vp9.webm", 1.6, size=(97, 71), codec="libvpx-vp9", audio="libopus",
                          layout="5.1", container="webm"),
        "vfr": write_clip(root / "vfr.mp4", 2.0, vfr=True, audio_offset=0.4, rate=8000, layout="mono"),
        "short": write_clip(root / "short.mp4", 0.2, rate=22050),
        "silent": write_clip(root / "silent.mp4", 1.0, audio=None),
    }


# ----------------------------------------------------------------------------- windows and geometry
def test_plan_windows_cover_the_input_and_end_at_its_end():
    w = plan_windows(7.0, 3.0)
    assert [(x.start, x.end, x.frame) for x in w] == [(0.0, 3.0, 1.5), (3.0, 6.0, 4.5), (4.0, 7.0, 5.5)]
    w = plan_windows(6.0, 3.0, stride=1.5)
    assert [x.start for x in w] == [0.0, 1.5, 3.0]
    short = plan_windows(0.4, 3.0)
    assert [(x.start, x.end, x.frame) for x in short] == [(0.0, 3.0, 0.2)]
    with pytest.raises(ConfigError, match="stride"):
        plan_windows(5.0, 3.0, stride=0)


def test_model_view_crop_and_squash_regions():
    # 100 x 200 frame, 32 x 32 input; crop: shorter side to int(256 * 32 / 224) = 36, width 72, centre 32
    geo, region = model_view(100, 200, (32, 32), "crop")
    assert geo.resize_to == (36, 72) and geo.crop == (2, 20, 32, 32)
    assert region.box == pytest.approx((20 * 200 / 72, 2 * 100 / 36, 52 * 200 / 72, 34 * 100 / 36))
    _, whole = model_view(100, 200, (32, 32), "squash")
    assert whole.box == (0.0, 0.0, 200.0, 100.0)
    # a 2 x 2 grid over the right half of an 8 x 8 frame
    r = Region((4.0, 0.0, 8.0, 8.0), (8, 8))
    assert r.cell_centre(1, 0, (2, 2)) == (5.0, 6.0)
    placed = r.place(np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert np.isnan(placed[:, :4]).all() and placed[0, 4] == 0.0 and placed[7, 7] == 3.0
    half = r.place(np.array([[0.0, 1.0], [2.0, 3.0]]), (4, 4))              # the frame shown at half size
    assert np.isnan(half[:, :2]).all() and half[0, 2] == 0.0 and half[3, 3] == 3.0


def test_region_box_points_and_boxes():
    assert region_box((10, 10), 48, 64) == (0.0, 0.0, 24.0, 24.0)          # square of side 24 moved inside
    assert region_box((32, 24), 48, 64) == (20.0, 12.0, 44.0, 36.0)
    assert region_box((-5, 2, 30, 100), 48, 64) == (0.0, 2.0, 30.0, 48.0)   # clipped to the frame
    with pytest.raises(ConfigError, match="outside"):
        region_box((70, 10), 48, 64)
    with pytest.raises(ConfigError, match="no pixel"):
        region_box((10, 10, 10, 30), 48, 64)


def test_residual_mask_and_overlap_add():
    logits = torch.tensor([[0.0, 2.0], [1.0, -3.0]])[:, :, None]          # (R=2, 2, 1)
    p = torch.sigmoid(logits)
    assert torch.allclose(torch.sigmoid(residual_logits(logits)), (1 - p).prod(0), atol=1e-6)
    pieces = np.stack([np.full(4, 1.0), np.full(4, 2.0), np.full(4, 3.0)])
    out = overlap_add(pieces, [0, 4, 6], 10)                             # exact where one window covers
    assert out[:4].tolist() == [1.0] * 4 and out[4:6].tolist() == [2.0] * 2
    assert 2.0 < out[6] < 3.0 and out[9] == pytest.approx(3.0)
    same = overlap_add(np.ones((3, 8)), [0, 4, 8], 12)                      # crossfading equal signals
    assert np.allclose(same, 1.0)


# ----------------------------------------------------------------------------- media decoding
def test_frames_at_window_centres_and_audio_as_read_audio(media):
    from avfusion.media import read_audio, read_frames

    path = media["h264"]
    windows = plan_windows(2.0, 0.5)
    with open_media(path, 16000) as m:
        assert (m.facts.width, m.facts.height) == (48, 64)                  # rotation applied
        frames = m.frames([w.frame for w in windows])
        audio = m.window_audio(windows)
    expected = read_frames(path, [w.frame for w in windows])
    assert np.array_equal(frames, expected)
    levels = [f[20:40, 20:40].mean() for f in frames]
    shown = [grey(int(w.frame * float(NTSC))) for w in windows]              # the frame shown at each centre
    assert np.abs(np.array(levels) - shown).max() < 3
    for w, a in zip(windows, audio):
        np.testing.assert_allclose(a, read_audio(path, w.start, w.end, 16000), atol=2e-3)


def test_late_audio_is_silent_before_it_starts(media):
    with open_media(media["vfr"], 16000) as m:
        wave = m.waveform
    assert np.abs(wave[:int(0.3 * 16000)]).max() < 1e-3 and np.abs(wave[int(0.6 * 16000):]).max() > 0.2


def test_late_pictures_show_the_first_frame_until_they_start(tmp_path, models):
    late = write_clip(tmp_path / "late.mp4", 1.0, video_offset=0.6)
    result = Pipeline.from_pretrained(models["localize"]).localize(late)
    assert result.input.duration == pytest.approx(1.6, abs=0.05) and result.windows.frame_time[2] == 1.25
    levels = result.frames[:, 20:40, 20:40].mean((1, 2, 3))
    assert abs(levels[0] - grey(0)) < 3 and abs(levels[2] - grey(int((result.windows.frame_time[2] - 0.6) * 29.97))) < 3


# ----------------------------------------------------------------------------- pipeline methods
def test_classify_rotated_h264_and_official_export(media, models):
    pipe = Pipeline.from_pretrained(models["classify"])
    result = pipe.classify(media["h264"], top_k=2, labels=["a", "b", "c", "d"])
    assert len(result.windows) == 4 and pipe.window == 0.5
    assert np.allclose(result.scores.sum(1), 1.0, atol=1e-5) and result.clip_scores.shape == (4,)
    d = result.to_dict()
    assert [t["label"] for t in d["clip"]] == [["a", "b", "c", "d"][i] for i in np.argsort(-result.clip_scores)[:2]]
    assert (d["input"]["width"], d["input"]["height"]) == (48, 64)
    json.dumps(d)
    # without labels, the names the checkpoint carries (saved with the classifier)
    named = pipe.classify(media["h264"], top_k=4).to_dict()["clip"]
    assert sorted(t["label"] for t in named) == ["bird", "car", "cat", "dog"]
    official = Pipeline.from_pretrained(models["official"], image_size=(32, 32), audio_size=(32, 32))
    assert official.task == "classify"
    result = official.classify(media["h264"])
    assert result.scores.shape == (4, 4) and result.to_dict()["clip"][0]["label"].startswith("class ")  # unnamed


def test_classify_arrays_match_the_file(media, models):
    from avfusion.media import read_audio, read_frame

    pipe = Pipeline.from_pretrained(models["classify"])
    frame = read_frame(media["short"], 0.1)
    wave = read_audio(media["short"], 0.0, 0.2, 22050)
    from_arrays = pipe.classify((frame, wave, 22050))
    from_file = pipe.classify(media["short"])
    assert len(from_file.windows) == 1 and from_file.windows.frame_time[0] == pytest.approx(0.1, abs=0.02)
    np.testing.assert_allclose(from_arrays.scores, from_file.scores, atol=1e-3)


def test_localize_contrastive_and_attention(media, models):
    result = Pipeline.from_pretrained(models["localize"]).localize(media["vfr"])
    assert result.readout == "contrastive" and set(result.other) == {"attention"}
    assert result.heatmaps.shape == (len(result.windows), 2, 2)
    assert ((result.peaks >= 0) & (result.peaks <= [64, 48])).all()
    attention = Pipeline.from_pretrained(models["encoder"]).localize(media["vp9"])
    assert attention.readout == "attention"
    assert Pipeline.from_pretrained(models["classify"]).localize(media["vp9"]).readout == "attention"
    np.testing.assert_allclose(attention.heatmaps.sum((1, 2)), 1.0, atol=1e-5)     # attention mass
    k = 0
    row, col = np.unravel_index(attention.heatmaps[k].argmax(), (2, 2))
    assert attention.peaks[k] == pytest.approx([(col + 0.5) * 97 / 2, (row + 0.5) * 71 / 2])
    assert attention.heatmap(k).shape == (71, 97) and attention.frames.shape[1:] == (71, 97, 3)
    half = attention.heatmap(k, (35, 48))                                   # drawn on a smaller picture
    x, y = attention.peaks[k][0] * 48 / 97, attention.peaks[k][1] * 35 / 71
    assert half[int(y), int(x)] >= half.max() - 0.05 * np.ptp(half)        # the peak is where the map is hottest


def test_segment_masks_cover_the_frame_or_the_crop(media, models):
    squash = Pipeline.from_pretrained(models["segment"]).segment(media["vp9"])
    assert squash.probabilities.shape == (len(squash.windows), 32, 32) and squash.mask(0).shape == (71, 97)
    crop = Pipeline.from_pretrained(models["segment"], fit="crop").segment(media["vp9"])
    x0, y0, x1, y1 = crop.region.box                                       # the centre crop, in frame pixels
    assert (x0, y0, x1, y1) == pytest.approx((8 * 97 / 49, 2 * 71 / 36, 40 * 97 / 49, 34 * 71 / 36))
    everything = crop.mask(0, threshold=-1.0)                              # every pixel the model saw
    assert everything.sum() == (round(x1) - round(x0)) * (round(y1) - round(y0))
    assert everything[round(y0):round(y1), round(x0):round(x1)].all()


def test_separate_regions_sum_with_the_residual_to_the_mixture(media, models):
    pipe = Pipeline.from_pretrained(models["separate"], stride=0.3)
    one = pipe.separate(media["h264"])
    n = int(round(one.input.duration * 16000))
    assert one.sources.shape == (1, n) and one.residual.shape == (n,) and one.mixture.shape == (n,)
    assert one.regions.tolist() == [[0.0, 0.0, 48.0, 64.0]]
    # one region: mask p and residual 1 - p add up to the mixture (up to the mel filters' edges)
    total = one.sources[0] + one.residual
    assert np.corrcoef(total, one.mixture)[0, 1] > 0.99
    two = pipe.separate(media["h264"], regions=[(10, 10), (0, 0, 48, 20)])
    assert two.sources.shape == (2, n) and two.regions[1].tolist() == [0.0, 0.0, 48.0, 20.0]
    with pytest.raises(ConfigError, match="outside"):
        pipe.separate(media["h264"], regions=[(100, 10)])


def test_embed_any_checkpoint_and_silence_for_video_only(media, models):
    result = Pipeline.from_pretrained(models["segment"]).embed(media["vp9"])
    assert result.image.shape == result.audio.shape == result.fusion.shape == (len(result.windows), 128)
    silent = Pipeline.from_pretrained(models["encoder"]).embed(media["silent"])
    assert silent.input.audio_substituted and not silent.input.has_audio
    assert np.isfinite(silent.audio).all()


def test_short_file_is_one_padded_window(media, models):
    result = Pipeline.from_pretrained(models["encoder"], window=1.0).embed(media["short"])
    assert len(result.windows) == 1 and result.windows.end[0] == 1.0       # rebuilt for 64 frames


# ----------------------------------------------------------------------------- failures
def test_audio_tasks_refuse_a_video_only_file(media, models):
    with pytest.raises(DecodeError, match="silent.mp4: has no audio stream, and classify needs the sound"):
        Pipeline.from_pretrained(models["classify"]).classify(media["silent"])


def test_an_mp3_with_cover_art_is_audio_with_a_picture_not_damaged_video(models, tmp_path):
    """Cover art is a one-image "video" stream; it used to be decoded as video and fail as a damaged file."""
    from avfusion.media import probe
    from tests.inference_media import write_cover_art_mp3

    song = write_cover_art_mp3(tmp_path / "song.mp3")
    info = probe(song)
    assert (info.has_video, info.has_audio, info.has_picture) == (False, True, True)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    with pytest.raises(DecodeError, match="song.mp3: an audio file with a still picture .cover art. and no video"):
        Pipeline.from_pretrained(models["classify"]).classify(song)


def test_damaged_and_truncated_files_are_named(media, models, tmp_path):
    pipe = Pipeline.from_pretrained(models["encoder"])
    cut = truncate(write_clip(tmp_path / "cut.mp4", 2.0), 0.6)              # index at the end: lost
    with pytest.raises(DecodeError, match="cut.mp4: cannot open"):
        pipe.embed(cut)
    cut = truncate(write_clip(tmp_path / "cut_fast.mp4", 2.0, faststart=True), 0.6)
    with pytest.raises(DecodeError, match="cut_fast.mp4: .*truncated"):
        pipe.embed(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(DecodeError, match="junk.mp4: cannot open"):
        pipe.embed(junk)


def test_checkpoint_must_fit_the_method(media, models):
    with pytest.raises(CheckpointError, match="a checkpoint of kind 'encoder' cannot classify"):
        Pipeline.from_pretrained(models["encoder"]).classify(media["h264"])
    with pytest.raises(CheckpointError, match="cannot separate"):
        Pipeline.from_pretrained(models["classify"]).separate(media["h264"])
    with pytest.raises(ConfigError, match="multiple of 0.25 s"):
        Pipeline.from_pretrained(models["encoder"], window=0.625)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Pipeline.from_pretrained("does/not/exist")


# ----------------------------------------------------------------------------- outputs
def test_output_dir_is_all_or_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with output_dir(target) as tmp:
            (tmp / "half.png").write_bytes(b"x")
            raise RuntimeError("rendering failed")
    assert not target.exists() and os.listdir(tmp_path) == []
    with output_dir(target) as tmp:
        (tmp / "result.json").write_text("{}")
    with output_dir(target) as tmp:                                          # an earlier output: replaced
        (tmp / "result.json").write_text("[]")
    assert (target / "result.json").read_text() == "[]" and sorted(os.listdir(tmp_path)) == ["out"]


def test_outputs_never_overwrite_inputs(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="holds the input"):
        with output_dir(tmp_path, [video]):
            pass
    with pytest.raises(ConfigError, match=".json file"):
        with output_file(video, [video], suffix=".json"):
            pass
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="did not write"):
        with output_dir(tmp_path / "mine", [video]):
            pass
    assert video.read_bytes() == b"precious" and (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ----------------------------------------------------------------------------- rendering
def test_write_video_keeps_timing_orientation_and_audio(media, tmp_path):
    from avfusion.inference.render import write_video
    from avfusion.media import probe, read_audio

    seen = []
    write_video(media["vfr"], tmp_path / "vfr.mp4", lambda f, t: seen.append(t) or f)
    with av.open(str(media["vfr"])) as a, av.open(str(tmp_path / "vfr.mp4")) as b:
        times_in = [round(f.time, 3) for f in a.decode(video=0)]
        times_out = [round(f.time, 3) for f in b.decode(video=0)]
    assert times_out == times_in == [round(t, 3) for t in seen]
    def onset(path):
        wave = read_audio(path, 0.0, 1.0, 16000)
        return np.argmax(np.abs(wave) > 0.1) / 16000
    assert onset(tmp_path / "vfr.mp4") == pytest.approx(onset(media["vfr"]), abs=0.01)
    assert onset(media["vfr"]) == pytest.approx(0.4, abs=0.01)
    write_video(media["h264"], tmp_path / "rot.mp4", lambda f, t: f)
    rot = probe(tmp_path / "rot.mp4")
    assert (rot.width, rot.height, rot.rotation) == (48, 64, 0) and rot.channels == 2
    write_video(media["vp9"], tmp_path / "odd.mp4", lambda f, t: f, audio=(np.zeros(8000, np.float32), 16000))
    odd = probe(tmp_path / "odd.mp4")
    assert (odd.width, odd.height) == (98, 72) and odd.sample_rate == 16000 and odd.channels == 1


def test_overlay_video_draws_what_the_decoder_shows(tmp_path):
    """The overlay video's frames and times are the decoder's (avfusion.media): a rotated, variable-rate
    video that starts after its sound hands `draw` exactly the frame read_frames shows at each time, on
    the same timeline, and the output keeps those times."""
    from avfusion.inference.render import write_video
    from avfusion.media import probe, read_frames

    src = write_clip(tmp_path / "late.mp4", 1.2, size=(64, 48), rotation=90, vfr=True, video_offset=0.3)
    seen = []
    write_video(src, tmp_path / "out.mp4", lambda f, t: seen.append((f.copy(), t)) or f, audio=None)
    times = [t for _, t in seen]
    assert times[0] == pytest.approx(0.3) and times == sorted(set(times))
    steps = np.round(np.diff(times) * float(NTSC), 2)
    assert set(steps) == {1.0, 2.0}                                    # the variable frame rate, kept
    info = probe(src)
    assert seen[0][0].shape == (info.height, info.width, 3) == (64, 48, 3)   # rotated as displayed
    shown = read_frames(src, times)
    assert all(np.array_equal(frame, expected) for (frame, _), expected in zip(seen, shown))
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert [round(f.time, 4) for f in out.decode(video=0)] == [round(t, 4) for t in times]


def test_avdigits_demo_video(tmp_path):
    from avfusion.data.avdigits import render_scene
    from avfusion.inference.demo import write_avdigits_mixture_video, write_avdigits_video
    from avfusion.media import probe, read_audio, read_frame

    scenes = write_avdigits_video(tmp_path / "digits.mp4", indices=(0, 1), image_size=64, scale=2)
    info = probe(tmp_path / "digits.mp4")
    assert info.duration == pytest.approx(2.0, abs=0.1) and (info.width, info.height) == (128, 128)
    assert [s["start"] for s in scenes] == [0.0, 1.0]
    expected = render_scene("test", 1, image_size=64)
    assert scenes[1]["box"] == [2 * int(v) for v in expected["box"]]
    frame = read_frame(tmp_path / "digits.mp4", 1.5)[::2, ::2].astype(float)
    assert np.abs(frame - expected["image"]).mean() < 8                     # scene 1 is on screen at 1.5 s
    duet = write_avdigits_mixture_video(tmp_path / "duet.mp4", index=2, image_size=64, scale=1)
    assert duet["regions"] == [[0, 0, 64, 64], [64, 0, 128, 64]] and duet["sources"].shape == (2, 16000)
    sound = read_audio(tmp_path / "duet.mp4", 0.0, 1.0, 16000)
    assert np.corrcoef(sound, duet["mixture"])[0, 1] > 0.95                   # both voices at once


def test_a_video_gives_what_the_model_gives_on_its_source_arrays(models, tmp_path):
    """Known content: an AV-Digits scene written as an H.264/AAC 48 kHz video, read back through the
    pipeline, reaches the model as the scene's own image and sound do (up to video coding)."""
    from avfusion.audio import log_mel_spectrogram, mask_to_waveform
    from avfusion.data.avdigits import render_scene
    from avfusion.inference.demo import write_avdigits_video
    from avfusion.inference.views import model_input

    write_avdigits_video(tmp_path / "scene.mp4", indices=(4,), image_size=64, scale=2)
    scene = render_scene("test", 4, image_size=64)
    geo, _ = model_view(64, 64, (32, 32), "squash")
    image = model_input(scene["image"][None], geo)
    audio = torch.from_numpy(scene["audio"][:8000])                          # the first 0.5 s window
    mel = log_mel_spectrogram(audio, 16000, 32, 0.5)[None, None]
    sep = Pipeline.from_pretrained(models["separate"])
    with torch.no_grad():
        logits = sep.model(image, mel).mask_logits[:, 0]
    direct = mask_to_waveform(audio[None], logits, 16000, 32)[0].numpy()
    piped = sep.separate(tmp_path / "scene.mp4").sources[0, :8000]
    assert np.corrcoef(direct, piped)[0, 1] > 0.995                          # the mixture itself: ~0.97
    loc = Pipeline.from_pretrained(models["localize"])
    with torch.no_grad():
        heat = loc.model(image, mel).heatmap[0].numpy()
    assert np.abs(loc.localize(tmp_path / "scene.mp4").heatmaps[0] - heat).max() < 0.05


@pytest.mark.slow
def test_avdigits_localiser_peaks_on_the_speaking_digit(tmp_path):
    """Needs a localiser trained on AV-Digits (AVFUSION_AVDIGITS_CHECKPOINT: a save_pretrained directory)."""
    checkpoint = os.environ.get("AVFUSION_AVDIGITS_CHECKPOINT")
    if not checkpoint:
        pytest.skip("set AVFUSION_AVDIGITS_CHECKPOINT to a localiser trained on AV-Digits "
                    "(e.g. the benchmark's localize run, DIR/final)")
    from avfusion.inference.demo import write_avdigits_video

    pipe = Pipeline.from_pretrained(checkpoint)
    size = pipe.image_size[0]
    scenes = write_avdigits_video(tmp_path / "digits.mp4", indices=range(60), image_size=size, scale=3)
    result = pipe.localize(tmp_path / "digits.mp4")
    assert pipe.window == 1.0 and len(result.windows) == len(scenes)
    peak_hits, hottest, chance = [], [], []
    for k, scene in enumerate(scenes):
        heat = result.heatmap(k)
        rows, cols = result.heatmaps.shape[1:]
        x, y = result.peaks[k]
        cell_w, cell_h = result.input.width / cols, result.input.height / rows
        x0, y0, x1, y1 = scene["box"]                     # the peak cell overlaps the speaking digit
        peak_hits.append(x - cell_w / 2 < x1 and x + cell_w / 2 > x0 and y - cell_h / 2 < y1 and y + cell_h / 2 > y0)
        if len(scene["boxes"]) > 1:                       # the speaking digit is the hottest digit
            means = [np.nanmean(heat[b[1]:b[3], b[0]:b[2]]) for b in scene["boxes"]]
            hottest.append(int(np.argmax(means)) == scene["sounding"])
            chance.append(1.0 / len(scene["boxes"]))
    report = (f"peak cell on the speaking digit in {np.mean(peak_hits):.0%} of {len(scenes)} scenes; speaking digit "
              f"the hottest in {np.mean(hottest):.0%} of {len(hottest)} multi-digit scenes (a random visible digit: "
              f"{np.mean(chance):.0%})")
    assert np.mean(peak_hits) >= 0.7 and np.mean(hottest) >= max(0.6, np.mean(chance) + 0.2), report
