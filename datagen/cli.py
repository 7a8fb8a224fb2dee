"""``genprop-data``: the Hydra entry point of the data pipeline.

    genprop-data dry_run=true source=ytvis source.annotations=FILE source.frames=DIR
    genprop-data dry_run=true source=sav source.root=DIR source.masklets=both
    genprop-data dry_run=true source=vos source.root=DIR source.resolution=480p
    genprop-data dry_run=true source=mp4_masks source.root=DIR   # <name>.mp4 + <name>_mask/
    genprop-data dry_run=true source=toyworld source.root=DIR

A dry run validates the dataset, writes nothing, and prints a JSON summary as its last stdout
line (see :func:`datagen.dryrun.dry_run`). Exit status: 0 when at least one video is usable,
1 when none is, 2 when the input itself is unusable (missing file, bad JSON, bad options).
Without ``dry_run=true`` the job builds training shards (:mod:`datagen.runner`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from datagen.dryrun import dry_run
from datagen.readers import open_reader
from datagen.record import DatasetError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def source_options(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """``(source name, reader options)`` from ``cfg.source``.

    Raises:
        DatasetError: a required option (``???`` in the config) was not given.
    """
    try:
        opts = OmegaConf.to_container(cfg.source, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise DatasetError(
            f"missing required option source.{e.key} (give it on the command line, e.g. "
            f"source.{e.key}=...)"
        ) from e
    assert isinstance(opts, dict)
    name = str(opts.pop("name"))
    return name, opts


def run_dry_run(cfg: DictConfig) -> int:
    """Open the configured source, validate it, print the summary; returns the exit status."""
    try:
        name, opts = source_options(cfg)
        reader = open_reader(name, **opts)
    except DatasetError as e:
        print(f"genprop-data: error: {e}", file=sys.stderr)
        return 2
    summary = dry_run(
        reader,
        check_frames=bool(cfg.check_frames),
        progress=bool(cfg.progress),
        max_videos=cfg.max_videos,
    )
    print(json.dumps(summary), flush=True)
    if summary["videos"] == 0:
        print(
            f"genprop-data: error: no usable videos in source={name} "
            f"({len(summary['skipped'])} skipped; see 'skipped' in the summary for reasons)",
            file=sys.stderr,
        )
        return 1
    return 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="genprop_data")
def _main(cfg: DictConfig) -> None:
    if cfg.dry_run:
        status = run_dry_run(cfg)
        if status:
            sys.exit(status)
    else:
        from datagen.runner import run_job

        try:
            run_job(cfg)
        except DatasetError as e:
            # The whole input is unusable: one clear line, no traceback.
            print(f"genprop-data: error: {e}", file=sys.stderr)
            sys.exit(2)


def main() -> None:
    """Console entry point ``genprop-data``."""
    _main()


if __name__ == "__main__":
    main()
