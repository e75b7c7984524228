"""The fused C kernel behind token_entropy / selective_log_softmax on CPU (float32, bfloat16):
block boundaries, maximum jumps, special values, threads, and agreement with the PyTorch path."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import _cpu_entropy, selective_log_softmax, token_entropy

needs_kernel = pytest.mark.skipif(
    _cpu_entropy._compiler() is None, reason="no C compiler: the PyTorch path is used"
)


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "0")
    monkeypatch.setattr(_cpu_entropy, "_MIN_VOCAB", 1)  # the small test vocabularies too
    return _cpu_entropy


def _refs(z: torch.Tensor, tok: torch.Tensor, t: float):
    """float64 entropy and log p[tok] of the same (rounded) logits, masked entries excluded."""
    zd = z.double() / t
    logp = torch.log_softmax(zd, -1)
    h = -(logp.exp() * logp.masked_fill(torch.isinf(zd), 0.0)).sum(-1)
    return h, logp.gather(-1, tok[..., None]).squeeze(-1)


@needs_kernel
def test_kernel_builds_where_a_compiler_exists(kernel):
    assert kernel.library() is not None
    z = torch.randn(3, 100)
    assert kernel.usable(z) and kernel.usable(z.bfloat16())
    assert not kernel.usable(z.double()) and not kernel.usable(z.half())
    assert not kernel.usable(z[:, ::2])  # strided rows: PyTorch path


def test_small_vocabularies_take_the_pytorch_path(monkeypatch):
    # per-row overhead: below _MIN_VOCAB the chunked path is faster
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "0")
    assert not _cpu_entropy.usable(torch.randn(5, _cpu_entropy._MIN_VOCAB - 1))
    if _cpu_entropy._compiler() is not None:
        assert _cpu_entropy.usable(torch.randn(5, _cpu_entropy._MIN_VOCAB))


def test_disable_switch(monkeypatch):
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "1")
    assert not _cpu_entropy.usable(torch.randn(2, 100))


@needs_kernel
@pytest.mark.parametrize("vocab", [1, 2, 15, 16, 17, 2047, 2048, 2049, 4111])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("t", [1.0, 0.35])
def test_values_and_grads_at_block_and_lane_edges(kernel, vocab, dtype, t):
    # lanes of 16 values and blocks of 2048: full, partial and tail-only blocks
    g = torch.Generator().manual_seed(vocab)
    z = (torch.randn(3, vocab, generator=g) * 4).to(dtype)
    tok = torch.randint(0, vocab, (3,), generator=g)
    w = torch.randn(3, generator=g)
    x = z.clone().requires_grad_(True)
    h = token_entropy(x, t)
    lp = selective_log_softmax(x, tok, t)
    (gh,) = torch.autograd.grad((h.float() * w).sum(), x)
    (gl,) = torch.autograd.grad((lp.float() * w).sum(), x)
    zr = z.double().requires_grad_(True)
    rh, rl = _refs(zr, tok, t)
    (rgh,) = torch.autograd.grad((rh * w.double()).sum(), zr, retain_graph=True)
    (rgl,) = torch.autograd.grad((rl * w.double()).sum(), zr)
    if dtype == torch.float32:
        torch.testing.assert_close(h.double(), rh.detach(), rtol=1e-5, atol=2e-6)
        torch.testing.assert_close(lp.double(), rl.detach(), rtol=1e-6, atol=2e-6)
        # float32 rounding of log p = z / T - lse (|z / T| up to ~40 here) and of log p + H:
        # ~1e-5 of the gradient's scale (or of 1 where all of it is small)
        scale = float(rgh.abs().max())
        torch.testing.assert_close(gh.double(), rgh, rtol=1e-4, atol=1e-5 * (scale + 1.0))
        torch.testing.assert_close(gl.double(), rgl, rtol=1e-4, atol=2e-6)
    else:  # float32 inside, outputs and gradients rounded once to bfloat16
        torch.testing.assert_close(h.double(), rh.detach(), rtol=8e-3, atol=1e-5)
        torch.testing.assert_close(lp.double(), rl.detach(), rtol=8e-3, atol=1e-5)
        torch.testing.assert_close(gh.double(), rgh, rtol=8e-3, atol=1e-5)
        torch.testing.assert_close(gl.double(), rgl, rtol=8e-3, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("t", [1.0, 0.05])
def test_maximum_far_into_the_row(kernel, t):
    # the running reference jumps by far more than the kernel's slack (2^40) in a later block:
    # the block is redone against the new maximum; and a row whose maximum comes first
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 9000, generator=g)
    z[0, 8500] = 500.0
    z[1, 3000:] += 60.0
    z[2, 0] = 300.0
    z[3, 4097] = -300.0
    tok = torch.tensor([8500, 10, 0, 4097])
    h = token_entropy(z, t)
    lp = selective_log_softmax(z, tok, t)
    rh, rl = _refs(z, tok, t)
    assert torch.isfinite(h).all() and torch.isfinite(lp).all()
    torch.testing.assert_close(h.double(), rh, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(lp.double(), rl, rtol=1e-6, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_special_values_match_the_pytorch_path(kernel, dtype, monkeypatch):
    # NaN or +inf logits, or every logit masked: NaN for that row only, as on the PyTorch path
    z = torch.randn(6, 3000)
    z[0, 2500] = float("nan")
    z[1, 5] = float("inf")
    z[2] = float("-inf")
    z[3, :2990] = float("-inf")  # the first block entirely masked
    z[4, 1::2] = float("-inf")
    z = z.to(dtype)
    tok = torch.tensor([0, 0, 0, 2995, 0, 7])
    fused = token_entropy(z), selective_log_softmax(z, tok)
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "1")
    eager = token_entropy(z), selective_log_softmax(z, tok)
    for a, b in zip(fused, eager):
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        assert torch.isnan(a[:3]).all() and torch.isfinite(a[3:]).all()
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-5, equal_nan=True)


@needs_kernel
def test_rows_split_over_threads(kernel):
    # 64 x 40000 values: enough work for several threads; every row must be done once
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        g = torch.Generator().manual_seed(2)
        z = torch.randn(64, 40000, generator=g) * 3
        tok = torch.randint(0, 40000, (64,), generator=g)
        assert _cpu_entropy._threads(z) >= 2
        h = token_entropy(z)
        lp = selective_log_softmax(z, tok)
    finally:
        torch.set_num_threads(threads)
    rh, rl = _refs(z, tok, 1.0)
    torch.testing.assert_close(h.double(), rh, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(lp.double(), rl, rtol=1e-6, atol=2e-6)


@needs_kernel
def test_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path):
    # a compiler that fails: one warning, library() is None, the PyTorch path gives the values
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fake compiler error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("INFOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_cpu_entropy, "_state", {})
    with pytest.warns(RuntimeWarning, match="fake compiler error"):
        assert _cpu_entropy.library() is None
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    assert not _cpu_entropy.usable(z)
    ref = _refs(z, torch.zeros(2).long(), 1)[0]
    torch.testing.assert_close(token_entropy(z).double(), ref, rtol=1e-5, atol=1e-6)


@needs_kernel
def test_build_into_a_fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("INFOREG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_cpu_entropy, "_state", {})
    assert _cpu_entropy.library() is not None
    built = list(tmp_path.glob("cpu_entropy-*.so"))
    assert len(built) == 1  # the temporary file was renamed, not left behind
    assert list(tmp_path.iterdir()) == built


@needs_kernel
def test_unusable_cache_dir_falls_back_to_a_private_temp_dir(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("INFOREG_CACHE_DIR", str(blocker / "cache"))  # mkdir fails
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(_cpu_entropy.tempfile, "tempdir", None)  # re-read TMPDIR
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(_cpu_entropy, "_state", {})
    assert _cpu_entropy.library() is not None
    (private,) = (tmp_path / "tmp").iterdir()
    assert private.name.startswith("inforeg-kernels-") and private.stat().st_mode & 0o077 == 0
    assert len(list(private.glob("cpu_entropy-*.so"))) == 1
