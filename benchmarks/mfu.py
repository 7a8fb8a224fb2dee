"""Model FLOPs utilisation: peak bf16 throughput per card, MFU arithmetic, the markdown table.

Peak numbers are dense bf16 tensor-core TFLOP/s (no sparsity) from the vendors' datasheets. A card
is looked up by the first fragment of :data:`PEAK_BF16_TFLOPS` its CUDA device name contains
(``torch.cuda.get_device_name``: "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200",
"NVIDIA A100-SXM4-80GB", "NVIDIA L40S", ...); more specific fragments come first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Ordered: the first fragment found in the device name wins (so "H100 PCIe" before "H100").
PEAK_BF16_TFLOPS: dict[str, float] = {
    "GH200": 989.4,
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.4,  # SXM5 ("H100 80GB HBM3")
    "A100": 312.0,
    "L40S": 362.05,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.2,
}


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """Dense bf16 peak TFLOP/s of a card: ``override`` when given, else the table's, else None.

    Raises:
        ValueError: If ``override`` is not positive.
    """
    if override is not None:
        if not override > 0:
            raise ValueError(f"--peak-tflops: expected a positive number, got {override}")
        return float(override)
    for fragment, tflops in PEAK_BF16_TFLOPS.items():
        if fragment in device_name:
            return tflops
    return None


def mfu(model_flops: float, step_seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: ``model_flops / step_seconds / (peak TFLOP/s)``; None without a
    peak.

    Raises:
        ValueError: If ``step_seconds`` is not positive.
    """
    if not step_seconds > 0:
        raise ValueError(f"step time: expected > 0 s, got {step_seconds}")
    if peak is None:
        return None
    return model_flops / step_seconds / (peak * 1e12)


COLUMNS = (
    ("case", "case", "{}"),
    ("tokens", "tokens/clip", "{:,}"),
    ("batch", "batch", "{}"),
    ("step_s", "step (s)", "{:.3f}"),
    ("peak_memory_gb", "peak mem (GB)", "{:.2f}"),
    ("planned_memory_gb", "planned (GB)", "{:.2f}"),
    ("model_tflop", "model TFLOP/step", "{:.2f}"),
    ("tflops", "TFLOP/s", "{:.1f}"),
    ("mfu", "MFU", "{:.1%}"),
)


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A markdown table of benchmark rows (missing or None values print as ``-``)."""
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
