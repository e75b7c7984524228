"""Registry records: robustness certification (family ``robust``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="dual-randomized-smoothing",
        title="Mitigating the Curse of Dimensionality for Certified Robustness via Dual Randomized Smoothing",
        authors="Song Xia, Yi Yu, Xudong Jiang, Henghui Ding",
        year=2024,
        venue="ICLR 2024",
        family="robust",
        spec="remaining.md §10",
        arxiv="2404.09586",
        code="xiasong0501/DRS",
        api=(
            "inforeg.robust.DualRandomizedSmoothing",
            "inforeg.robust.RandomizedSmoothing",
            "inforeg.robust.dual_certified_radius",
            "inforeg.robust.certified_radius",
            "inforeg.robust.clopper_pearson_lower",
            "inforeg.robust.dual_smoothing_masks",
            "inforeg.robust.dual_subimage",
        ),
        experiment="drs-digits",
        status="verified",
        reference_tests=("tests/robust/test_certification.py",),
        notes=(
            "Follows the released core1_lowres_2.py for the masks (flipped first column pair, "
            "quirk=True) and the max-pool-and-add sub-images. Default radius: sigma (Phi^-1 p_l + "
            "Phi^-1 p_r) / sqrt(2) (combine='conservative'), which holds for the summed vote and "
            "is tight for half-space base classifiers; the CIFAR code's sqrt(R_l^2 + R_r^2) "
            "(combine='official') over-claims when p_l != p_r (0.5 vs 0.309 at p = Phi(2), 0.4, "
            "sigma 0.25) and is kept to reproduce the released numbers; the authors' ImageNet "
            "script logs (R_l + R_r) / sqrt(2) with R_i clipped at 0 (checked at xiasong0501/DRS "
            "f98595d). The paper's radius is the conservative one: the authors' OpenReview "
            "response (forum C1sQBG6Sqp) gives R = sigma / sqrt(2) (Phi^-1 p_l + Phi^-1 p_r) "
            "(Eq. 11, tightness in Appendix A.5); the paper's masks are clean diagonal 2x2 "
            "kernels (quirk=False). "
            "PREDICT sums the branches' "
            "votes (the released predict refers to a missing classifier). Clopper-Pearson and the "
            "binomial test are pure Python, checked against SciPy in "
            "tests/robust/test_certification.py. drs-digits (10 seeds): DRS did not beat RS on "
            "8x8 digits (official ACR -0.042 [-0.047, -0.037] at sigma 0.25, -0.007 [-0.011, "
            "-0.003] at 0.5)."
        ),
    ),
]
