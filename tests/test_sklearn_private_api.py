"""The private scikit-learn names skood relies on are where, and what, skood expects.

skood validates its parameters the way scikit-learn's own estimators do: a
``_parameter_constraints`` dict of ``Interval`` / ``StrOptions`` objects and
constraint strings ("boolean", "random_state"), checked when ``fit`` runs
under ``sklearn.base._fit_context``. These names are private to
scikit-learn, so pyproject.toml bounds scikit-learn to the versions they are
known to work with. When a new scikit-learn moves or changes one of them,
these tests fail with a message saying which one, before any detector does.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from numbers import Integral, Real
from pathlib import Path

import pytest
import sklearn
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sklearn.base import BaseEstimator

import skood


def _private(module: str, name: str):
    """``module.name``, or a failure saying that scikit-learn moved it."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        pytest.fail(
            f"scikit-learn {sklearn.__version__} moved or removed the private name "
            f"{module}.{name}, which skood uses ({e}); update skood's imports and the "
            "scikit-learn bound in pyproject.toml"
        )


def _signature_has(obj, where: str, params: dict[str, inspect._ParameterKind]) -> None:
    sig = inspect.signature(obj)
    for name, kind in params.items():
        if name not in sig.parameters or sig.parameters[name].kind is not kind:
            pytest.fail(
                f"scikit-learn {sklearn.__version__} changed the signature of {where}: skood "
                f"passes {name!r} as a {kind.description} parameter, the signature is now "
                f"{where}{sig}"
            )


POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW = inspect.Parameter.KEYWORD_ONLY


def test_the_private_names_exist_with_the_signatures_skood_calls():
    _signature_has(_private("sklearn.base", "_fit_context"), "sklearn.base._fit_context",
                   {"prefer_skip_nested_validation": KW})
    pv = "sklearn.utils._param_validation"
    _signature_has(_private(pv, "Interval"), f"{pv}.Interval",
                   {"type": POS, "left": POS, "right": POS, "closed": KW})
    _signature_has(_private(pv, "StrOptions"), f"{pv}.StrOptions", {"options": POS})
    _signature_has(_private(pv, "HasMethods"), f"{pv}.HasMethods", {"methods": POS})
    error = _private(pv, "InvalidParameterError")
    assert issubclass(error, ValueError), f"{pv}.InvalidParameterError is no ValueError"
    assert callable(getattr(BaseEstimator, "_validate_params", None)), (
        "scikit-learn removed BaseEstimator._validate_params, which _fit_context and skood's "
        "tests call to check _parameter_constraints"
    )


def test_fit_context_validates_parameter_constraints_as_skood_declares_them():
    """Every kind of constraint skood's detectors declare, checked the way ``fit`` checks it."""
    fit_context = _private("sklearn.base", "_fit_context")
    pv = "sklearn.utils._param_validation"
    Interval, StrOptions = _private(pv, "Interval"), _private(pv, "StrOptions")
    error = _private(pv, "InvalidParameterError")

    class Estimator(BaseEstimator):
        _parameter_constraints = {  # the kinds of constraint skood's detectors declare
            "n": [Interval(Integral, 2, None, closed="left")],
            "lr": [Interval(Real, 0, None, closed="neither")],
            "mode": [StrOptions({"auto", "fast"}), "boolean"],
            "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
            "random_state": ["random_state"],
            "shape": [tuple, list, None],
        }

        def __init__(self, n=2, lr=0.1, mode="auto", contamination="auto", random_state=None,
                     shape=None):
            self.n, self.lr, self.mode = n, lr, mode
            self.contamination, self.random_state, self.shape = contamination, random_state, shape

        @fit_context(prefer_skip_nested_validation=True)
        def fit(self, X=None, y=None):
            self.fitted_ = True
            return self

    assert Estimator(mode=True, contamination=0.1, random_state=0, shape=(1, 8, 8)).fit().fitted_
    bad = {"n": 1, "lr": 0.0, "mode": "slow", "contamination": 0.6, "random_state": "x",
           "shape": 3}
    for name, value in bad.items():
        with pytest.raises(error, match=f"'{name}' parameter"):
            Estimator(**{name: value}).fit()
    assert StrOptions({"a", "b"}).options == {"a", "b"}, (
        f"{pv}.StrOptions has no 'options' set any more (RotAuxMSPDetector.score_samples_by "
        "reads it)"
    )


def test_installed_scikit_learn_is_in_the_declared_range():
    """The range in pyproject.toml is the one these tests ran against."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    pyproject = Path(skood.__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not a source checkout")
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"scikit-learn\b", d))
    specifiers = SpecifierSet(spec.removeprefix("scikit-learn"))
    assert any(s.operator == "<" for s in specifiers), (
        f"pyproject.toml declares {spec!r}: an upper bound is needed (private names)")
    assert Version(sklearn.__version__) in specifiers, (
        f"scikit-learn {sklearn.__version__} is outside pyproject.toml's {spec!r}")
