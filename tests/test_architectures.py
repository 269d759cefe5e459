from __future__ import annotations

import pytest
import torch
from torch import nn

from ganbench.api import GAN, DataSpec, GanbenchError
from ganbench.builtin.architectures import DCGAN_SIZES, check_compatible, dcgan, ganbench_register_architectures, mlp
from ganbench.registry import Registry

POINTS = DataSpec("points", (2,))


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry("architecture")
    ganbench_register_architectures(reg)
    return reg


def _largest_singular_value(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize("size", DCGAN_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_and_ranges(size: int, channels: int) -> None:
    torch.manual_seed(0)
    spec = DataSpec("images", (channels, size, size))
    gan = dcgan(spec, z_dim=16, base_channels=4)
    x = gan.generator(gan.sample_z(5, "cpu"))
    assert x.shape == (5, channels, size, size)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert gan.discriminator(x).shape == (5,)
    assert gan.discriminator(torch.randn(3, channels, size, size)).shape == (3,)


def test_dcgan_layout_follows_the_pyramid() -> None:
    gan = dcgan(DataSpec("images", (3, 32, 32)), z_dim=8, base_channels=8)
    g_convs = [m for m in gan.generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m for m in gan.discriminator.modules() if isinstance(m, nn.Conv2d)]
    # 1x1 -> 4x4, then three doublings to 32 px; D halves 32 -> 4 in three strided convs.
    assert [(m.in_channels, m.out_channels) for m in g_convs] == [(8, 32), (32, 16), (16, 8), (8, 3)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in d_convs] == [
        (3, 8, (2, 2)), (8, 16, (2, 2)), (16, 32, (2, 2))]
    bns = [m for m in gan.discriminator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == [16, 32]  # none after the first conv


def test_dcgan_init_is_normal_002() -> None:
    torch.manual_seed(0)
    gan = dcgan(DataSpec("images", (3, 64, 64)), z_dim=100, base_channels=32)
    w = torch.cat([m.weight.flatten() for m in gan.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert w.mean().abs().item() < 1e-3
    assert w.std().item() == pytest.approx(0.02, rel=0.02)


def test_dcgan_batch_norm_switch_and_spectral_norm_drops_it() -> None:
    spec = DataSpec("images", (1, 16, 16))
    has_bn = lambda gan: any(isinstance(m, nn.BatchNorm2d) for m in gan.discriminator.modules())  # noqa: E731
    assert has_bn(dcgan(spec, 8))
    assert not has_bn(dcgan(spec, 8, batch_norm=False))
    assert not has_bn(dcgan(spec, 8, spectral_norm=True))
    assert any(isinstance(m, nn.BatchNorm2d) for m in dcgan(spec, 8, spectral_norm=True).generator.modules())


@pytest.mark.parametrize("make", [
    lambda: dcgan(DataSpec("images", (1, 16, 16)), 8, base_channels=8, spectral_norm=True),
    lambda: mlp(POINTS, 8, hidden=32, spectral_norm=True),
])
def test_spectral_norm_keeps_largest_singular_value_at_one(make) -> None:
    torch.manual_seed(0)
    gan = make()
    D = gan.discriminator.train()
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:  # unit-variance raw weights: without the norm sigma would be far above 1
        layer.parametrizations.weight.original.data.normal_(0.0, 1.0)
    x = torch.randn(8, *((2,) if isinstance(layers[0], nn.Linear) else (1, 16, 16)))
    for _ in range(30):  # each train-mode forward runs one power iteration per layer
        D(x)
    D.eval()
    for layer in layers:
        assert _largest_singular_value(layer.weight) == pytest.approx(1.0, abs=0.03)
        assert _largest_singular_value(layer.parametrizations.weight.original) > 1.5


@pytest.mark.parametrize("spec", [POINTS, DataSpec("points", (5,)), DataSpec("images", (1, 8, 8)),
                                  DataSpec("images", (3, 12, 12))])
def test_mlp_shapes(spec: DataSpec) -> None:
    torch.manual_seed(0)
    gan = mlp(spec, z_dim=4, hidden=16, depth=2)
    assert isinstance(gan, GAN)
    x = gan.generator(torch.randn(6, 4))
    assert x.shape == (6, *spec.shape)
    assert gan.discriminator(x).shape == (6,)
    if spec.kind == "images":
        assert x.abs().max() <= 1.0
    linears = [m for m in gan.generator.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3  # depth hidden layers + output


def test_mlp_points_output_is_unbounded() -> None:
    gan = mlp(POINTS, z_dim=2, hidden=8, depth=1)
    last = [m for m in gan.generator.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.bias.fill_(50.0)
    assert gan.generator(torch.zeros(1, 2)).min().item() > 10.0


def test_mlp_activations() -> None:
    gan = mlp(POINTS, z_dim=2, hidden=8, depth=2)
    assert all(isinstance(m, nn.ReLU) for m in gan.generator.modules() if not isinstance(m, (nn.Linear, nn.Sequential)))
    lrelus = [m for m in gan.discriminator.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(lrelus) == 2 and all(m.negative_slope == 0.2 for m in lrelus)


def test_registered_with_support_metadata(registry: Registry) -> None:
    assert registry.names() == ["dcgan", "mlp"]
    assert registry.get("dcgan").meta["kinds"] == ("images",)
    assert registry.get("dcgan").meta["sizes"] == (8, 16, 32, 64)
    assert set(registry.get("mlp").meta["kinds"]) == {"points", "images"}
    assert registry.get("dcgan").params["base_channels"].default == 32
    gan = registry.create("dcgan", {"base_channels": "4"}, data_spec=DataSpec("images", (1, 8, 8)), z_dim=3)
    assert gan.generator(torch.randn(2, 3)).shape == (2, 1, 8, 8)


def test_check_compatible_accepts_supported(registry: Registry) -> None:
    check_compatible(registry.get("dcgan"), DataSpec("images", (3, 32, 32)))
    check_compatible(registry.get("mlp"), POINTS)
    check_compatible(registry.get("mlp"), DataSpec("images", (1, 8, 8)))


def test_check_compatible_dcgan_on_points_names_both(registry: Registry) -> None:
    with pytest.raises(GanbenchError) as err:
        check_compatible(registry.get("dcgan"), POINTS, dataset="ring")
    assert str(err.value) == ("architecture 'dcgan' supports square images of 8, 16, 32 or 64 px; "
                              "dataset 'ring' gives points of shape (2,)")


@pytest.mark.parametrize("shape", [(1, 12, 12), (1, 128, 128), (3, 16, 8)])
def test_check_compatible_dcgan_on_bad_image_size(registry: Registry, shape: tuple[int, ...]) -> None:
    with pytest.raises(GanbenchError, match=rf"dcgan.*8, 16, 32 or 64 px.*images of shape \({shape[0]}, "):
        check_compatible(registry.get("dcgan"), DataSpec("images", shape))
    with pytest.raises(GanbenchError, match="supports square images"):
        dcgan(DataSpec("images", shape), 8)  # the factory refuses too, when called directly


def test_check_compatible_undeclared_component_is_general() -> None:
    reg = Registry("architecture")
    reg.add("custom", lambda data_spec, z_dim: None)
    check_compatible(reg.get("custom"), POINTS)
    check_compatible(reg.get("custom"), DataSpec("images", (1, 12, 12)))


def test_bad_params_are_clear_errors() -> None:
    with pytest.raises(GanbenchError, match="base_channels"):
        dcgan(DataSpec("images", (1, 8, 8)), 8, base_channels=0)
    with pytest.raises(GanbenchError, match="depth"):
        mlp(POINTS, 8, depth=0)
