"""Entropy curriculum: competence, static entropy, the batch sampler (DataLoader, sharding)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inforeg.data import EntropyCurriculumSampler, curriculum_competence, static_entropy
from tests._helpers import assert_close


class TestCompetence:
    def test_oracles(self):
        assert curriculum_competence(0, 100) == 0.2
        assert curriculum_competence(50, 100) == pytest.approx(math.sqrt(0.52), rel=1e-15)
        assert curriculum_competence(100, 100) == 1.0
        assert curriculum_competence(150, 100) == 1.0
        assert curriculum_competence(0, 10, c0=0.5) == 0.5
        assert curriculum_competence(25, 100, c0=0.3) == pytest.approx(
            math.sqrt(0.09 + 0.91 * 0.25), rel=1e-15
        )

    def test_monotone(self):
        values = [curriculum_competence(t, 40) for t in range(60)]
        assert all(b >= a for a, b in zip(values, values[1:]))
        assert values[0] == 0.2 and values[-1] == 1.0

    @pytest.mark.parametrize(
        ("args", "name"),
        [((-1, 10), "step"), ((1, 0), "warmup_steps"), ((1, 10, 0.0), "c0"), ((1, 10, 1.5), "c0")],
    )
    def test_bad_input(self, args, name):
        with pytest.raises(ValueError, match=name):
            curriculum_competence(*args)


class TestStaticEntropy:
    def test_oracles(self):
        x = torch.tensor(
            [
                [2.0] * 8,  # constant
                [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0],  # uniform over 4 bins
                [0.0] * 6 + [3.0] * 2,  # 6:2 split
            ]
        )
        got = static_entropy(x, bins=4)
        h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(4)
        assert_close(got, torch.tensor([0.0, 1.0, h]))
        assert got[0].item() == 0.0 and not math.copysign(1.0, got[0].item()) < 0

    def test_matches_numpy_histograms(self, dtype):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(20, 3, 5, generator=g, dtype=torch.float64) ** 2
        lo, hi = float(x.min()), float(x.max())
        ref = []
        for row in x.reshape(20, -1).numpy():
            counts, _ = np.histogram(row, bins=7, range=(lo, hi))
            p = counts / counts.sum()
            ref.append(-sum(q * math.log(q) for q in p if q > 0) / math.log(7))
        got = static_entropy(x.to(dtype), bins=7)
        assert got.dtype == dtype and got.shape == (20,)
        assert_close(got, torch.tensor(ref, dtype=torch.float64))

    def test_value_range_clips_and_integer_images(self):
        x = torch.tensor([[-5.0, 0.1, 0.6, 9.0]])
        # with range (0, 1) and 2 bins: -5 -> bin 0, 0.1 -> 0, 0.6 -> 1, 9 -> 1
        assert static_entropy(x, bins=2, value_range=(0.0, 1.0)).item() == pytest.approx(1.0)
        img = torch.tensor([[0, 0, 255, 255], [7, 7, 7, 7]], dtype=torch.uint8)
        got = static_entropy(img, bins=4, value_range=(0, 255))
        assert got.dtype == torch.get_default_dtype()
        assert got.tolist() == [0.5, 0.0]
        # global range degenerate (all equal): every sample has entropy 0, not NaN
        assert static_entropy(torch.ones(3, 4)).tolist() == [0.0, 0.0, 0.0]

    def test_bad_input(self):
        with pytest.raises(ValueError, match="bins"):
            static_entropy(torch.rand(3, 4), bins=1)
        with pytest.raises(ValueError, match="value_range"):
            static_entropy(torch.rand(3, 4), value_range=(1.0, 0.0))
        with pytest.raises(TypeError, match="value_range"):
            static_entropy(torch.rand(3, 4), value_range=(1.0,))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="x"):
            static_entropy(torch.rand(0, 4))
        with pytest.raises(ValueError, match="x"):
            static_entropy(torch.rand(3, 0))


def _sampler(n=50, **kw):
    g = torch.Generator().manual_seed(1)
    static = torch.rand(n, generator=g, dtype=torch.float64)
    opts = {"batch_size": 4, "warmup_steps": 20, **kw}
    return EntropyCurriculumSampler(static, **opts), static


class TestSampler:
    def test_static_only_eligible_sets(self):
        sampler, static = _sampler(lam=0.0)
        k0 = math.ceil(0.2 * 50)
        easiest = torch.argsort(static)[:k0]
        assert torch.equal(sampler.eligible(0), easiest)
        assert set(sampler.sample(0).tolist()) <= set(easiest.tolist())
        for step in range(5):
            k = math.ceil(curriculum_competence(step, 20) * 50 - 1e-9)
            pool = set(torch.argsort(static)[:k].tolist())
            assert set(sampler.eligible(step).tolist()) == pool
            assert set(sampler.sample(step).tolist()) <= pool
            assert len(set(sampler.sample(step).tolist())) == 4  # without replacement
        assert torch.equal(torch.sort(sampler.eligible(20)).values, torch.arange(50))
        assert sampler.eligible(10).shape[0] == math.ceil(math.sqrt(0.04 + 0.96 * 0.5) * 50)

    def test_adaptive_only_follows_losses(self):
        sampler, _ = _sampler(n=10, lam=1.0, batch_size=2)
        idx = torch.arange(10)
        losses = torch.linspace(2.0, 0.1, 10)  # decreasing: sample 9 has the lowest loss
        sampler.update(idx, losses)
        assert sampler.eligible(0).tolist() == [9, 8]
        assert sampler.eligible(5).tolist() == list(range(9, 9 - sampler.eligible(5).shape[0], -1))

    def test_difficulty_mixes_average_ranks(self):
        static = torch.tensor([0.3, 0.1, 0.3, 0.9])
        sampler = EntropyCurriculumSampler(static, 2, 10, lam=0.25)
        # static ranks: 0.1 -> 0, the two 0.3 tie at (1+2)/2 = 1.5, 0.9 -> 3; scaled by 1/3
        s_rank = torch.tensor([1.5, 0.0, 1.5, 3.0], dtype=torch.float64) / 3
        a_rank = torch.full((4,), 1.5 / 3, dtype=torch.float64)  # all unseen: one tie
        assert_close(sampler.difficulty(), 0.75 * s_rank + 0.25 * a_rank)
        sampler.update(torch.tensor([3]), torch.tensor([5.0]))
        a_rank = torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=torch.float64) / 3
        assert_close(sampler.difficulty(), 0.75 * s_rank + 0.25 * a_rank)
        assert sampler.eligible(0).tolist() == [1]  # ceil(0.2 * 4) = 1
        assert EntropyCurriculumSampler(static, 2, 10, lam=0.0).eligible(5).tolist()[:3] == [
            1,
            0,
            2,
        ]

    def test_ema_update_in_order(self):
        sampler, _ = _sampler(n=5, ema=0.9)
        sampler.update(torch.tensor([2, 4]), torch.tensor([1.0, 3.0]))  # first observation: = loss
        sampler.update(torch.tensor([2]), torch.tensor([2.0]))
        sampler.update(torch.tensor([4, 4]), torch.tensor([0.0, 1.0]))  # repeats, in order
        state = sampler.state_dict()
        want4 = 0.9 * (0.9 * 3.0 + 0.1 * 0.0) + 0.1 * 1.0
        assert_close(
            state["adaptive"], torch.tensor([0, 0, 0.9 + 0.2, 0, want4], dtype=torch.float64)
        )
        assert state["seen"].tolist() == [False, False, True, False, True]

    def test_same_seed_same_batches(self):
        a, _ = _sampler(seed=3)
        b, _ = _sampler(seed=3)
        c, _ = _sampler(seed=4)
        for sampler in (a, b, c):
            sampler.update(torch.arange(0, 50, 3), torch.linspace(0, 1, 17))
        batches = [[s.sample(t).tolist() for t in range(30)] for s in (a, b, c)]
        assert batches[0] == batches[1] and batches[0] != batches[2]
        assert a.sample(7).tolist() == a.sample(7).tolist()  # a function of (seed, step, state)

    def test_with_replacement_when_eligible_is_small(self):
        sampler = EntropyCurriculumSampler(torch.arange(10.0), batch_size=6, warmup_steps=10)
        batch = sampler.sample(0)
        assert batch.shape == (6,) and set(batch.tolist()) <= {0, 1}

    def test_dataloader_yields_the_sampled_batches(self):
        sampler, _ = _sampler(n=30, batch_size=6, lam=0.5)
        data = TensorDataset(torch.arange(30).float(), torch.arange(30))
        loader = DataLoader(data, batch_sampler=sampler)
        assert len(loader) == 5
        ref, _ = _sampler(n=30, batch_size=6, lam=0.5)
        for epoch in range(2):
            for step, (xb, ib) in enumerate(loader):
                t = epoch * 5 + step
                assert ib.tolist() == ref.sample(t).tolist()
                assert torch.equal(xb, ib.float())
                losses = (ib.float() * 0.37) % 1.0
                sampler.update(ib, losses)
                ref.update(ib, losses)
        assert sampler.step == 10

    def test_distributed_sharding(self):
        world = 3
        shards = [_sampler(n=40, batch_size=6, num_replicas=world, rank=r)[0] for r in range(world)]
        single, _ = _sampler(n=40, batch_size=6)
        data = TensorDataset(torch.arange(40))
        loaders = [DataLoader(data, batch_sampler=s) for s in shards]
        assert all(len(lo) == len(single) == 7 for lo in loaders)
        per_rank = [[b[0].tolist() for b in lo] for lo in loaders]
        for step in range(7):
            whole = single.sample(step).tolist()
            for r in range(world):
                assert per_rank[r][step] == whole[r::world]
                assert len(per_rank[r][step]) == 2
            merged = sorted(i for r in range(world) for i in per_rank[r][step])
            assert merged == sorted(whole)

    def test_state_dict_and_set_epoch_resume(self):
        a, _ = _sampler()
        a.update(torch.arange(10), torch.rand(10, generator=torch.Generator().manual_seed(0)))
        first = [batch for _, batch in zip(range(3), iter(a))]
        b, _ = _sampler()
        b.load_state_dict(a.state_dict())
        assert list(a) == list(b)
        a.set_epoch(4)
        assert a.step == 4 * len(a) and next(iter(a)) == a.sample(4 * len(a)).tolist()
        assert len(first) == 3

    def test_bad_input(self):
        static = torch.rand(10)
        with pytest.raises(ValueError, match="static_difficulty"):
            EntropyCurriculumSampler(torch.rand(2, 5), 2, 10)
        with pytest.raises(ValueError, match="static_difficulty"):
            EntropyCurriculumSampler(torch.tensor([0.1, float("nan")]), 2, 10)
        with pytest.raises(ValueError, match="static_difficulty"):
            EntropyCurriculumSampler(torch.tensor([]), 2, 10)
        with pytest.raises(ValueError, match="batch_size"):
            EntropyCurriculumSampler(static, 0, 10)
        with pytest.raises(ValueError, match="warmup_steps"):
            EntropyCurriculumSampler(static, 2, 0)
        with pytest.raises(ValueError, match="lam"):
            EntropyCurriculumSampler(static, 2, 10, lam=1.5)
        with pytest.raises(ValueError, match="ema"):
            EntropyCurriculumSampler(static, 2, 10, ema=1.0)
        with pytest.raises(ValueError, match="c0"):
            EntropyCurriculumSampler(static, 2, 10, c0=0.0)
        with pytest.raises(ValueError, match="batch_size"):
            EntropyCurriculumSampler(static, 5, 10, num_replicas=2)
        with pytest.raises(ValueError, match="rank"):
            EntropyCurriculumSampler(static, 4, 10, num_replicas=2, rank=2)
        sampler = EntropyCurriculumSampler(static, 2, 10)
        with pytest.raises(ValueError, match="indices"):
            sampler.update(torch.tensor([3, 10]), torch.tensor([1.0, 2.0]))
        with pytest.raises(ValueError, match="indices"):
            sampler.update(torch.tensor([-1]), torch.tensor([1.0]))
        with pytest.raises(ValueError, match="losses"):
            sampler.update(torch.tensor([3, 4]), torch.tensor([1.0]))
        with pytest.raises(ValueError, match="losses"):
            sampler.update(torch.tensor([3]), torch.tensor([float("nan")]))
        with pytest.raises(TypeError, match="indices"):
            sampler.update(torch.tensor([3.0]), torch.tensor([1.0]))
        with pytest.raises(ValueError, match="step"):
            sampler.eligible(-1)
        with pytest.raises(ValueError, match="adaptive"):
            sampler.load_state_dict(
                {"step": 0, "adaptive": torch.zeros(3), "seen": torch.zeros(10)}
            )
