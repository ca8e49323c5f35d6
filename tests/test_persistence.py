"""save / load without pickle.

Every detector, on tables and images and with the settings that change its
networks' structure, round-trips through ``save``/``load`` with identical
scores and fitted state; foreign, tampered and incompatible files give a
clear ValueError, and loading never runs code from the file.
"""

from __future__ import annotations

import errno
import io
import math
import os
import pickle
import re
import struct
import warnings
import zipfile

import numpy as np
import pytest
import torch
from skorch.history import History
from torch import nn

import skood
from skood import persistence
from skood._base import BaseDeepDetector
from skood._testing import DETECTORS, tiny
from skood.persistence import FORMAT, FORMAT_VERSION, SkoodVersionWarning, load


def _same(a, b, where: str = "") -> None:
    """``b`` equals ``a`` exactly: types, dtypes, values, module weights and flags."""
    if isinstance(a, nn.Module):
        assert type(b) is type(a), where
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb), where
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), f"{where}.{k}"
        ma, mb = dict(a.named_modules()), dict(b.named_modules())
        assert list(ma) == list(mb), where
        for k in ma:
            assert type(ma[k]) is type(mb[k]) and ma[k].training == mb[k].training, f"{where}.{k}"
        for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert p.requires_grad == q.requires_grad, f"{where}.{k}"
    elif isinstance(a, History):
        assert isinstance(b, History) and len(a) == len(b), where
        for ea, eb in zip(a, b, strict=True):
            assert set(ea) == set(eb), where
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, np.random.RandomState):
        assert isinstance(b, np.random.RandomState), where
        _same(a.get_state(), b.get_state(), where)
    elif isinstance(a, dict):
        assert type(b) is type(a) and list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert type(b) is type(a) and math.isnan(b), where
    else:
        assert type(b) is type(a) and b == a, f"{where}: {a!r} != {b!r}"


def _round_trip(det, tmp_path, X_test, y=None, **load_kwargs):
    """Save and load ``det``; check scores, predictions and the whole fitted state."""
    path = tmp_path / "det.skood"
    det.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same skood, same torch: no warning
        det2 = type(det).load(path, **load_kwargs)
    assert type(det2) is type(det)
    assert list(vars(det2)) == list(vars(det))
    for k, v in vars(det).items():
        if not isinstance(v, nn.Module):  # user modules (DUM's encoder) are copies
            _same(v, vars(det2)[k], k)
        elif k not in det.get_params():
            _same(v, vars(det2)[k], k)
    np.testing.assert_array_equal(det.score_samples(X_test), det2.score_samples(X_test))
    np.testing.assert_array_equal(det.predict(X_test), det2.predict(X_test))
    return det2


# ------------------------------------------------- every detector, defaults
@pytest.mark.parametrize("kind", ["tabular", "images"])
@pytest.mark.parametrize("name", DETECTORS)
def test_round_trip_defaults(name, kind, fitted_tiny, blobs, digit_images, tmp_path):
    det = fitted_tiny(name, kind)
    X_test = blobs[1] if kind == "tabular" else digit_images[1]
    det2 = _round_trip(det, tmp_path, X_test)
    np.testing.assert_array_equal(det2.train_scores_, det.train_scores_)
    assert det2.offset_ == det.offset_
    det3 = pickle.loads(pickle.dumps(det2))  # a loaded detector pickles as usual
    np.testing.assert_array_equal(det3.score_samples(X_test), det.score_samples(X_test))


# ------------------------------------- settings that change the networks
_TAB, _IMG = "tabular", "images"
_VARIANTS = [
    ("SemSADDetector", _TAB, {"max_bank": 100, "n_logits": 8, "projection_dim": 16}),
    ("SemSADDetector", _IMG, {"batch_norm": "batch", "max_bank": 60}),
    ("NSADetector", _TAB, {"ensemble": True, "max_bank": 100}),
    ("NSADetector", _IMG, {"ensemble": True, "ensemble_pool": 2}),
    ("NSADetector", _TAB, {"method": "simclr", "scoring": "kcos"}),
    ("NSADetector", _IMG, {"method": "simclr", "projection_dim": 32}),
    ("DistillNegDetector", _IMG, {"backbone": "vit", "negatives": "perm-4"}),
    ("DistillNegDetector", _TAB, {"negatives": "feature-perm", "head_bn": False,
                                  "max_bank": 100}),
    ("DUMDetector", _TAB, {"covariance": "diagonal", "tabular_scaling": "standard"}),
    ("DUMDetector", _TAB, {"objective": "infonce", "set_size": 2, "tabular_scaling": "minmax"}),
    ("DUMDetector", _IMG, {"covariance": "diagonal", "embedding": "projection"}),
    ("DUMDetector", _IMG, {"objective": "infonce", "set_size": 2}),
    ("RotAuxMSPDetector", _TAB, {"n_affine_maps": 4}),
    ("RotAuxMSPDetector", _IMG, {"rotations": "flip-transpose"}),
]


