"""inforeg.diffusion: diffusion ODE samplers in the EDM parameterisation (see DESIGN.md).

- :func:`evodiff_sample` / :class:`EVODiffSampler`: EVODiff (Li, Chen & Zeng, NeurIPS 2025).
- :func:`dpm_solver_pp_2m`, :func:`ddim_sample`: the baselines it is compared with.
- :func:`logsnr_sigmas`, :func:`karras_sigmas`: noise schedules.
- :func:`gmm_denoiser`: the exact denoiser of an isotropic Gaussian mixture (tests, experiments).

>>> import inforeg.diffusion as dif
>>> s = dif.karras_sigmas(2, sigma_min=0.5, sigma_max=8.0, rho=1.0)  # linear in sigma for rho = 1
>>> [round(float(v), 2) for v in s]
[8.0, 4.25, 0.5]
"""

from inforeg.diffusion.mixtures import GaussianMixtureDenoiser, gmm_denoiser
from inforeg.diffusion.schedules import karras_sigmas, logsnr_sigmas
from inforeg.diffusion.solvers import EVODiffSampler, ddim_sample, dpm_solver_pp_2m, evodiff_sample

__all__ = [
    "EVODiffSampler",
    "GaussianMixtureDenoiser",
    "ddim_sample",
    "dpm_solver_pp_2m",
    "evodiff_sample",
    "gmm_denoiser",
    "karras_sigmas",
    "logsnr_sigmas",
]
