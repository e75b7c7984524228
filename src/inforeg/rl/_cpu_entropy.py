r"""Fused one-pass CPU kernels (C, compiled at first use) for the token entropy and the row
log-sum-exp, with the same interface as :mod:`inforeg.rl._triton_entropy`; also SIREN's
sort-free top-p entropy (:func:`top_p_forward`, :func:`top_p_backward`, used by
:func:`inforeg.rl.siren.top_p_entropy`).

Used by :mod:`inforeg.rl.entropy` for contiguous float32/bfloat16 CPU tensors; float64, float16,
non-contiguous rows and machines without a C compiler take the chunked PyTorch path. Set
``INFOREG_DISABLE_CPU_KERNEL=1`` to force that path.

The kernel (``_cpu_entropy.c``, plain C with no Python or torch headers) reads each row once in
L1-sized blocks with an online softmax in base 2 and a vectorised polynomial ``2^x`` (about
1.6 ulp); see the comments in the C file. The backward pass reads the logits once and writes
the gradient once, as the Triton kernels do. Rows are split over ``torch.get_num_threads()``
POSIX threads.

Build: the first call compiles the source with the C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into ``$INFOREG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/inforeg`` or
``~/.cache/inforeg``), under a name that hashes the source, the flags, the compiler and the CPU
(the build uses ``-march=native``), and loads it with :mod:`ctypes`. This takes under a second
and happens once per machine; if it fails, one warning says why and the PyTorch path is used.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "entropy_backward",
    "entropy_forward",
    "lse_forward",
    "selective_backward",
    "top_p_backward",
    "top_p_forward",
    "usable",
]

_SOURCE = Path(__file__).with_name("_cpu_entropy.c")
_COMMON = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-pthread"]
# tuned build first (the host's vector units, 512-bit vectors where it has them), then a
# portable one for compilers or CPUs that reject those flags
_FLAG_SETS = (
    [*_COMMON, "-march=native", "-mprefer-vector-width=512", "-fopenmp-simd"],
    _COMMON,
)
_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}
_MIN_ELEMENTS_PER_THREAD = 1 << 19  # below this, starting a thread costs more than it saves
# Below this vocabulary size the per-row work of the kernel (a padded vector tail, the double
# precision row statistics) costs more than the chunked PyTorch path, which vectorises across
# rows: measured on 4M logits, 2 threads: V = 10 kernel 22 ms vs 12-18 ms; V = 64 4-5 ms vs
# 8-12 ms; V = 2048 0.9 ms vs 3-6 ms.
_MIN_VOCAB = 64

_lock = threading.Lock()
_state: dict[str, ctypes.CDLL | None] = {}


def _disabled() -> bool:
    return os.environ.get("INFOREG_DISABLE_CPU_KERNEL", "0") not in ("", "0")


def usable(z: Tensor) -> bool:
    """True for a contiguous CPU float32/bfloat16 ``(rows, V)`` tensor with ``V >= 64`` when the
    kernel is built (or builds)."""
    return (
        z.device.type == "cpu"
        and z.dtype in _DTYPE_CODES
        and z.shape[-1] >= _MIN_VOCAB
        and z.is_contiguous()
        and not _disabled()
        and library() is not None
    )


def _cache_dirs() -> list[Path]:
    """Where the built library may live: ``$INFOREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/inforeg``
    or ``~/.cache/inforeg``; then a per-user folder in the temporary directory."""
    dirs = []
    root = os.environ.get("INFOREG_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        dirs.append(
            Path(root) if root else (Path(xdg) if xdg else Path.home() / ".cache") / "inforeg"
        )
    except RuntimeError:  # no home directory
        pass
    uid = os.getuid() if hasattr(os, "getuid") else 0
    dirs.append(Path(tempfile.gettempdir()) / f"inforeg-kernels-{uid}")
    return dirs


def _private_dir(directory: Path) -> None:
    """Create ``directory`` (owner-only) and refuse one owned by another user: a library loaded
    from it runs in this process."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if hasattr(os, "getuid") and directory.stat().st_uid != os.getuid():
        raise OSError(f"{directory} belongs to another user")


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and feature flags (Linux), else the
    platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return platform.processor()


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return shutil.which(cc)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _build(cc: str, flags: list[str], target: Path) -> str | None:
    """Compile into ``target`` (atomically: a temporary name, then a rename). Returns the
    compiler's error text on failure, else None."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, *flags, str(_SOURCE), "-o", tmp, "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            return proc.stderr.strip()[-2000:] or f"exit status {proc.returncode}"
        os.replace(tmp, target)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    lib.inforeg_row_stats.argtypes = [p, i32, i64, i64, i64, f64, p, p, i32]
    lib.inforeg_row_stats.restype = i32
    lib.inforeg_row_backward.argtypes = [p, p, i32, i64, i64, i64, f64, p, p, p, p, i32]
    lib.inforeg_row_backward.restype = i32
    lib.inforeg_top_p_forward.argtypes = [p, i32, i64, i64, i64, f64, f64, i64, p, p, p, p, p, i32]
    lib.inforeg_top_p_forward.restype = i32
    lib.inforeg_top_p_backward.argtypes = [p, p, i32, i64, i64, i64, f64, p, p, p, p, p, i32]
    lib.inforeg_top_p_backward.restype = i32
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on first use; None where it cannot be built."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        _state["lib"] = None
        cc = _compiler()
        if cc is None:
            warnings.warn(
                "inforeg: no C compiler found (set CC), so token_entropy and "
                "selective_log_softmax use the slower chunked PyTorch path on CPU",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        source = _SOURCE.read_bytes()
        errors = []
        for flags in _FLAG_SETS:
            key = hashlib.sha256(
                b"\0".join(
                    [source, " ".join(flags).encode(), cc.encode(), _cpu_signature().encode()]
                )
            ).hexdigest()[:20]
            for directory in _cache_dirs():
                target = directory / f"cpu_entropy-{key}.so"
                try:
                    _private_dir(directory)
                    if not target.exists():
                        error = _build(cc, flags, target)
                        if error is not None:
                            errors.append(f"{cc} {' '.join(flags)}: {error}")
                            break  # these flags fail: the next directory will not help
                    _state["lib"] = _load(target)
                    return _state["lib"]
                except (OSError, subprocess.SubprocessError) as exc:
                    errors.append(f"{target}: {exc}")
        warnings.warn(
            "inforeg: could not build the fused CPU entropy kernel, so token_entropy and "
            "selective_log_softmax use the slower chunked PyTorch path on CPU:\n"
            + "\n".join(errors),
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _threads(z: Tensor) -> int:
    return max(1, min(torch.get_num_threads(), z.numel() // _MIN_ELEMENTS_PER_THREAD))


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _forward(z: Tensor, inv_t: float, want_ent: bool) -> tuple[Tensor | None, Tensor]:
    lib = library()
    assert lib is not None, "usable() is checked first"
    rows, vocab = z.shape
    lse = torch.empty(rows, dtype=torch.float64)
    ent = torch.empty(rows, dtype=torch.float32) if want_ent else None
    lib.inforeg_row_stats(
        z.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, inv_t,
        lse.data_ptr(), _ptr(ent), _threads(z),
    )  # fmt: skip
    return ent, lse


def entropy_forward(z: Tensor, inv_t: float) -> tuple[Tensor, Tensor]:
    """``(H, lse)`` per row of ``z (R, V)`` at temperature ``1 / inv_t``: H float32, lse float64
    (so that ``z / T - lse`` keeps the digits of a log-probability near 0 at large logits, and
    the backward rebuilds p to float32 rounding; see ``lse_ref`` in the C file)."""
    ent, lse = _forward(z, inv_t, True)
    assert ent is not None
    return ent, lse


def lse_forward(z: Tensor, inv_t: float) -> Tensor:
    """``logsumexp(z / T)`` per row, float64."""
    return _forward(z, inv_t, False)[1]


def _gradient_setup(z: Tensor, grad: Tensor) -> tuple[ctypes.CDLL, Tensor, Tensor]:
    """The library, an empty gradient like ``z`` and the incoming ``grad`` as float32, for the
    backward entry points."""
    lib = library()
    assert lib is not None, "usable() is checked first"
    gz = torch.empty(z.shape, dtype=z.dtype)
    return lib, gz, grad.to(torch.float32).contiguous()


def _backward(
    z: Tensor, lse: Tensor, grad: Tensor, inv_t: float, ent: Tensor | None, tok: Tensor | None
) -> Tensor:
    lib, gz, g = _gradient_setup(z, grad)
    rows, vocab = z.shape
    lse = lse.to(torch.float64).contiguous()
    ent = None if ent is None else ent.to(torch.float32).contiguous()
    tok = None if tok is None else tok.to(torch.int64).contiguous()
    lib.inforeg_row_backward(
        z.data_ptr(), gz.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, inv_t,
        lse.data_ptr(), _ptr(ent), g.data_ptr(), _ptr(tok), _threads(z),
    )  # fmt: skip
    return gz


def entropy_backward(z: Tensor, lse: Tensor, ent: Tensor, grad: Tensor, inv_t: float) -> Tensor:
    """``grad * dH/dz`` for ``z (R, V)``, in the dtype of ``z``."""
    return _backward(z, lse, grad, inv_t, ent, None)


def selective_backward(z: Tensor, tok: Tensor, lse: Tensor, grad: Tensor, inv_t: float) -> Tensor:
    """``grad * d log p_tok / dz`` for ``z (R, V)``, in the dtype of ``z``."""
    return _backward(z, lse, grad, inv_t, None, tok)


def top_p_forward(
    z: Tensor, inv_t: float, top_p: float, top_k: int, want_full: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """SIREN's top-p entropy per row of ``z (R, V)`` without a sort: ``(H, lse_kept, gt, req,
    H_full)``, float32 (``lse_kept`` float64, ``req`` int64). The kept set of a row is ``{z > gt}`` plus the first
    ``req`` values equal to ``gt`` in index order (``req = -1``: the top-1 token alone);
    ``lse_kept`` is the log-sum-exp of ``z / T`` over the kept set. ``H_full`` (when
    ``want_full``, else None) is the entropy of the whole row, :func:`entropy_forward`'s value,
    from the kernel's first pass over the row."""
    lib = library()
    assert lib is not None, "usable() is checked first"
    rows, vocab = z.shape
    ent, gt = (torch.empty(rows, dtype=torch.float32) for _ in range(2))
    lse = torch.empty(rows, dtype=torch.float64)
    req = torch.empty(rows, dtype=torch.int64)
    full = torch.empty(rows, dtype=torch.float32) if want_full else None
    lib.inforeg_top_p_forward(
        z.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, inv_t, top_p, top_k,
        lse.data_ptr(), ent.data_ptr(), gt.data_ptr(), req.data_ptr(), _ptr(full), _threads(z),
    )  # fmt: skip
    return ent, lse, gt, req, full