@pytest.mark.parametrize(("name", "kind", "overrides"), _VARIANTS,
                         ids=[f"{n}-{k}-{'-'.join(o)}" for n, k, o in _VARIANTS])
def test_round_trip_structural_settings(name, kind, overrides, blobs, digit_images, tmp_path):
    if name not in DETECTORS:
        pytest.skip(f"{name} not in this build")
    X, X_test = (blobs[0], blobs[1]) if kind == _TAB else (digit_images[0], digit_images[1])
    if overrides.get("backbone") == "vit":
        X = X[:32]  # one step: the ViT is slow on a CPU
    det = tiny(name, batch_size=32, **overrides).fit(X)
    _round_trip(det, tmp_path, X_test)


@pytest.mark.parametrize("kind", [_TAB, _IMG])
def test_round_trip_rotaux_labelled(kind, blobs, digit_images, tmp_path):
    """Labelled fits: string class labels (``classes_`` an array of str), a class head; and
    ODIN, whose input gradients run through the loaded network."""
    if kind == _TAB:
        X, X_test = blobs[0], blobs[1]
        y = np.where(X[:, 0] > 0, "right", "left")
    else:
        X, X_test = digit_images[0], digit_images[1]
        y = np.array(["a", "b", "c"])[np.arange(len(X)) % 3]
    det = tiny("RotAuxMSPDetector", batch_size=32).fit(X, y)
    assert det.supervised_ and det.classes_.dtype.kind == "U"
    det2 = _round_trip(det, tmp_path, X_test)
    assert det2.model_.class_head is not None
    for scoring in ("odin", "msp"):
        np.testing.assert_array_equal(det.score_samples_by(X_test, scoring),
                                      det2.score_samples_by(X_test, scoring))


def test_round_trip_array_and_object_parameters(blobs, tmp_path):
    """Parameters that are arrays, tuples and a RandomState are stored and restored."""
    X, X_test, _ = blobs
    negatives = np.random.RandomState(1).normal(size=(50, X.shape[1]))
    det = tiny("DistillNegDetector", negatives=negatives, batch_size=32,
               random_state=np.random.RandomState(3)).fit(X)
    det2 = _round_trip(det, tmp_path, X_test)
    assert isinstance(det2.random_state, np.random.RandomState)
    np.testing.assert_array_equal(det2.negatives, negatives)
    sem = tiny("SemSADDetector", gamma_range=(2.0, 3.0), image_shape=None).fit(X)
    assert _round_trip(sem, tmp_path, X_test).gamma_range == (2.0, 3.0)


def test_round_trip_dataframe_feature_names(blobs, tmp_path):
    pd = pytest.importorskip("pandas")
    X, X_test, _ = blobs
    cols = [f"f{i}" for i in range(X.shape[1])]
    det = tiny("NSADetector").fit(pd.DataFrame(X, columns=cols))
    assert det.feature_names_in_.dtype == object
    det2 = _round_trip(det, tmp_path, pd.DataFrame(X_test, columns=cols))
    assert list(det2.feature_names_in_) == cols


def test_round_trip_unfitted(tmp_path):
    det = skood.NSADetector(method="simclr", max_epochs=3, random_state=5)
    det.save(tmp_path / "u.skood")
    det2 = skood.NSADetector.load(tmp_path / "u.skood")
    assert det2.get_params() == det.get_params()
    assert not hasattr(det2, "offset_")


def test_file_objects_and_generic_load(fitted_tiny, blobs):
    det = fitted_tiny("NSADetector")
    buf = io.BytesIO()
    det.save(buf)
    buf.seek(0)
    for loader in (load, BaseDeepDetector.load):
        buf.seek(0)
        det2 = loader(buf)
        assert type(det2) is skood.NSADetector
        assert det2.encoder_ is det2.model_.encoder  # the alias survives
        np.testing.assert_array_equal(det2.score_samples(blobs[1]), det.score_samples(blobs[1]))


