"""`avfusion demo --checkpoint DIR_OR_PTH [...]`: a local web page to try the checkpoints on your own clips."""
from __future__ import annotations

import argparse
import logging

from avfusion.demo import DEFAULT_MAX_UPLOAD_MB

log = logging.getLogger(__name__)

DESCRIPTION = """\
Start a local web page (Gradio) where you upload or record a video, or pick a built-in AV-Digits
example, choose what to run among what the checkpoints can do (classify, localize, separate,
segment, embed), and see the labels per window, the localisation overlay and heatmaps, the separated
sounds beside the mixture, the segmentation overlay. Every output can be downloaded and is the file
the command of the same name writes (e.g. `avfusion localize VIDEO -c CHECKPOINT`)."""

EPILOG = """\
examples:
  avfusion demo -c runs/avdigits/checkpoints/localize -c runs/avdigits/checkpoints/separate
  avfusion demo -c deepavfusion_vitb_vggsound_ep200.pth --port 8080

Each task runs on the first checkpoint of its kind, else on the first that can do it (localize on
an encoder's fusion attention, embed on any). The page listens on 127.0.0.1 (this machine only)
unless --host says otherwise. Uploads and outputs live in a temporary directory, removed when the
app stops; nothing outside it is read or written for a request. Needs the optional extra:
  pip install 'avfusion[demo]'
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="a local web page: drop a video, see what the model hears and sees",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "-c", action="append", required=True, metavar="DIR_OR_PTH",
                   help="a save_pretrained directory or an official .pth file (repeatable)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload accepted (default {DEFAULT_MAX_UPLOAD_MB} MB)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per forward pass (default 8)")
    p.add_argument("--labels", metavar="FILE",
                   help="the classifier's class names, one per line (.csv: last column), as for `avfusion classify`")
    p.add_argument("--no-examples", action="store_true", help="do not write the built-in AV-Digits example clips")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    import signal
    import tempfile

    import torch

    from avfusion.demo import require_gradio

    require_gradio()                         # before loading any checkpoint: say how to install it
    from avfusion.demo.page import serve
    from avfusion.demo.runner import Runner

    logging.getLogger("httpx").setLevel(logging.WARNING)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="avfusion-demo-") as workdir:
        runner = Runner(args.checkpoint, workdir, device=device, batch_size=args.batch_size,
                        max_upload_mb=args.max_upload_mb, labels=args.labels)
        for task, source, kind in runner.describe():
            log.info("%-9s %s (%s)", task, source, kind)
        log.info("uploads and outputs in %s (removed on exit); Ctrl-C stops the app", workdir)
        # a `kill` stops the app as Ctrl-C does, so that the temporary directory is removed
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            serve(runner, host=args.host, port=args.port, examples=not args.no_examples, block=True)
        except KeyboardInterrupt:
            pass
    return 0
