r"""Latent quantisation with per-dimension learnable scalar codebooks (QLAE).

Hsu, Dorrell, Whittington, Wu & Finn, "Disentanglement via Latent Quantization", NeurIPS 2023,
arXiv 2305.18378; authors' code ``kylehkhsu/latent_quantization`` (JAX/equinox).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce

__all__ = ["QuantizerOutput", "ScalarCodebookQuantizer", "qlae_param_groups", "scalar_quantize"]


class QuantizerOutput(NamedTuple):
    """``z_hat`` (straight-through output for the decoder), ``quantized`` (codebook values),
    ``indices`` (long, per dimension), ``quantization_loss`` and ``commitment_loss``."""

    z_hat: Tensor
    quantized: Tensor
    indices: Tensor
    quantization_loss: Tensor
    commitment_loss: Tensor


def scalar_quantize(
    z: Tensor, codebook: Tensor, reduction: Literal["mean", "sum", "none"] = "mean"
) -> QuantizerOutput:
    r"""Quantise each latent dimension to the nearest value of its own scalar codebook.

    .. math::

        q_j = v_j[\arg\min_k |z_j - v_{j,k}|], \qquad \hat z = z + \mathrm{sg}(q - z),\\
        \mathcal L_{\text{quant}} = \tfrac{1}{n_z}\sum_j (\mathrm{sg}(z_j) - q_j)^2, \qquad
        \mathcal L_{\text{commit}} = \tfrac{1}{n_z}\sum_j (z_j - \mathrm{sg}(q_j))^2

    The quantisation loss trains only the codebook, the commitment loss only the encoder; the
    straight-through output passes the decoder's gradient to ``z`` unchanged. The paper weights
    both losses by 0.01 (``configs/model_partial/quantized_ae.yaml``); apply the weights yourself.

    Args:
        z: latents, shape (batch, n_z).
        codebook: (n_z, n_values) scalar codebooks, one row per dimension.
        reduction: over the batch for the two losses (per-sample losses are dimension means).

    Half-precision inputs are compared and the losses computed in float32, then cast back:
    ``quantized`` in the codebook's dtype, the losses in the promoted dtype of ``z`` and
    ``codebook``.

    Example (0.12 is nearest to 0, -0.4 to -0.5; loss ``(0.12^2 + 0.1^2) / 2``):

        >>> z = torch.tensor([[0.12, -0.4]], dtype=torch.float64)
        >>> codebook = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64).repeat(2, 1)
        >>> out = scalar_quantize(z, codebook)
        >>> out.quantized.tolist(), out.indices.tolist()
        ([[0.0, -0.5]], [[2, 0]])
        >>> print(f"{float(out.quantization_loss):.4f}")
        0.0122
    """
    check_tensor(z, "z", ndim=2, floating=True)
    check_tensor(codebook, "codebook", ndim=2, floating=True)
    if codebook.shape[0] != z.shape[1]:
        raise ValueError(
            f"codebook: expected {z.shape[1]} rows (one per latent dimension), got {codebook.shape[0]}"
        )
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    # Half inputs: distances and losses in float32 (a bf16 |z - v| rounds near-ties to the
    # wrong code, and fp16 squares overflow), results cast back.
    dt = compute_dtype(z, codebook)
    zc, cb = z.to(dt), codebook.to(dt)
    dist = (zc.detach()[:, :, None] - cb.detach()[None, :, :]).abs()  # (B, n_z, n_v)
    idx = dist.argmin(-1)
    qc = cb.unsqueeze(0).expand(z.shape[0], -1, -1).gather(2, idx.unsqueeze(-1)).squeeze(-1)
    q = qc.to(codebook.dtype)
    z_hat = z + (q - z).detach()
    out = torch.promote_types(z.dtype, codebook.dtype)
    quant = reduce((zc.detach() - qc).pow(2).mean(1), reduction).to(out)
    commit = reduce((zc - qc.detach()).pow(2).mean(1), reduction).to(out)
    return QuantizerOutput(z_hat, q, idx, quant, commit)


class ScalarCodebookQuantizer(nn.Module):
    """QLAE latent quantiser: a learnable scalar codebook per latent dimension.

    Codebooks start at ``linspace(low, high, n_values)`` (paper: n_values = 10, [-0.5, 0.5]) and
    are ``nn.Parameter`` of shape (n_latents, n_values). ``forward(z)`` returns
    :class:`QuantizerOutput` (see :func:`scalar_quantize`). The paper trains with AdamW
    (weight decay 0.1, lr 1e-3) on all weights except biases and codebooks (plain Adam) and clips
    gradients elementwise to [-1, 1]; :func:`qlae_param_groups` builds those groups. Paper
    choice n_latents = 2 x number of sources.
    """

    def __init__(
        self, n_latents: int, n_values: int = 10, low: float = -0.5, high: float = 0.5
    ) -> None:
        super().__init__()
        check_int(n_latents, "n_latents", low=1)
        check_int(n_values, "n_values", low=2)
        if not high > low:
            raise ValueError(f"high: expected > low = {low}, got {high}")
        self.codebook = nn.Parameter(torch.linspace(low, high, n_values).repeat(n_latents, 1))

    def forward(
        self, z: Tensor, reduction: Literal["mean", "sum", "none"] = "mean"
    ) -> QuantizerOutput:
        cb = self.codebook.to(z.dtype) if z.dtype != self.codebook.dtype else self.codebook
        return scalar_quantize(z, cb, reduction)


def qlae_param_groups(model: nn.Module, weight_decay: float = 0.1) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim.AdamW``: weight decay on weights, none on biases
    (1-d parameters) and on ``ScalarCodebookQuantizer`` codebooks (the paper's split).
    ``weight_decay`` must be finite and >= 0."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
    codebooks = {id(m.codebook) for m in model.modules() if isinstance(m, ScalarCodebookQuantizer)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if id(p) in codebooks or p.dim() <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
