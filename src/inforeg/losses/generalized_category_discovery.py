"""SimGCD losses and LegoGCD's local entropy regulariser (LER) and dual-view KL (DKL).

LegoGCD: Cao, Zheng, Wang, Yu, et al., "Solving the Catastrophic Forgetting Problem in
Generalized Category Discovery", CVPR 2024 (arXiv:2501.05272). Authors' code:
``Cliffia123/LegoGCD`` (``train.py`` assembles the loss and writes LER inline; ``model.py`` holds
``DistillLoss`` with DKL, ``SupConLoss``, ``info_nce_logits`` and ``update_qhat``).
SimGCD: Wen, Zhao, Qi, "Parametric Classification for Generalized Category Discovery: A Baseline
Study", ICCV 2023 (arXiv:2211.11727).

Layout convention (as in both codes): a batch of B images gives 2B rows ``[view 1; view 2]``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_dim,
    check_index_range,
    check_int,
    check_number,
    check_positive,
    check_probabilities,
    check_probability,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.logspace import p_log_q
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction
from inforeg.losses._common import entropy_from_probs

DKLForm = Literal["paper", "code"]


def mean_entropy_regularizer(logits: Tensor, temperature: float = 0.1, dim: int = 1) -> Tensor:
    r"""SimGCD's mean-entropy regulariser :math:`\log K - H(\bar p)`.

    .. math::

        \bar p = \frac1N \sum_i \mathrm{softmax}(z_i / T), \qquad
        R_{me} = \log K - H(\bar p) \;\ge 0,

    zero iff the batch-mean prediction is uniform. Minimising it spreads predictions over all
    K classes (the code *adds* ``memax_weight * (log K - H)``; equivalently maximises H(p̄)).
    Default ``T = 0.1`` (student temperature). Under DDP, gather the logits first
    (``inforeg.core.distributed.Gathered``) so that p̄ is the global mean.

    Args:
        logits: (N, K) scores (both views stacked, as in the code).
        temperature: T > 0.
        dim: the class axis.

    Example:
        >>> z = torch.tensor([[0.9, 0.2, -0.1, 0.0], [0.1, 0.8, 0.3, -0.2]])
        >>> round(float(mean_entropy_regularizer(z)), 4)
        0.6721
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    d = check_dim(dim, logits)
    t = check_positive(temperature, "temperature")
    z = logits.to(compute_dtype(logits)) / t
    p_bar = torch.softmax(z, dim=d).mean(dim=1 - d)
    h = entropy_from_probs(p_bar)
    return (math.log(logits.shape[d]) - h).to(logits.dtype)


def dual_view_kl(
    logits_a: Tensor,
    logits_b: Tensor,
    temperature: float = 0.1,
    detach_target: bool = False,
    reduction: Reduction = "mean",
    form: DKLForm = "paper",
) -> Tensor:
    r"""LegoGCD's dual-view KL between two views' predictions (paper form, or the code's).

    .. math::

        p_v = \mathrm{softmax}(z_v / T), \qquad
        \mathrm{DKL}_{paper} = \frac1B \sum_i \sum_k p_{a,ik} (\log p_{a,ik} - \log p_{b,ik}),

        \mathrm{DKL}_{code} = \frac1B \sum_i \sum_k p_{a,ik}
            \big(\log \mathrm{softmax}(p_{a,i})_k - \log \mathrm{softmax}(p_{b,i})_k\big).

    ``form="paper"`` (default) is the true :math:`KL(p_a \| p_b)` that the paper writes.
    ``form="code"`` is what the authors' ``model.py: DistillLoss`` computes: it applies
    ``log_softmax`` to the view *probabilities* :math:`p_v`, not to the logits. That is not a
    divergence: it is bounded (at most 2 in absolute value, since its inputs lie on the simplex),
    is zero for identical views but can be slightly negative, and it is far smaller than the KL
    on confident predictions (0.994 vs 6.99 on the example below). The published numbers come
    from the code form. Both forms go one way only (view 1 to view 2) and, like the code, detach
    neither side by default; the paper's pseudo-code detaches view 2 (``detach_target=True``
    stops the gradient through ``logits_b``).

    Args:
        logits_a: (B, K) scores of view 1.
        logits_b: (B, K) scores of view 2.
        temperature: T > 0 (default 0.1).
        detach_target: stop the gradient through ``logits_b``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over rows.
        form: ``"paper"`` (the KL, default) or ``"code"`` (the official code's expression).

    Example:
        >>> a = torch.tensor([[0.9, 0.2, -0.1, 0.0]])
        >>> b = torch.tensor([[0.1, 0.8, 0.3, -0.2]])
        >>> round(float(dual_view_kl(a, b)), 4)
        6.9925
        >>> round(float(dual_view_kl(a, b, form="code")), 4)
        0.9941
    """
    check_tensor(logits_a, "logits_a", ndim=2, floating=True)
    check_tensor(logits_b, "logits_b", ndim=2, floating=True)
    check_same_shape(logits_a, logits_b, "logits_a", "logits_b")
    check_choice(form, "form", ("paper", "code"))
    t = check_positive(temperature, "temperature")
    dt = compute_dtype(logits_a)
    b = logits_b.detach() if detach_target else logits_b
    log_pa = torch.log_softmax(logits_a.to(dt) / t, dim=1)
    log_pb = torch.log_softmax(b.to(dt) / t, dim=1)
    pa = log_pa.exp()
    if form == "code":
        ratio = torch.log_softmax(pa, dim=1) - torch.log_softmax(log_pb.exp(), dim=1)
        kl = (pa * ratio).sum(dim=1)
    else:
        kl = (pa * torch.where(pa > 0, log_pa - log_pb, torch.zeros_like(log_pa))).sum(dim=1)
    return reduce(kl, reduction).to(logits_a.dtype)


