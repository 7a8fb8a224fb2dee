"""``genprop-app``: a web page to propagate first-frame edits with a trained GenProp model.

```
genprop-app --model EXPORT [--port 7860] [--host 127.0.0.1] [--share false] [--cases DIR] \
    [--device cpu|cuda] [--max-frames 120] [--max-side 1024] [--max-upload-mb 200]
```
The page loads a video (mp4, webm, mov or a zip of frames) or a toy benchmark case from
``--cases`` (a ``genprop-toyworld benchmark`` folder), lets you edit its first frame, and runs
the model with a progress bar per denoising step. Runs queue one at a time. Gradio's usage
analytics are off and nothing is shared unless ``--share true``. See docs/app.md.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Before gradio is imported: no usage analytics are sent, from the page or the server.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from contracts.interrupts import console_signals
from genprop.cli.propagate import add_allow_path, load_model
from genprop.cli.usage import EXIT_USAGE, OneLineArgumentParser, UsageError
from genprop_app.uploads import Limits


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The ``genprop-app`` argument parser."""
    p = OneLineArgumentParser(prog="genprop-app", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="save_pretrained model folder")
    p.add_argument("--port", type=int, default=7860, help="port of the page (default 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument(
        "--share", type=_bool, default=False, help="true: a public gradio.live link (off)"
    )
    p.add_argument("--cases", type=Path, default=None, help="toy benchmark cases folder")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--max-frames", type=int, default=Limits.max_frames, help="frames per video")
    p.add_argument("--max-side", type=int, default=Limits.max_side, help="pixels, longer side")
    p.add_argument(
        "--max-upload-mb",
        type=int,
        default=Limits.max_upload_bytes >> 20,
        help="largest upload, MB",
    )
    add_allow_path(p)
    return p


def _limits(args: argparse.Namespace) -> Limits:
    for flag, value in (
        ("--max-frames", args.max_frames),
        ("--max-side", args.max_side),
        ("--max-upload-mb", args.max_upload_mb),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if args.cases is not None and not (args.cases / "index.json").is_file():
        raise UsageError(
            f"{args.cases}: no index.json; --cases must be a folder written by "
            "genprop-toyworld benchmark"
        )
    return Limits(args.max_frames, args.max_side, args.max_upload_mb << 20)


def launch_kwargs(limits: Limits, work_dir: Path) -> dict:
    """The ``Blocks.launch`` options the app always uses (no SSR node server, the upload limit,
    the work folder served)."""
    return {
        "allowed_paths": [str(work_dir)],
        "max_file_size": limits.max_upload_bytes,
        "ssr_mode": False,
        "show_error": False,
    }


@console_signals("genprop-app")
def main(argv: list[str] | None = None) -> int:
    """Entry point: serve the page until interrupted; 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        limits = _limits(args)
        model = load_model(args.model, args.device, args.allow_path)
    except (UsageError, ValueError) as e:
        print(f"genprop-app: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from genprop_app.page import PageConfig, build_page
    from genprop_app.runner import ModelRunner

    work_dir = Path(tempfile.mkdtemp(prefix="genprop-app-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    page = build_page(PageConfig(ModelRunner(model, args.device), work_dir, args.cases, limits))
    try:
        page.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            **launch_kwargs(limits, work_dir),
        )
    except OSError as e:  # the port is taken
        msg = f"cannot serve on port {args.port} ({e}); give a free one with --port"
        print(f"genprop-app: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
