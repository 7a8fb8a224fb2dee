"""LPIPS (Zhang et al., CVPR 2018) in plain torch, with weights from a local folder.

The ``lpips`` package builds its backbone with torchvision, which we do not depend on; the
backbone is a short conv stack, rebuilt here with the same layer indices as torchvision's
``alexnet().features`` / ``vgg16().features`` so their state dicts load unchanged. Nothing is
downloaded.

The folder (``--lpips DIR``) holds two state dicts, each as ``.pth`` (read with
``torch.load(..., weights_only=True)``, nothing else is unpickled) or ``.safetensors``:

- ``backbone.pth``: torchvision's ImageNet weights, e.g.
  ``https://download.pytorch.org/models/alexnet-owt-7be5be79.pth`` (AlexNet, the LPIPS default) or
  ``https://download.pytorch.org/models/vgg16-397923af.pth`` (VGG16). Only ``features.*`` is used.
- ``lin.pth``: the LPIPS linear calibration, the ``lpips`` package's ``weights/v0.1/alex.pth`` (or
  ``vgg.pth``), keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``.

The network (AlexNet or VGG16) is read from the channel counts of ``lin.pth``. The distance is
LPIPS v0.1: inputs scaled to [-1, 1] and shifted by the LPIPS scaling layer, each tapped ReLU's
features unit-normalised over channels, squared difference weighted per channel by ``lin``,
averaged over space and summed over layers. Frames are compared at their own resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

# LPIPS' ScalingLayer constants (inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# Per backbone: torchvision ``features`` layout as (kind, args) and the indices of the tapped ReLUs.
_ALEX = [
    ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), ("relu",),
    ("conv", 384, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",),
]  # fmt: skip
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
NETS = {
    "alex": {"channels": (64, 192, 384, 256, 256), "taps": (1, 4, 7, 9, 11)},
    "vgg": {"channels": (64, 128, 256, 512, 512), "taps": (3, 8, 15, 22, 29)},
}
LPIPS_BATCH = 8  # frames per forward pass


class LpipsUnavailableError(RuntimeError):
    """No usable LPIPS weights in the given folder; the message says why."""


def _vgg_layout() -> list[tuple]:
    layout: list[tuple] = []
    c_in = 3
    for v in _VGG_CFG:
        if v == "M":
            layout.append(("pool", 2, 2))
        else:
            layout += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    return layout


def _build_features(net: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for spec in _ALEX if net == "alex" else _vgg_layout():
        if spec[0] == "conv":
            _, c_in, c_out, k, s, p = spec
            layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
        elif spec[0] == "relu":
            layers.append(nn.ReLU(inplace=False))
        else:
            layers.append(nn.MaxPool2d(spec[1], stride=spec[2]))
    return nn.Sequential(*layers)


class Lpips(nn.Module):
    """LPIPS distance network (AlexNet or VGG16 backbone, v0.1 linear layers).

    Args:
        net: ``"alex"`` or ``"vgg"``.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"net must be one of {tuple(NETS)}, got {net!r}")
        self.net = net
        self.features = _build_features(net)
        self.taps = NETS[net]["taps"]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in NETS[net]["channels"])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` images in [-1, 1] -> ``(N,)`` LPIPS distances."""
        total = torch.zeros(a.shape[0], device=a.device)
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b)):
            total = total + lin((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total


def _load_state(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    for suffix in (".safetensors", ".pth"):
        path = folder / f"{stem}{suffix}"
        if not path.is_file():
            continue
        try:
            if suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(path)
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable/unsafe file: a one-line reason, never a traceback
            raise LpipsUnavailableError(f"{path}: not a readable state dict ({e})") from e
        if not isinstance(state, dict):
            raise LpipsUnavailableError(f"{path}: expected a state dict of tensors")
        return state
    raise LpipsUnavailableError(
        f"{folder}: no {stem}.pth or {stem}.safetensors (--lpips needs backbone.* and lin.*)"
    )


def load_lpips(folder: str | Path, *, device: str = "cpu") -> Lpips:
    """Build :class:`Lpips` from ``folder`` (see the module docs for its contents).

    Raises:
        LpipsUnavailableError: missing folder or files, or weights of the wrong shapes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LpipsUnavailableError(f"{folder}: not a folder; --lpips must be a local folder")
    lin = _load_state(folder, "lin")
    backbone = _load_state(folder, "backbone")
    channels = tuple(
        int(lin[k].shape[1]) for k in sorted(lin) if k.startswith("lin") and k.endswith("weight")
    )
    net = next((n for n, spec in NETS.items() if spec["channels"] == channels), None)
    if net is None:
        raise LpipsUnavailableError(
            f"{folder}: lin.* has layers of {channels} channels, neither AlexNet's nor VGG16's"
        )
    model = Lpips(net)
    state = {f"lins.{k[3]}.weight": v for k, v in lin.items() if k.endswith("model.1.weight")}
    state |= {k: v for k, v in backbone.items() if k.startswith("features.")}
    state |= {"shift": model.shift, "scale": model.scale}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise LpipsUnavailableError(f"{folder}: weights do not fit LPIPS-{net} ({first})") from e
    return model.to(device).eval()


@torch.no_grad()
def lpips_video(model: Lpips, pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-frame LPIPS of two ``(T, H, W, 3)`` uint8 videos (0 = identical)."""
    if pred.shape != target.shape:
        raise ValueError(f"videos differ in shape: {pred.shape} vs {target.shape}")
    device = model.shift.device
    values = []
    for i in range(0, len(pred), LPIPS_BATCH):
        a, b = (
            torch.from_numpy(v[i : i + LPIPS_BATCH]).to(device).permute(0, 3, 1, 2).float() / 127.5
            - 1.0
            for v in (pred, target)
        )
        values.append(model(a, b).cpu())
    return float(torch.cat(values).mean())
