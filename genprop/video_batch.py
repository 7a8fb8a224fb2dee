"""The pixel batch a training step reads: :class:`VideoBatch`.

Training hands the model either pixels (a :class:`VideoBatch`, encoded inside the step by
:func:`genprop.modeling.latents.encode_batch`) or precomputed latents (a
:class:`genprop.modeling.latents.EncodedBatch`). Both are dataclasses with a ``to(device)`` method,
so
Lightning moves them to the device like any tensor (``move_data_to_device`` calls ``to``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

STAGES = ("i2v", "genprop")


def tensor_fields(batch: Any) -> dict[str, torch.Tensor]:
    """The fields of a batch dataclass that hold a tensor, by name (unset and list fields out)."""
    return {
        f.name: v
        for f in dataclasses.fields(batch)
        if isinstance(v := getattr(batch, f.name), torch.Tensor)
    }


@dataclass
class VideoBatch:
    """One batch of training pairs, as float tensors in the genprop conventions.

    Attributes:
        target: (B, T, 3, H, W) float in [-1, 1], the video to generate.
        first: (B, 3, H, W) float in [-1, 1], the generator's first frame.
        task: (B,) long task indices (:data:`contracts.tasks.TASKS`), or None (stage "i2v" only:
            no task).
        sce: (B, T, 3, H, W) float in [-1, 1], the SCE's content video, or None (stage "i2v").
        mask: (B, T, H, W) float in [0, 1], the edited region, or None (stage "i2v").
        prompt: B text prompts, or None (all empty).
        key: B sample keys (for messages and logs), or None.
    """

    target: torch.Tensor
    first: torch.Tensor
    task: torch.Tensor | None = None
    sce: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    prompt: list[str] | None = None
    key: list[str] | None = None

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.target.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that are set, by name (``prompt`` and ``key`` are lists)."""
        return tensor_fields(self)

    def to(self, device: torch.device | str, **kwargs: Any) -> VideoBatch:
        """All tensors moved to ``device`` (``kwargs`` as ``Tensor.to``, e.g. ``non_blocking``;
        a ``dtype`` applies to the float tensors only, ``task`` stays long)."""
        dtype = kwargs.pop("dtype", None)

        def move(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            if dtype is not None and value.is_floating_point():
                return value.to(device, dtype=dtype, **kwargs)
            return value.to(device, **kwargs)

        return dataclasses.replace(
            self, **{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)}
        )

    def validate(self, stage: str = "genprop") -> VideoBatch:
        """Check the fields a step of ``stage`` reads: presence, rank and agreeing shapes.

        Args:
            stage: "i2v" reads ``target``, ``first`` (and ``task``, ``prompt`` when given);
                "genprop" also needs ``sce``, ``mask`` and ``task``.

        Returns:
            ``self``, for chaining.

        Raises:
            ValueError: naming the first field that is missing or has the wrong shape.
        """
        if stage not in STAGES:
            raise ValueError(f"stage: expected one of {STAGES}, got {stage!r}")
        target = _tensor(self.target, "target", 5)
        b, t, c, h, w = target.shape
        if c != 3:
            raise ValueError(f"batch.target: expected (B, T, 3, H, W), got {tuple(target.shape)}")
        _shape(self.first, "first", (b, 3, h, w))
        needed = stage == "genprop"
        if self.sce is not None or needed:
            _shape(self.sce, "sce", (b, t, 3, h, w))
        if self.mask is not None or needed:
            _shape(self.mask, "mask", (b, t, h, w))
        if self.task is not None or needed:
            _shape(self.task, "task", (b,))
        for name in ("prompt", "key"):
            value = getattr(self, name)
            if value is not None and len(value) != b:
                raise ValueError(f"batch.{name}: {len(value)} entries for a batch of {b}")
        return self


def check_batch_type(batch: object, *accepted: type) -> None:
    """Raise a clear error when ``batch`` is not one of the ``accepted`` batch types.

    Raises:
        TypeError: naming the type received (e.g. a plain dict of tensors) and the types
            expected.
    """
    if not isinstance(batch, accepted):
        names = " or ".join(t.__name__ for t in accepted)
        raise TypeError(
            f"batch: expected a {names}, got {type(batch).__name__} (pixel tensors go "
            "in a genprop.video_batch.VideoBatch)"
        )


def _tensor(value: Any, name: str, ndim: int) -> torch.Tensor:
    if value is None:
        raise ValueError(f"batch.{name}: missing (required for this stage)")
    if not isinstance(value, torch.Tensor) or value.dim() != ndim:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"batch.{name}: expected a {ndim}-D tensor, got {got}")
    return value


def _shape(value: Any, name: str, want: tuple[int, ...]) -> None:
    tensor = _tensor(value, name, len(want))
    if tuple(tensor.shape) != want:
        raise ValueError(
            f"batch.{name}: shape {tuple(tensor.shape)}, expected {want} (from batch.target)"
        )
