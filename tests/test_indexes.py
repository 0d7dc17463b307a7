"""Dataset indexes: tiny copies of each distribution format with generated media, broken and absent files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from avfusion.data.indexes import Index, available, open_index
from avfusion.data.indexes.report import SplitCounts
from avfusion.data.indexes.vggsound import folder_name
from avfusion.errors import ConfigError, DataError
from tests.indexes_media import pyav_probe, write


def counts(index: Index, readable: bool = True) -> dict[str, tuple]:
    rep = index.report(check_readable=readable, probe=pyav_probe if readable else None, progress=False)
    return {s: (c.listed, c.present, c.missing, c.unreadable) for s, c in rep.counts.items()}


def text(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


# ---------------------------------------------------------------- VGGSound
VGG_ROWS = """\
aaaaaaaaaaa,30,cattle mooing,train
bbbbbbbbbbb,0,"cattle, bovinae cowbell",train
ccccccccccc,12,police car (siren),train
ddddddddddd,5,"playing violin, fiddle",test
eeeeeeeeeee,100,cattle mooing,test
"""


def vggsound_root(tmp_path: Path) -> Path:
    text(tmp_path / "annotations/vggsound.csv", VGG_ROWS)
    clips = tmp_path / "clips"
    write(clips / "cattle_mooing/aaaaaaaaaaa_000030_000040.mp4")
    write(clips / "cattle__bovinae_cowbell/bbbbbbbbbbb_000000_000010.mp4", "garbage")
    # ccc is listed but absent
    write(clips / "playing_violin__fiddle/ddddddddddd_000005_000015.mp4")
    write(clips / "cattle_mooing/eeeeeeeeeee_000100_000110.mp4", "truncated")
    return tmp_path


def test_vggsound_items_classes_and_report(tmp_path):
    index = open_index("vggsound", vggsound_root(tmp_path))
    # official order: sorted folder names, where 'cattle__bovinae...' precedes 'cattle_mooing'
    assert index.classes == ("cattle, bovinae cowbell", "cattle mooing", "playing violin, fiddle", "police car (siren)")
    item = index["test"][0]
    assert item.id == "ddddddddddd_000005" and item.labels == (2,) and item.start is None
    assert item.media[0] == tmp_path / "clips/playing_violin__fiddle/ddddddddddd_000005_000015.mp4"
    assert counts(index, readable=False) == {"train": (3, 2, 1, None), "test": (2, 2, 0, None)}
    rep = index.report(check_readable=True, probe=pyav_probe, progress=False)
    assert rep.counts == {"train": SplitCounts(3, 2, 1, 1), "test": SplitCounts(2, 2, 0, 1)}
    assert {(p.item_id, p.kind) for p in rep.problems} == {
        ("ccccccccccc_000012", "missing"), ("bbbbbbbbbbb_000000", "unreadable"), ("eeeeeeeeeee_000100", "unreadable")}
    assert "train" in rep.summary() and "unreadable" in str(rep) and not rep.ok
    assert json.loads(json.dumps(rep.to_dict()))["counts"]["test"]["unreadable"] == 1
    kept = index.without_failed(rep)
    assert [len(kept[s]) for s in ("train", "test")] == [1, 1] and kept.dropped == {"train": 2, "test": 1}


def test_vggsound_label_order_and_explicit_classes(tmp_path):
    root = vggsound_root(tmp_path)
    assert open_index("vggsound", root, class_order="label").classes[0] == "cattle mooing"
    names = ["police_car__siren_", "playing_violin__fiddle", "cattle_mooing", "cattle__bovinae_cowbell", "extra"]
    index = open_index("vggsound", root, classes=names)
    assert index.classes == tuple(names) and index["test"][0].labels == (1,)
    with pytest.raises(DataError, match="line 3: label 'police car"):
        open_index("vggsound", root, classes=names[1:])


@pytest.mark.parametrize("row, message", [
    ("zz,1,dog,validation", "line 2: split 'validation'"),
    ("zz,1,dog", "line 2: expected 4 fields"),
    ("zz,1.5,dog,train", "line 2: start '1.5'"),
    ("aaaaaaaaaaa,30,cattle mooing,train", "listed twice \\(line 1 and line 2\\)"),
])
def test_vggsound_malformed_rows(tmp_path, row, message):
    text(tmp_path / "annotations/vggsound.csv", "aaaaaaaaaaa,30,cattle mooing,train\n" + row + "\n")
    with pytest.raises(DataError, match=message):
        open_index("vggsound", tmp_path)


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(DataError, match="annotations/vggsound.csv nor .*/vggsound.csv was found"):
        open_index("vggsound", tmp_path)


# ---------------------------------------------------------------- AudioSet
AS_HEADER = "# Segments csv created Sun Mar  5 10:54:25 2017\n# num_ytids=3, num_segs=3, num_unique_labels=3\n" \
            "# YTID, start_seconds, end_seconds, positive_labels\n"


def audioset_root(tmp_path: Path) -> Path:
    ann = tmp_path / "annotations"
    text(ann / "class_labels_indices.csv", 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0k4j,"Car"\n'
                                           '2,/t/dd00088,"Gush, splash"\n')
    text(ann / "balanced_train_segments.csv", AS_HEADER + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
                                                          '-0RWZT-miFs, 420.000, 430.000, "/m/0k4j"\n')
    text(ann / "eval_segments.csv", AS_HEADER + 'Ab1cDe2fGh3, 0.000, 10.000, "/m/0k4j,/m/09x0r,/t/dd00088"\n')
    write(tmp_path / "clips/--/--PJHxphWEs_000030_000040.mp4")
    write(tmp_path / "clips/Ab/Ab1cDe2fGh3_000000_000010.mp4", "empty")
    return tmp_path


def test_audioset_multilabel_and_report(tmp_path):
    index = open_index("audioset", audioset_root(tmp_path), splits=("balanced_train", "eval"))
    assert index.multilabel and index.classes == ("Speech", "Car", "Gush, splash")
    first = index["balanced_train"][0]
    assert first.id == "--PJHxphWEs" and first.labels == (0, 2) and first.extra["yt_start"] == 30.0
    assert index["eval"][0].labels == (1, 0, 2)
    assert counts(index) == {"balanced_train": (2, 1, 1, 0), "eval": (1, 1, 0, 1)}


def test_audioset_pattern_and_errors(tmp_path):
    root = audioset_root(tmp_path)
    index = open_index("audioset", root, splits=("eval",), pattern="{split}/{ytid}_{start}.mp4")
    assert index["eval"][0].media == (root / "eval/Ab1cDe2fGh3_0.mp4",)
    with pytest.raises(ConfigError, match="pattern"):
        open_index("audioset", root, splits=("eval",), pattern="{video}.mp4")
    with pytest.raises(DataError, match="unbalanced_train_segments.csv was not found"):
        open_index("audioset", root)
    text(root / "annotations/eval_segments.csv", AS_HEADER + 'Ab1cDe2fGh3, 0.000, 10.000, "/m/nope"\n')
    with pytest.raises(DataError, match="eval_segments.csv, line 4: label '/m/nope'"):
        open_index("audioset", root, splits=("eval",))


# ---------------------------------------------------------------- Flickr-SoundNet
def box_xml(*objects: str) -> str:
    return "<annotation><filename>x.jpg</filename>" + "".join(f"<object>{o}</object>" for o in objects) + "</annotation>"


NAMED = "<bbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bbox>"


def flickr_root(tmp_path: Path) -> Path:
    text(tmp_path / "flickr_test.csv", "111,202\n222,0\n333,5\n")
    ann = tmp_path / "Annotations"
    text(ann / "111.xml", box_xml(NAMED.format(0, 0, 128, 256), NAMED.format(64, 64, 192, 192),
                                  "<bbox><label>s</label><a>0</a><b>0</b><c>256</c><d>256</d></bbox>"))
    text(ann / "222.xml", box_xml("<annotator>A</annotator>" + NAMED.format(0, 0, 32, 32),
                                  "<annotator>A</annotator>" + NAMED.format(32, 32, 64, 64),
                                  "<annotator>B</annotator><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>256</xmax>"
                                  "<ymax>256</ymax></bndbox>"))
    for vid in ("111", "222", "333"):
        write(tmp_path / f"frames/{vid}.jpg")
    write(tmp_path / "audio/111.wav")
    write(tmp_path / "audio/222.wav", "garbage")
    write(tmp_path / "audio/333.wav")  # 333 has no annotation file
    return tmp_path


def test_flickr_boxes_annotators_and_report(tmp_path):
    index = open_index("flickr", flickr_root(tmp_path))
    a, b, c = index["test"]
    assert a.boxes == ((0, 0, 0.5, 1), (0.25, 0.25, 0.75, 0.75), (0, 0, 1, 1)) and a.box_annotators == (0, 1, 2)
    assert a.extra["list"] == ("202",) and len(a.boxes_by_annotator()) == 3
    assert b.box_annotators == (0, 0, 1) and b.boxes_by_annotator()[0] == [(0, 0, 0.125, 0.125), (0.125, 0.125, 0.25, 0.25)]
    assert c.boxes == () and c.annotation == tmp_path / "Annotations/333.xml"
    assert counts(index) == {"test": (3, 2, 1, 1)}


def test_flickr_malformed_xml(tmp_path):
    root = flickr_root(tmp_path)
    text(root / "Annotations/222.xml", "<annotation>\n<object>\n<bbox></object>")
    with pytest.raises(DataError, match="222.xml, line 3: malformed XML"):
        open_index("flickr", root)
    text(root / "Annotations/222.xml", box_xml(NAMED.format(0, 0, 300, 10)))
    with pytest.raises(DataError, match="not normalised"):
        open_index("flickr", root)


# ---------------------------------------------------------------- VGG-SS
def test_vggss_frames_and_clips(tmp_path):
    entries = [{"file": "aaaaaaaaaaa_000030", "class": "cattle mooing", "bbox": [[0.1, 0.2, 0.5, 1.02]]},
               {"file": "ddddddddddd_000005", "class": "playing violin, fiddle", "bbox": [[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]]}]
    text(tmp_path / "vggss.json", json.dumps(entries))
    write(tmp_path / "frames/aaaaaaaaaaa_000030.jpg")
    write(tmp_path / "audio/aaaaaaaaaaa_000030.wav")
    write(tmp_path / "frames/ddddddddddd_000005.jpg")
    index = open_index("vggss", tmp_path)
    first = index["test"][0]
    assert first.boxes == ((0.1, 0.2, 0.5, 1.0),) and index.classes == ("cattle mooing", "playing violin, fiddle")
    assert counts(index) == {"test": (2, 1, 1, 0)}
    clips = open_index("vggss", vggsound_root(tmp_path), media="clips")
    assert counts(clips) == {"test": (2, 2, 0, 0)} and clips["test"][1].labels == (1,)
    text(tmp_path / "vggss.json", '[{"file": "x",\n "class": }]')
    with pytest.raises(DataError, match="vggss.json, line 2: bad JSON"):
        open_index("vggss", tmp_path)


# ---------------------------------------------------------------- MUSIC and VGGSound-Music
def test_music_solo_duet(tmp_path):
    text(tmp_path / "MUSIC_solo_videos.json", json.dumps({"videos": {"violin": ["v1", "v2"], "acoustic_guitar": ["g1"]}}))
    text(tmp_path / "MUSIC_duet_videos.json", json.dumps({"videos": {"acoustic_guitar violin": ["d1"]}}))
    write(tmp_path / "violin/v1.mp4")
    write(tmp_path / "acoustic_guitar/g1.mp4", "truncated")
    write(tmp_path / "acoustic_guitar violin/d1.mp4")
    index = open_index("music", tmp_path)
    assert index.classes == ("acoustic_guitar", "violin")
    assert index["duet"][0].labels == (0, 1) and index["solo"][0].id == "violin/v1"
    assert counts(index) == {"solo": (3, 2, 1, 1), "duet": (1, 1, 0, 0)}
    with pytest.raises(DataError, match="MUSIC21_solo_videos.json was not found"):
        open_index("music", tmp_path, version="MUSIC21")
    text(tmp_path / "MUSIC_duet_videos.json", json.dumps({"violin": ["x"]}))
    with pytest.raises(DataError, match="expected"):
        open_index("music", tmp_path)


def test_vggsound_music_pairs(tmp_path):
    root = vggsound_root(tmp_path)
    write(root / "clips/playing_bass_drum/JIemsK_0lXc_000364_000374.mp4")
    text(root / "annotations/vggmusic_eval_ss.csv",
         "source_1,source_2,class_1,class_2,sep_type\n"
         'JIemsK_0lXc_000364,ddddddddddd_000005,bass_drum,"violin,_fiddle",Easy\n'
         "JIemsK_0lXc_000364,zzzzzzzzzzz_000001,bass_drum,flute,Easy\n")
    index = open_index("vggsound_music", root)
    first, second = index["test"]
    assert first.media[1] == root / "clips/playing_violin__fiddle/ddddddddddd_000005_000015.mp4"
    assert first.id == "0000:JIemsK_0lXc_000364+ddddddddddd_000005" and first.extra["row"] == ("Easy",)
    assert counts(index) == {"test": (2, 1, 1, 0)}
    text(root / "pairs.csv", "aaaaaaaaaaa_000030,ddddddddddd_000005\n")
    index = open_index("vggsound_music", root, pairs="pairs.csv")
    assert index["test"][0].media[0] == root / "clips/cattle_mooing/aaaaaaaaaaa_000030_000040.mp4"
    text(root / "pairs.csv", "aaaaaaaaaaa_000030,nothere_000001\n")
    with pytest.raises(DataError, match="pairs.csv, line 1: clip"):
        open_index("vggsound_music", root, pairs="pairs.csv")


# ---------------------------------------------------------------- AVSBench
def avsbench_root(tmp_path: Path) -> Path:
    text(tmp_path / "label2idx.json", json.dumps({"background": 0, "dog": 1, "man": 2, "guitar": 3}))
    text(tmp_path / "metadata.csv", "vid,uid,s_min,s_sec,a_obj,split,label\n"
                                    "v1,dog_1,0,0,dog,train,v1s\n"
                                    "v2,dog_2,0,0,dog,test,v1s\n"
                                    "v3,mix_1,0,0,man_guitar,val,v1m\n"
                                    "v4,new_1,0,0,off-the-screen_man,test,v2\n")
    for subset, uid, n, annotated in [("v1s", "dog_1", 5, 1), ("v1s", "dog_2", 5, 5), ("v1m", "mix_1", 5, 5),
                                      ("v2", "new_1", 10, 10)]:
        clip = tmp_path / subset / uid
        write(clip / "audio.wav")
        for i in range(n):
            write(clip / f"frames/{i}.jpg")
        for i in range(annotated):
            write(clip / f"labels_semantic/{i}.png")
    (tmp_path / "v1s/dog_2/labels_semantic/3.png").unlink()
    write(tmp_path / "v2/new_1/frames/7.jpg", "garbage")
    return tmp_path


def test_avsbench_semantic_layout(tmp_path):
    root = avsbench_root(tmp_path)
    s4 = open_index("avsbench_s4", root)
    train = s4["train"][0]
    assert len(train.frames) == 5 and train.masks[0] is not None and train.masks[1:] == (None,) * 4
    assert train.labels == (1,) and s4.classes == ("background", "dog", "man", "guitar")
    assert counts(s4) == {"train": (1, 1, 0, 0), "val": (0, 0, 0, 0), "test": (1, 0, 1, 0)}
    avss = open_index("avsbench_avss", root)
    assert avss["val"][0].labels == (2, 3) and avss["test"][1].labels == (0, 2) and len(avss["test"][1].frames) == 10
    assert counts(avss)["test"] == (2, 1, 1, 1)
    assert counts(open_index("avsbench_ms3", root)) == {"train": (0, 0, 0, 0), "val": (1, 1, 0, 0), "test": (0, 0, 0, 0)}
    text(root / "metadata.csv", "vid,uid,a_obj,split,label\nv1,dog_1,cat,train,v1s\n")
    with pytest.raises(DataError, match="metadata.csv, line 2: class 'cat'"):
        open_index("avsbench_s4", root)
    (root / "label2idx.json").unlink()
    with pytest.raises(DataError, match="label2idx.json was not found"):
        open_index("avsbench_avss", root)


def test_avsbench_object_layout(tmp_path):
    s4 = tmp_path / "Single-source"
    text(s4 / "s4_meta_data.csv", "name,start,category,split\nclipA,0,dog_barking,train\nclipB,2,cat_meowing,test\n")
    data = s4 / "s4_data"
    for split, name, cat, masks in [("train", "clipA", "dog_barking", 1), ("test", "clipB", "cat_meowing", 5)]:
        write(data / f"audio_wav/{split}/{cat}/{name}.wav")
        for i in range(1, 6):
            write(data / f"visual_frames/{split}/{cat}/{name}/{name}_{i}.png")
        for i in range(1, masks + 1):
            write(data / f"gt_masks/{split}/{cat}/{name}/{name}_{i}.png")
    ms3 = tmp_path / "Multi-sources"
    text(ms3 / "ms3_meta_data.csv", "video_id,split\nclipC,val\n")
    for i in range(1, 6):
        write(ms3 / f"ms3_data/visual_frames/clipC/clipC.mp4_{i}.png")
    index = open_index("avsbench_s4", tmp_path, layout="object")
    assert index.classes == ("cat_meowing", "dog_barking") and index["train"][0].labels == (1,)
    assert counts(index) == {"train": (1, 1, 0, 0), "val": (0, 0, 0, 0), "test": (1, 1, 0, 0)}
    assert counts(open_index("avsbench_ms3", tmp_path, layout="object"))["val"] == (1, 0, 1, 0)


# ---------------------------------------------------------------- manifest
def test_manifest_csv_and_jsonl(tmp_path):
    write(tmp_path / "media/a.mp4")
    write(tmp_path / "media/b.jpg")
    write(tmp_path / "media/b.wav")
    write(tmp_path / "media/b_mask.png")
    text(tmp_path / "manifest.csv",
         "media,split,start,end,labels,boxes,mask,audio,note\n"
         "media/a.mp4,train,0.1,0.4,dog;cat,,,,hello\n"
         'media/b.jpg,val,,,cat,"[[0.1, 0.1, 0.5, 0.5]]",media/b_mask.png,media/b.wav,\n'
         "media/missing.mp4,val,,,,,,,\n")
    index = open_index("manifest", tmp_path)
    a = index["train"][0]
    assert index.classes == ("cat", "dog") and index.multilabel and a.labels == (1, 0)
    assert (a.start, a.end, a.id, a.extra) == (0.1, 0.4, "media/a.mp4@0.1-0.4", {"note": "hello"})
    b = index["val"][0]
    assert b.frames == (tmp_path / "media/b.jpg",) and b.media == () and b.boxes == ((0.1, 0.1, 0.5, 0.5),)
    assert counts(index) == {"train": (1, 1, 0, 0), "val": (2, 1, 1, 0)}
    text(tmp_path / "classes.txt", "dog\ncat\nbird\n")
    text(tmp_path / "own.jsonl", '{"media": "media/a.mp4", "labels": ["bird"], "id": "clip-a"}\n\n'
                                 '{"media": "media/b.jpg", "labels": "cat;dog", "boxes": [[0, 0, 1, 1]]}\n')
    own = open_index("manifest", tmp_path / "own.jsonl", classes="classes.txt")
    assert [it.labels for it in own["all"]] == [(2,), (1, 0)] and own["all"][0].id == "clip-a"


@pytest.mark.parametrize("row, message", [
    ('{"media": "a.mp4", "labels": ["owl"]}', "line 2: labels \\['owl'\\]"),
    ('{"media": "a.mp4", "boxes": [[0.5, 0, 0.2, 1]]}', "line 2: box"),
    ('{"media": "a.mp4", "start": 3, "end": 1}', "line 2: end 1.0 is not after start"),
    ('{"labels": ["cat"]}', "line 2: no media path"),
    ('{"media": "a.mp4"', "line 2: bad JSON"),
])
def test_manifest_errors(tmp_path, row, message):
    text(tmp_path / "m.jsonl", '{"media": "b.mp4", "labels": ["cat"]}\n' + row + "\n")
    with pytest.raises(DataError, match=message):
        open_index("manifest", tmp_path / "m.jsonl", classes=["cat"])


# ---------------------------------------------------------------- registry and the real probe
def test_registry_and_split_errors(tmp_path):
    assert {"vggsound", "audioset", "flickr", "vggss", "music", "vggsound_music", "avsbench_s4", "avsbench_ms3",
            "avsbench_avss", "manifest"} <= set(available())
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        open_index("imagenet", tmp_path)
    index = open_index("vggsound", vggsound_root(tmp_path))
    with pytest.raises(DataError, match="no split 'val'"):
        index["val"]
    assert folder_name("police car (siren)") == "police_car__siren_"


def test_report_with_avfusion_media_probe(tmp_path):
    pytest.importorskip("avfusion.media")
    index = open_index("vggsound", vggsound_root(tmp_path))
    rep = index.report(check_readable=True, progress=False)
    assert rep.counts["train"] == SplitCounts(3, 2, 1, 1) and rep.counts["test"] == SplitCounts(2, 2, 0, 1)
    flickr = open_index("flickr", flickr_root(tmp_path / "flickr")).report(check_readable=True, progress=False)
    assert flickr.counts["test"] == SplitCounts(3, 2, 1, 1)  # images and wav go through the same probe
