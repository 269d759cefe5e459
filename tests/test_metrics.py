"""Built-in metrics: point metrics on exact mixtures, FID family on digits, class coverage, caching."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from ganbench.api import Dataset, DataSpec, GanbenchError, TensorDataset
from ganbench.builtin.metrics import class_coverage, fidelity, point_metrics
from ganbench.evaluation import summarize
from ganbench.features import domain_extractor, from_uint8, to_uint8
from ganbench.fidelity import INCEPTION_ENV, reference_cache_name
from ganbench.frechet import frechet_distance_between
from ganbench.modes import histogram_kl, mode_statistics


# -- a ring of 8 Gaussians, built here so these tests do not depend on the datasets plugin ------

class Ring(Dataset):
    name = "ring"
    spec = DataSpec("points", (2,))
    default_metrics = ("point_metrics",)

    def __init__(self, k: int = 8, radius: float = 2.0, std: float = 0.02):
        angle = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        self.centres = (radius * torch.stack([angle.cos(), angle.sin()], 1)).float()
        self.modes, self.mode_std = self.centres, std

    def sample(self, n, generator, device="cpu"):
        idx = torch.randint(len(self.centres), (n,), generator=generator)
        return self.centres[idx] + self.mode_std * torch.randn(n, 2, generator=generator)

    def reference(self, n=None):
        return self.sample(n or 10_000, torch.Generator().manual_seed(99))

    def fingerprint(self):
        return f"ring-{self.mode_std}"


def exact_ring_sampler(ring: Ring, seed: int = 1):
    return lambda n: ring.sample(n, torch.Generator().manual_seed(seed))


def test_exact_ring_samples_cover_all_modes_with_high_quality():
    ring = Ring()
    result = point_metrics(num_samples=10_000).evaluate(exact_ring_sampler(ring), ring, "cpu")
    v = result.values
    assert v["modes_covered"] == 8 and v["num_modes"] == 8
    assert v["high_quality"] >= 0.99  # expected 0.9973^2 = 0.9946 for the 3-sigma box
    assert v["mode_kl"] < 0.01
    assert 0 <= v["fd_points"] < 1e-3
    p = result.protocol
    assert p["metric"] == "point_metrics" and p["generated_count"] == 10_000 and p["reference_count"] == 10_000
    assert set(p["versions"]) == {"torch", "torch_fidelity", "ganbench"}


def test_one_mode_generator_covers_one_of_eight_and_is_collapsed():
    ring = Ring()
    gen = torch.Generator().manual_seed(0)
    one_mode = lambda n: ring.modes[0] + ring.mode_std * torch.randn(n, 2, generator=gen)  # noqa: E731
    v = point_metrics(num_samples=2000).evaluate(one_mode, ring, "cpu").values
    assert v["modes_covered"] == 1 and v["num_modes"] == 8
    assert v["mode_kl"] == pytest.approx(math.log(8), abs=1e-12)  # all mass on one of 8 modes
    # FD of N(m0, s^2 I) vs the ring: the ring's spread (radius^2 = 4 in trace) dominates.
    assert v["fd_points"] > 3.0
    curve = [{"step": 100, "wall_time": 1.0, "metrics": v, "d_loss": 0.6, "g_loss": 0.9}]
    summary = summarize(curve, "fd_points", True)
    assert summary["collapsed"] is True and summary["status"] == "collapsed"


def test_mode_statistics_known_answers():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    # Half the samples sit on mode 0, a quarter on mode 1, a quarter far away (not high quality).
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.2], [5.0, 5.0]])
    v = mode_statistics(x, modes, std=0.1, quality_stds=3.0)
    assert v["high_quality"] == 0.75 and v["modes_covered"] == 2 and v["num_modes"] == 2
    assert v["mode_kl"] == pytest.approx(math.log(2) + (2 / 3) * math.log(2 / 3) + (1 / 3) * math.log(1 / 3))
    # Non-finite samples are never high quality, and no high-quality sample gives an undefined KL.
    v = mode_statistics(torch.full((3, 2), math.nan), modes, std=0.1)
    assert v["high_quality"] == 0.0 and v["modes_covered"] == 0 and math.isnan(v["mode_kl"])


def test_histogram_kl():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert histogram_kl(p, q) == pytest.approx(math.log(2))
    assert histogram_kl(q, q) == 0.0
    assert histogram_kl(q, p) == math.inf


def test_point_metrics_without_modes_gives_fd_only():
    ring = Ring()
    ring.modes = None  # a distribution without discrete modes (like the spiral)
    v = point_metrics(num_samples=500).evaluate(exact_ring_sampler(ring), ring, "cpu").values
    assert set(v) == {"fd_points"}


def test_point_metrics_on_non_finite_samples_is_nan_not_an_exception():
    ring = Ring()
    v = point_metrics(num_samples=100).evaluate(lambda n: torch.full((n, 2), math.nan), ring, "cpu").values
    assert math.isnan(v["fd_points"]) and v["modes_covered"] == 0


def test_point_metrics_rejects_images_and_wrong_sample_shapes():
    images = TensorDataset("tiny", torch.zeros(4, 1, 8, 8))
    with pytest.raises(GanbenchError, match="2-D points"):
        point_metrics().check(images)
    with pytest.raises(GanbenchError, match="shape"):
        point_metrics(num_samples=10).evaluate(lambda n: torch.zeros(n, 3), Ring(), "cpu")


# -- digits through the domain extractor ------------------------------------------------------------

def make_digits() -> TensorDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    y = torch.tensor(data.target)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y.numpy())
    return TensorDataset("digits", x[tr], x[te], y[tr], y[te], num_classes=10,
                         default_metrics=("fidelity", "class_coverage"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only spin-wait on a shared CPU machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache dir for the module: the digits extractor trains once (about 10 s)."""
    path = tmp_path_factory.getbasetemp() / "ganbench-cache"
    old = os.environ.get("GANBENCH_CACHE")
    os.environ["GANBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GANBENCH_CACHE", None)
    else:
        os.environ["GANBENCH_CACHE"] = old


