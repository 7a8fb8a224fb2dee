"""The contracts every GenProp package shares, in one dependency-free package at the bottom.

``datagen``, ``training``, ``genprop``, ``evaluation`` and ``benchmarks`` may all import it; it
imports nothing of theirs. It holds what more than one of them must agree on:

* :mod:`contracts.tasks` — the task vocabulary, the null task and the tracking prompt;
* :mod:`contracts.schema` — the pixel shard schema (datagen writes it, training reads it);
* :mod:`contracts.jobs` — the shard-job engine (one task per output shard, on Ray or here) that
  ``genprop-data`` and ``genprop-cache`` both drive;
* :mod:`contracts.shard_spec` — shard-spec expansion (folders, brace patterns, ``::`` lists);
* :mod:`contracts.jsonfile` — the hardened JSON reader for untrusted files;
* :mod:`contracts.frames` — the one frame decoder: image files and video frames to upright,
  bounded, correctly scaled 8-bit RGB;
* :mod:`contracts.cases` — the benchmark case-folder layout;
* :mod:`contracts.ownership` — output-folder owner markers and the one-run-per-folder lock.
"""
