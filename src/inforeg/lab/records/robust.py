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
        status="implemented",
        notes=(
            "Follows the released core1_lowres_2.py: masks with its flipped first column pair "
            "(quirk=True), max-pool-and-add sub-images, radius sqrt(R_l^2 + R_r^2) "
            "(combine='official'); combine='conservative' gives sigma (Phi^-1 p_l + Phi^-1 p_r) / "
            "sqrt(2), what a Lipschitz argument proves for the summed vote. The paper's theorem was "
            "not read (UNVERIFIED), so the record stays implemented. PREDICT sums the branches' "
            "votes (the released predict refers to a missing classifier). Clopper-Pearson and the "
            "binomial test are pure Python, checked against SciPy in "
            "tests/robust/test_certification.py. drs-digits (10 seeds): DRS did not beat RS on "
            "8x8 digits (official ACR -0.042 [-0.047, -0.037] at sigma 0.25, -0.007 [-0.011, "
            "-0.003] at 0.5)."
        ),
    ),
]
