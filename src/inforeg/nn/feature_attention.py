r"""The two attention modules of Attentive WaveBlock: CBAM and an embedded-dot-product non-local
block, with the constants of the authors' code.

- CBAM: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
  arXiv 1807.06521; as used in ``WangWenhao0716/Attentive-WaveBlock``
  (``awb/models_pre_a_s2/cbam.py``).
- Non-local: Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018, arXiv 1711.07971;
  embedded dot-product version of ``awb/models_post_a_s2/non_local_dot_product.py`` (no
  sub-sampling, as in the AWB models).

See :class:`inforeg.nn.AttentiveWaveBlock` for how they combine with WaveBlock. Both raise
``TypeError`` naming ``x`` when its dtype differs from their parameters' (convert the module
with ``.to(dtype)``, or run under autocast), as a torch layer would, but saying so.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_int, check_matches_module_dtype, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["CBAM", "NonLocalBlock2d"]


def _check_feature_map(x: Tensor, module: nn.Module, channels: int) -> None:
    check_tensor(x, "x", ndim=4, floating=True)
    if x.shape[1] != channels:
        raise ValueError(f"x: expected {channels} channels (dim 1), got shape {tuple(x.shape)}")
    check_matches_module_dtype(x, module, "x")


class CBAM(nn.Module):
    r"""Convolutional block attention: a channel gate, then a spatial gate, both sigmoid.

    .. math::

        g_c = \sigma\big(\mathrm{MLP}(\mathrm{avgpool}(x)) + \mathrm{MLP}(\mathrm{maxpool}(x))\big),
        \qquad x' = x \odot g_c,\\
        g_s = \sigma\big(\mathrm{BN}(\mathrm{Conv}_{k\times k}([\max_c x';\ \mathrm{mean}_c x']))\big),
        \qquad \mathrm{CBAM}(x) = x' \odot g_s.

    The MLP is ``Linear(C, C // reduction) - ReLU - Linear(C // reduction, C)`` (with biases),
    shared by both pooled vectors. The spatial gate is computed from the channel-gated map
    :math:`x'` (max first, then mean, over channels), through a bias-free :math:`k\times k`
    convolution (2 channels in, 1 out, padding :math:`(k-1)/2`) and
    ``BatchNorm2d(1, eps=1e-5, momentum=0.01)``, with no ReLU. The residual ``CBAM(x) + x`` of
    Attentive WaveBlock is added by :class:`inforeg.nn.AttentiveWaveBlock`, not here.

    Args:
        channels: C, the input's channel count.
        reduction: MLP reduction ratio (paper 16); ``channels // reduction`` must be >= 1.
        spatial_kernel: odd kernel size k of the spatial convolution (paper 7).

    Example:
        >>> cbam = CBAM(32)
        >>> cbam(torch.randn(2, 32, 5, 5)).shape
        torch.Size([2, 32, 5, 5])
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        check_int(channels, "channels", low=1)
        check_int(reduction, "reduction", low=1)
        check_int(spatial_kernel, "spatial_kernel", low=1)
        if channels // reduction < 1:
            raise ValueError(
                f"reduction: expected at most channels = {channels} so that the hidden width "
                f"channels // reduction is >= 1, got {reduction}"
            )
        if spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel: expected an odd int, got {spatial_kernel}")
        self.channels = channels
        hidden = channels // reduction
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )
        self.spatial_conv = nn.Conv2d(
            2, 1, spatial_kernel, padding=(spatial_kernel - 1) // 2, bias=False
        )
        self.spatial_bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        _check_feature_map(x, self, self.channels)
        gate_c = torch.sigmoid(self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3))))
        x = x * gate_c[:, :, None, None]
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial_bn(self.spatial_conv(pooled)))


class NonLocalBlock2d(nn.Module):
    r"""Embedded dot-product non-local block with a residual, starting as the identity.

    .. math::

        f = \frac{\theta(x)^\top \phi(x)}{N},\qquad y = f\, g(x),\qquad
        \mathrm{NL}(x) = x + \mathrm{BN}(W y),

    where :math:`\theta, \phi, g` are 1x1 convolutions ``C -> inter_channels`` (with biases),
    :math:`N = H W` the number of positions (no softmax), :math:`W` a 1x1 convolution
    ``inter_channels -> C`` and BN a ``BatchNorm2d(C)`` whose weight and bias start at 0, so the
    block is exactly the identity at initialisation. Without a softmax the product is
    associative, so it is computed as :math:`\theta^\top(\phi\, g)/N`: O(B N C'^2) time and
    O(B N C') memory instead of the (N x N) affinity matrix of the authors' code (same value up
    to rounding). For half-precision input the two products are accumulated in float32; the
    result is cubic in the activations, so float16 (max 65504) overflows for activations of
    order 1e2 and more, bfloat16 does not.

    Args:
        channels: C, the input's channel count.
        inter_channels: width of the embeddings; default ``max(C // 2, 1)``.

    Example:
        >>> block = NonLocalBlock2d(8)
        >>> x = torch.randn(2, 8, 4, 4)
        >>> torch.equal(block(x), x)
        True
    """

    def __init__(self, channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        check_int(channels, "channels", low=1)
        inter = max(channels // 2, 1) if inter_channels is None else inter_channels
        check_int(inter, "inter_channels", low=1)
        self.channels = channels
        self.inter_channels = inter
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out_conv = nn.Conv2d(inter, channels, 1)
        self.out_bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.out_bn.weight)
        nn.init.zeros_(self.out_bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_feature_map(x, self, self.channels)
        b, _, h, w = x.shape
        dtype = compute_dtype(x)  # the sums over positions run in float32 for half input
        theta = self.theta(x).flatten(2).transpose(1, 2).to(dtype)  # (B, N, C')
        phi = self.phi(x).flatten(2).to(dtype)  # (B, C', N)
        g = self.g(x).flatten(2).transpose(1, 2).to(dtype)  # (B, N, C')
        y = torch.bmm(theta, torch.bmm(phi, g) / (h * w))  # (B, N, C'), never (B, N, N)
        y = y.transpose(1, 2).reshape(b, self.inter_channels, h, w).to(x.dtype)
        return x + self.out_bn(self.out_conv(y))
