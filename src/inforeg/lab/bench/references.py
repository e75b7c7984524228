"""Reference implementations the token-entropy benchmarks compare inforeg with (public so that
``benchmarks/gpu_check.py`` imports no private names).

TRL-style and verl-style are re-implementations of the code of TRL's ``entropy_from_logits`` and
``selective_log_softmax`` and of verl's ``entropy_from_logits_with_chunking``, not imports of the
libraries (neither is a dependency).
"""

from __future__ import annotations

import torch

__all__ = [
    "naive_entropy",
    "naive_logp",
    "trl_entropy",
    "trl_logp",
    "trl_logp_3d",
    "trl_logp_seq",
    "verl_entropy",
]


def naive_entropy(x: torch.Tensor) -> torch.Tensor:
    """The naive form: ``-(softmax * log_softmax).sum(-1)`` in the input dtype (full-size temporaries)."""
    return -(torch.softmax(x, -1) * torch.log_softmax(x, -1)).sum(-1)


def trl_entropy(x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """TRL-style: 128-row chunks, log_softmax in the input dtype, -sum(exp(lp) * lp)."""
    out = []
    for s in range(0, x.shape[0], chunk):
        lp = torch.log_softmax(x[s : s + chunk], -1)
        out.append(-(torch.exp(lp) * lp).sum(-1))
    return torch.cat(out)


def verl_entropy(x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """verl-style: 2048-row chunks upcast to float32, H = logsumexp(z) - sum(softmax(z) * z)."""
    out = []
    for s in range(0, x.shape[0], chunk):
        z = x[s : s + chunk].float()
        out.append(torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1))
    return torch.cat(out).to(x.dtype)


def naive_logp(x: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """The naive form: ``log_softmax(x).gather(tok)`` (a full-size log-softmax)."""
    return torch.log_softmax(x, -1).gather(1, tok[:, None]).squeeze(1)


def trl_logp(x: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """TRL-style: per-row logsumexp loop (float32/64) or per-row log_softmax loop (half types)."""
    if x.dtype in (torch.float32, torch.float64):
        picked = x.gather(1, tok[:, None]).squeeze(1)
        lse = torch.stack([torch.logsumexp(row, -1) for row in x])
        return picked - lse
    rows = [torch.log_softmax(row, -1)[t] for row, t in zip(x, tok)]
    return torch.stack(rows)


def trl_logp_seq(x: torch.Tensor, tok: torch.Tensor, seqs: int = 8) -> torch.Tensor:
    """TRL's selective_log_softmax on the trainer's (B, T, V) layout: its loop runs over B."""
    return trl_logp_3d(x.view(seqs, -1, x.shape[-1]), tok.view(seqs, -1)).reshape(-1)


def trl_logp_3d(x: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    """TRL's selective_log_softmax on (B, T, V) logits: a Python loop over B."""
    if x.dtype in (torch.float32, torch.float64):
        picked = x.gather(-1, tok.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(lg, -1) for lg in x])
        return picked - lse
    rows = [
        torch.log_softmax(lg, -1).gather(-1, t.unsqueeze(-1)).squeeze(-1) for lg, t in zip(x, tok)
    ]
    return torch.stack(rows)
