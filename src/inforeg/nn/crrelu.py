r"""CRReLU: the correction-regularised ReLU of EAFO.

Sun, Wu, Xia, Chang, Dong, Yuan, Liu, Zhao, "A Method on Searching Better Activation Functions"
(EAFO, entropy-based activation function optimisation), 2024, arXiv 2405.12954. No authors'
repository was found; the formula and the initial value 0.01 agree with independent public
implementations (see ``/work/shared/specs/remaining.md`` §2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_broadcastable, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["CRReLU", "crrelu"]


def crrelu(x: Tensor, eps: float | Tensor = 0.01) -> Tensor:
    r"""Correction-regularised ReLU, elementwise.

    .. math::

        \mathrm{CRReLU}(x) = \max(0, x) + \varepsilon\, x\, e^{-x^2/2},\qquad
        \frac{\partial}{\partial x} = \mathbb 1[x > 0] + \varepsilon (1 - x^2) e^{-x^2/2},\qquad
        \frac{\partial}{\partial \varepsilon} = x e^{-x^2/2}.

    The correction is odd and peaks at :math:`|x| = 1` with magnitude
    :math:`|\varepsilon| e^{-1/2} \approx 0.6065|\varepsilon|`; :math:`\varepsilon = 0` is ReLU
    exactly. The derivative of :math:`\max(0, x)` at 0 is 0 (PyTorch's ``relu`` convention).
    EAFO derives CRReLU as the first-order correction of ReLU along the entropy functional of a
    Gaussian pre-activation; only this ReLU instance is implemented.

    Args:
        x: input of any shape.
        eps: correction weight :math:`\varepsilon` (paper default 0.01), a finite real number or a
            floating tensor broadcastable to ``x`` (e.g. a learnable scalar, see :class:`CRReLU`).

    Returns:
        A tensor of ``x``'s shape and dtype (computed in float32 for half-precision input, so
        :math:`e^{-x^2/2}` neither overflows nor loses the correction). Finite for every finite
        input: for large :math:`|x|` the correction underflows to 0.

    Example:
        >>> crrelu(torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64))
        tensor([-0.0061,  0.0000,  1.0061,  2.0027], dtype=torch.float64)
    """
    check_tensor(x, "x", floating=True, nonempty=False)
    if isinstance(eps, Tensor):
        check_tensor(eps, "eps", floating=True)
        check_broadcastable(eps, "eps", x, "x")
        dtype = compute_dtype(x, eps)
        e: float | Tensor = eps.to(dtype)
    else:
        e = check_number(eps, "eps")
        dtype = compute_dtype(x)
    xc = x.to(dtype)
    return (torch.relu(xc) + e * xc * torch.exp(-0.5 * xc * xc)).to(x.dtype)


class CRReLU(nn.Module):
    r"""CRReLU activation with one (learnable) scalar :math:`\varepsilon`; see :func:`crrelu`.

    ``eps`` is a scalar ``nn.Parameter`` (initial 0.01, the paper's value) trained with the
    network, one per activation module (not per channel); with ``learnable=False`` it is a
    buffer. It follows ``.to()`` and ``state_dict()`` either way. The spec recommends excluding
    ``eps`` from weight decay (put it in a parameter group with ``weight_decay=0``).

    Args:
        eps: initial :math:`\varepsilon`, a finite real number.
        learnable: train :math:`\varepsilon` (default) or keep it fixed.

    Example:
        >>> act = CRReLU()
        >>> act(torch.tensor([1.0])).detach(), round(act.eps.item(), 6)
        (tensor([1.0061]), 0.01)
    """

    eps: Tensor

    def __init__(self, eps: float = 0.01, learnable: bool = True) -> None:
        super().__init__()
        value = check_number(eps, "eps")
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable: expected a bool, got {type(learnable).__name__}")
        init = torch.tensor(value)
        if learnable:
            self.eps = nn.Parameter(init)
        else:
            self.register_buffer("eps", init)

    def forward(self, x: Tensor) -> Tensor:
        return crrelu(x, self.eps)

    def extra_repr(self) -> str:
        return f"learnable={isinstance(self.eps, nn.Parameter)}"
