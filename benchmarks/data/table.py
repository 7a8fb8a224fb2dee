"""The markdown table of a :mod:`benchmarks.data` report (one column per dataset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.tasks import TASKS

Row = tuple[str, Callable[[dict[str, Any]], Any]]


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int) and spec:
        return format(value, spec)
    return str(value)


def _loadavg(values: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "–"


def _ms(*path: str) -> Callable[[dict[str, Any]], str]:
    def cell(ds: dict[str, Any]) -> str:
        s, share = _get(ds, *path, "s_per_sample"), _get(ds, *path, "share")
        if s is None:
            return "–"
        return f"{1000 * s:.2f} ms ({100 * share:.0f} %)" if share is not None else f"{s:.4f}"

    return cell


def _rows() -> list[Row]:
    stage_rows: list[Row] = [
        (f"stage: {name} (ms/sample, share)", _ms("stages", name))
        for name in (
            "load",
            "decode",
            "resize_crop",
            "augment",
            "recipe",
            "other",
            "encode_h264",
            "write_h264",
            "total_h264",
            "encode_lossless",
            "write_lossless",
            "total_lossless",
        )
    ]
    recipe_rows: list[Row] = [
        (
            f"recipe {task} (ms/call)",
            lambda ds, t=task: _fmt(
                _get(ds, "recipes", t, "s_per_call")
                and 1000 * _get(ds, "recipes", t, "s_per_call"),
                ".2f",
            ),
        )
        for task in TASKS
    ]
    e2e = ("end_to_end",)
    return [
        (
            "clip (frames x size), samples/job",
            lambda ds: "{} x {}x{}, {}".format(
                ds["config"]["frames"], *ds["config"]["size"], ds["config"]["num_samples"]
            ),
        ),
        ("videos in the dataset", lambda ds: _fmt(_get(ds, "config", "videos"))),
        ("repetitions (medians of)", lambda ds: _fmt(_get(ds, "config", "repetitions"))),
        (
            "decode floor (samples/s)",
            lambda ds: _fmt(_get(ds, "decode_floor", "samples_per_s"), ".2f"),
        ),
        *stage_rows,
        *recipe_rows,
        (
            "in-process end to end (samples/s)",
            lambda ds: _fmt(_get(ds, *e2e, "in_process", "samples_per_s"), ".2f"),
        ),
        (
            "in-process time / decode floor",
            lambda ds: _fmt(_get(ds, *e2e, "in_process", "time_ratio_vs_floor"), ".2f"),
        ),
        (
            "in-process time / (decode + h264 encode) floor",
            lambda ds: _fmt(
                _get(ds, *e2e, "in_process", "time_ratio_vs_decode_encode_floor"), ".2f"
            ),
        ),
        (
            "target pipeline <= 1.5x floor met",
            lambda ds: _fmt(_get(ds, *e2e, "in_process", "ratio_target_met")),
        ),
        (
            "in-process CPU s/sample (all threads)",
            lambda ds: _fmt(_get(ds, *e2e, "in_process", "cpu_s_per_sample"), ".3f"),
        ),
        (
            "Ray job: samples, shards",
            lambda ds: (
                "{}, {}".format(
                    _get(ds, *e2e, "ray", "samples_per_job"),
                    _get(ds, *e2e, "ray", "shards_per_job"),
                )
                if _get(ds, *e2e, "ray")
                else "–"
            ),
        ),
        (
            "Ray first job, worker warm-up (s)",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "warmup_job_s"), ".2f"),
        ),
        (
            "Ray 2 CPUs, 2 tasks at once (samples/s)",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "two_tasks", "samples_per_s"), ".2f"),
        ),
        (
            "Ray 2 CPUs, 1 task at a time (samples/s)",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "one_task", "samples_per_s"), ".2f"),
        ),
        (
            "Ray speedup 2 vs 1 task",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "speedup_2_vs_1"), ".2f"),
        ),
        (
            "machine ceiling: CPU loop 2 vs 1 process, before/after (median)",
            lambda ds: (
                "{:.2f} / {:.2f} ({:.2f})".format(
                    _get(ds, *e2e, "ray", "cpu_ceiling_before", "speedup_2_vs_1"),
                    _get(ds, *e2e, "ray", "cpu_ceiling_after", "speedup_2_vs_1"),
                    _get(ds, *e2e, "ray", "cpu_ceiling_median"),
                )
                if _get(ds, *e2e, "ray", "cpu_ceiling_after")
                else "–"
            ),
        ),
        (
            "Ray speedup / machine ceiling",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "speedup_over_ceiling"), ".2f"),
        ),
        (
            "target Ray speedup / ceiling >= 0.9 met",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "speedup_over_ceiling_target_met")),
        ),
        (
            "target Ray speedup >= 1.7 met",
            lambda ds: _fmt(_get(ds, *e2e, "ray", "speedup_target_met")),
        ),
        (
            "Ray wall time / (decode + h264) floor (2 tasks)",
            lambda ds: _fmt(
                _get(ds, *e2e, "ray", "two_tasks", "time_ratio_vs_decode_encode_floor"), ".2f"
            ),
        ),
        (
            "peak RSS in-process, after imports (MiB)",
            lambda ds: _fmt(_get(ds, "memory", "in_process_peak_rss_mb", "after_imports"), ".0f"),
        ),
        (
            "peak RSS in-process, after N-sample jobs (MiB)",
            lambda ds: _fmt(_get(ds, "memory", "in_process_peak_rss_mb", "after_n_jobs"), ".0f"),
        ),
        (
            "peak RSS in-process, after a 3N-sample job (MiB)",
            lambda ds: _fmt(_get(ds, "memory", "in_process_peak_rss_mb", "after_3n_job"), ".0f"),
        ),
        (
            "peak RSS in-process by dataset size (videos: MiB)",
            lambda ds: (
                ", ".join(
                    f"{v}: {m:.0f}"
                    for v, m in zip(
                        _get(ds, "memory", "dataset_sizes_peak_rss_mb", "videos"),
                        _get(ds, "memory", "dataset_sizes_peak_rss_mb", "peak_rss_mb"),
                        strict=True,
                    )
                )
                if _get(ds, "memory", "dataset_sizes_peak_rss_mb")
                else "–"
            ),
        ),
        (
            "target worker peak <= 1.5 GB met",
            lambda ds: _fmt(_get(ds, "memory", "target_met")),
        ),
        (
            "peak RSS Ray worker, max (MiB)",
            lambda ds: (
                _fmt(max(_get(ds, *e2e, "ray", "worker_peak_rss_mb") or [None]), ".0f")
                if _get(ds, *e2e, "ray", "worker_peak_rss_mb")
                else "–"
            ),
        ),
        ("shard bytes/sample h264", lambda ds: _fmt(_get(ds, "bytes_per_sample", "h264"), ",")),
        (
            "shard bytes/sample lossless",
            lambda ds: _fmt(_get(ds, "bytes_per_sample", "lossless"), ","),
        ),
        (
            "lossless / h264 bytes",
            lambda ds: _fmt(_get(ds, "bytes_per_sample", "lossless_over_h264"), ".1f"),
        ),
    ]


def projection_lines(proj: dict[str, Any] | None) -> list[str]:
    """Markdown lines for the SA-V core-hours projection (none when it was not computed)."""
    if not proj:
        return []
    a, per = proj["assumptions"], proj["sav_core_s_per_sample"]
    hours = ", ".join(f"{k}/video: **{v:,} core-h**" for k, v in proj["core_hours"].items())
    return [
        "",
        f"SA-V train projection (from `{proj['measured_on']}`): {a['videos']:,} videos of "
        f"~{a['avg_video_s']} s at {a['fps']:.0f} fps, {a['source_size_wh'][0]}x"
        f"{a['source_size_wh'][1]} source, clips {a['clip_t_h_w'][0]}x{a['clip_t_h_w'][1]}x"
        f"{a['clip_t_h_w'][2]} ({a['frames_decoded_per_clip']} frames decoded per clip): "
        f"{per['total']:.2f} core-s/sample (decode {per['decode']:.2f} + rest "
        f"{per['rest']:.2f}, decode scaled by source pixels, the rest by output pixels); {hours}. "
        f"Samples per video: {a['samples_per_video']}.",
    ]


def cluster_lines(cluster: dict[str, Any] | None) -> list[str]:
    """Markdown lines for the all-nodes vs one-node run on a Ray cluster (none when not run)."""
    if not cluster:
        return []
    median = cluster["cpu_ceiling_median"]
    met = "met" if cluster["speedup_over_ceiling_target_met"] else "not met"
    return [
        "",
        f"Ray cluster ({cluster['nodes']} nodes, `{cluster['dataset']}` job, "
        f"`cpus_per_task=1`): all nodes {cluster['all_nodes']['samples_per_s']:.2f} samples/s, "
        f"one node {cluster['one_node']['samples_per_s']:.2f} samples/s, speedup "
        f"**{cluster['speedup_2_vs_1']:.2f}x**; machine ceiling (median) {median:.2f}; "
        f"speedup / ceiling **{cluster['speedup_over_ceiling']:.2f}** (target "
        f">= {cluster['speedup_over_ceiling_target']}, {met}).",
    ]


def markdown_table(report: dict[str, Any]) -> str:
    """A markdown document: the machine, one table (rows = metrics), and the skipped parts."""
    names = list(report["datasets"])
    m = report["machine"]
    lines = [
        f"# Data pipeline benchmark (`{report['command']}`)",
        "",
        f"{m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
        f"load average (1/5/15 min) at start {_loadavg(m.get('loadavg_at_start'))}, at end "
        f"{_loadavg(m.get('loadavg_at_end'))}; medians of {report['repetitions']} "
        f"repetitions; total {report['total_s']} s; this process's peak RSS "
        f"{report['driver_peak_rss_mb']} MiB.",
        "",
        f"Local Ray ({_get(report, 'ray', 'num_cpus')} CPUs) start-up: "
        f"{_fmt(_get(report, 'ray', 'startup_s'), '.2f')} s (not in any throughput below).",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, cell in _rows():
        lines.append(
            f"| {label} | " + " | ".join(cell(report["datasets"][n]) for n in names) + " |"
        )
    lines += [
        "",
        "Decode floor: the frames and masks each sample used, decoded again through the reader "
        "alone. Stage shares are of the H.264 job's total (lossless rows: of the lossless "
        "job's). Recipes are each timed on every sample's clip. Ray rows: throughput after "
        "start-up and a warm-up job per setting; 1 task at a time = `cpus_per_task=2` on the same "
        "Ray; each task runs as many threads as it holds CPUs. Machine ceiling: a pure-Python "
        "loop in 2 processes vs 1. "
        "Peak RSS: VmHWM of a fresh process running the in-process jobs (flat = streaming).",
    ]
    lines.append("")
    for name in names:
        lines.append(f"- **{name}**: {report['datasets'][name].get('notes', '')}")
    lines += projection_lines(report.get("projection_sav"))
    lines += cluster_lines(report.get("ray_cluster"))
    for part, note in report["skipped"].items():
        lines.append(f"\nSkipped {part}: {note}")
    return "\n".join(lines) + "\n"
