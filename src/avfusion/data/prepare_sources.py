"""Where `avfusion data prepare` reads videos, and where it writes each one.

Sources: a folder (walked in sorted order, hidden files left out; the tar archives in it are sources of
their own), a single video file, or a tar archive (`.tar`, `.tar.gz`, ...) read as a stream (tarfile
mode ``r|*``: one pass, nothing unpacked to disk; a member's bytes are read only when its output is still
to be made). A corrupt archive raises `CorruptSource` naming it and how many members were read before the
damage; an archive that stops at a damaged header (which `tarfile` takes for the end) is told from a
complete one by the bytes left after it.

Layouts: `PlainLayout` keeps each video's path relative to its source (as `.mp4`); `VGGSoundLayout` puts
`<YTID>_<start:06d>.mp4` at VGGSound's clip path for its label in the annotations, or nowhere (None) when
the annotations do not list it.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from avfusion.data.indexes.vggsound import clip_path, read_rows
from avfusion.errors import ConfigError, DataError

__all__ = ["VIDEO_SUFFIXES", "Entry", "Source", "open_sources", "CorruptSource", "PlainLayout", "VGGSoundLayout",
           "make_layout"]

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".flv", ".3gp", ".mpg", ".mpeg",
                            ".ts"})
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 16


class CorruptSource(DataError):
    """A tar archive that cannot be read to its end; `members` were read before the damage."""

    def __init__(self, path, members: int, reason: str):
        self.path, self.members, self.reason = str(path), members, reason
        super().__init__(f"{path}: corrupt archive after {members} members: {reason}")


@dataclass(frozen=True)
class Entry:
    """One input video: `name` as reports show it (`path` or `archive:member`), `relative` its path inside
    the source, and `load()` its content (a Path to read, or the member's bytes)."""
    name: str
    relative: PurePosixPath
    load: Callable[[], "Path | bytes"]


def _is_video(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in VIDEO_SUFFIXES


def _is_tar(name: str) -> bool:
    return name.lower().endswith(_TAR_SUFFIXES)


def _walk(folder: Path, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(videos, tar archives) under `folder`, sorted, hidden files and folders and `skip` left out."""
    videos, tars = [], []
    skip = skip.resolve() if skip is not None else None
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(here) / d).resolve() != skip)
        for f in sorted(files):
            if not f.startswith("."):
                (videos if _is_video(f) else tars if _is_tar(f) else []).append(Path(here) / f)
    return videos, tars


def open_sources(paths, skip: Path | None = None) -> list[Source]:
    """The sources of `--source` arguments: a folder is its videos (one source, if it has any) and each
    tar archive under it, the folder `skip` (the output) left out; DataError for a path that is missing
    or neither."""
    out = []
    for path in paths:
        source = Source(path)
        if source.kind != "folder":
            out.append(source)
            continue
        videos, tars = _walk(source.path, skip)
        if videos or not tars:
            source.files = videos
            out.append(source)
        out += [Source(t) for t in tars]
    return out


class Source:
    """A folder, a video file, or a tar archive given to `--source`. `position` / `total` measure progress:
    files for folders, compressed bytes for archives (`unit`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            self.kind = "folder"
        elif self.path.is_file():
            self.kind = "file" if _is_video(self.path.name) else "tar"
        else:
            raise DataError(f"{self.path}: source not found (give a folder of videos or a tar / tar.gz archive)")
        if self.kind == "tar" and not _is_tar(self.path.name):
            raise DataError(f"{self.path}: neither a folder, a video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                            f"nor a tar archive ({', '.join(_TAR_SUFFIXES)})")
        self.unit = "B" if self.kind == "tar" else "video"
        self.position, self.total = 0, None
        self.members = 0
        self.files: list[Path] | None = None      # a folder's videos, when already listed

    def entries(self) -> Iterator[Entry]:
        if self.kind == "tar":
            return self._tar_entries()
        if self.kind == "file":
            self.total = 1
            return iter([Entry(str(self.path), PurePosixPath(self.path.name), lambda: self.path)])
        return self._folder_entries()

    def _folder_entries(self) -> Iterator[Entry]:
        found = self.files if self.files is not None else _walk(self.path)[0]
        self.total = len(found)
        for path in found:
            self.position += 1
            yield Entry(str(path), PurePosixPath(path.relative_to(self.path).as_posix()), lambda p=path: p)

    def _tar_entries(self) -> Iterator[Entry]:
        self.total = self.path.stat().st_size
        with open(self.path, "rb") as raw:
            try:
                with tarfile.open(fileobj=raw, mode="r|*") as tar:
                    for member in tar:
                        self.position = raw.tell()
                        if member.isfile() and _is_video(member.name):
                            yield Entry(f"{self.path}:{member.name}", PurePosixPath(member.name),
                                        lambda m=member, t=tar: self._read(t, m))
                        self.members += 1
                    self._check_end(tar)
                    self.position = raw.tell()
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise CorruptSource(self.path, self.members, str(exc) or type(exc).__name__) from exc

    def _read(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
        try:
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise CorruptSource(self.path, self.members, f"member {member.name}: {exc}") from exc
        if len(data) != member.size:
            raise CorruptSource(self.path, self.members, f"member {member.name}: {len(data)} of {member.size} "
                                                         "bytes (archive cut short)")
        return data

    def _check_end(self, tar: tarfile.TarFile) -> None:
        """`tarfile` ends a stream quietly at a damaged header; only zero padding may follow a real end."""
        while chunk := tar.fileobj.read(_CHUNK):
            if chunk.strip(b"\0"):
                raise tarfile.ReadError(f"unreadable member header near byte {tar.offset} of the "
                                        "uncompressed stream; the rest of the archive cannot be read")


class PlainLayout:
    """Every video at its path relative to its source, as `.mp4`, under `output`."""
    dataset = None

    def __init__(self, output: Path):
        self.output = output

    def target(self, entry: Entry) -> Path | None:
        parts = entry.relative.parts
        if entry.relative.is_absolute() or ".." in parts or not parts:
            raise DataError(f"{entry.name}: unsafe path inside the archive (absolute or with '..'); not written")
        return self.output.joinpath(*parts).with_suffix(".mp4")

    def install(self) -> None:
        """Nothing to add besides the videos."""


class VGGSoundLayout:
    """VGGSound's `clips/<folder>/<YTID>_<start:06d>_<end:06d>.mp4`, for the ids the annotations list.

    A source file is recognised by its name: `<YTID>_<start:06d>` (the Hugging Face mirror) or
    `<YTID>_<start:06d>_<end:06d>` (already in the clip naming), any video suffix."""
    dataset = "vggsound"

    def __init__(self, output: Path, annotations: Path):
        self.output, self.annotations = output, annotations
        self.rows = {f"{ytid}_{start:06d}": (ytid, start, label) for _, ytid, start, label, _ in read_rows(annotations)}

    def target(self, entry: Entry) -> Path | None:
        stem = entry.relative.stem
        row = self.rows.get(stem)
        if row is None and len(stem) > 14 and stem[-7] == "_" and stem[-6:].isdigit():
            row = self.rows.get(stem[:-7])
        return None if row is None else clip_path(self.output, *row)

    def install(self) -> None:
        """Copy the annotations to `<output>/annotations/vggsound.csv` (atomically), where the index reads them."""
        dst = self.output / "annotations" / "vggsound.csv"
        if dst.exists() and dst.samefile(self.annotations):
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.prepare-tmp")
        try:
            shutil.copyfile(self.annotations, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)


def make_layout(output: Path, dataset: str | None, annotations: str | Path | None):
    """The layout for `--dataset` (None: the sources' own paths)."""
    if dataset is None:
        if annotations is not None:
            raise ConfigError("--annotations needs --dataset (the annotations say where each clip goes)")
        return PlainLayout(output)
    if dataset != "vggsound":
        raise ConfigError(f"prepare knows the layout of vggsound only, not {dataset!r}; leave --dataset out "
                          "to keep the sources' own paths")
    if annotations is None:
        raise ConfigError("--dataset vggsound needs --annotations vggsound.csv (it gives every clip's class folder)")
    path = Path(annotations).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: VGGSound annotations not found")
    return VGGSoundLayout(output, path)