@pytest.fixture(scope="module")
def digits(cache):
    return make_digits()


@pytest.fixture(scope="module")
def extractor(digits):
    return domain_extractor(digits)


@pytest.fixture(autouse=True)
def no_inception(monkeypatch, tmp_path):
    """No Inception weights anywhere: the domain extractor is what these tests exercise."""
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def test_domain_extractor_accuracy_and_protocol(extractor, cache):
    assert extractor.accuracy >= 0.95 and extractor.accuracy_split == "test"
    assert extractor.meta["train_seconds"] < 60
    proto = extractor.protocol()
    assert proto["weights_hash"] == extractor.weights_hash and len(extractor.weights_hash) == 64
    assert proto["extractor"].startswith("ganbench-digits-")
    assert list((cache / "extractors").glob("digits-*.pt"))


def test_domain_extractor_is_loaded_from_cache_not_retrained(extractor, digits):
    import ganbench.features as features

    features._LOADED.clear()  # forget the in-memory copy: the next call must read the file
    again = domain_extractor(digits)
    assert again is not extractor and again.weights_hash == extractor.weights_hash
    assert again.accuracy == extractor.accuracy


def test_fd_between_real_halves_far_below_real_vs_noise(digits, extractor):
    test = digits.reference()
    half_a, half_b = test[: len(test) // 2], test[len(test) // 2:]
    ref = TensorDataset("digits", digits.train, half_b, digits.train_labels, None, num_classes=10)
    ref._fingerprint = digits.fingerprint()  # same data, so the same (already trained) extractor
    n = len(half_a)
    metric = fidelity(num_samples=n, kid_subsets=10)
    metric.check(ref)
    real = metric.evaluate(lambda k: half_a[:k], ref, "cpu")
    noise = metric.evaluate(lambda k: torch.rand(k, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                            ref, "cpu")
    assert set(real.values) == {"fd_digits", "kid_digits", "kid_digits_std", "precision", "recall"}
    assert real.values["fd_digits"] < 0.05 * noise.values["fd_digits"]
    assert real.values["kid_digits"] < 0.05 * noise.values["kid_digits"]
    assert real.values["precision"] > 0.8 and noise.values["precision"] < 0.2
    # torch-fidelity's FD agrees with the float64 FD on the same (uint8-converted) features.
    feats = lambda x: extractor.model(from_uint8(to_uint8(x)))[0]  # noqa: E731
    with torch.no_grad():
        ours = frechet_distance_between(feats(half_a), feats(half_b[:n]))
    assert real.values["fd_digits"] == pytest.approx(ours, rel=1e-3)
    p = real.protocol
    assert p["reference_count"] == n and p["generated_count"] == n and p["image_size"] == 8
    assert p["reference_split"] == "test"
    assert p["channels"] == "native (1)" and p["weights_hash"] == extractor.weights_hash
    assert p["extractor_accuracy"] == extractor.accuracy and p["conversion"].startswith("uint8-round-clamp")


def test_reference_cache_recomputes_when_count_changes(digits, extractor, cache):
    sample = lambda n: digits.train[:n]  # noqa: E731
    fid_dir = cache / "fidelity"

    def run(n):
        return fidelity(num_samples=n, precision_recall=False, kid_subsets=5).evaluate(sample, digits, "cpu")

    first = run(200)
    files_200 = set(fid_dir.iterdir())
    assert files_200 and run(200).values == first.values  # second call: served from the cache
    assert set(fid_dir.iterdir()) == files_200
    bigger = run(300)
    assert bigger.protocol["reference_cache"] != first.protocol["reference_cache"]
    assert set(fid_dir.iterdir()) > files_200  # new entries for the new count
    for f in fid_dir.iterdir():  # a cold cache gives the same numbers: nothing stale was served
        f.unlink()
    assert run(300).values == bigger.values and run(200).values == first.values


def test_reference_cache_name_depends_on_everything_that_changes_statistics():
    base = dict(dataset="digits", fingerprint="abc", split="test", count=500, extractor="x",
                weights_hash="w", image_size=8, channels="native (1)")
    name = reference_cache_name(**base)
    assert reference_cache_name(**dict(base)) == name
    for key, other in (("fingerprint", "abd"), ("count", 501), ("extractor", "y"), ("weights_hash", "v"),
                       ("image_size", 16), ("channels", "gray replicated to 3 channels"), ("split", "train")):
        assert reference_cache_name(**{**base, key: other}) != name, key


def test_non_finite_generated_images_give_nan_values(digits, extractor):
    v = fidelity(num_samples=50).evaluate(lambda n: torch.full((n, 1, 8, 8), math.nan), digits, "cpu").values
    assert all(math.isnan(x) for x in v.values())
    v = class_coverage(num_samples=50).evaluate(lambda n: torch.full((n, 1, 8, 8), math.nan), digits, "cpu").values
    assert math.isnan(v["class_kl"]) and v["num_classes"] == 10


def test_class_coverage_of_real_data_and_of_one_class(digits, extractor):
    test, labels = digits.reference(), digits.reference_labels()
    real = class_coverage(num_samples=len(test)).evaluate(lambda n: test[:n], digits, "cpu").values
    assert real["classes_covered"] == 10 and real["num_classes"] == 10
    assert real["class_kl"] < 0.01  # predictions ~ labels at >= 95% accuracy
    sevens = test[labels == 7]
    one = class_coverage(num_samples=len(sevens)).evaluate(lambda n: sevens[:n], digits, "cpu")
    assert one.values["classes_covered"] == 1
    # KL(all mass on class 7 || data) = -log p_data(7) (up to misclassified sevens).
    p7 = float((labels == 7).float().mean())
    assert one.values["class_kl"] == pytest.approx(-math.log(p7), rel=0.1)
    assert one.protocol["extractor_accuracy"] == extractor.accuracy
    assert one.protocol["reference_count"] == len(labels) and one.protocol["reference_split"] == "test"


def test_unlabelled_images_without_inception_weights_is_a_clear_error():
    folder = TensorDataset("image_folder", torch.zeros(10, 3, 8, 8), default_metrics=("fidelity",))
    with pytest.raises(GanbenchError, match=INCEPTION_ENV) as err:
        fidelity().check(folder)
    assert "--inception-weights" in str(err.value)
    with pytest.raises(GanbenchError, match="labelled"):
        class_coverage().check(folder)


def test_missing_inception_file_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(GanbenchError, match="does not exist"):
        fidelity().check(make_digits())


def test_inception_weights_choose_fid_names(monkeypatch, tmp_path, digits):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not checked until used")
    metric = fidelity(inception_weights=str(weights))
    metric.check(digits)
    assert metric.primary == "fid" and metric.lower_is_better["fid"] is True
    # Found in torch's hub cache (TORCH_HOME points at a temporary directory here).
    from ganbench.fidelity import hub_inception_path, inception_weights_path
    assert inception_weights_path() is None
    hub = hub_inception_path()
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert inception_weights_path() == str(hub)
    metric = fidelity()
    metric.check(TensorDataset("image_folder", torch.zeros(4, 3, 8, 8)))  # unlabelled is fine now
    assert metric.primary == "fid"


def test_images_become_uint8_by_round_and_clamp_and_gray_is_replicated():
    from ganbench.fidelity import prepare_images

    x = torch.tensor([-2.0, -1.0, -0.999, 0.0, 0.004, 1.0, 3.0]).reshape(1, 1, 1, 7)
    u8 = prepare_images(x, None)
    assert u8.dtype == torch.uint8 and u8.flatten().tolist() == [0, 0, 0, 128, 128, 255, 255]
    rgb = prepare_images(x, 3)
    assert rgb.shape == (1, 3, 1, 7) and torch.equal(rgb[:, 0], rgb[:, 2])
    assert prepare_images(torch.zeros(2, 3, 4, 4), 3).shape == (2, 3, 4, 4)


@pytest.mark.slow
def test_inception_path_names_values_fid_and_replicates_gray(monkeypatch, tmp_path, digits):
    """With a weights file, FID runs on torch-fidelity's InceptionV3 (random weights here: nothing
    may be downloaded; the plumbing, names and protocol are what is under test)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    import torch_fidelity.feature_extractor_inceptionv3 as inception_module

    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr(inception_module.torch, "load", lambda *a, **k: {})
    torch.manual_seed(0)
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    weights = tmp_path / "inception.pth"
    torch.save(net.state_dict(), weights)
    monkeypatch.undo()
    monkeypatch.setenv(INCEPTION_ENV, str(weights))
    metric = fidelity(num_samples=12, precision_recall=False)
    metric.check(digits)
    assert metric.primary == "fid"
    result = metric.evaluate(lambda n: digits.train[:n], digits, "cpu")
    assert set(result.values) == {"fid", "kid", "kid_std"} and math.isfinite(result.values["fid"])
    assert result.protocol["channels"] == "gray replicated to 3 channels"
    import hashlib
    assert result.protocol["weights_hash"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_metrics_are_registered_as_a_plugin():
    from ganbench.plugins import PluginManager

    pm = PluginManager(autoload=False)
    assert "metrics" not in pm.broken
    reg = pm.registries["metric"]
    assert {"point_metrics", "fidelity", "class_coverage"} <= set(reg.names())
    assert reg.get("point_metrics").params["num_samples"].default == 2000
    assert reg.get("fidelity").params["inception_weights"].default == ""
    metric = reg.create("fidelity", {"num_samples": "300"})
    assert metric.num_samples == 300


def test_unreadable_cached_extractor_is_rebuilt(tmp_path, monkeypatch, digits, extractor):
    import ganbench.features as features

    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path))
    path = tmp_path / "extractors" / f"digits-{digits.fingerprint()}-v{features.ARCH_VERSION}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    monkeypatch.setattr(features, "_train", lambda ds, labelled: {
        "state_dict": extractor.model.state_dict(), "meta": extractor.meta})  # skip the 10 s retraining
    rebuilt = domain_extractor(digits)
    assert rebuilt.weights_hash == extractor.weights_hash and path.stat().st_size > 1000