def test_load_leaves_global_rng_untouched(fitted_tiny, tmp_path):
    fitted_tiny("SemSADDetector", "images").save(tmp_path / "s.skood")
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    skood.SemSADDetector.load(tmp_path / "s.skood")
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)  # noqa: NPY002


# ------------------------------------------------------- user nn.Module
class _Encoder(nn.Module):
    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, width))

    def forward(self, x):
        return self.net(x)


def test_dum_user_encoder_needs_the_architecture(digit_images, tmp_path):
    X, X_test, _ = digit_images
    det = tiny("DUMDetector", encoder=_Encoder(), batch_size=32).fit(X)
    path = tmp_path / "dum.skood"
    det.save(path)
    with pytest.raises(ValueError, match=r"encoder.*_Encoder.*load\(path, encoder=\.\.\.\)"):
        skood.DUMDetector.load(path)
    with pytest.raises(ValueError, match="do not fit|does not match"):
        skood.DUMDetector.load(path, encoder=_Encoder(width=5))
    with pytest.raises(ValueError, match="does not match"):
        skood.DUMDetector.load(path, encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 6)))
    with pytest.raises(ValueError, match="not saved as modules"):
        skood.DUMDetector.load(path, encoder=_Encoder(), backbone=_Encoder())
    fresh = _Encoder()  # other initial weights: the file's replace them in a copy
    fresh_weights = {k: v.clone() for k, v in fresh.state_dict().items()}
    det2 = _round_trip(det, tmp_path, X_test, encoder=fresh)
    _same(det.encoder, det2.encoder, "encoder")
    assert det2.encoder is not fresh
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in fresh_weights.items())


# --------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def saved(tmp_path_factory, fitted_tiny):
    """A saved SemSAD detector and its payload (read without executing anything)."""
    path = tmp_path_factory.mktemp("saved") / "semsad.skood"
    fitted_tiny("SemSADDetector").save(path)
    return path, torch.load(path, weights_only=True)


def _resave(payload, tmp_path, checksum=True, **changes):
    """``payload`` with ``changes`` written with torch.save, its checksum recomputed (so that
    the file reaches the checks after the integrity check); ``checksum=False``: without one."""
    path = tmp_path / "changed.skood"
    payload = {k: v for k, v in {**payload, **changes}.items() if k != "checksum"}
    if checksum:
        payload["checksum"] = persistence._payload_checksum(payload)
    torch.save(payload, path)
    return path


