"""Independent float64 re-implementations used as references by the diffusion tests.

- ``dpm_pp_2m_lambda``: DPM-Solver++(2M) written in half-log-SNR time (Lu et al. 2022, Alg. 2),
  with ``expm1``; a different algebraic route from the library's sigma-ratio form.
- ``released_evodiff``: the released EDM sampler's loop (``EVODiff_edm.sample``, order 2,
  multistep, data prediction) with its own bookkeeping: lists of previous times and outputs,
  cached dot products, 4-D ``einsum`` inner products; written from the released code's structure.
"""

from __future__ import annotations

import math

import torch


def dpm_pp_2m_lambda(model, x, sigmas, lower_order_final=True):
    sig = [float(s) for s in sigmas]
    lam = [-math.log(s) for s in sig]
    n = len(sig) - 1
    b = x.shape[0]
    outs = [model(x, torch.full((b,), sig[0], dtype=x.dtype))]
    for i in range(1, n + 1):
        h = lam[i] - lam[i - 1]
        first = i == 1 or (lower_order_final and i == n)
        if first:
            d = outs[-1]
        else:
            r = (lam[i - 1] - lam[i - 2]) / h
            d = (1 + 1 / (2 * r)) * outs[-1] - (1 / (2 * r)) * outs[-2]
        x = (sig[i] / sig[i - 1]) * x - math.expm1(-h) * d
        if i < n:
            outs.append(model(x, torch.full((b,), sig[i], dtype=x.dtype)))
    return x


def _dot(a, b):
    return torch.einsum("bchw,bchw->bc", a, b).view(a.size(0), -1, 1, 1)


def _proj(a, b, bb=None):
    bb = _dot(b, b) if bb is None else bb
    return torch.clamp(_dot(a, b) / bb, min=-2, max=2)


def released_evodiff(model, x, sigmas, denoise_to_zero=False):
    ts = torch.as_tensor(sigmas, dtype=torch.float64)
    steps = ts.shape[0] - 1
    t_0, t_T = ts[-1], ts[0]
    b = x.shape[0]

    def call(z, t):
        return model(z, t.expand(b))

    m0m0 = m1m1 = m0m1 = None
    t_prev = [ts[0]]
    outs = [call(x, ts[0])]
    # first step: DDIM
    t, s = ts[1], t_prev[-1]
    h = 1 / t - 1 / s
    x = (t / s) * x + t * h * outs[-1]
    outs.append(call(x, t))
    t_prev.append(t)
    for step in range(2, steps + 1):
        t = ts[step]
        order = min(2, steps + 1 - step)
        if order == 1:
            s = t_prev[-1]
            ms = outs[-1]
            ratio = t / s
            h = 1 / t - 1 / s
            x_t = ratio * x + t * h * ms
            shrink = 1 - torch.pow(t * s, 0.5)
            if ratio < 0.5:
                rf = 1 - 0.5 * torch.pow(ratio, 0.5)
            else:
                rf = 1 - 0.5 * torch.pow(ratio - 0.5, 0.5)
            x = shrink * x_t + 0.5 * t * h * (ms - rf * outs[-2])
            continue
        mp1, mp0 = outs[-2], outs[-1]
        s1, s0 = ts[step - 2], ts[step - 1]
        rat0, rat01 = t / s0, s0 / s1
        h = 1 / t - 1 / s0
        x_eu = rat0 * x + t * h * mp0
        r_logh = torch.log(s1 / s0) / torch.log(s0 / t)
        if m0m0 is None:
            m0m0, m1m1, m0m1 = _dot(mp0, mp0), _dot(mp1, mp1), _dot(mp0, mp1)
        tn = (t + t_0) / (t_T + t_0)
        wt = 0.5 * (1 - tn**2)
        base = torch.sqrt(rat0 / rat01)
        r1 = (1 - wt) * base + wt * torch.clamp(m0m1 / m1m1, min=-2, max=2)
        d1 = mp0 - r1 * mp1
        ri = torch.clamp(
            torch.sigmoid(0.25 * r1.abs()) * r_logh, min=0.25 * r_logh, max=1.5 * r_logh
        )
        x = x_eu + 0.5 * t * h / ri * d1
        outs[0] = outs[1]
        t_prev[0] = t_prev[1]
        t_prev[-1] = t
        mt = call(x, t)
        outs[-1] = mt
        mtmt, mtm0 = _dot(mt, mt), _dot(mt, mp0)
        r2 = (1 - wt) * base + wt * torch.clamp(mtm0 / m0m0, min=-2, max=2)
        d2 = mt - r2 * mp0
        bp, bn = d1 / r_logh / h, r_logh / h * d2
        eta = 0.5 * torch.sigmoid(torch.abs(0.5 * _proj(bn + bp, bn - bp)))
        bth = -eta / r_logh * d1 + r_logh * (1 - eta) * d2
        p1 = x - x_eu - 0.5 * t * h / ri * bth
        zs = _proj(p1, d1, _dot(d1, d1)) / (h * t)
        if steps > 20:
            d10 = (mp0 - mp1) / h
            cons = torch.sigmoid(_proj(mp0, d10, _dot(d10, d10)) * (2 - rat0**2))
            zeta = torch.sigmoid(-(zs.abs() - 0.5) * cons)
        else:
            zeta = torch.sigmoid(zs.abs() - 0.5)
        x = x_eu + 0.5 * t * h / zeta * bth
        m1m1, m0m0, m0m1 = m0m0, mtmt, mtm0
    if denoise_to_zero:
        x = call(x, t_0.reshape(1))
    return x
