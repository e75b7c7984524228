"""Registry records: optimal transport (family ``ot``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="sparse-ot",
        title="Sparsity-Constrained Optimal Transport",
        authors="Tianlin Liu, Joan Puigcerver, Mathieu Blondel",
        year=2022,
        venue="ICLR 2023",
        family="ot",
        spec="ot_optim_nn.md §1",
        arxiv="2209.15466",
        code="PythonOT/POT",
        api=(
            "inforeg.ot.sparse_ot",
            "inforeg.ot.SparsityConstrainedOT",
            "inforeg.ot.delta_k",
            "inforeg.ot.projection_sparse_simplex",
            "inforeg.ot.smooth_ot",
            "inforeg.ot.SmoothOT",
        ),
        experiment="sparse-ot-experts",
        benchmarks=("sparse-ot",),
        status="reproduced",
        reference_tests=("tests/ot/test_sparse.py",),
        notes=(
            "No dedicated repo; reference implementation contributed by the first author to POT "
            "(PR #459, ot/smooth.py), NumPy + scipy L-BFGS-B without gradients. inforeg ports the "
            "same dual/semi-dual maths to torch (batched, envelope gradients w.r.t. cost and "
            "marginals); the input of delta_k is not overwritten (POT's delta_Omega overwrites "
            "it). Where k binds, row marginals hold only approximately (as in POT). Experiment "
            "(protocol 2): capacity and sparsity are unit tests; the rounded-plan cost claims held "
            "at gamma 10 and 100; see results/sparse-ot-experts.json for the MoE routing claims."
        ),
    ),
    Record(
        key="eot-shape-correspondence",
        title="Integrating Efficient Optimal Transport and Functional Maps For Unsupervised Shape Correspondence Learning",
        authors="Tung Le, Khai Nguyen, Shanlin Sun, Nhat Ho, et al.",
        year=2024,
        venue="CVPR 2024",
        family="ot",
        spec="ot_optim_nn.md §2",
        arxiv="2403.01781",
        code="Tungthanhlee/EOT-Correspondence",
        api=(
            "inforeg.ot.SlicedWassersteinLoss",
            "inforeg.ot.LogSinkhorn",
            "inforeg.ot.log_sinkhorn_correspondence",
            "inforeg.ot.sliced_wasserstein",
            "inforeg.ot.max_sliced_wasserstein",
            "inforeg.ot.wasserstein_1d",
            "inforeg.ot.random_projections",
            "inforeg.ot.sinkhorn",
            "inforeg.ot.Sinkhorn",
            "inforeg.ot.sinkhorn_divergence",
            "inforeg.ot.SinkhornDivergence",
            "inforeg.ot.OTResult",
        ),
        experiment="sliced-point-clouds",
        benchmarks=("sinkhorn", "sliced"),
        status="verified",
        reference_tests=("tests/ot/test_sliced.py", "tests/ot/test_sinkhorn.py"),
        notes=(
            "SW loss as the authors' class SW (losses/ot_loss.py): fresh unit directions per "
            "forward and batch element, per-pair SW_p = (mean_L W_p^p)^(1/p), mean over the "
            "batch; bidirectional SUMS the (X, P_xy Y) and (P_yx X, Y) terms; defaults L=200, "
            "p=2; the paper trains with weight 100 and bidirectional=False, refinement uses "
            "bidirectional=True (inforeg's weight default is 1). Refinement as "
            "adaptive_refinement_one.py: squared feature distances / mean, log P = -d/(2 sigma^2), "
            "sigma 0.1, 10 x (row, column) log-normalisation, then P_xy = row-normalised plan and "
            "P_yx = its column normalisation transposed; the authors detach both before the SW "
            "loss. Also here: the general log-domain Sinkhorn (POT sinkhorn_log agreement) and "
            "geomloss-convention Sinkhorn divergence (cost ||x-y||^2/2 for p=2, eps = blur^p), "
            "sliced/max-sliced Wasserstein checked against POT with identical projections. "
            "The refinement claim is fragile: a rounding-level change of the SW gradient "
            "(safe_root, 2026-12-07) moved 3 of 10 CE + SW seeds by up to 0.023 and the verdict "
            "from inconclusive (6/10, +0.011 [-0.0045, +0.027]) to held (8/10, +0.0082 "
            "[+0.0028, +0.0137]); read it as a small effect at the edge of this run's power."
        ),
    ),
]
