"""DUM: a deep uncertainty model over (contrastive) embeddings.

Reference: M. Wu and N. Goodman, "A Simple Framework for Uncertainty in
Contrastive Learning", https://arxiv.org/abs/2010.02038.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._augment import BoundCorruption, SimCLRAugment, TabularCorruption
from .._base import FEATURE_SCALINGS, BaseDeepDetector
from .._nn.encoders import build_encoder
from .._nn.heads import ContrastiveModel
from .._training import ContrastiveNet, SkoodNet
from .._utils import fit_rng, seed_stream, to_model_input
from ._dum_parts import (
    DUMVarianceMLP,
    FeatureView,
    SphereLift,
    UnitEmbedding,
    dum_set_loss,
    variance_norm,
    whitening_lift,
    whitening_lift_skeleton,
)

#: DUM's own random streams, as offsets of the fit's seed (:func:`skood._utils.seed_stream`).
#: The variance network's training phase on image features takes offset 1, the one the
#: encoder's phase uses for its CPU generator ("net_cpu"); kept so that fits reproduce
#: the scores of earlier skood versions.
_SEED_STREAMS = {"variance_net": 1}

__all__ = ["DUMDetector", "DUMNet"]

#: m when ``set_size=None`` and ``objective="infonce"``
_INFONCE_SET_SIZE = 8
#: tabular augmentation t of the set members (skood's choice): SCARF-style corruption
_TABULAR_FRAC, _TABULAR_NOISE = 0.1, 0.05


class DUMNet(SkoodNet):
    r"""skorch net that trains DUM's f1 with the set objective (paper section 3).

    Each shuffled minibatch is augmented (``augment``), embedded with the
    frozen callable ``embed`` = g and cut into consecutive sets of 2m samples
    (m = ``set_size``; None: one set per batch for "literal"); f1
    (``module``) predicts the log-variances and
    :func:`~skood._detectors._dum_parts.dum_set_loss` is the objective. m is fixed for the
    whole fit (None: half of ``batch_size`` for "literal"): the last, partial
    batch of an epoch trains the whole sets it holds, and is dropped when it
    holds none (``iterator_train__min_batch``), so every optimiser step sees
    sets of the same size.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        embed: Any = None,
        augment: Any = None,
        set_size: int | None = None,
        objective: str = "literal",
        temperature: float = 0.07,
        normalize_means: bool = True,
        **kwargs: Any,
    ) -> None:
        m = set_size or (kwargs.get("batch_size", 128) // 2 if objective == "literal"
                         else _INFONCE_SET_SIZE)
        kwargs.setdefault("iterator_train__min_batch", 2 * m * (1 if objective == "literal" else 2))
        super().__init__(module, *args, **kwargs)
        self.embed = embed
        self.augment = augment
        self.set_size = set_size
        self.objective = objective
        self.temperature = temperature
        self.normalize_means = normalize_means

    def resolved_set_size(self) -> int:
        """m: ``set_size``, or (None) half of ``batch_size`` for "literal", 8 for "infonce"."""
        if self.set_size is not None:
            return self.set_size
        return self.batch_size // 2 if self.objective == "literal" else _INFONCE_SET_SIZE

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            x = self.augment(x, self.generator_)
        with torch.no_grad():
            z = self.embed(x)
        log_var = self.module_(z)
        m = self.resolved_set_size()
        need = 2 * m if self.objective == "literal" else 4 * m
        if m < 2 or len(x) < need:
            return (0.0 * log_var).sum()
        # L_DUM = mu_PoE(x_1:m) . mu_PoE(x_1:2m); infonce: the same similarities over tau
        return dum_set_loss(z, log_var, m, self.objective, self.temperature,
                            normalize=self.normalize_means)


