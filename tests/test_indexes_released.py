"""The indexes on the files users hold: released annotation files (tests/released/, byte-for-byte copies)
and the layouts the datasets are distributed in today (VGGSound's mirror, MUSIC's official layout)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avfusion.data.indexes import open_index
from avfusion.errors import ConfigError, DataError

RELEASED = Path(__file__).parent / "released"


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def released_root(tmp_path: Path, *names: str) -> Path:
    for name in names:
        write(tmp_path / name, (RELEASED / name).read_bytes())
    return tmp_path


# ---------------------------------------------------------------- VGG-SS
@pytest.mark.parametrize("media", ["frames", "clips"])
def test_vggss_released_file_opens_with_its_quirks_counted(tmp_path, media):
    index = open_index("vggss", released_root(tmp_path, "vggss.json"), media=media)
    items = {it.id: it for it in index["test"]}
    assert len(index["test"]) == len(items) == 5158 and len(index.classes) == 221
    # 12 boxes hold a corner near -2.9e16: clipped, they have no area; 6 more have none as released
    assert index.notes == {"boxes with a corner outside [0, 1], clipped": 12,
                           "boxes with no area after clipping, dropped (they draw nothing)": 18,
                           "entries left with no box (kept; cIoU 0, as EZ-VSL scores them)": 2}
    assert items["Db6Hjt0x28k_000056"].boxes == ((0.05, 0.35625, 0.753125, 0.98125),)
    assert items["MKC9LvRivTM_000030"].boxes == () and items["M1P1xla8rg0_000000"].boxes == ()
    assert len(items["UyCw7pCgYg8_000055"].boxes) == 2
    assert items["zpWuikVorYg_000032"].boxes == ((0.403125, 0.253125, 0.6, 0.75),)
    report = index.report(progress=False)
    assert report.notes == index.notes and "note: entries left with no box" in report.summary()
    assert report.to_dict()["notes"] == index.notes


def test_vggss_entry_without_box_scores_zero_in_the_evaluation(tmp_path):
    from avfusion.metrics.localization import ciou
    from avfusion.tasks.localize_data import gt_map

    index = open_index("vggss", released_root(tmp_path, "vggss.json"))
    by_id = {it.id: it for it in index["test"]}
    empty = gt_map(by_id["MKC9LvRivTM_000030"], "union", 224)
    assert empty.sum() == 0 and ciou(np.random.default_rng(0).random((14, 14)), empty) == 0.0
    kept = gt_map(by_id["Db6Hjt0x28k_000056"], "union", 224)
    # EZ-VSL draws int(0.05 * 224) = 11 .. int(0.753125 * 224) = 168 wide, 79 .. 219 high
    assert kept.sum() == (168 - 11) * (219 - 79)


# ---------------------------------------------------------------- id lists
def test_vggss_heard_and_unheard_lists_restrict_the_test_split(tmp_path):
    root = released_root(tmp_path, "vggss.json", "vggss_heard_test.csv", "vggss_unheard_test.csv")
    heard = open_index("vggss", root, lists={"test": "vggss_heard_test.csv"})
    unheard = open_index("vggss", root, lists={"test": root / "vggss_unheard_test.csv"})
    listed = (root / "vggss_heard_test.csv").read_text().split()
    assert [it.id for it in heard["test"]] == listed  # file order, every listed id found
    assert len(heard["test"]) == 2564 and len(unheard["test"]) == 2575
    assert not {it.id for it in heard["test"]} & {it.id for it in unheard["test"]}
    heard_classes = {it.labels[0] for it in heard["test"]}
    unheard_classes = {it.labels[0] for it in unheard["test"]}
    assert len(heard_classes) == len(unheard_classes) == 110 and not heard_classes & unheard_classes


def test_list_counts_ids_the_index_lacks_and_repeats(tmp_path, caplog):
    root = released_root(tmp_path, "vggss.json")
    # CRLF, a label after a comma, tab-separated, a repeat, an unknown id, blank lines
    (root / "mine.csv").write_bytes(b"zpWuikVorYg_000032,elk bugling\r\n\r\nnot_an_id_000000\r\n"
                                    b"gEvCUcZ6w88_000030\tx\r\nzpWuikVorYg_000032\r\n")
    index = open_index("vggss", root, lists={"test": "mine.csv"})
    assert [it.id for it in index["test"]] == ["zpWuikVorYg_000032", "gEvCUcZ6w88_000030"]
    assert index.notes["test: ids listed in mine.csv that the index lacks (left out)"] == 1
    assert index.notes["test: ids repeated in mine.csv (kept once)"] == 1
    assert "line 3 (not_an_id_000000)" in caplog.text
    with pytest.raises(ConfigError, match="cannot restrict split 'train'.*has \\['test'\\]"):
        open_index("vggss", root, lists={"train": "mine.csv"})
    with pytest.raises(DataError, match="other.csv was not found"):
        open_index("vggss", root, lists={"test": "other.csv"})
    (root / "wrong.csv").write_text("zpWuikVorYg\n")
    with pytest.raises(DataError, match="none of its 1 ids .* e.g. 'zpWuikVorYg_000032'"):
        open_index("vggss", root, lists={"test": "wrong.csv"})


def test_recipe_lists_reach_the_index(tmp_path):
    from avfusion.engine.config import load_config
    from avfusion.tasks.common import DataConfig, open_data_index

    root = released_root(tmp_path, "vggss.json", "vggss_heard_test.csv")
    recipe = tmp_path / "data.yaml"
    recipe.write_text(f"name: vggss\nroot: {root}\n")
    data = load_config(DataConfig, recipe, ["lists.test=vggss_heard_test.csv"])
    assert len(open_data_index(data)["test"]) == 2564


# ---------------------------------------------------------------- AVSBench
AVS_HEADER = "vid,uid,s_min,s_sec,a_obj,split,label\n"


def test_avsbench_released_label2idx_is_one_based(tmp_path, caplog):
    root = released_root(tmp_path, "label2idx.json")
    (root / "metadata.csv").write_text(
        AVS_HEADER + "-0jeONf82dE,-0jeONf82dE_1,0,1,guitar,train,v1s\n"
        "_0e5YDVkMpE,_0e5YDVkMpE_2,0,2,man_guitar,test,v1m\n"
        "zzx3i4fM3lQ,zzx3i4fM3lQ_0,0,0,off-the-screen_woman,val,v2\n")
    for task, n in (("s4", 1), ("ms3", 1), ("avss", 3)):
        index = open_index(f"avsbench_{task}", root)
        assert len(index.classes) == 71 and index.classes[0] == "background" and index.classes[70] == "woman"
        assert index.notes == {"classes numbered 1..71, read as 0..70 (index = value - 1)": 71}
        assert sum(len(v) for v in index.splits.values()) == n
    avss = open_index("avsbench_avss", root)
    labels = {it.id: it.labels for items in avss.splits.values() for it in items}
    # guitar is 29 in the file: class 28, the value its pixels hold in the semantic masks
    assert labels == {"-0jeONf82dE_1": (28,), "_0e5YDVkMpE_2": (41, 28), "zzx3i4fM3lQ_0": (0, 70)}
    assert "classes numbered 1..71" in caplog.text


def test_avsbench_label2idx_with_gaps_is_refused(tmp_path):
    (tmp_path / "label2idx.json").write_text(json.dumps({"background": 1, "dog": 3}))
    (tmp_path / "metadata.csv").write_text(AVS_HEADER)
    with pytest.raises(DataError, match="label2idx.json: indices are neither 0..1 nor 1..2"):
        open_index("avsbench_s4", tmp_path)


# ---------------------------------------------------------------- VGGSound as the mirror ships it
def test_vggsound_flat_mirror_layout(tmp_path):
    rows = '---g-f_I2yQ,1,people marching,test\n--U7joUcTCo,0,"playing violin, fiddle",train\n'
    (tmp_path / "vggsound.csv").write_text(rows)  # at the root, as the mirror has it
    write(tmp_path / "video/---g-f_I2yQ_000001.mp4")
    index = open_index("vggsound", tmp_path)
    assert index["test"][0].media == (tmp_path / "video/---g-f_I2yQ_000001.mp4",)
    assert index["train"][0].media == (tmp_path / "video/--U7joUcTCo_000000.mp4",)
    assert index.report(progress=False).counts["train"].missing == 1
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/vggsound.csv").write_text(rows)
    folders = open_index("vggsound", tmp_path, layout="folders")
    assert folders["test"][0].media == (tmp_path / "clips/people_marching/---g-f_I2yQ_000001_000011.mp4",)
    with pytest.raises(DataError, match="layout must be one of"):
        open_index("vggsound", tmp_path, layout="shards")
    write(tmp_path / "vggss.json", b'[{"file": "---g-f_I2yQ_000001", "class": "people marching", "bbox": [[0, 0, 1, 1]]}]')
    vggss = open_index("vggss", tmp_path, media="clips")
    assert vggss["test"][0].media == (tmp_path / "video/---g-f_I2yQ_000001.mp4",)


# ---------------------------------------------------------------- MUSIC, official layout
def official_partition(solo: list[str], duet: list[str]) -> dict[str, set[str]]:
    """The official rule restated: every (n // 130)-th sorted solo video, every (n // 85)-th duet video."""
    solo, duet = sorted(solo), sorted(duet)
    held_eval, held_test = set(solo[::len(solo) // 130]), set(duet[::len(duet) // 85])
    return {"eval": held_eval, "test": held_test, "train": set(solo + duet) - held_eval - held_test}


def test_music_official_layout_and_partition(tmp_path):
    solo = [f"s{k:03d}xxxxxxx" for k in range(400)]
    duet = [f"d{k:03d}xxxxxxx" for k in range(200)]
    classes = ["acoustic_guitar", "violin"]
    solo_rows = "".join(f"{v},{classes[k % 2].replace('_', ' ')},https://www.youtube.com/watch?v={v}\n"
                        for k, v in enumerate(solo))
    duet_rows = "".join(f"{v},acoustic_guitar violin,x\n" for v in duet)
    write(tmp_path / "anno/music_solo.csv", ("youtube_id,class,url\n" + solo_rows).encode())
    write(tmp_path / "anno/music21_duet.csv", ("youtube_id,class,url\n" + duet_rows + "nofile00000,violin,x\n").encode())
    segm = tmp_path / "clips_360p_segm"
    for k, v in enumerate(solo):
        for part in range(1 + k % 3):
            write(segm / classes[k % 2] / f"{v}.{part}.mp4")
    for v in duet:
        write(segm / "acoustic_guitar_violin" / f"{v}.10.mp4")
        write(segm / "acoustic_guitar_violin" / f"{v}.2.mp4")
    write(segm / "violin" / "s001xxxxxxx.mp4")  # no segment number: not `<id>.*.mp4`
    index = open_index("music", tmp_path)
    assert index.classes == ("acoustic_guitar", "acoustic_guitar_violin", "violin")
    expected = official_partition(solo, duet)
    for split in ("train", "eval", "test"):
        assert {it.extra["video"] for it in index[split]} == expected[split]
    assert len(expected["eval"]) == 134 and len(index["test"]) == 2 * len(expected["test"]) == 200
    first_duet = sorted(expected["test"])[0]
    assert [it.id for it in index["test"][:2]] == [f"acoustic_guitar_violin/{first_duet}.2",
                                                   f"acoustic_guitar_violin/{first_duet}.10"]
    assert index.notes == {"videos listed without segment files (in no split, as the official partition)": 1}
    assert sum(len(v) for v in index.splits.values()) == sum(1 + k % 3 for k in range(400)) + 2 * 200
    solo_only = open_index("music", tmp_path, version="MUSIC-solo")
    assert set(solo_only.splits) == {"train", "eval", "test"} and not solo_only["test"]
    with pytest.raises(DataError, match="music21_solo.csv was not found"):
        open_index("music", tmp_path, version="MUSIC21")


@pytest.mark.parametrize("recipe,n,without_box", [("vggss_heard", 2564, 2), ("vggss_unheard", 2575, 0)])
def test_heard_and_unheard_recipes(tmp_path, recipe, n, without_box):
    from avfusion.engine.config import load_config
    from avfusion.tasks.common import open_data_index
    from avfusion.tasks.localize import LocalizeRecipe
    from avfusion.tasks.localize_data import LocalizationTestSet

    vggss = released_root(tmp_path / "vggss", "vggss.json", "vggss_heard_test.csv", "vggss_unheard_test.csv")
    vggsound = tmp_path / "vggsound"
    write(vggsound / "annotations/vggsound.csv", b"--8puiAGLhs,30,dog barking,train\nzzzzzzzzzzz,0,dog barking,train\n")
    write(vggsound / "annotations/vggss_heard.txt", b"--8puiAGLhs_000030\n")  # the first line of the release
    cfg = load_config(LocalizeRecipe, Path(__file__).parents[1] / "configs/localize" / f"{recipe}.yaml",
                      [f"data.root={vggsound}", f"localize.eval_root={vggss}"])
    assert [it.id for it in open_data_index(cfg.data)["train"]] == ["--8puiAGLhs_000030"]
    test_set = LocalizationTestSet("vggss", cfg.localize.eval_root, cfg.data, 224, cfg.localize.eval_index_options)
    assert len(test_set) == n and test_set.without_box == without_box


# ---------------------------------------------------------------- frames and masks as the datasets ship them
def test_jpeg_frames_and_png_masks_written_by_common_tools_decode(tmp_path):
    """Flickr-SoundNet, VGG-SS and AVSBench frames are baseline JPEGs written by ffmpeg / PIL / OpenCV,
    masks 8-bit PNGs; the image2 demuxer returns nothing for such a JPEG after a seek."""
    from PIL import Image

    from avfusion.media import read_image, read_mask

    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, np.full_like(x, 90)], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it
    Image.fromarray(rgb).save(tmp_path / "frame.jpg", quality=95)
    out = read_image(tmp_path / "frame.jpg")
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - rgb).mean() < 3
    classes = np.zeros((48, 64), np.uint8)
    classes[10:20, 5:30] = 28  # guitar, as labels_semantic stores it
    Image.fromarray(classes, mode="L").save(tmp_path / "grey.png")
    palette = Image.fromarray(classes, mode="P")
    palette.putpalette([0, 0, 0, *([255, 0, 0] * 255)])
    palette.save(tmp_path / "palette.png")
    for name in ("grey.png", "palette.png"):
        assert np.array_equal(read_mask(tmp_path / name), classes)
