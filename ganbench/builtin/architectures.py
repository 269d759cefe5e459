"""Built-in architectures: a fully connected GAN (points, small images) and a DCGAN.

Discriminators return one raw logit per sample, shape ``(n,)``; losses apply their own link.
Each factory declares what data it supports through ``kinds``/``sizes`` metadata, and
:func:`check_compatible` turns a mismatch into one clear error before any training starts.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..api import GAN, DataSpec, GanbenchError
from ..plugins import hookimpl

DCGAN_SIZES = (8, 16, 32, 64)


# -- compatibility ----------------------------------------------------------------------------

def _describe_support(kinds: tuple[str, ...], sizes: tuple[int, ...] | None) -> str:
    parts = []
    for kind in kinds:
        if kind == "images" and sizes:
            listed = ", ".join(map(str, sizes[:-1])) + f" or {sizes[-1]}" if len(sizes) > 1 else str(sizes[0])
            parts.append(f"square images of {listed} px")
        else:
            parts.append(kind)
    return " and ".join(parts)


def _support_error(name: str, kinds: tuple[str, ...], sizes: tuple[int, ...] | None,
                   spec: DataSpec, dataset: str) -> GanbenchError:
    source = f"dataset {dataset!r} gives" if dataset else "the data are"
    return GanbenchError(f"architecture {name!r} supports {_describe_support(kinds, sizes)}; "
                         f"{source} {spec.kind} of shape {tuple(spec.shape)}")


def _check(name: str, kinds: tuple[str, ...], sizes: tuple[int, ...] | None,
           spec: DataSpec, dataset: str = "") -> None:
    ok = spec.kind in kinds
    if ok and spec.kind == "images":
        ok = len(spec.shape) == 3 and spec.shape[1] == spec.shape[2]
        ok = ok and (not sizes or spec.size in sizes)
    if ok and spec.kind == "points":
        ok = len(spec.shape) == 1
    if not ok:
        raise _support_error(name, kinds, sizes, spec, dataset)


def check_compatible(component: Any, data_spec: DataSpec, dataset: str = "") -> None:
    """Raise GanbenchError when an architecture component cannot model ``data_spec``.

    ``component`` is a registry Component; its ``meta`` may declare ``kinds`` (data kinds) and
    ``sizes`` (allowed square image sizes). Components that declare nothing are assumed general.
    ``dataset`` only improves the message.
    """
    kinds = tuple(component.meta.get("kinds", ("points", "images")))
    sizes = component.meta.get("sizes")
    _check(component.name, kinds, tuple(sizes) if sizes else None, data_spec, dataset)


# -- building blocks --------------------------------------------------------------------------

class _Logits(nn.Module):
    """Wraps a network ending in one unit so the discriminator returns shape ``(n,)``."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).reshape(-1)


def _apply_spectral_norm(module: nn.Module) -> None:
    # Normalise every weight layer of D; parametrizations keep one power iteration per forward.
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            _spectral_norm(layer)


def _dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016): conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), biases 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


# -- MLP --------------------------------------------------------------------------------------

def _mlp_stack(n_in: int, hidden: int, depth: int, act: Callable[[], nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), act()]
    return layers


def mlp(data_spec: DataSpec, z_dim: int, hidden: int = 128, depth: int = 3, spectral_norm: bool = False) -> GAN:
    """Fully connected G and D with `depth` hidden layers; for 2-D points and small flattened images."""
    _check("mlp", ("points", "images"), None, data_spec)
    if hidden < 1 or depth < 1:
        raise GanbenchError(f"architecture 'mlp': hidden and depth must be >= 1, got hidden={hidden}, depth={depth}")
    n_out = data_spec.numel
    g_layers = _mlp_stack(z_dim, hidden, depth, nn.ReLU) + [nn.Linear(hidden, n_out)]
    if data_spec.kind == "images":
        # Images live in [-1, 1]; points are unbounded, so their output stays linear.
        g_layers += [nn.Tanh(), nn.Unflatten(1, tuple(data_spec.shape))]
    d_body = nn.Sequential(nn.Flatten(), *_mlp_stack(n_out, hidden, depth, lambda: nn.LeakyReLU(0.2)),
                           nn.Linear(hidden, 1))
    if spectral_norm:
        _apply_spectral_norm(d_body)
    return GAN(nn.Sequential(*g_layers), _Logits(d_body), z_dim)


# -- DCGAN ------------------------------------------------------------------------------------

def _dcgan_generator(z_dim: int, channels: int, n_up: int, base: int) -> nn.Sequential:
    width = base * 2 ** (n_up - 1)  # channels at 4x4, halved at every doubling (DCGAN's pyramid)
    layers: list[nn.Module] = [
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=False),  # 1x1 -> 4x4, i.e. a linear map
        nn.BatchNorm2d(width), nn.ReLU(True),
    ]
    for _ in range(n_up - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(width // 2), nn.ReLU(True)]
        width //= 2
    layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def _dcgan_discriminator(channels: int, n_down: int, base: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    width_in, width = channels, base
    for i in range(n_down):
        layers.append(nn.Conv2d(width_in, width, 4, 2, 1, bias=not (batch_norm and i > 0)))
        if batch_norm and i > 0:  # never on the first layer (it would normalise the raw pixels)
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.LeakyReLU(0.2, True))
        width_in, width = width, width * 2
    layers += [nn.Flatten(), nn.Linear(width_in * 16, 1)]
    return nn.Sequential(*layers)


def dcgan(data_spec: DataSpec, z_dim: int, base_channels: int = 32, spectral_norm: bool = False,
          batch_norm: bool = True) -> GAN:
    """DCGAN for square images of 8-64 px: transposed-conv G, strided-conv D down to 4x4.

    ``batch_norm`` switches BatchNorm in D's hidden layers (G always uses it, as in DCGAN); it is
    ignored when ``spectral_norm`` is on, because spectral normalisation replaces it (SNGAN).
    Turn it off for per-sample gradient penalties, which BatchNorm would mix across the batch.
    """
    _check("dcgan", ("images",), DCGAN_SIZES, data_spec)
    if base_channels < 1:
        raise GanbenchError(f"architecture 'dcgan': base_channels must be >= 1, got {base_channels}")
    n_scale = int(math.log2(data_spec.size // 4))
    generator = _dcgan_generator(z_dim, data_spec.channels, n_scale, base_channels)
    body = _dcgan_discriminator(data_spec.channels, n_scale, base_channels, batch_norm and not spectral_norm)
    _dcgan_init(generator)
    _dcgan_init(body)
    if spectral_norm:
        _apply_spectral_norm(body)  # after init: the parametrization wraps the initialised weights
    return GAN(generator, _Logits(body), z_dim)


@hookimpl
def ganbench_register_architectures(registry: Any) -> None:
    registry.add("mlp", mlp, kinds=("points", "images"), sizes=None)
    registry.add("dcgan", dcgan, kinds=("images",), sizes=DCGAN_SIZES)