def test_payload_has_versions_and_only_plain_data(saved):
    path, payload = saved
    assert payload["format"] == FORMAT == "skood-detector"
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["skood_version"] == skood.__version__
    assert payload["torch_version"] == str(torch.__version__)
    assert payload["class"] == "skood._detectors.semsad:SemSADDetector"
    assert type(payload["skood_version"]) is str and type(payload["torch_version"]) is str


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_not_a_skood_file(tmp_path, saved):
    text = tmp_path / "text.skood"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a skood detector file"):
        skood.SemSADDetector.load(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a skood detector file"):
        skood.SemSADDetector.load(other)
    pickled = tmp_path / "det.pkl"
    with open(pickled, "wb") as f:  # a pickled detector is refused, not unpickled
        pickle.dump(skood.SemSADDetector(), f)
    with pytest.raises(ValueError, match="weights_only"):
        skood.SemSADDetector.load(pickled)
    truncated = tmp_path / "truncated.skood"
    truncated.write_bytes(saved[0].read_bytes()[:2000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        skood.SemSADDetector.load(truncated)
    with pytest.raises(FileNotFoundError):
        skood.SemSADDetector.load(tmp_path / "missing.skood")


class _Payload:
    """Unpickling this would create a directory: a stand-in for code in a malicious file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_loading_never_executes_code_from_the_file(tmp_path, saved):
    marker = tmp_path / "executed"
    payload = dict(saved[1])
    payload["fitted"] = {**payload["fitted"], "offset_": _Payload(str(marker))}
    path = tmp_path / "evil.skood"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="weights_only"):
        skood.SemSADDetector.load(path)
    assert not marker.exists()


def test_incompatible_files(tmp_path, saved):
    path, payload = saved
    with pytest.raises(ValueError, match="format version 2"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, format_version=2))
    with pytest.raises(ValueError, match="SemSADDetector.*not a.*NSADetector"):
        skood.NSADetector.load(path)
    with pytest.raises(ValueError, match="not a known skood detector class"):
        load(_resave(payload, tmp_path, **{"class": "evil.module:Thing"}))
    with pytest.raises(ValueError, match="newer than this skood"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, skood_version="99.0.0"))
    with pytest.raises(ValueError, match="missing or malformed entries"):
        skood.SemSADDetector.load(
            _resave({k: v for k, v in payload.items() if k != "modules"}, tmp_path))
    with pytest.raises(ValueError, match=r"malformed entries \['params'\]"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, params=[1, 2]))


def test_older_versions_warn(tmp_path, saved, blobs):
    _, payload = saved
    with pytest.warns(SkoodVersionWarning, match="torch 1.0"):
        det = skood.SemSADDetector.load(_resave(payload, tmp_path, torch_version="1.0.0"))
    with pytest.warns(SkoodVersionWarning, match="skood 0.0.1"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, skood_version="0.0.1"))
    assert np.isfinite(det.score_samples(blobs[1])).all()


def test_tampered_networks(tmp_path, saved):
    _, payload = saved
    mods = {k: dict(v) for k, v in payload["modules"].items()}
    state = dict(mods["encoder_"]["state"])
    key = next(iter(state))
    state[key] = torch.zeros(3, 3)
    mods["encoder_"]["state"] = state
    with pytest.raises(ValueError, match="saved weights do not fit"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, modules=mods))
    mods = {k: dict(v) for k, v in payload["modules"].items()}
    mods["discriminator_"]["structure"] = mods["discriminator_"]["structure"][:-1]
    with pytest.raises(ValueError, match="does not match the architecture"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, modules=mods))
    params = {**payload["params"], "n_logits": 3}  # another architecture than the weights'
    with pytest.raises(ValueError, match="do not fit"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, params=params))
    params = {**payload["params"], "no_such_parameter": 1}
    with pytest.raises(ValueError, match="not a valid skood detector file"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, params=params))
    fitted = {**payload["fitted"], "offset_": {"__skood__": "code", "src": "print(1)"}}
    with pytest.raises(ValueError, match="unknown entry tag"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, fitted=fitted))


def _old_module_names(v):
    """``v`` with skood's module paths as skood 0.1.2 wrote them (``skood._detectors.semsad``
    was ``skood.detectors.semsad``, ``skood._nn.encoders`` ``skood.nn.encoders``, ...)."""
    if isinstance(v, str):
        return re.sub(r"\bskood\._", "skood.", v)
    if isinstance(v, list):
        return [_old_module_names(e) for e in v]
    return v


def test_files_of_skood_0_1_2_load(tmp_path, saved, blobs):
    """Files written before skood's internals became private name the old module paths, for
    the detector class and every submodule of its networks; they load with the same scores."""
    path, payload = saved
    modules = {k: {**rec, "structure": _old_module_names(rec["structure"])}
               for k, rec in payload["modules"].items()}
    old = _resave(payload, tmp_path, modules=modules,
                  **{"class": "skood.detectors.semsad:SemSADDetector"})
    assert "skood.nn.encoders:" in str(modules)  # the submodules' names changed too
    want = skood.SemSADDetector.load(path).score_samples(blobs[1])
    for loader in (load, skood.load, BaseDeepDetector.load, skood.SemSADDetector.load):
        det = loader(old)
        assert type(det) is skood.SemSADDetector
        np.testing.assert_array_equal(det.score_samples(blobs[1]), want)
    with pytest.raises(ValueError, match="not a.*NSADetector"):
        skood.NSADetector.load(old)
    with pytest.raises(ValueError, match="not a known skood detector class"):
        load(_resave(payload, tmp_path, **{"class": "skood.detectors.semsad:NoSuchDetector"}))


def test_files_without_calibration_load_as_loo(tmp_path, saved, blobs):
    """Files of skood 0.1.2 have neither the ``calibration`` parameter nor
    ``calibration_scores_``: they load with calibration="loo" and p-values from the sorted
    ``train_scores_``; a split-mode fit saves and loads its held-out rows."""
    path, payload = saved
    params = {k: v for k, v in payload["params"].items() if k != "calibration"}
    fitted = {k: v for k, v in payload["fitted"].items() if k != "calibration_scores_"}
    assert len(params) < len(payload["params"]) and len(fitted) < len(payload["fitted"])
    det = skood.SemSADDetector.load(_resave(payload, tmp_path, params=params, fitted=fitted))
    assert det.calibration == "loo" and "calibration_scores_" not in vars(det)
    want = skood.SemSADDetector.load(path)
    np.testing.assert_array_equal(det.pvalues(blobs[1]), want.pvalues(blobs[1]))
    np.testing.assert_array_equal(det.predict(blobs[1], fdr=0.1), want.predict(blobs[1], fdr=0.1))
    split = tiny("FeatureKNNDetector", calibration=0.25).fit(blobs[0])
    split.save(tmp_path / "split.skood")
    back = load(tmp_path / "split.skood")
    np.testing.assert_array_equal(back.calibration_rows_, split.calibration_rows_)
    np.testing.assert_array_equal(back.pvalues(blobs[1]), split.pvalues(blobs[1]))


def test_a_moved_class_must_be_unambiguous(tmp_path, saved):
    """Matching by class name alone needs exactly one known detector class of that name."""
    _, payload = saved
    twins = [type(BaseDeepDetector)("Twin", (skood.SemSADDetector,), {"__module__": m})
             for m in ("first_module", "second_module")]
    path = _resave(payload, tmp_path, **{"class": "old_module:Twin"})
    with pytest.raises(ValueError, match="not a known skood detector class"):
        load(path)
    assert load(_resave(payload, tmp_path, **{"class": "first_module:Twin"})).__class__ \
        is twins[0]


# ------------------------------------------------------------------ device
def test_cpu_file_loads_on_cpu(fitted_tiny, blobs, tmp_path):
    det = fitted_tiny("DUMDetector")
    det.save(tmp_path / "d.skood")
    det2 = skood.DUMDetector.load(tmp_path / "d.skood", map_location="cpu")
    assert det2.device_ == "cpu"
    assert all(p.device.type == "cpu" for p in det2.variance_net_.parameters())
    np.testing.assert_array_equal(det2.score_samples(blobs[1]), det.score_samples(blobs[1]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU fallback")
def test_gpu_file_without_gpu(fitted_tiny, blobs, tmp_path, saved):
    """A file fitted on a GPU scores on the CPU here (with a warning); asking for a GPU that
    is not there is a ValueError."""
    _, payload = saved
    path = _resave(payload, tmp_path, fitted={**payload["fitted"], "device_": "cuda"})
    with pytest.warns(UserWarning, match="no GPU here"):
        det2 = skood.SemSADDetector.load(path)
    det = fitted_tiny("SemSADDetector")
    np.testing.assert_array_equal(det2.score_samples(blobs[1]), det.score_samples(blobs[1]))
    det3 = skood.SemSADDetector.load(path, map_location="cpu")
    assert det3.device_ == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        skood.SemSADDetector.load(path, map_location="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_round_trip(blobs, tmp_path):
    det = tiny("NSADetector", device="cuda").fit(blobs[0])
    det.save(tmp_path / "g.skood")
    det2 = skood.NSADetector.load(tmp_path / "g.skood")
    assert next(det2.model_.parameters()).device.type == "cuda"
    np.testing.assert_array_equal(det2.score_samples(blobs[1]), det.score_samples(blobs[1]))
    det3 = skood.NSADetector.load(tmp_path / "g.skood", map_location="cpu")
    assert det3.device_ == "cpu" and next(det3.model_.parameters()).device.type == "cpu"
    assert np.isfinite(det3.score_samples(blobs[1])).all()


# ------------------------------------------------------------- unsupported
class _NoSkeletons(BaseDeepDetector):
    def __init__(self, *, batch_size=32, device="cpu", random_state=0, contamination="auto",
                 backbone="auto", lr=1e-3, verbose=0, image_shape=None):
        self.batch_size, self.device, self.random_state = batch_size, device, random_state
        self.contamination, self.backbone, self.lr = contamination, backbone, lr
        self.verbose, self.image_shape = verbose, image_shape

    def _fit_store(self, Xs, y, seed):
        self.net_ = nn.Linear(Xs.shape[1], 1)

    def _score_store(self, Xs):
        with torch.no_grad():
            return self.net_(Xs).double().numpy().ravel()


def test_unsupported_detectors_and_attributes(blobs, tmp_path, fitted_tiny):
    det = _NoSkeletons().fit(blobs[0])
    with pytest.raises(NotImplementedError, match="does not support save"):
        det.save(tmp_path / "x.skood")
    det2 = pickle.loads(pickle.dumps(fitted_tiny("NSADetector")))
    det2.extra_ = object()  # an attribute skood cannot store without pickle
    with pytest.raises(TypeError, match="cannot store NSADetector.extra_"):
        det2.save(tmp_path / "y.skood")


# ------------------------------------------------------- integrity (checksum)
def _zip_records(data: bytes) -> list[tuple[str, int, int]]:
    """``(name, start, size)`` of the stored bytes of every record of the zip file ``data``."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            h = info.header_offset  # local header: 30 bytes, then the name and the extra field
            n_name, n_extra = struct.unpack("<HH", data[h + 26:h + 30])
            out.append((info.filename, h + 30 + n_name + n_extra, info.compress_size))
    return out


def _rejected(path, X, want) -> bool:
    """Load ``path``: True when it is rejected with a ValueError or OSError naming the file,
    False when it loads and scores ``X`` exactly as ``want`` (anything else fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkoodVersionWarning)
            det = load(path)
    except (ValueError, OSError) as e:
        assert str(path) in str(e), e
        return True
    np.testing.assert_array_equal(det.score_samples(X), want, err_msg=f"{path} loaded")
    return False


@pytest.mark.parametrize("name", DETECTORS)
def test_a_flipped_byte_in_any_record_is_rejected(name, fitted_tiny, blobs, tmp_path):
    """One byte flipped in the middle of each record of the zip file in turn: every file is
    refused as corrupt. One low bit flipped at 40 positions spread over the file: each file
    is refused or loads with the very same scores (a bit of zip metadata nobody reads)."""
    det = fitted_tiny(name)
    path = tmp_path / "det.skood"
    det.save(path)
    data, want = path.read_bytes(), det.score_samples(blobs[1])
    records = _zip_records(data)
    assert len(records) >= 20 and all(size > 0 for _, _, size in records)
    bad = tmp_path / "flipped.skood"
    loaded = []
    for record, start, size in records:
        flipped = bytearray(data)
        flipped[start + size // 2] ^= 0xFF
        bad.write_bytes(flipped)
        with pytest.raises(ValueError, match="corrupt") as err:
            load(bad)
        assert str(bad) in str(err.value), record
    for pos in np.linspace(0, len(data) - 1, 40).astype(int):
        flipped = bytearray(data)
        flipped[pos] ^= 1
        bad.write_bytes(flipped)
        if not _rejected(bad, blobs[1], want):
            loaded.append(int(pos))
    assert len(loaded) <= 4, loaded  # zip metadata bytes only (most flips are refused)


def test_checksum_of_the_payload(tmp_path, saved, blobs):
    """The file holds a SHA-256 of its payload; a value changed without recomputing it is
    refused as corrupt; a file without one (skood 0.1.2) loads with a warning."""
    path, payload = saved
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", payload["checksum"])
    assert persistence._payload_checksum(payload) == payload["checksum"]
    fitted = {**payload["fitted"], "offset_": payload["fitted"]["offset_"] + 1.0}
    changed = _resave(payload, tmp_path, checksum=False, fitted=fitted)
    torch.save({**torch.load(changed, weights_only=True), "checksum": payload["checksum"]},
               changed)
    with pytest.raises(ValueError, match=r"changed\.skood.*corrupt.*checksum"):
        skood.SemSADDetector.load(changed)
    state = dict(payload["modules"]["encoder_"]["state"])
    key = next(iter(state))
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 1e-6  # one weight, one ulp or so
    modules = {**payload["modules"], "encoder_": {**payload["modules"]["encoder_"],
                                                  "state": state}}
    changed = _resave(payload, tmp_path, checksum=False, modules=modules)
    torch.save({**torch.load(changed, weights_only=True), "checksum": payload["checksum"]},
               changed)
    with pytest.raises(ValueError, match="corrupt"):
        skood.SemSADDetector.load(changed)
    with pytest.warns(SkoodVersionWarning, match="no checksum"):
        det = skood.SemSADDetector.load(_resave(payload, tmp_path, checksum=False))
    np.testing.assert_array_equal(det.score_samples(blobs[1]),
                                  skood.SemSADDetector.load(path).score_samples(blobs[1]))
    for bad in ("sha256:00", 12, None):
        changed = _resave(payload, tmp_path, checksum=False)
        torch.save({**torch.load(changed, weights_only=True), "checksum": bad}, changed)
        with pytest.raises(ValueError, match="corrupt.*checksum"):
            skood.SemSADDetector.load(changed)


# ----------------------------------------------------------- atomic saves
def _only_file(folder, name):
    assert sorted(p.name for p in folder.iterdir()) == [name], "a temporary file is left"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX file-size limits")
def test_disk_filling_during_an_overwrite_keeps_the_old_file(fitted_tiny, blobs, tmp_path):
    """The disk fills halfway through overwriting a saved detector (a file-size limit makes
    every write past it fail, for torch's own writer too): save raises an OSError naming the
    file and the cause; the old file is intact and no temporary file is left."""
    resource = pytest.importorskip("resource")
    import signal

    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "det.skood"
    old = fitted_tiny("NSADetector")
    old.save(path)
    new = fitted_tiny("SemSADDetector")
    new.save(tmp_path / "new.skood")
    size = (tmp_path / "new.skood").stat().st_size  # the limit: half of it
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, limits[1]))
        with pytest.raises(OSError, match=re.escape(str(path))) as err:
            new.save(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert err.value.errno == errno.EFBIG and "too large" in str(err.value)
    _only_file(folder, "det.skood")
    np.testing.assert_array_equal(skood.NSADetector.load(path).score_samples(blobs[1]),
                                  old.score_samples(blobs[1]))


def test_no_space_left_during_an_overwrite(fitted_tiny, blobs, tmp_path, monkeypatch):
    """os.write fails with ENOSPC after half the bytes: an OSError that names the file and
    says the disk is full (not torch's RuntimeError); the old file loads with its scores."""
    path = tmp_path / "det.skood"
    old, new = fitted_tiny("DUMDetector"), fitted_tiny("SemSADDetector")
    old.save(path)
    new.save(tmp_path / "new.skood")
    budget = [(tmp_path / "new.skood").stat().st_size // 2]
    (tmp_path / "new.skood").unlink()
    real_write = os.write

    def write(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[:budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match=r"No space left on device.*det\.skood") as err:
        new.save(path)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, RuntimeError)
    _only_file(tmp_path, "det.skood")
    np.testing.assert_array_equal(skood.DUMDetector.load(path).score_samples(blobs[1]),
                                  old.score_samples(blobs[1]))


def test_save_errors_name_the_file(fitted_tiny, tmp_path):
    det = fitted_tiny("RotAuxMSPDetector")
    missing = tmp_path / "no_such_folder" / "det.skood"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        det.save(missing)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(OSError, match=re.escape(str(folder))):
        det.save(folder)
    assert list(folder.iterdir()) == []
    _only_file(tmp_path, "a_folder")


def test_saves_from_threads_to_one_file(fitted_tiny, blobs, tmp_path):
    """Threads saving to the same file each write a temporary file of their own: the file
    that remains is one of the detectors, whole, and no temporary file is left."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "det.skood"
    dets = [fitted_tiny(n) for n in ("NSADetector", "DUMDetector")] * 3
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda d: d.save(path), dets))
    _only_file(tmp_path, "det.skood")
    det = load(path)
    np.testing.assert_array_equal(
        det.score_samples(blobs[1]),
        fitted_tiny(type(det).__name__).score_samples(blobs[1]))


# ---------------------------------------------------- validation at load
@pytest.fixture(scope="module")
def saved_knn(tmp_path_factory, fitted_tiny):
    path = tmp_path_factory.mktemp("saved") / "knn.skood"
    fitted_tiny("FeatureKNNDetector").save(path)
    return path, torch.load(path, weights_only=True)


def _encoded(value):
    return persistence._encode(value, "test")


def test_parameters_are_validated_at_load(tmp_path, saved_knn):
    _, payload = saved_knn
    for name, value, match in [("n_neighbors", -3, "n_neighbors"),
                               ("n_neighbors", "5", "n_neighbors"),
                               ("contamination", 0.9, "contamination"),
                               ("batch_size", 0, "batch_size")]:
        path = _resave(payload, tmp_path, params={**payload["params"], name: value})
        with pytest.raises(ValueError, match=rf"changed\.skood.*'{match}' parameter") as err:
            skood.FeatureKNNDetector.load(path)
        assert not isinstance(err.value, TypeError)


@pytest.mark.parametrize(("change", "match"), [
    ({"offset_": "0.5"}, r"offset_.*real number"),
    ({"offset_": math.nan}, r"offset_.*real number"),
    ({"offset_": True}, r"offset_.*real number"),
    ({"n_features_in_": -2}, r"n_features_in_.*positive int"),
    ({"n_features_in_": 8.0}, r"n_features_in_.*positive int"),
    ({"n_features_in_": 7}, r"feature_mean_.*7"),
    ({"feature_mean_": np.zeros(5)}, r"feature_mean_.*8"),
    ({"feature_scale_": np.zeros((8, 1))}, r"feature_scale_"),
    ({"train_scores_": np.zeros((4, 2))}, r"train_scores_"),
    ({"train_scores_": torch.zeros(4, dtype=torch.float64)}, r"train_scores_"),
    ({"input_kind_": "audio"}, r"input_kind_.*'audio'"),
    ({"image_shape_": (1, 2, 4)}, r"image_shape_"),
    ({"device_": 3}, r"device_"),
    ({"feature_mode_": "no"}, r"feature_mode_"),
    ({"bank_": np.zeros((3, 3))}, r"bank_.*tensor"),
    ({"train_store_": torch.zeros(5, 7)}, r"train_store_.*\(5, 7\)"),
    ({"encoder_": 1}, r"encoder_"),
    ({"score_samples": 1}, r"score_samples.*(unknown|method)"),
    ({"__class__": "x"}, r"__class__"),
    ({"foo_": 1}, r"unknown.*foo_"),
    ({"n_neighbors": 3}, r"n_neighbors"),
])
def test_fitted_attributes_are_validated_at_load(change, match, tmp_path, saved_knn):
    """Entries the class does not declare (a method's name, an unknown name, a parameter),
    and declared ones of the wrong type or shape: a ValueError naming the file and them."""
    _, payload = saved_knn
    fitted = {**payload["fitted"], **{k: _encoded(v) for k, v in change.items()}}
    path = _resave(payload, tmp_path, fitted=fitted)
    with pytest.raises(ValueError, match=rf"changed\.skood.*{match}"):
        skood.FeatureKNNDetector.load(path)


def test_missing_fitted_attributes_are_rejected(tmp_path, saved, saved_knn):
    _, payload = saved_knn
    for missing in ("offset_", "train_scores_", "n_features_in_", "feature_mean_",
                    "train_store_"):
        fitted = {k: v for k, v in payload["fitted"].items() if k != missing}
        with pytest.raises(ValueError, match=rf"changed\.skood.*missing.*{missing}"):
            skood.FeatureKNNDetector.load(_resave(payload, tmp_path, fitted=fitted))
    _, payload = saved
    for network in ("discriminator_", "encoder_"):
        modules = {k: v for k, v in payload["modules"].items() if k != network}
        with pytest.raises(ValueError, match=rf"changed\.skood.*missing.*{network}"):
            skood.SemSADDetector.load(_resave(payload, tmp_path, modules=modules))
    with pytest.raises(ValueError, match=r"changed\.skood.*unknown.*extra_net_"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, modules={
            **payload["modules"], "extra_net_": payload["modules"]["encoder_"]}))
    with pytest.raises(ValueError, match=r"changed\.skood.*unknown.*head_"):
        skood.SemSADDetector.load(_resave(payload, tmp_path, aliases={"head_": ["encoder_", ""]}))


def test_save_refuses_what_load_would_refuse(fitted_tiny, tmp_path):
    """A fitted attribute the class does not declare, or a detector whose fit did not finish
    (no offset_), is refused by save: every file save writes loads."""
    det = pickle.loads(pickle.dumps(fitted_tiny("NSADetector")))
    det.extra_ = 1.0
    with pytest.raises(ValueError, match=r"NSADetector.*extra_.*_fitted_attributes"):
        det.save(tmp_path / "x.skood")
    del det.extra_, det.offset_
    with pytest.raises(ValueError, match=r"NSADetector.*missing.*offset_"):
        det.save(tmp_path / "x.skood")
    assert list(tmp_path.iterdir()) == []


def test_every_detector_declares_its_fitted_attributes():
    """The declarations name only attributes with a valid kind, and no parameter or method."""
    for name in DETECTORS:
        cls = getattr(skood, name)
        declared = persistence._declared_attributes(cls)
        assert {"offset_", "n_features_in_", "train_scores_"} <= set(declared)
        params = set(cls().get_params(deep=False))
        for attr, (kinds, _) in declared.items():
            assert attr.endswith("_") and not attr.startswith("_"), attr
            assert attr not in params and not hasattr(cls, attr), attr
            assert kinds, attr
