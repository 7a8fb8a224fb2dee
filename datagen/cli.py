"""``genprop-data``: the Hydra entry point of the data pipeline.

    genprop-data dry_run=true source=ytvis source.annotations=FILE source.frames=DIR
    genprop-data dry_run=true source=sav source.root=DIR source.masklets=both
    genprop-data dry_run=true source=vos source.root=DIR source.resolution=480p
    genprop-data dry_run=true source=mp4_masks source.root=DIR   # <name>.mp4 + <name>_mask/
    genprop-data dry_run=true source=toyworld source.root=DIR

A dry run validates the dataset, writes nothing, and prints a JSON summary as its last stdout
line (see :func:`datagen.dryrun.dry_run`). Exit status: 0 when at least one video is usable and
can yield a clip of ``clip.frames`` frames, 1 when none is or none can ("this run would produce
no samples"), 2 when the input itself is unusable (missing file, bad JSON, bad options).

Without ``dry_run=true`` the job builds training shards (:mod:`datagen.runner`) and prints a
one-line summary. Exit status: 0 on success; 1 when shards failed or fewer than
``min_yield`` × ``num_samples`` samples were built (the line counts the reasons; the manifest is
written and a rerun resumes), or when the output folder cannot be written (e.g. a full disk);
2 for bad options, an unusable input, or an ``output_dir`` this job may not write (not
``genprop-data``'s, made by another config, or in use by another run; see
:mod:`contracts.ownership`). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from contracts.interrupts import console_signals
from datagen.dryrun import dry_run
from datagen.job_config import ConfigError, check_job_config
from datagen.readers import open_reader
from datagen.record import DatasetError

# conf/datagen/: genprop_data.yaml and its groups (source/, mix/, recipes/).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf" / "datagen")


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
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        check_job_config(plain)
        reader = open_reader(name, **opts)
    except (DatasetError, ConfigError) as e:
        print(f"genprop-data: error: {e}", file=sys.stderr)
        return 2
    stride = plain["clip"].get("stride", 1)
    strides = [int(s) for s in (stride if isinstance(stride, list) else [stride])]
    frames = int(plain["clip"]["frames"])
    summary = dry_run(
        reader,
        check_frames=bool(cfg.check_frames),
        progress=bool(cfg.progress),
        max_videos=cfg.max_videos,
        clip_frames=frames,
        clip_strides=strides,
    )
    print(json.dumps(summary), flush=True)
    if summary["videos"] == 0:
        print(
            f"genprop-data: error: no usable videos in source={name} "
            f"({len(summary['skipped'])} skipped; see 'skipped' in the summary for reasons)",
            file=sys.stderr,
        )
        return 1
    if summary["videos_with_clip"] == 0:
        print(
            f"genprop-data: error: this run would produce no samples: none of the "
            f"{summary['videos']} usable videos has {frames} annotated frames in a row "
            f"(clip.frames={frames}, clip.stride={stride}) starting where an object is present",
            file=sys.stderr,
        )
        return 1
    return 0


def run_shards(cfg: DictConfig) -> int:
    """Build the shards, print a one-line summary or error; returns the exit status."""
    from datagen.runner import JobFailed, run_job

    try:
        result = run_job(cfg)
    except (DatasetError, ConfigError) as e:
        # Bad options or an unusable input: one clear line, no traceback.
        print(f"genprop-data: error: {e}", file=sys.stderr)
        return 2
    except JobFailed as e:
        print(f"genprop-data: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # The output folder cannot be written (full disk, no permission): one line, no traceback.
        where = f" {e.filename}" if e.filename else ""
        print(f"genprop-data: error: cannot write{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    m = result.manifest
    print(
        f"genprop-data: {m['samples']} of {m['planned_samples']} samples in "
        f"{len(m['shards'])} shards, {m['errors']} bad videos, {m['skipped_attempts']} skipped "
        f"attempts; manifest {result.path}",
        file=sys.stderr,
    )
    return 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="genprop_data")
def _main(cfg: DictConfig) -> None:
    status = run_dry_run(cfg) if cfg.dry_run else run_shards(cfg)
    if status:
        sys.exit(status)


@console_signals("genprop-data")
def main() -> None:
    """Console entry point ``genprop-data``."""
    _main()


if __name__ == "__main__":
    main()