class DUMDetector(BaseDeepDetector):
    r"""Deep uncertainty model: anomalies are samples whose embedding is uncertain.

    Read more in the :ref:`User Guide <dum>`.

    Fit (Wu & Goodman, section 3):

    1. embedding g: for tabular rows the whitened features (the paper's
       min-max scaling is ``tabular_scaling="minmax"``) lifted onto the unit
       sphere by ``SphereLift`` (``whitening_lift``); for images a
       SimCLR encoder trained here, its features whitened and lifted the same
       way (or a frozen user ``encoder``);
    2. f1 (``DUMVarianceMLP``) maps an embedding to
       :math:`N(g(x), \mathrm{diag}\,\sigma^2(x))`, mean fixed;
    3. f2: product of experts over a set, precisions :math:`w_i = 1/\sigma_i^2`,
       :math:`\mu_{1:m} = \sum_i w_i \mu_i / \sum_i w_i`,
       :math:`\Sigma_{1:m} = (\sum_i w_i)^{-1}`;
    4. f1 is trained (``DUMNet``) by maximising, over sets
       :math:`x_{1:2m} \sim p(x)` of augmented training samples,

       .. math:: \mathcal L_{DUM}(x_{1:2m}) = \mathbb E_{t_{1:2m}}\big[
          \mu_{PoE}(t_{1:m}(x_{1:m}))^\top \mu_{PoE}(t_{1:2m}(x_{1:2m}))\big]

       (``objective="literal"``), or an InfoNCE over several sets per batch
       with the other sets' whole-set means as negatives
       (``objective="infonce"``). m > 1 is required (for m = 1 the variances
       leave the objective).

    Score: ``score_samples(x)`` :math:`= -\lVert\sigma^2(x)\rVert`
    (``score_norm``); higher means more normal. Scores are per sample, so
    ``train_scores_`` (and ``fit_predict``) serve the paper's transductive
    protocol (fit on contaminated data, score the same rows) without a
    second pass; the inductive protocol scores new data as usual.

    Tabular data (skood's choice): the lift keeps g injective, and without
    it the objective, which compares directions of set means, cannot see how
    far a row lies from the data. Rows are whitened, not min-max scaled as
    in the paper: the trained variances follow a row's distance to the
    centre of the embeddings (Notes), and after whitening that distance is
    the Mahalanobis distance to the training mean, blind to how the
    features happen to be scaled and correlated. On min-max rows, variances
    fitted on normal rows alone gave the anomalies of some data sets the
    smallest variances of all (README, DUMDetector). Set members
    are augmented by a SCARF-style corruption of the standardised row (10%
    of features resampled, Gaussian noise 0.05). Images: the SimCLR views
    serve both the encoder and the DUM sets.

    Frozen pretrained backbone (images with ``backbone`` a name of
    :data:`~skood.pretrained.PRETRAINED_BACKBONES`, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :class:`~skood.BaseDeepDetector`): the frozen encoder (``feature_encoder_``)
    maps every image once, at fit and at scoring, and f1 is trained
    on the frozen embeddings, as in the DUM paper (whose g is a fixed,
    separately trained encoder): the feature vectors, standardised, whitened
    and lifted as tabular rows (``tabular_scaling``), with the tabular set augmentation
    and batch size. ``encoder`` must then be None. A trainable
    ``PretrainedEncoder`` is fine-tuned by SimCLR on the images instead.

    Notes
    -----
    The literal objective gives outliers large variances: the halves of a
    set are random, so f1 can only make the PoE mean of *any* half point
    where the whole set's mean points, i.e. weight rows near the common
    direction. In expectation over the split, :math:`\lVert\mu_{1:m} -
    \mu_{1:2m}\rVert^2` is, to first order, the variance of a weighted mean
    (the normalised means' dot product is 1 minus half of it), smallest for
    the inverse-variance weights :math:`w_i \propto 1 / \lVert z_i - c
    \rVert^2` (c the set's centre): the optimum ranks rows by their distance
    to the centre of the embeddings. One split per step estimates that
    expectation poorly; many small sets per step (``set_size=4``) estimate
    it well. The InfoNCE variant rewards the opposite (a random set is told
    apart from others by its most unusual members), so its score comes out
    inverted: it is offered because the paper quotes a temperature of 0.07
    but writes no InfoNCE, not as a detector.

    The defaults are skood's CPU budget; ``DUMDetector.from_preset("paper")``
    gives the paper's: min-max-scaled rows, diagonal covariances, the raw PoE
    means of its written objective, set members not augmented (its tabular
    experiments fit f1 on the rows themselves; pass ``augment=True`` for its
    image objective's :math:`t_i`), f1 of 3 x 4096 units, batch 256,
    ResNet-18 SimCLR for images.

    Parameters
    ----------
    objective : {"literal", "infonce"}, default="literal"
        The paper's written set objective, or InfoNCE over sets.
    set_size : int or None, default=4
        m, half a set (m >= 2); a minibatch holds ``batch_size / (2m)`` sets
        (32 at the defaults). None: one set per minibatch for "literal" (the
        paper's reading: m = 128 at its batch of 256), 8 for "infonce". Many
        small sets per step give the variances a direction that holds across
        seeds (``benchmarks/dum_orientation.py``); one set per minibatch
        leaves the step's gradient to the chance of one split.
    temperature : float, default=0.07
        Temperature of the "infonce" objective (paper: 0.07).
    normalize_means : bool, default=True
        L2-normalise the PoE means before their dot product (skood's
        default; the paper's written objective has the raw means, ``False``).
    covariance : {"auto", "isotropic", "diagonal"}, default="auto"
        f1 predicts one variance per embedding dimension,
        :math:`\mathrm{diag}\,\sigma^2(x)` (paper), or one per sample,
        :math:`\sigma^2(x) I`. "auto": diagonal for tabular rows (g the
        identity on the features, as in the paper's tabular experiments),
        isotropic for images, whose embeddings (the trained encoder's, or
        a pretrained encoder's hundreds of features) give noisy
        per-dimension variances from a few thousand training images (README,
        DUMDetector).
    hidden_width : int, default=256
        Width of f1's hidden layers (paper: 4096).
    n_layers : int, default=3
        Hidden layers of f1 (paper: 3).
    max_log_var : float, default=5.0
        Bound b of the log-variances, :math:`\log\sigma^2 \in (-b, b)`.
    score_norm : {"l2", "trace", "logdet"}, default="l2"
        Size of the variance used as anomaly score
        (``skood._detectors._dum_parts.variance_norm``).
    augment : bool, default=True
        Augment the set members (paper); False uses the plain embeddings.
    tabular_scaling : {"whiten", "standard", "minmax"}, default="whiten"
        Tabular g before the lift: the standardised features whitened with the
        training rows' shrunk covariance (``whitening_lift``), the
        standardised features (zero mean, unit variance on the training rows),
        or min-max-scaled features (the paper's, and the ``"paper"``
        preset's).
    encoder : torch.nn.Module or None, default=None
        Images only: a frozen encoder of float images (N, C, H, W) in [0, 1]
        to (N, d), deep-copied at fit and never trained; its output is
        L2-normalised. None: train SimCLR.
    embedding : {"auto", "whitened", "features", "projection"}, default="auto"
        g of the trained SimCLR encoder. "auto": "whitened" when there are
        more training images than representation dimensions, else
        "projection" (with fewer, the covariance is singular and the
        whitening amplifies every test image along its null space; README,
        DUMDetector). "features": its pooled representation
        before the projection head (as the paper's ImageNet model),
        L2-normalised; "projection": the L2-normalised projection;
        "whitened": the pooled representation whitened
        with the training images' shrunk covariance and lifted onto the sphere
        (``whitening_lift``), as tabular rows are. The trained variances
        follow the distance to the centre of the embeddings (Notes); a
        contrastive embedding spreads the images evenly over the sphere, so
        the cosine to the centre of the plain features hardly ranks
        anomalies, while after whitening it is their Mahalanobis distance
        (README, DUMDetector). Ignored with a user ``encoder`` and for
        tabular data.
    dum_epochs : int, default=100
        Epochs of f1 training (paper: 100).
    encoder_epochs : int, default=10
        Epochs of SimCLR training, images only (paper: 200).
    max_steps : int, "auto" or None, default="auto"
        Cap on the optimiser steps of each training phase. A phase runs its
        epochs while they take at most ``max_steps`` steps; beyond that, each
        epoch trains on the first ``max_steps // epochs`` batches of a fresh
        seeded permutation of all the rows, and the learning-rate schedules
        span the capped run. "auto": ``epochs * ceil(10000 / batch_size)``
        steps, i.e. each epoch sees at most 10,000 rows, so training costs
        what it costs on 10,000 rows whatever the number of rows (sets of up
        to 10,000 rows are never capped). None: the epochs alone (the "paper"
        preset). See :ref:`scaling`.
    backbone : str or nn.Module, default="auto"
        "auto", "mlp", "cnn", "resnet18", "resnet34", a pretrained name or an
        ``nn.Module``.
        SimCLR encoder, images only (paper: ResNet-18/34); a frozen
        pretrained encoder: see above. Tabular data takes only "auto" (g is
        the identity there, no encoder is trained; another value raises a
        ValueError).
    batch_size : int, default=256
        Minibatch of the DUM phase (paper: 256), cut into sets of 2m; a
        training set smaller than a minibatch is one minibatch.
    encoder_batch_size : int, default=64
        SimCLR minibatch (paper: 128).
    lr : float, default=1e-3
        Adam learning rate of f1 (paper: 1e-3).
    encoder_lr : float, default=1e-3
        Adam learning rate of the SimCLR encoder (paper: SGD 0.03).
    encoder_temperature : float, default=0.5
        NT-Xent temperature of the SimCLR encoder (paper: 0.07).
    projection_dim : int, default=128
        Output width of the SimCLR projection head (images).
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    feature_scaling : {"auto", "standardize", "unit", "unit-standardize"}, default="auto"
        The representation of frozen pretrained features (frozen-feature mode only; tabular
        rows are always standardised): "standardize" standardises each feature; "unit"
        scales each feature vector to norm sqrt(d), which keeps the angles between them;
        "unit-standardize" does that, then standardises. "auto" is "standardize" (the
        standardised features: the unit-norm representations cost DUM on CIFAR-10), chosen
        on both pretrained suites, each half of their classes (:ref:`pretrained`).
    contamination, calibration, device, random_state, verbose, image_shape
        See :class:`~skood.BaseDeepDetector`.

    Attributes
    ----------
    encoder_ : torch.nn.Module
        The frozen embedding g: a ``SphereLift`` for tabular rows, a
        ``FeatureView`` of the trained
        ``ContrastiveModel`` (or the model itself for
        ``"projection"``), or the deep copy of the user's ``encoder``.
    variance_net_ : DUMVarianceMLP
        f1.
    embedding_dim_ : int
        Dimension d of g (``n_features + 1`` for tabular rows, see above).
    embedding_ : str or None
        The embedding of the trained SimCLR encoder ("auto" resolved); None
        when none was trained (tabular rows, a user ``encoder``, a
        pretrained backbone).
    history_ : dict
        skorch histories ("encoder" when one was trained, "dum").
    train_scores_ : ndarray of shape (n_samples,)
        ``score_samples`` of the training data (the transductive scores).
    offset_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import DUMDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 4))
    >>> det = DUMDetector(dum_epochs=2, random_state=0).fit(X)
    >>> det.predict(X[:3]).shape
    (3,)
    >>> det.fit_predict(X).shape  # transductive labels from train_scores_
    (200,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "encoder_": "network", "variance_net_": "network", "embedding_": "text|None",
        "embedding_dim_": "count", "history_": "dict",
    }
    _auto_feature_scaling: ClassVar[str] = "standardize"
    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "feature_scaling": [StrOptions({"auto", *FEATURE_SCALINGS})],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "objective": [StrOptions({"literal", "infonce"})],
        "set_size": [Interval(Integral, 2, None, closed="left"), None],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "normalize_means": ["boolean"],
        "covariance": [StrOptions({"auto", "isotropic", "diagonal"})],
        "hidden_width": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "max_log_var": [Interval(Real, 0, None, closed="neither")],
        "score_norm": [StrOptions({"l2", "trace", "logdet"})],
        "augment": ["boolean"],
        "tabular_scaling": [StrOptions({"whiten", "standard", "minmax"})],
        "encoder": [nn.Module, None],
        "embedding": [StrOptions({"auto", "whitened", "features", "projection"})],
        "dum_epochs": [Interval(Integral, 1, None, closed="left")],
        "encoder_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "encoder_batch_size": [Interval(Integral, 2, None, closed="left")],
        "encoder_lr": [Interval(Real, 0, None, closed="neither")],
        "encoder_temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
    }
    _frozen_feature_mode: ClassVar[bool] = True  # see skood._base
    _presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "covariance": "diagonal",
            "normalize_means": False,
            "augment": False,
            "tabular_scaling": "minmax",
            "hidden_width": 4096,
            "n_layers": 3,
            "dum_epochs": 100,
            "max_steps": None,
            "batch_size": 256,
            "lr": 1e-3,
            "backbone": "resnet18",
            "encoder_epochs": 200,
            "encoder_batch_size": 128,
            "encoder_temperature": 0.07,
        },
    }

    def __init__(
        self,
        *,
        objective: str = "literal",
        set_size: int | None = 4,
        temperature: float = 0.07,
        normalize_means: bool = True,
        covariance: str = "auto",
        hidden_width: int = 256,
        n_layers: int = 3,
        max_log_var: float = 5.0,
        score_norm: str = "l2",
        augment: bool = True,
        tabular_scaling: str = "whiten",
        encoder: nn.Module | None = None,
        embedding: str = "auto",
        dum_epochs: int = 100,
        encoder_epochs: int = 10,
        max_steps: int | str | None = "auto",
        backbone: str = "auto",
        batch_size: int = 256,
        encoder_batch_size: int = 64,
        lr: float = 1e-3,
        encoder_lr: float = 1e-3,
        encoder_temperature: float = 0.5,
        projection_dim: int = 128,
        feature_scaling: str = "auto",
        contamination: str | float = "auto",
        calibration: str | float = "loo",
        max_train_scores: int | str | None = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.objective = objective
        self.set_size = set_size
        self.temperature = temperature
        self.normalize_means = normalize_means
        self.covariance = covariance
        self.hidden_width = hidden_width
        self.n_layers = n_layers
        self.max_log_var = max_log_var
        self.score_norm = score_norm
        self.augment = augment
        self.tabular_scaling = tabular_scaling
        self.encoder = encoder
        self.embedding = embedding
        self.dum_epochs = dum_epochs
        self.encoder_epochs = encoder_epochs
        self.max_steps = max_steps
        self.backbone = backbone
        self.batch_size = batch_size
        self.encoder_batch_size = encoder_batch_size
        self.lr = lr
        self.encoder_lr = encoder_lr
        self.encoder_temperature = encoder_temperature
        self.projection_dim = projection_dim
        self.feature_scaling = feature_scaling
        self.contamination = contamination
        self.calibration = calibration
        self.max_train_scores = max_train_scores
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.image_shape = image_shape

    # ------------------------------------------------------------ checks
    def _samples_per_batch(self) -> int:
        """Samples one DUM step needs: one set (literal) or two sets (infonce)."""
        if self.objective == "literal":
            return 4 if self.set_size is None else 2 * self.set_size
        return 4 * (self.set_size or _INFONCE_SET_SIZE)

    def _min_samples(self) -> int:
        return self._samples_per_batch()

    def _isotropic(self) -> bool:
        """Whether f1 predicts one variance per sample ("auto" resolved by the input kind)."""
        if self.covariance == "auto":
            return getattr(self, "input_kind_", "tabular") == "image"
        return self.covariance == "isotropic"

    def _check_batch(self, n: int) -> None:
        need = self._samples_per_batch()
        bs = self.batch_size
        if min(bs, n) < need:
            m = self.set_size or (_INFONCE_SET_SIZE if self.objective == "infonce" else 2)
            raise ValueError(
                f"DUMDetector(objective={self.objective!r}, set_size={self.set_size}) needs "
                f"{need} samples per minibatch (sets of 2m with m = {m} > 1"
                f"{', two sets per batch' if self.objective == 'infonce' else ''}); "
                f"batch_size={bs} with {n} training samples gives {min(bs, n)}"
            )

    def _check_feature_mode(self) -> None:
        if self.encoder is not None:
            raise ValueError(
                "DUMDetector: encoder and a frozen pretrained backbone are two embeddings of "
                f"the images; pass one of them (encoder=None with backbone={self.backbone!r}, "
                "or the default backbone with the encoder)"
            )

    # ------------------------------------------------------------------ fit
    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        self._check_batch(len(Xs))
        dev = self.device_
        data = Xs.to(dev)
        self.history_ = {}
        self.embedding_: str | None = None  # set by _image_embedding when it trains an encoder
        if self._trains_on_images:
            self.encoder_ = self._image_embedding(data, seed)
            augment = SimCLRAugment() if self.augment else None
        else:
            if self._net_backbone != "auto":
                raise ValueError(
                    f"DUMDetector trains no encoder for tabular data (g is the identity on the "
                    f"scaled features, lifted onto the sphere); backbone={self.backbone!r} is for "
                    "images. Pass backbone='auto' for tabular data."
                )
            if self.encoder is not None:
                raise ValueError(
                    "encoder is for image input (an nn.Module mapping (N, C, H, W) images "
                    "to (N, d)); tabular rows use the identity on their scaled "
                    "features. Pass encoder=None for tabular data."
                )
            self.encoder_ = self._build_embedding(tuple(Xs.shape[1:]), features=Xs).to(dev)
            augment = (BoundCorruption(TabularCorruption(_TABULAR_FRAC, _TABULAR_NOISE), data)
                       if self.augment else None)
        with torch.no_grad():
            dim = self.encoder_(to_model_input(Xs[:2], dev)).shape[1]
        self.embedding_dim_ = int(dim)
        with fit_rng():  # initial weights from the fit's generators
            f1 = self._build_variance_net(self.embedding_dim_)
        net = DUMNet(
            f1,
            embed=UnitEmbedding(self.encoder_),
            augment=augment,
            set_size=self.set_size,
            objective=self.objective,
            temperature=self.temperature,
            normalize_means=self.normalize_means,
            name="DUM", max_epochs=self.dum_epochs, max_steps=self.max_steps,
            batch_size=min(self.batch_size, len(Xs)),
            lr=self.lr, device=dev, seed=seed_stream(seed, "variance_net", _SEED_STREAMS),
            verbose=self.verbose,
        )
        net.fit(data)
        self.variance_net_ = net.module_.eval()
        self.history_["dum"] = net.history

    def _tabular_embedding(self, Xs: torch.Tensor) -> SphereLift:
        d = Xs.shape[1]
        if self.tabular_scaling == "standard":  # the base class standardised the rows already
            low, scale = torch.zeros(d), torch.ones(d)
        else:
            low, high = Xs.min(dim=0).values, Xs.max(dim=0).values
            scale = high - low
            scale[~(scale > 1e-12)] = 1.0  # constant columns map to 0
        u = (Xs - low) / scale
        center = u.mean(dim=0)
        radius = float((u - center).square().sum(dim=1).mean().sqrt())
        return SphereLift(low, scale, center, radius if radius > 1e-12 else 1.0)

    def _image_embedding(self, data: torch.Tensor, seed: int) -> nn.Module:
        dev = self.device_
        shape = tuple(data.shape[1:])
        if self.encoder is not None:
            enc = self._build_embedding(shape).to(dev)
            try:
                with torch.no_grad():
                    out = enc(to_model_input(data[:2], dev))
            except Exception as e:  # noqa: BLE001 (any failure means the encoder does not fit)
                raise ValueError(
                    f"encoder failed on images of shape (N, C, H, W) = (2, "
                    f"{', '.join(map(str, data.shape[1:]))}): {e!r}"
                ) from e
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    "encoder must map float images (N, C, H, W) to a tensor (N, d); for "
                    f"N = 2 it returned {got}"
                )
            return enc
        with fit_rng():  # initial weights from the fit's generators
            model = self._build_simclr(shape)
        enc_net = ContrastiveNet(
            model,
            augment=SimCLRAugment(),
            temperature=self.encoder_temperature,
            symmetric=True,
            name="DUM encoder (SimCLR)", max_epochs=self.encoder_epochs, max_steps=self.max_steps,
            batch_size=self.encoder_batch_size, lr=self.encoder_lr, device=dev,
            seed=seed, verbose=self.verbose, optimizer__weight_decay=1e-6,
        )
        enc_net.fit(data)
        self.history_["encoder"] = enc_net.history
        model = enc_net.module_.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        embedding, feats = self.embedding, None
        if embedding in ("auto", "whitened"):
            with torch.no_grad():
                feats = self._map_batches(FeatureView(model), data).float()
            if embedding == "auto":  # a whitening needs more images than dimensions
                embedding = "whitened" if len(feats) > feats.shape[1] else "projection"
        self.embedding_ = embedding
        return self._build_embedding(shape, model=model, features=feats).to(dev)

    # ------------------------------------------------------------- networks
    def _build_simclr(self, shape: tuple[int, ...]) -> ContrastiveModel:
        """The untrained SimCLR model of images of ``shape`` (g is built from it)."""
        return ContrastiveModel(build_encoder(self._net_backbone, shape), self.projection_dim)

    def _build_embedding(
        self,
        shape: tuple[int, ...],
        model: nn.Module | None = None,
        features: torch.Tensor | None = None,
    ) -> nn.Module:
        """g, the frozen embedding ``encoder_``, used by ``fit`` and by ``load``.

        ``fit`` passes what it fitted: the trained SimCLR ``model`` (images)
        and the ``features`` the lift is fitted to (the tabular rows, or the
        model's features when ``embedding_`` is "whitened"). Without them
        (``load``), g is unfitted, of the fitted architecture: an untrained
        ``model`` and lifts with placeholder buffers, which the saved state
        fills in. A user ``encoder`` is deep-copied and frozen either way.
        """
        if not self._trains_on_images:
            if self.tabular_scaling == "whiten":
                g: nn.Module = (whitening_lift(features) if features is not None
                                else whitening_lift_skeleton(shape[0]))
            elif features is not None:
                g = self._tabular_embedding(features)
            else:
                d = shape[0]
                g = SphereLift(torch.zeros(d), torch.ones(d), torch.zeros(d), 1.0)
            return g.eval()
        if self.encoder is not None:
            g = copy.deepcopy(self.encoder).eval()
            for p in g.parameters():
                p.requires_grad_(False)
            return g
        model = self._build_simclr(shape) if model is None else model
        embedding = getattr(self, "embedding_", self.embedding)
        if embedding == "projection":
            return model.eval()
        g = FeatureView(model)
        if embedding == "whitened":
            lift = (whitening_lift(features) if features is not None
                    else whitening_lift_skeleton(self.embedding_dim_ - 1))
            g = nn.Sequential(g, lift)
        return g.eval()

    def _build_variance_net(self, dim: int) -> DUMVarianceMLP:
        """f1 on embeddings of ``dim`` dimensions, untrained (``fit`` trains it; ``load``
        fills in its weights)."""
        return DUMVarianceMLP(dim, self.hidden_width, self.n_layers, self.max_log_var,
                              isotropic=self._isotropic())

    # ---------------------------------------------------------------- score
    def _log_variance(self, Xs: torch.Tensor) -> torch.Tensor:
        """Predicted log-variances :math:`\\log\\sigma^2(x)` of f1, shape (n, d)."""
        embed = UnitEmbedding(self.encoder_)
        return self._map_batches(lambda x: self.variance_net_(embed(x)), Xs,
                                 batch_size=max(self.batch_size, 256))

    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        return -variance_norm(self._log_variance(Xs), self.score_norm).numpy()

    def predict_variance(self, X: Any) -> np.ndarray:
        """The predicted diagonal variance :math:`\\sigma^2(x)` of each sample.

        Returns
        -------
        var : ndarray of shape (n_samples, d), float64
            In the space of the embedding g, d = ``embedding_dim_`` (for tabular
            rows ``n_features + 1`` columns, see ``SphereLift``); ``score_samples`` is minus
            its norm (``score_norm``).
        """
        check_is_fitted(self, "offset_")
        return self._score_validated(
            self._validate_array(X, reset=False), check=False,
            score=lambda Xs: self._log_variance(Xs).double().exp().numpy())

    # ---------------------------------------------------------- persistence
    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Untrained g and f1 of the fitted architecture (for ``load``)."""
        return {"encoder_": self._build_embedding(shape).cpu(),
                "variance_net_": self._build_variance_net(self.embedding_dim_)}
