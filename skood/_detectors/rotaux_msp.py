"""RotAuxMSP: a classifier with an auxiliary rotation task, scored by its confidence.

Reference: F. Ahmed and A. Courville, "Detecting Semantic Anomalies", AAAI
2020, https://arxiv.org/abs/1908.04388. Reference code (read, not copied):
https://github.com/Faruk-Ahmed/detecting_semantic_anomalies, ``rotation/main.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from .._augment import RandomAffineMaps, flip_transpose, random_hflip, rotate90
from .._base import FEATURE_SCALINGS, BaseDeepDetector
from .._nn.encoders import build_encoder
from .._nn.losses import cross_entropy
from .._scoring import bank_subset, transformation_confidence, transformation_log_likelihood
from .._training import SkoodNet, piecewise_lr
from .._utils import batch_slices, fit_rng, seed_stream, to_model_input
from ._rotaux_parts import PadCropFlip, msp, odin

__all__ = ["RotAuxMSPDetector", "RotAuxModel", "RotAuxNet"]

_N_ROTATIONS = 4
#: scorers from the auxiliary (rotation / affine-map) head alone
_AUX_SCORERS = ("rotation", "rotation-loglik", "rotation-centres")
#: the "shifted" maps of rows wider than this project them to this many dimensions
_MAX_SHIFTED_DIM = 256
#: ``scoring="auto"`` of an unlabelled tabular fit
_TABULAR_UNLABELLED_SCORING = "rotation-centres"
#: RotAuxMSP's own random streams, as offsets of the fit's seed (:func:`skood._utils.seed_stream`;
#: the shared streams take 0, 1 and 4)
_SEED_STREAMS = {
    "affine": 7,  # the random affine maps of its tabular auxiliary task
    "centres": 11,  # the training rows that set GOAD's centres beyond 10,000 rows
}


class RotAuxModel(nn.Module):
    """Shared trunk with a class head and an auxiliary (rotation) head on pooled features.

    Parameters
    ----------
    trunk : nn.Module
        Encoder with ``out_features`` (pooled features).
    n_classes : int
        Outputs of the class head; 0 for no class head (rotation-only mode).
    n_aux : int
        Number of auxiliary classes (4 rotations, or the number of affine maps).
    transform : {"rotate", "flip-transpose", "affine"}
        How auxiliary class k transforms an input: :func:`~skood._augment.rotate90`,
        :func:`~skood._augment.flip_transpose` or the ``affine_maps``.
    affine_maps : RandomAffineMaps, optional
        The fixed maps of tabular rows (a buffer module, pickled with the model).
    dropout : float, default=0.0
        Dropout rate on the pooled features before both heads (training only).

    Attributes
    ----------
    centres : Tensor of shape (n_aux, n_features)
        Per-transformation centres of the trunk's features, :math:`c_k` (set
        by :meth:`set_centres` after training, over every training row up to
        10,000 and a seeded subset of 10,000 beyond; zeros before).
    """

    def __init__(
        self,
        trunk: nn.Module,
        n_classes: int,
        n_aux: int,
        transform: str = "rotate",
        affine_maps: RandomAffineMaps | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if transform == "affine" and affine_maps is None:
            raise ValueError("transform='affine' needs affine_maps")
        self.trunk = trunk
        self.class_head = nn.Linear(trunk.out_features, n_classes) if n_classes else None
        self.aux_head = nn.Linear(trunk.out_features, n_aux)
        self.n_aux = n_aux
        self.transform_name = transform
        self.affine_maps = affine_maps
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.register_buffer("centres", torch.zeros(n_aux, trunk.out_features))

    def transform(self, x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """Auxiliary transformation number ``k`` (int or per-sample LongTensor) of ``x``."""
        if self.transform_name == "rotate":
            return rotate90(x, k)
        if self.transform_name == "flip-transpose":
            return flip_transpose(x, k)
        return self.affine_maps(x, k)

    def transformed_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All K transformed copies of ``x`` stacked (K n rows) and their labels k."""
        K = self.n_aux
        if self.transform_name == "affine":
            xt = self.affine_maps.all_maps(x).reshape(K * len(x), -1)
        else:
            xt = torch.cat([self.transform(x, k) for k in range(K)])
        # [0]*n + [1]*n + ...; expand, not repeat_interleave, which may sync on CUDA
        k = torch.arange(K, device=x.device)[:, None].expand(K, len(x)).reshape(-1)
        return xt, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits c(f(x)) (the rotation head's logits in rotation-only mode)."""
        z = self.dropout(self.trunk(x))
        return self.class_head(z) if self.class_head is not None else self.aux_head(z)

    def aux_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Auxiliary head's logits r(f(x))."""
        return self.aux_head(self.dropout(self.trunk(x)))

    def aux_features_all(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features of the K transformed copies of ``x``: shape (K, n, F)."""
        xt, _ = self.transformed_batch(x)
        return self.trunk(xt).view(self.n_aux, len(x), -1)

    def centre_logits_all(self, x: torch.Tensor) -> torch.Tensor:
        r"""GOAD's logits :math:`-\lVert f(T_k x) - c_j\rVert^2`: shape (K, n, K)."""
        z = self.aux_features_all(x).double()  # float64: the expanded square cancels
        c = self.centres.double()
        d = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ c.T + c.pow(2).sum(-1)).clamp_min(0)
        return -d

    @torch.no_grad()
    def set_centres(self, batches: Iterator[torch.Tensor]) -> None:
        r""":math:`c_k = \frac1n\sum_i f(T_k x_i)` over the (eval-mode) training batches."""
        total, n = torch.zeros_like(self.centres), 0
        for x in batches:
            total += self.aux_features_all(x).float().sum(1).to(total)
            n += len(x)
        self.centres.copy_(total / max(n, 1))

    def aux_logits_all(self, x: torch.Tensor) -> torch.Tensor:
        """Auxiliary logits of the K transformed copies of ``x``: shape (K, n, K)."""
        xt, _ = self.transformed_batch(x)
        return self.aux_logits(xt).view(self.n_aux, len(x), self.n_aux)


class RotAuxNet(SkoodNet):
    r"""skorch net for the alternating objective of the paper (eq. 5).

    Every iteration takes two SGD steps on the shared trunk f, as in the
    reference code:

    (a) classification step, trunk + class head c, on the batch x with the
        class-step augmentation a (pad-crop + horizontal flip for images):

        .. math:: \ell_{\text{class}} = \mathrm{CE}\big(c(f(a(x))), y\big)

    (b) rotation step, trunk + rotation head r, on the first B/4 images of
        the (shuffled) batch, each in all K transformations :math:`\rho_k`
        (no other augmentation):

        .. math:: \lambda\,\ell_{\text{rot}} = \lambda\,\frac{1}{K}\sum_{k}
           \mathrm{CE}\big(r(f(\rho_k(x_{1:B/4}))), k\big)

    Each step has its own optimiser (``optimizer_`` for (a),
    ``rotation_optimizer_`` for (b): separate momentum buffers, and weight
    decay on the parameters each step updates, as in the reference code's
    two L2 terms); (b) runs at (a)'s current learning rate, so one schedule
    decays both. The class head never sees rotated images and the rotation
    head never sees class-augmented ones (paper, section 5). ``lam = 0``
    skips (b); without labels (``targets=None``) only the rotation task is
    trained, on the whole batch, with weight 1.

    Step (a) is :meth:`compute_loss`, step (b) the :meth:`after_step` hook;
    ``train_loss`` is :math:`\ell_{\text{class}} + \lambda \ell_{\text{rot}}`
    (per batch also ``loss_class`` and ``loss_rotation``).
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        targets: torch.Tensor | None = None,
        augment: Callable | None = None,
        lam: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, *args, **kwargs)
        self.targets = targets
        self.augment = augment
        self.lam = lam

    # --- optimisers ----------------------------------------------------------
    @property
    def _two_steps(self) -> bool:
        return self.targets is not None and self.lam > 0

    def get_all_learnable_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Step (a)'s parameters: trunk and class head (without labels: the rotation head)."""
        model = self.module_
        head = model.class_head if self.targets is not None else model.aux_head
        yield from model.trunk.named_parameters(prefix="trunk")
        yield from head.named_parameters(prefix="head")

    def initialize_optimizer(self, triggered_directly: Any = None) -> RotAuxNet:
        """Step (a)'s optimiser, and step (b)'s over the trunk and the rotation head."""
        super().initialize_optimizer()
        model = self.module_
        self.rotation_optimizer_ = self.make_optimizer(
            [*model.trunk.named_parameters(prefix="trunk"),
             *model.aux_head.named_parameters(prefix="head")]
        ) if self._two_steps else None
        return self

    # --- the two tasks -------------------------------------------------------
    def class_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the class head on the augmented batch (step a)."""
        xa = self.augment(x, self.generator_) if self.augment is not None else x
        y = self.targets[idx.to(self.targets.device)].to(x.device)
        return cross_entropy(self.module_(xa), y)

    def rotation_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the rotation head on all K transformations of ``x`` (step b)."""
        xt, k = self.module_.transformed_batch(x)
        return cross_entropy(self.module_.aux_logits(xt), k)

    @staticmethod
    def rotation_rows(x: torch.Tensor) -> torch.Tensor:
        """The B/4 samples of a batch of B that the rotation step uses."""
        return x[: max(1, len(x) // _N_ROTATIONS)]

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Step (a): the class loss (the rotation loss of the whole batch without labels)."""
        if self.targets is None:
            return self.rotation_loss(x)
        return self.class_loss(x, idx)

    def after_step(self, x: torch.Tensor, idx: torch.Tensor, step: dict[str, Any]) -> None:
        r"""Step (b) at (a)'s learning rate: :math:`\lambda\,\ell_{\text{rot}}` on B/4 rows."""
        if self.targets is None:
            self.record_batch_value("loss_rotation", step["loss"])
            return
        self.record_batch_value("loss_class", step["loss"])
        if not self._two_steps:
            return
        opt = self.rotation_optimizer_
        lr = self.optimizer_.param_groups[0]["lr"]
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss_rot = self.rotation_loss(self.rotation_rows(x))
        (self.lam * loss_rot).backward()
        opt.step()
        loss_rot = loss_rot.detach()
        self.record_batch_value("loss_rotation", loss_rot)
        step["loss"] = step["loss"].detach() + self.lam * loss_rot

    def batchnorm_forward(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """Both steps' forward passes, (a) then (b)."""
        self.compute_loss(x, idx)
        if self._two_steps:
            self.rotation_loss(self.rotation_rows(x))


class RotAuxMSPDetector(BaseDeepDetector):
    r"""Classifier with an auxiliary rotation-prediction task, scored by MSP or ODIN.

    Read more in the :ref:`User Guide <rotaux_msp>`.

    Supervised on the in-distribution classes: ``fit(X, y)`` with ``y`` the
    known class labels; the anomalies are samples of classes never seen in
    training (Ahmed & Courville, sections 4-5).

    Fit: a shared trunk f with a class head c and a rotation head r on
    pooled features is trained on (paper eq. 5)

    .. math:: \ell = \ell_{\text{class}} + \lambda\,\ell_{\text{rotation}}

    by alternating a classification and a rotation step, each with its own
    SGD optimiser (``RotAuxNet``); ``lam=0`` is the classification-only
    baseline. BatchNorm statistics are then recomputed with the final
    weights over both steps' inputs.

    Score (higher = more normal):

    * ``scoring="msp"``: :math:`s(x) = \max_c \operatorname{softmax}(c(f(x)))_c`
      (``skood._detectors._rotaux_parts.msp``, Hendrycks & Gimpel 2017);
    * ``scoring="odin"``: the temperature-scaled MSP of the perturbed input
      (``skood._detectors._rotaux_parts.odin``, Liang et al. 2018; ``temperature`` and
      ``epsilon`` default to the paper's);
    * ``scoring="rotation"``: the rotation head's confidence
      :math:`s(x) = \frac1K\sum_k \operatorname{softmax}(r(f(\rho_k x)))_k`
      (``skood._scoring.transformation_confidence``, Golan & El-Yaniv 2018);
    * ``scoring="rotation-loglik"``: the log-likelihood of the correct
      transformations, GOAD's :math:`\sum_k \log P(k \mid \rho_k x)` with
      :math:`P` the rotation head's softmax, as the rank-equivalent
      :math:`s(x) = -\log\big(-\frac1K\sum_k \log P(k \mid \rho_k x)\big)`
      that does not round to 0 for confident samples
      (``skood._scoring.transformation_log_likelihood``);
    * ``scoring="rotation-centres"``: GOAD's score (Bergman & Hoshen 2020,
      eqs. 4-6): the same log-likelihood with
      :math:`P(k \mid \rho_k x) = \operatorname{softmax}_j\big(-\lVert
      f(\rho_k x) - c_j\rVert^2\big)_k`, :math:`c_j = \frac1n\sum_i f(\rho_j x_i)`
      the trunk's mean feature of transformation j over the training rows
      (``model_.centres``); the default of unlabelled tabular fits;
    * ``scoring="msp*rotation"``: MSP times the geometric mean of the
      rotation probabilities,
      :math:`s(x) = \mathrm{MSP}(x)\,\exp\big(\frac1K\sum_k \log P(k \mid \rho_k x)\big)`,
      skood's default whenever the rotation head is trained (the paper
      scores by MSP or ODIN alone; Hendrycks et al. 2019 add the rotation
      loss to the OOD score): the MSP of a ReLU classifier grows towards 1
      far from the data (Hein et al. 2019) while the rotation likelihood
      falls off it.

    Without labels (``fit(X)``, or ``supervised=False``) this is the classic
    self-supervised rotation detector (Golan & El-Yaniv 2018; Hendrycks et
    al. 2019), not the paper's method: only the rotation task is trained and
    ``score_samples`` is the rotation confidence on images and GOAD's
    centre score on rows.

    Tabular data (skood's choice, GOAD-style): the auxiliary classes are
    ``n_affine_maps`` fixed random affine maps of the standardised rows
    (``skood._augment.RandomAffineMaps``), trained by the same SGD
    steps; the classification step has no augmentation. Default
    (``affine_family="shifted"``): :math:`T_m(x) = x W_m + b_m`,
    :math:`W_m \in \mathbb{R}^{D\times D}` entries :math:`\sim N(0, 1/D)`,
    :math:`b_m \sim N(0, I)`, map 0 the identity (rows wider than 256
    features: :math:`W_m \in \mathbb{R}^{D\times 256}`, no identity, so the
    maps' weights stay :math:`64 \cdot 256\,D` floats), 64 maps, an MLP trunk of
    width ``mlp_width`` = 64 with BatchNorm, scored by "rotation-centres".
    GOAD's own maps (``affine_family="goad"``) are linear, :math:`T_m(x) = x
    W_m` with :math:`W_m \in \mathbb{R}^{D \times r}`, r = ``affine_dim``
    (GOAD: 32, and M = 256 maps for Thyroid/Arrhythmia, 64 for KDD), on a
    small MLP without normalisation (GOAD trains it with Adam; skood with
    its SGD).

    Frozen pretrained backbone (images with ``backbone`` a name of
    :data:`~skood.pretrained.PRETRAINED_BACKBONES`, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :class:`~skood.BaseDeepDetector`): the frozen encoder (``feature_encoder_``)
    maps every image once, at fit and at scoring, and rotations
    cannot be applied to feature vectors, so the tabular random affine maps
    of the standardised features (GOAD-style) are the transformation task of
    an MLP trunk, with the class head when labels are given. A trainable
    ``PretrainedEncoder`` is fine-tuned on the rotated images instead.

    Parameters
    ----------
    lam : float, default=0.5
        Weight :math:`\lambda` of the rotation loss (paper: 0.5 for CIFAR-10,
        1.0 for STL-10); 0 trains the classifier alone.
    scoring : str, default="auto"
        "auto", "msp", "odin", "rotation", "rotation-loglik", "rotation-centres"
        or "msp*rotation".
        See above. "auto": for a labelled fit "msp*rotation", or "msp" when
        ``lam=0`` (no auxiliary head is trained); for an unlabelled fit
        "rotation" on images and "rotation-centres" on rows. Unlabelled fits
        refuse the scorers that need a class head.
    temperature : float, default=1000.0
        ODIN temperature T.
    epsilon : float, default=5e-5
        ODIN perturbation size in model-input units ([0, 1] pixels or
        standardised features; the reference code applies 5e-5 to 0-255 pixels).
    rotations : {"rotate", "flip-transpose"}, default="rotate"
        The four image transformations (square images only): rotations by
        0/90/180/270 degrees, or the reference code's identity, vertical
        flip, transpose and both (``skood._augment.flip_transpose``).
    n_affine_maps : int, default=64
        Number of auxiliary classes (random affine maps) for tabular data
        (GOAD: 64 to 256).
    affine_family : {"shifted", "goad"}, default="shifted"
        The tabular maps: :math:`x W_m + b_m` (D -> D, map 0 the identity; D -> 256
        for D > 256) or GOAD's :math:`x W_m` (D -> ``affine_dim``, no offsets).
    affine_dim : int, default=32
        Output dimension r of GOAD's maps (``affine_family="goad"`` only).
    mlp_width : int, default=64
        Hidden width of the two-layer MLP trunk on tabular rows; images ignore it.
    dropout : float, default=0.0
        Dropout rate on the pooled features before both heads, in training
        (the paper's WRN-28-10 uses 0.3 inside its residual blocks).
    supervised : {"auto", True, False}, default="auto"
        Use of ``y``: "auto" trains the classifier when ``fit`` gets labels and
        the rotation detector otherwise; True requires labels; False ignores
        ``y`` (the rotation detector), e.g. inside ``GridSearchCV``, where
        ``y`` holds the inlier/outlier labels for the scorer.
    max_epochs : int, default=8
        Training epochs (paper: 200).
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
        Trunk (paper: WRN-28-10; "resnet18" is a network of that class); a
        frozen pretrained encoder for images: see above.
    batch_size : int, default=128
        Classification batch B; the rotation step uses B/4 images x 4
        rotations (paper: 128 per GPU on 4 GPUs).
    lr : float, default=0.1
        Initial SGD learning rate.
    lr_schedule : {"steps", "constant"}, default="steps"
        "steps": x0.2 at 30%, 60% and 80% of the epochs (the paper's
        epochs 60/120/160 of 200).
    momentum : float, default=0.9
        Nesterov momentum (0: plain SGD).
    weight_decay : float, default=5e-4
    padding : "auto" or int, default="auto"
        Zero padding of the classification step's random crop; "auto" is
        H // 8 as in the reference code; 0 leaves only the flip.
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    feature_scaling : {"auto", "standardize", "unit", "unit-standardize"}, default="auto"
        The representation of frozen pretrained features (frozen-feature mode only; tabular
        rows are always standardised): "standardize" standardises each feature; "unit"
        scales each feature vector to norm sqrt(d), which keeps the angles between them;
        "unit-standardize" does that, then standardises. "auto" is "unit-standardize"
        (unit-norm rows, then standardised), chosen on both pretrained suites, each half of
        their classes (:ref:`pretrained`).
    contamination, calibration, device, random_state, verbose, image_shape
        See :class:`~skood.BaseDeepDetector`.

    Attributes
    ----------
    model_ : RotAuxModel
        The trained trunk with its class and rotation heads.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit`` (only after a labelled fit).
    supervised_ : bool
        Whether ``fit`` used labels.
    scoring_ : str
        The scorer ``score_samples`` uses ("msp", "odin", "rotation" or
        "msp*rotation").
    history_ : skorch History
        Per epoch ``train_loss``; per batch ``loss_class`` and ``loss_rotation``.
    offset_, train_scores_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`. The training scores are not
        held out: a classifier is more confident on its training images than
        on new normal ones, so ``predict`` flags somewhat more than
        ``contamination`` of new normal data.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import RotAuxMSPDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
    >>> det = RotAuxMSPDetector(max_epochs=1, random_state=0).fit(X, y)
    >>> det.predict(X[:3]).shape
    (3,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "model_": "network", "supervised_": "flag", "scoring_": "text", "classes_": "array?",
        "history_": "history",
    }
    _auto_feature_scaling: ClassVar[str] = "unit-standardize"
    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "feature_scaling": [StrOptions({"auto", *FEATURE_SCALINGS})],
        "lam": [Interval(Real, 0, None, closed="left")],
        "scoring": [StrOptions({"auto", "msp", "odin", "rotation", "msp*rotation",
                                "rotation-loglik", "rotation-centres"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "rotations": [StrOptions({"rotate", "flip-transpose"})],
        "n_affine_maps": [Interval(Integral, 2, None, closed="left")],
        "affine_family": [StrOptions({"goad", "shifted"})],
        "affine_dim": [Interval(Integral, 1, None, closed="left")],
        "mlp_width": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "supervised": [StrOptions({"auto"}), "boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "lr_schedule": [StrOptions({"steps", "constant"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "padding": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
    }
    _frozen_feature_mode: ClassVar[bool] = True  # see skood._base
    _presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "backbone": "resnet18",
            "max_epochs": 200,
            "max_steps": None,
            "batch_size": 128,
            "lr": 0.1,
            "lam": 0.5,
            "lr_schedule": "steps",
            "momentum": 0.9,
            "weight_decay": 5e-4,
        },
    }

    def __init__(
        self,
        *,
        lam: float = 0.5,
        scoring: str = "auto",
        temperature: float = 1000.0,
        epsilon: float = 5e-5,
        rotations: str = "rotate",
        n_affine_maps: int = 64,
        affine_family: str = "shifted",
        affine_dim: int = 32,
        mlp_width: int = 64,
        dropout: float = 0.0,
        supervised: str | bool = "auto",
        max_epochs: int = 8,
        max_steps: int | str | None = "auto",
        backbone: str = "auto",
        batch_size: int = 128,
        lr: float = 0.1,
        lr_schedule: str = "steps",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        padding: str | int = "auto",
        feature_scaling: str = "auto",
        contamination: str | float = "auto",
        calibration: str | float = "loo",
        max_train_scores: int | str | None = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.lam = lam
        self.scoring = scoring
        self.temperature = temperature
        self.epsilon = epsilon
        self.rotations = rotations
        self.n_affine_maps = n_affine_maps
        self.affine_family = affine_family
        self.affine_dim = affine_dim
        self.mlp_width = mlp_width
        self.dropout = dropout
        self.supervised = supervised
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.backbone = backbone
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.padding = padding
        self.feature_scaling = feature_scaling
        self.contamination = contamination
        self.calibration = calibration
        self.max_train_scores = max_train_scores
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.image_shape = image_shape

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any = None) -> RotAuxMSPDetector:
        """Train the classifier with its rotation task (or the rotation task alone).

        Parameters
        ----------
        X : array-like or image array
            As in :meth:`~skood.BaseDeepDetector.fit`; every sample is
            taken to be in-distribution.
        y : array-like of shape (n_samples,), default=None
            Class labels of ``X`` (at least 2 classes). None, or
            ``supervised=False``: train the self-supervised rotation detector.

        Returns
        -------
        self
        """
        return super().fit(X, y)

    # ------------------------------------------------------------------ fit
    def _check_labels(self, y: Any, n: int) -> torch.Tensor | None:
        """Validate class labels; set ``supervised_``/``classes_``; return codes or None."""
        name = type(self).__name__
        if self.supervised is True and y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None "
                "(supervised=True); pass the class labels, or set supervised='auto' or False "
                "for the self-supervised rotation detector"
            )
        if hasattr(self, "classes_"):
            del self.classes_  # from an earlier labelled fit
        self.supervised_ = y is not None and self.supervised is not False
        if not self.supervised_:
            return None
        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(
                f"y has {len(y)} labels but X has {n} samples; pass one class label per sample"
            )
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{name} needs at least 2 classes in y to train a classifier (the maximum "
                f"softmax probability of 1 class is always 1); got only the class "
                f"{classes[0]!r}. Call fit(X) without y for the self-supervised rotation "
                "detector."
            )
        self.classes_ = classes
        return torch.from_numpy(codes.reshape(-1).astype(np.int64))

    def _resolve_scoring(self, scoring: str | None = None) -> str:
        scoring = self.scoring if scoring is None else scoring
        if not self.supervised_:
            if scoring not in ("auto", *_AUX_SCORERS):
                raise ValueError(
                    f"scoring={scoring!r} needs a class head, which an unlabelled fit "
                    "does not train: call fit(X, y) with class labels, or use scoring='auto' "
                    f"or one of {list(_AUX_SCORERS)} (the rotation head's scores)"
                )
            if scoring == "auto":
                return "rotation" if self._trains_on_images else _TABULAR_UNLABELLED_SCORING
            return scoring
        if scoring == "auto":
            return "msp" if self.lam == 0 else "msp*rotation"
        if (scoring == "msp*rotation" or scoring in _AUX_SCORERS) and self.lam == 0:
            raise ValueError(
                f"scoring={scoring!r} needs the auxiliary task, which lam=0 does not train"
            )
        return scoring

    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        targets = self._check_labels(y, len(Xs))
        self.scoring_ = self._resolve_scoring()
        dev = self.device_
        shape = tuple(Xs.shape[1:])
        if self._trains_on_images:
            if shape[1] != shape[2]:
                raise ValueError(
                    f"{type(self).__name__} predicts rotations, which need square images; got "
                    f"H x W = {shape[1]} x {shape[2]}"
                )
            transform, n_aux, maps = self.rotations, _N_ROTATIONS, None
            padding = shape[1] // 8 if self.padding == "auto" else self.padding
            augment = PadCropFlip(padding) if padding > 0 else random_hflip
        else:
            maps = self._affine_maps(shape[0], seed_stream(seed, "affine", _SEED_STREAMS))
            transform, n_aux, augment = "affine", self.n_affine_maps, None
        n_classes = len(self.classes_) if targets is not None else 0
        with fit_rng():  # initial weights from the fit's generators
            model = RotAuxModel(self._trunk(shape, maps), n_classes, n_aux, transform, maps,
                                self.dropout)
        callbacks = []
        if self.lr_schedule == "steps":
            callbacks.append(
                ("lr_steps", piecewise_lr((0.3, 0.6, 0.8), (0.2, 0.04, 0.008)))
            )
        net = RotAuxNet(
            model,
            targets=None if targets is None else targets.to(dev),
            augment=augment,
            lam=self.lam,
            name="RotAuxMSP" if targets is not None else "RotAux rotation-only",
            max_epochs=self.max_epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            device=dev,
            seed=seed,
            verbose=self.verbose,
            optimizer=torch.optim.SGD,
            optimizer__momentum=self.momentum,
            optimizer__nesterov=self.momentum > 0,
            optimizer__weight_decay=self.weight_decay,
            callbacks=callbacks,
        )
        net.fit(Xs.to(dev))
        self.model_ = net.module_.eval()
        self.history_ = net.history
        if targets is None or self.lam > 0:  # GOAD's per-transformation centres
            bs = max(self.batch_size, 256)
            # over every row up to 10,000, a seeded subset of 10,000 beyond (a mean)
            keep = bank_subset(len(Xs), "auto", seed_stream(seed, "centres", _SEED_STREAMS))
            rows = Xs if keep is None else Xs[keep]
            self.model_.set_centres(to_model_input(rows[i : i + bs], self._inference_device)
                                    for i in range(0, len(rows), bs))

    def _affine_maps(self, dim: int, seed: int = 0) -> RandomAffineMaps:
        """The tabular auxiliary transformations of ``affine_family``."""
        if self.affine_family == "goad":
            return RandomAffineMaps(self.n_affine_maps, dim, seed=seed, identity_first=False,
                                    out_dim=self.affine_dim, bias=False)
        if dim > _MAX_SHIFTED_DIM:  # M D^2 weights: wide rows get D -> 256 projections
            return RandomAffineMaps(self.n_affine_maps, dim, seed=seed, identity_first=False,
                                    out_dim=_MAX_SHIFTED_DIM)
        return RandomAffineMaps(self.n_affine_maps, dim, seed=seed)

    def _trunk(self, shape: tuple[int, ...], maps: RandomAffineMaps | None) -> nn.Module:
        """The trunk: ``backbone`` on images; on rows an MLP of width ``mlp_width`` on the
        maps' outputs, with BatchNorm ("shifted") or without (GOAD's networks)."""
        if maps is None:
            return build_encoder(self._net_backbone, shape)
        norm = "none" if self.affine_family == "goad" else "batch"
        return build_encoder(self._net_backbone, (maps.weight.shape[2],), norm=norm,
                             width=self.mlp_width)

    # ---------------------------------------------------------------- score
    def score_samples_by(self, X: Any, scoring: str) -> np.ndarray:
        """``score_samples`` of X under another scorer of the same trained network.

        Compares MSP, ODIN and the rotation scores of one fit without
        training again (``benchmarks/rotaux_holdout.py`` does this). The
        fitted ``scoring_``, ``offset_`` and ``predict`` are unchanged: they
        belong to the ``scoring`` the detector was fitted with.

        Parameters
        ----------
        X : array-like
            Input of the kind seen in ``fit``.
        scoring : {"auto", "msp", "odin", "rotation", "msp*rotation"}
            As the ``scoring`` parameter; a scorer the fit did not train a
            head for (e.g. "msp" after an unlabelled fit) raises ValueError.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher means more normal. Scored in the chunks of ``score_samples`` (the store
            of one chunk at a time), with the same bits as one pass over all rows.
        """
        check_is_fitted(self, "offset_")
        allowed = self._parameter_constraints["scoring"][0].options
        if scoring not in allowed:
            raise ValueError(f"scoring must be one of {sorted(allowed)}; got {scoring!r}")
        resolved = self._resolve_scoring(scoring)
        return self._score_validated(self._validate_array(X, reset=False), check=False,
                                     score=lambda Xs: self._score_store(Xs, resolved))

    def _score_store(self, Xs: torch.Tensor, scoring: str | None = None) -> np.ndarray:
        model = self.model_.eval()
        scoring = self.scoring_ if scoring is None else scoring
        if scoring == "odin":
            return self._odin_scores(Xs)
        fns = {
            "msp": lambda x: msp(model(x)),
            "rotation": lambda x: transformation_confidence(model.aux_logits_all(x)),
            "rotation-loglik": lambda x: transformation_log_likelihood(model.aux_logits_all(x)),
            "rotation-centres": lambda x: transformation_log_likelihood(
                model.centre_logits_all(x)),
            # MSP x the geometric mean of P(k | rho_k x): exp(-exp(-s)) for s the log-likelihood
            "msp*rotation": lambda x: msp(model(x)).double() * torch.exp(
                -torch.exp(-transformation_log_likelihood(model.aux_logits_all(x)))),
        }
        if scoring in ("rotation-loglik", "rotation-centres"):  # log-scale: keep float64
            return self._map_batches_float64(fns[scoring], Xs).numpy()
        return self._map_batches(fns[scoring], Xs).double().numpy()

    @torch.inference_mode()
    def _map_batches_float64(self, fn: Callable[[torch.Tensor], torch.Tensor],
                             Xs: torch.Tensor) -> torch.Tensor:
        """:meth:`_map_batches` without the float32 cast of the results."""
        dev, bs = self._inference_device, max(self.batch_size, 256)
        return torch.cat([fn(to_model_input(Xs[b], dev)).double().cpu()
                          for b in batch_slices(len(Xs), bs)])

    def _odin_scores(self, Xs: torch.Tensor) -> np.ndarray:
        # input gradients: no inference_mode here (see skood._detectors._rotaux_parts.odin)
        dev = self._inference_device
        bs = max(self.batch_size, 256)
        out = [
            odin(self.model_, to_model_input(Xs[i : i + bs], dev), self.temperature, self.epsilon)
            .cpu()
            for i in range(0, len(Xs), bs)
        ]
        return torch.cat(out).double().numpy()

    # ------------------------------------------------------------ metadata
    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        # labels are used when given ("auto") and required with supervised=True
        tags.target_tags.required = self.supervised is True
        return tags

    # ---------------------------------------------------------- persistence
    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Untrained trunk and heads of the fitted architecture (for ``load``; the saved
        state fills in the tabular affine maps)."""
        if self._trains_on_images:
            transform, n_aux, maps = self.rotations, _N_ROTATIONS, None
        else:
            maps = self._affine_maps(shape[0])
            transform, n_aux = "affine", self.n_affine_maps
        n_classes = len(self.classes_) if self.supervised_ else 0
        return {"model_": RotAuxModel(self._trunk(shape, maps), n_classes, n_aux, transform,
                                      maps, self.dropout)}