def local_entropy_regularizer(
    logits: Tensor,
    labelled_mask: Tensor,
    num_known: int,
    class_prior: Tensor,
    threshold: float,
    tau: float = 0.05,
    lam: float = 0.4,
    temperature: float = 0.1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""LegoGCD's local entropy regulariser (LER) on confident known-class unlabelled rows.

    .. math::

        o_i = [\text{unlabelled}_i]\,[\max_k \mathrm{softmax}(z_i/T)_k \ge \delta]\,
              [\arg\max_k z_{ik} < K_{old}],

        P_i = \mathrm{softmax}(z_i/\tau), \quad
        Q_i = \mathrm{softmax}(z_i/\tau + \lambda \log \hat q), \quad
        \ell_i = -\sum_k P_{ik} \log Q_{ik},

        L_{LER} = \frac1N \sum_i o_i\,\ell_i

    (mean over **all** N rows, not over the selected ones, as in the code). P is not detached
    (code). The logit adjustment is *added*: the maintainer confirmed (issue #3 of the authors'
    repository) that the leading minus of the paper's Eq. 10 is a typo. With a uniform
    :math:`\hat q`, Q = P and :math:`\ell_i = H(P_i)`. The selection mask is computed without
    gradient and without host syncs.

    Args:
        logits: (N, K) scores (both views stacked).
        labelled_mask: (N,) bool, True for labelled rows (repeat the per-image mask per view).
        num_known: K_old; known classes are the indices ``0 .. K_old - 1``.
        class_prior: (K,) class-prior estimate :math:`\hat q` (rows on the simplex).
        threshold: confidence threshold :math:`\delta` in [0, 1] (scripts: 0.7 to 0.95).
        tau: :math:`\tau_o` (default 0.05).
        lam: :math:`\lambda_{ler}` (default 0.4).
        temperature: T of the confidence test (default 0.1, the student temperature).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per row, zero where o_i = 0).
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    n, k = logits.shape
    check_tensor(labelled_mask, "labelled_mask", ndim=1, nonempty=False)
    if labelled_mask.shape[0] != n:
        raise ValueError(
            f"labelled_mask: expected {n} entries to match logits, got {labelled_mask.shape[0]}"
        )
    check_int(num_known, "num_known", low=0, high=k)
    check_tensor(class_prior, "class_prior", ndim=1, floating=True)
    if class_prior.shape[0] != k:
        raise ValueError(
            f"class_prior: expected {k} entries (one per class), got {class_prior.shape[0]}"
        )
    check_probabilities(class_prior, "class_prior")
    delta = check_probability(threshold, "threshold")
    tau = check_positive(tau, "tau")
    lam = check_number(lam, "lam")
    t = check_positive(temperature, "temperature")
    z = logits.to(compute_dtype(logits))
    with torch.no_grad():
        conf = torch.softmax(z / t, dim=1).amax(dim=1)
        known = z.argmax(dim=1) < num_known
        select = (~labelled_mask.bool()) & (conf >= delta) & known
    log_q_hat = torch.log(class_prior.detach().to(z.dtype).clamp_min(torch.finfo(z.dtype).tiny))
    log_p = torch.log_softmax(z / tau, dim=1)
    log_q = torch.log_softmax(z / tau + lam * log_q_hat, dim=1)
    ell = -p_log_q(log_p.exp(), log_q).sum(dim=1)  # masked (-inf) logits: 0 log 0 = 0
    per_row = ell * select.to(ell.dtype)
    return reduce(per_row, reduction).to(logits.dtype)


