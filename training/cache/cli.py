"""``genprop-cache``: the Hydra entry point of the latent cache.

Config: ``conf/training/genprop_cache.yaml``.

    genprop-cache data.shards=DIR model.net.pretrained=FOLDER output_dir=DIR \\
        [model.net.overrides.num_frames=33] [dtype=bf16|fp16|fp32] [ray.address=auto]

Prints a one-line JSON summary (samples, errors, key) on success. Exit status: 0 on success;
1 when shards failed or no sample was cached (the manifest is written; rerun to resume); 2 for
bad options or inputs, or an ``output_dir`` it may not write (not a ``genprop-cache`` folder,
a cache of another model or dtype, or in use by another run; ``overwrite=true`` allows the first
two and still writes only the cache's own files). Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from contracts.interrupts import console_signals
from training.cache.key import LatentCacheError
from training.cache.runner import CacheJobFailed, run_cache

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf" / "training")


def run(cfg: DictConfig) -> int:
    """Run the job described by ``cfg``; returns the exit status."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        print(f"genprop-cache: error: missing required option {e.full_key}", file=sys.stderr)
        return 2
    assert isinstance(plain, dict)
    try:
        manifest = run_cache(plain)
    except CacheJobFailed as e:
        print(f"genprop-cache: error: {e}", file=sys.stderr)
        return 1
    except (LatentCacheError, FileNotFoundError, ValueError) as e:
        print(f"genprop-cache: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    keep = ("samples", "errors", "key", "encoder_key", "dtype")
    print(json.dumps({k: manifest[k] for k in keep} | {"shards": len(manifest["shards"])}))
    return 0


def _entry(cfg: DictConfig) -> None:
    status = run(cfg)
    if status:
        raise SystemExit(status)


@console_signals("genprop-cache")
def main() -> None:
    """Console entry point ``genprop-cache``."""
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="genprop_cache")(_entry)()


if __name__ == "__main__":
    main()
