"""The Triton back end is optional and lazy: importing inforeg.rl never imports Triton."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from inforeg.rl import _triton_entropy


def test_import_and_cpu_use_never_import_triton(tmp_path):
    # A `triton` that fails loudly on import: importing inforeg.rl and running the CPU paths must
    # not touch it (the old module-level `import triton` raised here).
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text("raise RuntimeError('triton imported')\n")
    code = textwrap.dedent(
        """
        import sys
        import torch
        import inforeg.rl as rl
        z = torch.randn(3, 70)
        rl.token_entropy(z)
        rl.selective_log_softmax(z, torch.tensor([0, 1, 2]))
        assert "triton" not in sys.modules
        """
    )
    env_path = f"{tmp_path}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_launch_block_is_the_next_power_of_two_within_16_and_4096():
    assert [_triton_entropy._launch(v)[0] for v in (1, 16, 17, 1000, 1024, 1025, 151936)] == [
        16,
        16,
        32,
        1024,
        1024,
        2048,
        4096,
    ]
    assert _triton_entropy._launch(151936)[1] == 8 and _triton_entropy._launch(100)[1] == 4
