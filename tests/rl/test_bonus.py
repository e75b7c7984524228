"""EntropyBonus against a brute-force float64 entropy, TRL's token-mean form and bad input."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import EntropyBonus, aggregate
from tests._helpers import assert_close, gradcheck64


def brute_entropy(logits, temperature):
    p = torch.softmax(logits.double() / temperature, dim=-1)
    return -(p * torch.log(p)).sum(-1)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_value_is_minus_coef_times_aggregated_entropy(device, dtype, mode):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g, dtype=dtype).to(device)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], device=device)
    loss, stats = EntropyBonus(coef=0.3, mode=mode, temperature=0.7)(logits, mask)
    ent = brute_entropy(logits.cpu(), 0.7).to(device)
    assert_close(loss, (-0.3 * aggregate(ent, mask, mode)).to(dtype))
    # TRL's entropy_coef term: the mean entropy over the active tokens
    trl = (ent * mask).sum() / mask.sum()
    assert_close(stats["entropy"], trl.to(dtype))
    assert float(stats["coefficient"]) == pytest.approx(0.3)


def test_uniform_logits_give_log_vocab():
    loss, stats = EntropyBonus(coef=1.0)(torch.zeros(2, 3, 5))
    assert float(stats["entropy"]) == pytest.approx(torch.log(torch.tensor(5.0)).item())
    assert float(loss) == pytest.approx(-float(stats["entropy"]))


def test_gradient():
    logits = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    gradcheck64(lambda z: EntropyBonus(coef=0.5, temperature=1.3)(z, mask)[0], logits)


def test_padded_positions_do_not_count():
    logits = torch.randn(1, 4, 6)
    mask = torch.tensor([[1, 1, 0, 0]])
    other = logits.clone()
    other[0, 2:] = 1e4 * torch.randn(2, 6)
    a, _ = EntropyBonus()(logits, mask)
    b, _ = EntropyBonus()(other, mask)
    assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"coef": -1.0}, "coef"), ({"mode": "sum"}, "mode"), ({"temperature": 0.0}, "temperature")],
)
def test_bad_settings_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EntropyBonus(**kwargs)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="logits"):
        EntropyBonus()(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="mask"):
        EntropyBonus()(torch.zeros(2, 3, 4), torch.ones(2, 4))


def test_padded_positions_with_all_masked_logits_leave_the_loss_finite():
    # A padded position whose logits are all -inf (logits.masked_fill(pad, -inf)) has no
    # distribution; with the mask excluding it, the loss and the gradient that reaches the
    # model's logits are finite (the loss was NaN: 0 * NaN in the masked sum).
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 3, 5, generator=g, requires_grad=True)
    pad = torch.tensor([[False, False, False], [False, False, True]])
    logits = raw.masked_fill(pad[..., None], float("-inf"))
    loss, stats = EntropyBonus(0.5)(logits, mask=~pad)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(stats["entropy"])
    assert torch.isfinite(raw.grad).all() and not raw.grad[1, 2].any()
    ref, _ = EntropyBonus(0.5)(raw.detach(), mask=~pad)
    torch.testing.assert_close(loss.detach(), ref)