def top_p_backward(
    z: Tensor, lse: Tensor, ent: Tensor, gt: Tensor, req: Tensor, grad: Tensor, inv_t: float
) -> Tensor:
    """``grad * dH/dz`` of :func:`top_p_forward`'s entropy (0 outside the kept set)."""
    lib, gz, g = _gradient_setup(z, grad)
    rows, vocab = z.shape
    lib.inforeg_top_p_backward(
        z.data_ptr(), gz.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, inv_t,
        lse.data_ptr(), ent.data_ptr(), g.data_ptr(), gt.data_ptr(), req.data_ptr(), _threads(z),
    )  # fmt: skip
    return gz


# ---- fused LM head (inforeg.rl.fused_linear): tiles of logits, see the end of the C file ----


def _lm_library() -> ctypes.CDLL:
    lib = library()
    assert lib is not None, "usable() is checked first"
    if not getattr(lib, "_inforeg_lm_typed", False):  # argtypes set once per library
        p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
        lib.inforeg_lm_head_stats.argtypes = [p, i32, i64, i64, i64, i64, f64, p, p, p, p, i32]
        lib.inforeg_lm_head_stats.restype = i32
        lib.inforeg_lm_head_backward.argtypes = [
            p, p, i32, i64, i64, i64, i64, f64, p, p, p, p, p, i32,
        ]  # fmt: skip
        lib.inforeg_lm_head_backward.restype = i32
        setattr(lib, "_inforeg_lm_typed", True)  # noqa: B010 (CDLL has no such attribute)
    return lib


