"""The Gradio page of `avfusion demo` (the optional extra `avfusion[demo]`; importing this module imports
gradio, so check first with `avfusion.demo.require_gradio()`).

The page shows what `Runner` returns; it computes nothing itself. Its one event, `run` (also the
HTTP API endpoint `/run`), takes (video, tasks, top_k, readout, regions) and fills the outputs listed
in `OUTPUTS`, in that order. Errors reach the page as messages (`gradio.Error`), never as tracebacks.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr
import numpy as np

from avfusion.demo.runner import MAX_REGIONS, Example, Options, Runner, TaskOutput, format_regions, parse_regions
from avfusion.errors import AvfusionError

log = logging.getLogger(__name__)

#: the `run` event's outputs, in order (the HTTP API returns them in this order)
OUTPUTS = ("status", "clip_labels", "window_labels", "localize_video", "localize_sheet", "mixture",
           *(f"source_{k}" for k in range(MAX_REGIONS)), "residual", "spectrograms", "regions_picture",
           "segment_video", "segment_sheet", "embed_summary", "downloads")
READOUTS = ("default", "contrastive", "attention")
def _intro(runner: Runner) -> str:
    rows = "\n".join(f"| {task} | `{source}` | {kind} |" for task, source, kind in runner.describe())
    return ("# avfusion demo\nDrop a video (or record one, or pick an example below), choose what to run, "
            "press **Run**. Every output can be downloaded: the files are those `avfusion COMMAND VIDEO -c "
            "CHECKPOINT` writes.\n\n| task | checkpoint | kind |\n|---|---|---|\n" + rows)


def _draw(frame: np.ndarray | None, regions_text: str, corner: list | None) -> np.ndarray | None:
    """The preview frame with the regions drawn (a point's square as `separate` uses it) and a pending corner."""
    from avfusion.inference import render
    from avfusion.inference.views import region_box

    if frame is None:
        return None
    picture = frame
    try:
        regions = parse_regions(regions_text or "") or []
    except AvfusionError:
        regions = []
    h, w = frame.shape[:2]
    for region in regions:
        picture = render.draw_box(picture, region_box(region, h, w))
    if corner:
        picture = render.draw_marker(picture, corner[0], corner[1])
    return picture


def build_page(runner: Runner, examples: list[Example] | None = None):
    """The gr.Blocks app around `runner` (launch it with `serve`)."""
    separate = "separate" in runner.tasks
    with gr.Blocks(title="avfusion demo", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        frame_state = gr.State(None)     # the preview frame (H, W, 3)
        corner_state = gr.State(None)    # the first corner of a box being drawn
        gr.Markdown(_intro(runner))
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="video (upload or record)", sources=["upload", "webcam"], include_audio=True,
                                 webcam_options=gr.WebcamOptions(mirror=False), elem_id="video")
                tasks = gr.CheckboxGroup(list(runner.tasks), value=[t for t in runner.tasks if t != "embed"],
                                         label="run", elem_id="tasks")
                run = gr.Button("Run", variant="primary", elem_id="run")
                with gr.Accordion("options", open=True):
                    top_k = gr.Slider(1, 10, value=5, step=1, label="classify: labels shown per window",
                                      visible="classify" in runner.tasks)
                    readout = gr.Radio(list(READOUTS), value="default", label="localize: heatmap read-out "
                                       "(default: contrastive when the checkpoint has the head)",
                                       visible="localize" in runner.tasks)
                    frame = gr.Image(label="separate: click two corners on the frame to add a box",
                                     interactive=False, elem_id="frame", visible=separate)
                    regions = gr.Textbox(label=f"separate: regions in pixels, up to {MAX_REGIONS}, `x0,y0,x1,y1` "
                                         "(box) or `x,y` (point), split by `;`; empty = the whole frame",
                                         elem_id="regions", visible=separate)
                    clear = gr.Button("clear regions", size="sm", visible=separate)
                if examples:
                    gr.Examples([[str(e.path), e.regions] for e in examples], inputs=[video, regions],
                                example_labels=[e.caption for e in examples], label="AV-Digits examples")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                out = {"status": status}
                out["clip_labels"] = gr.Label(label="classify: whole video", visible=False)
                out["window_labels"] = gr.Dataframe(headers=["window", "top labels (score)"], label="classify: per window",
                                                    visible=False, wrap=True, interactive=False)
                out["localize_video"] = gr.Video(label="localize: overlay video", visible=False,
                                                 elem_id="localize-video")
                out["localize_sheet"] = gr.Image(label="localize: heatmap per window (+ = peak)", visible=False,
                                                 type="filepath", elem_id="localize-sheet")
                out["mixture"] = gr.Audio(label="separate: the mixture", visible=False, type="filepath")
                for k in range(MAX_REGIONS):
                    out[f"source_{k}"] = gr.Audio(label=f"source {k}", visible=False, type="filepath")
                out["residual"] = gr.Audio(label="separate: residual (what no region took)", visible=False,
                                           type="filepath")
                out["spectrograms"] = gr.Image(label="separate: spectrograms", visible=False, type="filepath")
                out["regions_picture"] = gr.Image(label="separate: the regions", visible=False, type="filepath")
                out["segment_video"] = gr.Video(label="segment: overlay video", visible=False)
                out["segment_sheet"] = gr.Image(label="segment: mask per window", visible=False, type="filepath")
                out["embed_summary"] = gr.Markdown(visible=False)
                out["downloads"] = gr.File(label="downloads: the files the commands write (directories zipped)",
                                           file_count="multiple", visible=False, interactive=False)
        outputs = [out[name] for name in OUTPUTS]

        def on_run(video_path, chosen, k, read, regions_text, progress=gr.Progress()):
            try:
                options = Options(top_k=int(k), readout=None if read in (None, "default") else read,
                                  regions=parse_regions(regions_text or ""))
                results = runner.run(video_path, chosen or [], options,
                                     progress=lambda fraction, message: progress(fraction, desc=message))
            except AvfusionError as exc:
                raise gr.Error(_message(exc, video_path), duration=None, print_exception=False) from None
            except Exception as exc:   # a bug, not the user's input: logged in full, a message on the page
                log.exception("demo request failed")
                raise gr.Error(f"unexpected error ({type(exc).__name__}: {exc}); the app keeps serving, the "
                               "server log has the details", duration=None, print_exception=False) from None
            return _show(results)

        run.click(on_run, inputs=[video, tasks, top_k, readout, regions], outputs=outputs, api_name="run",
                  concurrency_limit=1)

        def on_video(video_path):
            if not video_path:
                return None, None, None
            try:
                picture = runner.preview(video_path)
            except AvfusionError as exc:
                gr.Warning(str(exc))
                return None, None, None
            return picture, None, picture

        def on_click(picture, corner, regions_text, evt: gr.SelectData):
            if picture is None:
                return corner, regions_text, None
            x, y = (float(v) for v in evt.index[:2])
            if corner is None:
                return [x, y], regions_text, _draw(picture, regions_text, [x, y])
            box = (min(corner[0], x), min(corner[1], y), max(corner[0], x), max(corner[1], y))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:      # a second click on the same spot: a point
                box = (x, y)
            text = "; ".join(t for t in ((regions_text or "").strip(), format_regions([box])) if t)
            return None, text, _draw(picture, text, None)

        video.change(on_video, inputs=video, outputs=[frame_state, corner_state, frame], api_name=False)
        frame.select(on_click, inputs=[frame_state, corner_state, regions], outputs=[corner_state, regions, frame],
                     api_name=False)
        regions.change(lambda p, c, t: _draw(p, t, c), inputs=[frame_state, corner_state, regions], outputs=frame,
                       api_name=False)
        clear.click(lambda p: (None, "", p), inputs=frame_state, outputs=[corner_state, regions, frame],
                    api_name=False)
    return app


def _message(exc: Exception, video_path: str | None) -> str:
    """The error's message, the upload named by its file name rather than its place in the app's cache."""
    text = str(exc)
    if video_path:
        for form in (str(Path(video_path).resolve()), str(video_path)):
            text = text.replace(form, Path(video_path).name)
    return text


def _show(results: dict[str, TaskOutput]) -> list:
    """The outputs' values, in OUTPUTS order; the components of tasks not run are hidden."""
    hidden = gr.update(value=None, visible=False)
    values = {name: hidden for name in OUTPUTS}
    lines, files = [], []
    for task, out in results.items():
        files.append(str(out.download))
        r = out.result
        if task == "classify":
            values["clip_labels"] = gr.update(value={t["label"]: t["score"] for t in r.top(r.clip_scores)},
                                              visible=True)
            rows = [[f"{a:.2f}-{b:.2f} s", ", ".join(f"{t['label']} ({t['score']:.3f})" for t in r.top(s))]
                    for a, b, s in zip(r.windows.start, r.windows.end, r.scores)]
            values["window_labels"] = gr.update(value=rows, visible=True)
            lines.append(f"**classify**: {_count(len(rows))} → `{out.path.name}`")
        elif task == "localize":
            _show_overlays(values, "localize", out.path, "heatmaps.png")
            lines.append(f"**localize**: {r.readout} heatmaps of {_count(len(r.windows))} → `{out.path.name}/`")
        elif task == "separate":
            values["mixture"] = gr.update(value=str(out.path / "mixture.wav"), visible=True)
            for k, box in enumerate(r.regions):
                values[f"source_{k}"] = gr.update(value=str(out.path / f"source_{k}.wav"), visible=True,
                                                  label=f"separate: source {k}, region ({format_regions([box])})")
            values["residual"] = gr.update(value=str(out.path / "residual.wav"), visible=True)
            values["spectrograms"] = gr.update(value=str(out.path / "spectrograms.png"), visible=True)
            values["regions_picture"] = gr.update(value=str(out.path / "regions.png"), visible=True)
            lines.append(f"**separate**: {len(r.regions)} region(s) → `{out.path.name}/`")
        elif task == "segment":
            _show_overlays(values, "segment", out.path, "overlays.png")
            lines.append(f"**segment**: masks of {_count(len(r.windows))} → `{out.path.name}/`")
        elif task == "embed":
            note = " (no audio stream: silence substituted)" if r.input.audio_substituted else ""
            values["embed_summary"] = gr.update(
                value=f"**embed**: {_count(len(r.windows))}, image / audio / fusion embeddings of dimension "
                      f"{r.image.shape[1]}{note} → `{out.path.name}`", visible=True)
            lines.append(f"**embed** → `{out.path.name}`")
    values["status"] = "\n\n".join(lines)
    values["downloads"] = gr.update(value=files, visible=bool(files))
    return [values[name] for name in OUTPUTS]


def serve(runner: Runner, *, host: str = "127.0.0.1", port: int = 7860, examples: bool = True,
          block: bool = True, quiet: bool = False):
    """Build the page and launch it on host:port. Gradio keeps uploads (and its copies of the files it
    serves) in `runner.workdir/uploads`, which this sets for the process (GRADIO_TEMP_DIR); uploads over
    the runner's limit are refused. With block=False, returns the running app (stop it with `app.close()`)."""
    os.environ["GRADIO_TEMP_DIR"] = str(runner.workdir / "uploads")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_page(runner, runner.write_examples() if examples else None)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, max_file_size=runner.max_upload_bytes, share=False,
               prevent_thread_lock=not block, quiet=quiet, inbrowser=False, show_error=False,
               footer_links=["api"], ssr_mode=False, mcp_server=False)
    return app


def _show_overlays(values: dict, task: str, directory: Path, sheet: str) -> None:
    """The overlay video (when the command wrote one) and the picture sheet of a localize / segment output."""
    if (directory / "overlay.mp4").is_file():
        values[f"{task}_video"] = gr.update(value=str(directory / "overlay.mp4"), visible=True)
    values[f"{task}_sheet"] = gr.update(value=str(directory / sheet), visible=True)


def _count(n: int) -> str:
    return f"{n} window{'' if n == 1 else 's'}"
