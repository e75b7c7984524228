"""Randomised smoothing and dual randomised smoothing: masks, sub-images, CERTIFY, PREDICT."""

from __future__ import annotations

from statistics import NormalDist

import pytest
import torch
from torch import nn

from inforeg.robust import (
    DualRandomizedSmoothing,
    RandomizedSmoothing,
    clopper_pearson_lower,
    dual_smoothing_masks,
    dual_subimage,
)
from tests._helpers import assert_close, gradcheck64


def _authors_loop_masks(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The released ``get_res_index`` loop (pairs of pixels along flattened rows, with its row
    parity counter updated after the pair at each row start), written for any even size."""
    a = torch.zeros(height * width, dtype=torch.bool)
    b = torch.zeros(height * width, dtype=torch.bool)
    count = 0
    for i in range(height * width):
        if i % 2 == 0:
            if count % 2 == 0:
                a[i], b[i + 1] = True, True
            else:
                a[i + 1], b[i] = True, True
        if i % width == 0:
            count += 1
    return a.reshape(height, width), b.reshape(height, width)


def _constant_base(cls: int, k: int = 10):
    def base(batch: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch.shape[0], k, dtype=batch.dtype, device=batch.device)
        out[:, cls] = 1.0
        return out

    return base


def _random_base(k: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def base(batch: torch.Tensor) -> torch.Tensor:
        return torch.randn(batch.shape[0], k, generator=g)

    return base


class TestMasks:
    @pytest.mark.parametrize("size", [(32, 32), (8, 8), (4, 6)])
    def test_equal_the_authors_loop(self, size):
        mask_l, mask_r = dual_smoothing_masks(*size)
        ref_l, ref_r = _authors_loop_masks(*size)
        assert torch.equal(mask_l, ref_l) and torch.equal(mask_r, ref_r)

    @pytest.mark.parametrize("quirk", [True, False])
    def test_partition_rows_and_blocks(self, quirk):
        mask_l, mask_r = dual_smoothing_masks(8, 10, quirk=quirk)
        assert mask_l.dtype == torch.bool and mask_l.shape == (8, 10)
        assert torch.equal(mask_l, ~mask_r)
        assert (mask_l.sum(1) == 5).all()
        blocks = mask_l.reshape(4, 2, 5, 2).sum((1, 3))
        assert (blocks == 2).all()

    def test_no_quirk_is_a_checkerboard(self):
        mask_l, _ = dual_smoothing_masks(4, 4, quirk=False)
        r, c = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        assert torch.equal(mask_l, (r + c) % 2 == 1)
        quirky, _ = dual_smoothing_masks(4, 4)
        assert torch.equal(quirky[:, 2:], mask_l[:, 2:]) and torch.equal(
            quirky[:, :2], ~mask_l[:, :2]
        )

    @pytest.mark.parametrize(
        ("h", "w", "name"), [(7, 8, "height"), (8, 5, "width"), (0, 4, "height")]
    )
    def test_bad_sizes(self, h, w, name):
        with pytest.raises(ValueError, match=name):
            dual_smoothing_masks(h, w)


class TestSubimage:
    def test_formula_with_given_noise(self, dtype):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64)
        noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
        mask, _ = dual_smoothing_masks(4, 6)
        sigma = 0.36
        v = mask * (x + sigma * noise)
        pooled = torch.zeros_like(v)  # brute-force 2x2 max-pool, broadcast back to each pixel
        for r in range(4):
            for c in range(6):
                block = v[..., (r // 2) * 2 : (r // 2) * 2 + 2, (c // 2) * 2 : (c // 2) * 2 + 2]
                pooled[..., r, c] = block.amax((-2, -1))
        ref = v + mask * pooled
        got = dual_subimage(x.to(dtype), mask, sigma, noise=noise.to(dtype))
        assert got.dtype == dtype and got.shape == x.shape
        assert_close(got, ref)
        assert (got[..., ~mask] == 0).all()  # the other half stays empty
        assert_close(dual_subimage(x, mask, sigma, noise=noise, pool=False), v)

    def test_noise_only_on_kept_pixels_and_generator_reproducible(self):
        x = torch.zeros(1, 8, 8)
        mask, _ = dual_smoothing_masks(8, 8)
        a = dual_subimage(x, mask, 1.0, generator=torch.Generator().manual_seed(3), pool=False)
        b = dual_subimage(x, mask, 1.0, generator=torch.Generator().manual_seed(3), pool=False)
        assert torch.equal(a, b)
        assert (a[:, mask] != 0).all() and (a[:, ~mask] == 0).all()
        assert dual_subimage(x + 2.0, mask, 0.0)[:, mask].eq(4.0).all()  # 2 + max of block (2)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 4, 4, generator=g)
        noise = torch.randn(2, 4, 4, generator=g)
        mask, _ = dual_smoothing_masks(4, 4)
        gradcheck64(lambda v, e: dual_subimage(v, mask, 0.5, noise=e), x, noise)

    def test_bad_input(self):
        mask, _ = dual_smoothing_masks(4, 4)
        x = torch.zeros(3, 4, 4)
        with pytest.raises(ValueError, match="mask"):
            dual_subimage(x, dual_smoothing_masks(4, 6)[0], 0.5)
        with pytest.raises(TypeError, match="mask"):
            dual_subimage(x, mask.float(), 0.5)
        with pytest.raises(ValueError, match="noise"):
            dual_subimage(x, mask, 0.5, noise=torch.zeros(3, 4, 5))
        with pytest.raises(ValueError, match="sigma"):
            dual_subimage(x, mask, -0.5)
        with pytest.raises(TypeError, match="x"):
            dual_subimage(x.long(), mask, 0.5)
        odd = torch.zeros(3, 3, 4)
        with pytest.raises(ValueError, match="x"):
            dual_subimage(odd, torch.ones(3, 4, dtype=torch.bool), 0.5)
        assert (
            dual_subimage(odd, torch.ones(3, 4, dtype=torch.bool), 0.5, pool=False).shape
            == odd.shape
        )


class TestCertify:
    def test_constant_base_cohen_oracle(self):
        smoothed = RandomizedSmoothing(_constant_base(3), 10, 0.25)
        cls, radius = smoothed.certify(
            torch.zeros(1, 8, 8), n0=20, n=100, alpha=1e-3, batch_size=30
        )
        assert cls == 3
        assert radius == pytest.approx(0.25 * NormalDist().inv_cdf(0.001**0.01), rel=1e-12)
        assert radius == pytest.approx(0.3751188, abs=5e-8)

    @pytest.mark.parametrize("combine", ["official", "conservative"])
    def test_constant_base_drs_oracle(self, combine):
        smoothed = DualRandomizedSmoothing(
            _constant_base(4), _constant_base(4), 10, 0.25, combine=combine
        )
        cls, radius = smoothed.certify(
            torch.zeros(3, 8, 8), n0=20, n=100, alpha=1e-3, batch_size=64
        )
        assert cls == 4
        assert radius == pytest.approx(0.5304980, abs=5e-8)

    def test_random_bases_abstain(self):
        x = torch.zeros(1, 8, 8)
        cohen = RandomizedSmoothing(_random_base(), 10, 0.25)
        assert cohen.certify(x, n0=50, n=500, alpha=1e-3, batch_size=100) == (-1, 0.0)
        drs = DualRandomizedSmoothing(_random_base(seed=1), _random_base(seed=2), 10, 0.18)
        assert drs.certify(x, n0=50, n=500, alpha=1e-3, batch_size=100) == (-1, 0.0)
        assert cohen.predict(x, n=500, alpha=1e-3, batch_size=100) == -1

    def test_linear_classifier_radius_is_sound_and_tight(self):
        """Binary linear base f(x) = [w.x > b]: the smoothed classifier's exact radius is
        |w.x - b| / ||w||, and CERTIFY gives sigma * Phi^-1(p_lower) just below it."""
        w = torch.tensor([1.0, -2.0, 0.5, 1.0])
        x = torch.tensor([0.3, -0.1, 0.2, 0.0]).reshape(1, 2, 2)
        b = 0.1
        distance = float((w @ x.flatten() - b).abs() / w.norm())

        def base(batch: torch.Tensor) -> torch.Tensor:
            score = batch.flatten(1) @ w - b
            return torch.stack([-score, score], 1)

        smoothed = RandomizedSmoothing(base, 2, 0.5)
        g = torch.Generator().manual_seed(0)
        cls, radius = smoothed.certify(
            x, n0=100, n=20_000, alpha=1e-3, batch_size=5000, generator=g
        )
        assert cls == 1
        assert radius < distance
        assert radius > 0.85 * distance
        assert smoothed.predict(x, n=2000, alpha=1e-3, batch_size=500, generator=g) == 1

    def test_generator_makes_certificates_reproducible(self):
        w = torch.linspace(-1, 1, 16)

        def base(batch: torch.Tensor) -> torch.Tensor:
            score = batch.flatten(1) @ w
            return torch.stack([-score, score, 0 * score], 1)

        x = 0.1 * w.reshape(1, 4, 4)
        for cls in (
            RandomizedSmoothing(base, 3, 0.25),
            DualRandomizedSmoothing(base, base, 3, 0.18),
        ):
            runs = [
                cls.certify(x, 20, 300, 0.01, 64, generator=torch.Generator().manual_seed(s))
                for s in (7, 7, 8)
            ]
            assert runs[0] == runs[1]
            assert runs[0] != runs[2]

    def test_counts_cover_n_with_uneven_batches(self):
        sizes: list[int] = []

        def base(batch: torch.Tensor) -> torch.Tensor:
            sizes.append(batch.shape[0])
            return torch.zeros(batch.shape[0], 3)

        RandomizedSmoothing(base, 3, 0.5).certify(torch.zeros(1, 2, 2), 7, 23, 0.01, 10)
        assert sizes == [7, 10, 10, 3]

    def test_default_budgets_follow_each_papers_code(self):
        """Cohen's certify.py: n0 100, n 100 000, batch 1000; DRS's released script: n0 200,
        batch 2000."""
        sizes: list[int] = []

        def base(batch: torch.Tensor) -> torch.Tensor:
            sizes.append(batch.shape[0])
            return torch.zeros(batch.shape[0], 2)

        x = torch.zeros(1, 2, 2)
        RandomizedSmoothing(base, 2, 0.5).certify(x)
        assert sizes == [100] + [1000] * 100
        sizes.clear()
        DualRandomizedSmoothing(base, base, 2, 0.5).certify(x)
        assert sizes == [200, 200] + [2000] * 100  # two branches per batch
        sizes.clear()
        DualRandomizedSmoothing(base, base, 2, 0.5).predict(x, n=4000)
        assert sizes == [2000] * 4

    def test_drs_sees_disjoint_noisy_halves(self):
        seen: dict[str, torch.Tensor] = {}

        def recorder(name: str):
            def base(batch: torch.Tensor) -> torch.Tensor:
                seen[name] = batch.clone()
                return torch.zeros(batch.shape[0], 2)

            return base

        drs = DualRandomizedSmoothing(recorder("l"), recorder("r"), 2, 0.3)
        drs.predict(torch.ones(3, 4, 4), n=5, alpha=0.1, batch_size=5)
        mask_l, mask_r = dual_smoothing_masks(4, 4)
        assert (seen["l"][..., mask_r] == 0).all() and (seen["l"][..., mask_l] != 0).all()
        assert (seen["r"][..., mask_l] == 0).all() and (seen["r"][..., mask_r] != 0).all()

    def test_eval_mode_during_and_restored_after(self):
        modes: list[bool] = []

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = nn.Linear(4, 2)

            def forward(self, batch: torch.Tensor) -> torch.Tensor:
                modes.append(self.training)
                return self.lin(batch.flatten(1))

        net = Net().train()
        smoothed = RandomizedSmoothing(net, 2, 0.5)
        assert any(p is net.lin.weight for p in smoothed.parameters())  # registered submodule
        smoothed.certify(torch.zeros(1, 2, 2), 5, 10, 0.01, 10)
        assert modes == [False, False] and net.training

    def test_predict_abstains_on_ties_and_returns_top_class(self):
        def half_half(batch: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(batch.shape[0], 3)
            out[::2, 0] = 1.0
            out[1::2, 2] = 1.0
            return out

        smoothed = RandomizedSmoothing(half_half, 3, 0.5)
        assert smoothed.predict(torch.zeros(1, 2, 2), n=100, alpha=0.05, batch_size=100) == -1
        smoothed = RandomizedSmoothing(_constant_base(2, 3), 3, 0.5)
        assert smoothed.predict(torch.zeros(1, 2, 2), n=20, alpha=1e-3, batch_size=7) == 2
        assert smoothed(torch.zeros(1, 2, 2), n=20, alpha=1e-3) == 2

    def test_bad_input(self):
        x = torch.zeros(1, 4, 4)
        smoothed = RandomizedSmoothing(_constant_base(0, 3), 3, 0.5)
        with pytest.raises(ValueError, match="alpha"):
            smoothed.certify(x, 10, 100, 0.0, 10)
        with pytest.raises(ValueError, match="alpha"):
            smoothed.predict(x, 100, 1.5, 10)
        with pytest.raises(ValueError, match="n0"):
            smoothed.certify(x, 0, 100, 0.01, 10)
        with pytest.raises(ValueError, match="batch_size"):
            smoothed.certify(x, 10, 100, 0.01, 0)
        with pytest.raises(ValueError, match="x"):
            smoothed.certify(torch.zeros(4, 4), 10, 100, 0.01, 10)
        with pytest.raises(ValueError, match="base"):
            RandomizedSmoothing(_constant_base(0, 5), 3, 0.5).certify(x, 10, 100, 0.01, 10)
        with pytest.raises(ValueError, match="sigma"):
            RandomizedSmoothing(_constant_base(0, 3), 3, 0.0)
        with pytest.raises(ValueError, match="num_classes"):
            RandomizedSmoothing(_constant_base(0, 3), 1, 0.5)
        with pytest.raises(TypeError, match="base"):
            RandomizedSmoothing("resnet", 3, 0.5)  # type: ignore[arg-type]
        mask_l, mask_r = dual_smoothing_masks(4, 4)
        with pytest.raises(ValueError, match="disjoint"):
            DualRandomizedSmoothing(
                _constant_base(0, 3), _constant_base(0, 3), 3, 0.5, (mask_l, mask_l)
            )
        with pytest.raises(TypeError, match="masks"):
            DualRandomizedSmoothing(
                _constant_base(0, 3), _constant_base(0, 3), 3, 0.5, (mask_l.int(), mask_r)
            )
        with pytest.raises(ValueError, match="combine"):
            DualRandomizedSmoothing(
                _constant_base(0, 3), _constant_base(0, 3), 3, 0.5, combine="sum"
            )  # type: ignore[arg-type]
        drs = DualRandomizedSmoothing(
            _constant_base(0, 3), _constant_base(0, 3), 3, 0.5, (mask_l, mask_r)
        )
        with pytest.raises(ValueError, match="masks"):
            drs.certify(torch.zeros(1, 6, 6), 10, 100, 0.01, 10)
        assert clopper_pearson_lower(100, 100, 0.01) > 0.5