def simgcd_teacher_temperature(
    epoch: int, warmup_epochs: int = 30, start: float = 0.07, end: float = 0.04
) -> float:
    """SimGCD teacher temperature: ``linspace(start, end, warmup_epochs)[epoch]``, then ``end``.

    The code uses a linear warm-up (``np.linspace``); the paper text says cosine.
    """
    check_int(epoch, "epoch", low=0)
    check_int(warmup_epochs, "warmup_epochs", low=1)
    check_positive(start, "start")
    check_positive(end, "end")
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + (end - start) * epoch / (warmup_epochs - 1)


def cross_view_self_distillation(
    logits: Tensor, teacher_temperature: float, student_temperature: float = 0.1
) -> Tensor:
    r"""SimGCD self-distillation, cross-view only: ``½[H(q_1, p_2) + H(q_2, p_1)]`` (row means).

    Teacher :math:`q_v = \mathrm{softmax}(\mathrm{sg}(z_v)/\tau_t)`, student
    :math:`p_v = \mathrm{softmax}(z_v/\tau_s)`; ``logits`` is (2B, K) ``[view 1; view 2]``.
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    if logits.shape[0] % 2:
        raise ValueError(f"logits: expected 2B rows [view 1; view 2], got {logits.shape[0]}")
    tt = check_positive(teacher_temperature, "teacher_temperature")
    ts = check_positive(student_temperature, "student_temperature")
    z = logits.to(compute_dtype(logits))
    q1, q2 = torch.softmax(z.detach() / tt, dim=1).chunk(2)
    lp1, lp2 = torch.log_softmax(z / ts, dim=1).chunk(2)
    # p_log_q: masked (-inf) logits contribute 0 log 0 = 0
    return 0.5 * (-p_log_q(q1, lp2).sum(1).mean() - p_log_q(q2, lp1).sum(1).mean())


def _unsupervised_info_nce(features: Tensor, temperature: float) -> Tensor:
    """InfoNCE over 2B normalised features: positive = the other view, diagonal dropped."""
    f = F.normalize(features, dim=1)
    n = f.shape[0]
    half = n // 2
    sim = f @ f.t() / temperature
    eye = torch.eye(n, dtype=torch.bool, device=f.device)
    sim = sim.masked_fill(eye, float("-inf"))
    target = (torch.arange(n, device=f.device) + half) % n
    return F.cross_entropy(sim, target)


def _supervised_contrastive(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """SupCon ("all" contrast mode, base temperature = temperature) on (2M, D) features; 0
    for a batch without labelled rows (as the supervised cross-entropy term)."""
    f = F.normalize(features, dim=1)
    n = f.shape[0]
    if n == 0:
        return features.new_zeros(())
    sim = f @ f.t() / temperature
    eye = torch.eye(n, dtype=torch.bool, device=f.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    pos = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
    pos_f = pos.to(f.dtype)
    mean_log_pos = (log_prob.masked_fill(~pos, 0.0) * pos_f).sum(1) / pos_f.sum(1).clamp_min(1.0)
    return -mean_log_pos.mean()


class SimGCDLoss(nn.Module):
    r"""The SimGCD objective (Wen et al., 2023), as assembled in the LegoGCD code.

    .. math::

        L = (1-\lambda)\,(L_{sd} + \varepsilon R_{me}) + \lambda L_{sup}
            + (1-\lambda) L_{u\text{-}rep} + \lambda L_{s\text{-}rep}

    with :math:`L_{sup}` = CE(z/0.1, y) on labelled rows of both views, :math:`L_{sd}`
    :func:`cross_view_self_distillation` with the teacher temperature of
    :func:`simgcd_teacher_temperature`, :math:`R_{me}` :func:`mean_entropy_regularizer`,
    :math:`L_{u-rep}` InfoNCE between the two views (temperature 1.0 in code) and
    :math:`L_{s-rep}` SupCon on labelled rows (temperature 0.07). The paper text lists the two
    contrastive temperatures swapped; the code's values are the defaults. The contrastive terms
    are skipped when ``features`` is None.

    Args:
        sup_weight: :math:`\lambda` (0.35).
        memax_weight: :math:`\varepsilon` (1; 2 for CUB/CIFAR-100 scripts).
        student_temperature: 0.1.
        teacher_temperatures: (start, end) of the warm-up, (0.07, 0.04).
        warmup_epochs: 30.
        unsup_temperature: InfoNCE temperature (1.0).
        sup_temperature: SupCon temperature (0.07).
    """

    def __init__(
        self,
        sup_weight: float = 0.35,
        memax_weight: float = 1.0,
        student_temperature: float = 0.1,
        teacher_temperatures: tuple[float, float] = (0.07, 0.04),
        warmup_epochs: int = 30,
        unsup_temperature: float = 1.0,
        sup_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.sup_weight = check_probability(sup_weight, "sup_weight")
        self.memax_weight = check_number(memax_weight, "memax_weight", low=0.0)
        self.student_temperature = check_positive(student_temperature, "student_temperature")
        self.teacher_temperatures = (
            check_positive(teacher_temperatures[0], "teacher_temperatures"),
            check_positive(teacher_temperatures[1], "teacher_temperatures"),
        )
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", low=1)
        self.unsup_temperature = check_positive(unsup_temperature, "unsup_temperature")
        self.sup_temperature = check_positive(sup_temperature, "sup_temperature")

    def _check(self, logits: Tensor, labels: Tensor, labelled_mask: Tensor) -> int:
        check_tensor(logits, "logits", ndim=2, floating=True)
        if logits.shape[0] % 2:
            raise ValueError(f"logits: expected 2B rows [view 1; view 2], got {logits.shape[0]}")
        b = logits.shape[0] // 2
        check_tensor(labels, "labels", ndim=1, integer=True)
        check_tensor(labelled_mask, "labelled_mask", ndim=1)
        if labels.shape[0] != b or labelled_mask.shape[0] != b:
            raise ValueError(
                f"labels: expected {b} labels and labelled_mask entries (one per image), got "
                f"{labels.shape[0]} and {labelled_mask.shape[0]}"
            )
        check_index_range(labels, "labels", logits.shape[1])
        return b

    def terms(
        self,
        logits: Tensor,
        labels: Tensor,
        labelled_mask: Tensor,
        features: Tensor | None = None,
        epoch: int = 0,
    ) -> dict[str, Tensor]:
        """Each term of the objective, unweighted, plus ``"total"``."""
        self._check(logits, labels, labelled_mask)
        lab = labelled_mask.bool()
        lab2 = torch.cat([lab, lab])
        y2 = torch.cat([labels, labels]).long()
        z = logits.to(compute_dtype(logits))
        ce = F.cross_entropy(z / self.student_temperature, y2, reduction="none")
        n_lab = lab2.to(z.dtype).sum()
        # masked_fill, not a 0/1 product: an unlabelled row's CE may be inf (masked logit)
        sup = ce.masked_fill(~lab2, 0.0).sum() / n_lab.clamp_min(1.0)
        tt = simgcd_teacher_temperature(epoch, self.warmup_epochs, *self.teacher_temperatures)
        sd = cross_view_self_distillation(z, tt, self.student_temperature)
        me = mean_entropy_regularizer(z, self.student_temperature)
        out = {"sup": sup, "self_distillation": sd, "mean_entropy": me}
        lam = self.sup_weight
        total = (1 - lam) * (sd + self.memax_weight * me) + lam * sup
        if features is not None:
            check_tensor(features, "features", ndim=2, floating=True)
            if features.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"features: expected {logits.shape[0]} rows to match logits, got "
                    f"{features.shape[0]}"
                )
            fz = features.to(z.dtype)
            u_rep = _unsupervised_info_nce(fz, self.unsup_temperature)
            s_rep = _supervised_contrastive(fz[lab2], y2[lab2], self.sup_temperature)
            out["unsup_contrastive"] = u_rep
            out["sup_contrastive"] = s_rep
            total = total + (1 - lam) * u_rep + lam * s_rep
        out["total"] = total
        return out

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        labelled_mask: Tensor,
        features: Tensor | None = None,
        epoch: int = 0,
    ) -> Tensor:
        """Total loss for (2B, K) logits, (B,) labels and mask, optional (2B, D) features."""
        return self.terms(logits, labels, labelled_mask, features, epoch)["total"].to(logits.dtype)


class LegoGCDLoss(SimGCDLoss):
    r"""LegoGCD: SimGCD + :math:`(1-\lambda)\,\mathrm{DKL} + \beta\,L_{LER}`.

    The class-prior estimate :math:`\hat q` (buffer ``class_prior``, initialised uniform) is
    updated after each training-mode forward as
    :math:`\hat q \leftarrow m \hat q + (1-m)\,\mathrm{mean}_{rows}\,\mathrm{softmax}(\mathrm{sg}(z))`
    with momentum m = 0.999 and temperature **1** on the logits, over all 2B rows (code's
    ``update_qhat``; with cosine logits in [-1, 1] this is nearly uniform).

    The LER threshold :math:`\delta` must grow as the number of classes K shrinks: at the
    student temperature 0.1 a row's top probability is easily above 0.7 when K is small, so with
    CUB's 0.7 at K = 10 many *novel* samples predicted as a known class pass the test and LER
    sharpens them onto old classes. The authors' scripts set :math:`\delta` per data set
    (``--thr``): CIFAR-10 (K = 10) 0.95, Aircraft (100) 0.9, CIFAR-100 (100) 0.85, Cars (196)
    0.85, ImageNet-100 0.8, CUB (200) 0.7, Herbarium19 (683) and ImageNet-1k 0.7. There is no
    formula; the default 0.7 is CUB's.

    Args:
        num_classes: K.
        num_known: K_old (known classes are ``0..K_old-1``).
        threshold: LER confidence threshold :math:`\delta` (default 0.7, CUB's; see above).
        ler_weight: :math:`\beta` (2, hard-coded in code; paper: 2 CUB, 1 CIFAR-100).
        ler_tau: :math:`\tau_o` (0.05).
        ler_lam: :math:`\lambda_{ler}` (0.4).
        prior_momentum: m (0.999).
        detach_target: detach view 2 in DKL (paper pseudo-code); default False (code).
        dkl_form: ``"paper"`` (the KL, default) or ``"code"`` (the official code's
            log-softmax-of-probabilities expression); see :func:`dual_view_kl`.
        **simgcd: the :class:`SimGCDLoss` arguments.
    """

    class_prior: Tensor

    def __init__(
        self,
        num_classes: int,
        num_known: int,
        threshold: float = 0.7,
        ler_weight: float = 2.0,
        ler_tau: float = 0.05,
        ler_lam: float = 0.4,
        prior_momentum: float = 0.999,
        detach_target: bool = False,
        dkl_form: DKLForm = "paper",
        **simgcd: Any,
    ) -> None:
        super().__init__(**simgcd)
        check_int(num_classes, "num_classes", low=2)
        self.num_known = check_int(num_known, "num_known", low=0, high=num_classes)
        self.threshold = check_probability(threshold, "threshold")
        self.ler_weight = check_number(ler_weight, "ler_weight", low=0.0)
        self.ler_tau = check_positive(ler_tau, "ler_tau")
        self.ler_lam = check_number(ler_lam, "ler_lam")
        self.prior_momentum = check_probability(prior_momentum, "prior_momentum")
        self.detach_target = detach_target
        check_choice(dkl_form, "dkl_form", ("paper", "code"))
        self.dkl_form: DKLForm = dkl_form
        self.register_buffer("class_prior", torch.full((num_classes,), 1.0 / num_classes))

    def terms(
        self,
        logits: Tensor,
        labels: Tensor,
        labelled_mask: Tensor,
        features: Tensor | None = None,
        epoch: int = 0,
    ) -> dict[str, Tensor]:
        out = super().terms(logits, labels, labelled_mask, features, epoch)
        if logits.shape[1] != self.class_prior.shape[0]:
            raise ValueError(
                f"logits: expected {self.class_prior.shape[0]} classes, got {logits.shape[1]}"
            )
        z = logits.to(compute_dtype(logits))
        view1, view2 = z.chunk(2)
        dkl = dual_view_kl(
            view1, view2, self.student_temperature, self.detach_target, form=self.dkl_form
        )
        lab2 = torch.cat([labelled_mask, labelled_mask]).bool()
        ler = local_entropy_regularizer(
            z,
            lab2,
            self.num_known,
            self.class_prior.to(z.dtype),
            self.threshold,
            self.ler_tau,
            self.ler_lam,
            self.student_temperature,
        )
        out["dual_view_kl"] = dkl
        out["local_entropy"] = ler
        out["total"] = out["total"] + (1 - self.sup_weight) * dkl + self.ler_weight * ler
        if self.training:
            with torch.no_grad():
                batch_prior = torch.softmax(z.detach(), dim=1).mean(dim=0)
                m = self.prior_momentum
                self.class_prior.mul_(m).add_((1 - m) * batch_prior.to(self.class_prior.dtype))
        return out


__all__ = [
    "LegoGCDLoss",
    "SimGCDLoss",
    "cross_view_self_distillation",
    "dual_view_kl",
    "local_entropy_regularizer",
    "mean_entropy_regularizer",
    "simgcd_teacher_temperature",
]