def lm_head_stats(
    z: Tensor,
    col0: int,
    inv_t: float,
    tok: Tensor,
    run_lse: Tensor,
    run_ent: Tensor,
    picked: Tensor,
) -> None:
    """Merge the row statistics of the tile ``z (R, Vb)``, columns ``[col0, col0 + Vb)`` of the
    logits, into the running float64 ``(R,)`` ``run_lse`` and ``run_ent`` of the rows (start:
    ``-inf`` and 0; a block of only ``-inf`` logits adds nothing), and set the float32
    ``picked[r] = z[r, tok[r] - col0]`` where that column is in the tile. ``tok`` is contiguous
    int64."""
    rows, vocab = z.shape
    _lm_library().inforeg_lm_head_stats(
        z.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, col0, inv_t, tok.data_ptr(),
        run_lse.data_ptr(), run_ent.data_ptr(), picked.data_ptr(), _threads(z),
    )  # fmt: skip


def lm_head_backward(
    z: Tensor,
    col0: int,
    inv_t: float,
    tok: Tensor,
    lse: Tensor,
    ent: Tensor,
    g_logp: Tensor,
    g_ent: Tensor,
) -> Tensor:
    """Overwrites the tile ``z (R, Vb)`` (columns ``[col0, col0 + Vb)``) with the gradient of
    ``sum(g_logp * log p[tok] + g_ent * H)`` with respect to it, from ``lse`` and ``ent`` of the
    whole rows (all ``(R,)`` contiguous: ``lse`` float64, the others float32, ``tok`` int64),
    and returns it."""
    rows, vocab = z.shape
    _lm_library().inforeg_lm_head_backward(
        z.data_ptr(), z.data_ptr(), _DTYPE_CODES[z.dtype], rows, vocab, vocab, col0, inv_t,
        tok.data_ptr(), lse.data_ptr(), ent.data_ptr(), g_logp.data_ptr(), g_ent.data_ptr(),
        _threads(z),
    )  # fmt: skip
    return z
