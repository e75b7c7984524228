"""Registry records: modules and parametrisations (family ``nn``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="mds-s2",
        title="Dual Semantic Knowledge Composed Multimodal Dialog Systems",
        authors="Xiaolin Chen, Xuemeng Song, Yinwei Wei, Liqiang Nie, et al.",
        year=2023,
        venue="SIGIR 2023",
        family="nn",
        spec="remaining.md §5",
        arxiv="2305.09990",
        api=(
            "inforeg.nn.LatentQueryAlignmentLoss",
            "inforeg.nn.LatentQueryPooling",
            "inforeg.nn.latent_query_alignment",
        ),
        experiment="latent-query-alignment-seq",
        status="implemented",
        notes=(
            "Only the latent-query semantic-alignment regulariser (not the dialog system). "
            "UNVERIFIED: the paper says code was released but no repository was found; only the "
            "abstract's description is verified. Pooling (cross-attention from M learnable "
            "queries, no positions), distances (mse/cosine/kl), detach_target and defaults "
            "M = 8, lambda = 0.1 are inforeg's design, so the record stays implemented. "
            "latent-query-alignment-seq (10 seeds): inconclusive, token accuracy +0.0013 "
            "[-0.0035, 0.0062], exact-sequence +0.0064 [-1e-7, 0.0128]."
        ),
    ),
    Record(
        key="pgnm",
        title="Policy Gradient-Driven Noise Mask",
        authors="Mehmet Can Yavuz, Yang Yang",
        year=2024,
        venue="arXiv preprint",
        family="nn",
        spec="remaining.md §6",
        arxiv="2406.14568",
        code="ogrenenmakine/Policy-Gradient-Driven-Noise-Mask",
        api=(
            "inforeg.nn.BetaNoiseMaskPolicy",
            "inforeg.nn.beta_mask_log_prob",
            "inforeg.nn.reinforce_mask_loss",
            "inforeg.nn.noise_mask_from_cells",
            "inforeg.nn.sample_mask_cells",
        ),
        experiment="noise-mask-digits",
        status="verified",
        reference_tests=("tests/nn/test_noise_mask_policy.py",),
        notes=(
            "Beta log-density against scipy.stats.beta, the blur against a brute-force "
            "reflect-padded convolution, both losses' values and gradients in closed form. "
            "reinforce_mask_loss defaults to the paper's REINFORCE (batch-mean baseline, CE "
            "detached); mode='code' is the released objective mean(logsumexp_j log pi) * "
            "mean(CE), back-propagated into both networks. Log-concentrations clamped to +-10. "
            "README says the repo moved to convergedmachine/...; venue beyond arXiv not verified. "
            "noise-mask-digits (10 seeds): not reproduced at 8x8, clean accuracy vs conventional "
            "inconclusive (REINFORCE -0.0013 [-0.0044, 0.0018], released objective -0.0035 "
            "[-0.0071, 0.00004]); masked arms are more robust to occlusion (+0.012)."
        ),
    ),
    Record(
        key="crrelu",
        title="A Method on Searching Better Activation Functions",
        authors="Haoyuan Sun, Zihao Wu, Bo Xia, Pu Chang, et al.",
        year=2024,
        venue="arXiv preprint",
        family="nn",
        spec="remaining.md §2",
        arxiv="2405.12954",
        api=("inforeg.nn.crrelu", "inforeg.nn.CRReLU"),
        experiment="crrelu-digits",
        status="verified",
        reference_tests=("tests/nn/test_crrelu.py",),
        notes=(
            "EAFO / CRReLU; acceptance venue unverified. No authors' code; the formula and "
            "eps0 = 0.01 agree with independent public implementations. Reference test: the "
            "spec's closed-form values and a pointwise float64 formula."
        ),
    ),
    Record(
        key="dlv-irn",
        title="Enhancing Image Rescaling using Dual Latent Variables in Invertible Neural Network",
        authors="Min Zhang, Zhihong Pan, Xin Zhou, C.-C. Jay Kuo",
        year=2022,
        venue="ACM MM 2022",
        family="nn",
        spec="remaining.md §3",
        arxiv="2207.11844",
        code="pkuxmq/Invertible-Image-Rescaling",
        api=("inforeg.nn.gaussian_latent_loss", "inforeg.nn.DualLatentPrior"),
        experiment="dlv-rescaling-digits",
        status="implemented",
        notes=(
            "No DLV-IRN code; code field is the IRN base, whose latent loss (sum z^2 / B) is "
            "followed. The DLV mechanism (prior on the inverse pass's downscaling latent, "
            "weight 1) is UNVERIFIED (abstract only)."
        ),
    ),
    Record(
        key="qlae",
        title="Disentanglement via Latent Quantization",
        authors="Kyle Hsu, Will Dorrell, James C. R. Whittington, Jiajun Wu, et al.",
        year=2023,
        venue="NeurIPS 2023",
        family="nn",
        spec="dependence_and_estimators.md §9",
        arxiv="2305.18378",
        code="kylehkhsu/latent_quantization",
        api=(
            "inforeg.nn.ScalarCodebookQuantizer",
            "inforeg.nn.scalar_quantize",
            "inforeg.nn.qlae_param_groups",
            "inforeg.estimators.infomec",
        ),
        experiment="qlae-synthetic",
        status="verified",
        reference_tests=(
            "tests/nn/test_latent_quantization.py",
            "tests/estimators/test_infomec.py",
        ),
        extra_families=("estimators",),
        notes=(
            "infomec lives in inforeg.estimators; infoe_fit fits InfoE's regressions on another "
            "split (the authors fit and score on the same data). Continuous-latent NMI uses "
            "inforeg's Ross "
            "estimator (k = 10, 1e-10 jitter with a fixed seed) instead of sklearn's "
            "mutual_info_classif with its random jitter, so it is deterministic; InfoE's "
            "unpenalised logistic regression is spelled C=inf (sklearn >= 1.8). The paper's "
            "separate QLAELoss is not a class here: the quantiser returns both losses and the "
            "caller weights them (0.01 each in the paper)."
        ),
    ),
    Record(
        key="attentive-waveblock",
        title="Attentive WaveBlock: Complementarity-enhanced Mutual Networks for Unsupervised Domain Adaptation in Person Re-identification and Beyond",
        authors="Wenhao Wang, Fang Zhao, Shengcai Liao, Ling Shao",
        year=2020,
        venue="IEEE Transactions on Image Processing",
        family="nn",
        spec="remaining.md §1",
        arxiv="2006.06525",
        code="WangWenhao0716/Attentive-WaveBlock",
        api=(
            "inforeg.nn.wave_block",
            "inforeg.nn.WaveBlock",
            "inforeg.nn.AttentiveWaveBlock",
            "inforeg.nn.CBAM",
            "inforeg.nn.NonLocalBlock2d",
        ),
        experiment="waveblock-mutual-digits",
        status="verified",
        reference_tests=("tests/nn/test_wave_block.py", "tests/nn/test_feature_attention.py"),
        notes=(
            "Journal version IEEE TIP 2022 (DOI 10.1109/TIP.2022.3140614). Strip drawn from a "
            "torch.Generator (code: Python random). CBAM / non-local checked against "
            "re-implementations in the code's form; the non-local product is reassociated "
            "(no N x N matrix)."
        ),
    ),
    Record(
        key="weight-compander",
        title="Weight Compander: A Simple Weight Reparameterization for Regularization",
        authors="Rinor Cakaj, Jens Mehnert, Bin Yang",
        year=2023,
        venue="IJCNN 2023",
        family="nn",
        spec="remaining.md §7",
        arxiv="2306.16993",
        api=(
            "inforeg.nn.compand",
            "inforeg.nn.WeightCompander",
            "inforeg.nn.apply_weight_compander",
        ),
        experiment="compander-digits",
        status="verified",
        reference_tests=("tests/nn/test_weight_compander.py",),
        notes=(
            "No code released. Checked against the authors' PDF (rinorcakaj.github.io, "
            "files/WC_IJCNN_2023.pdf; venue IJCNN 2023 from the same site): w = a arctan(v / b) "
            "(Eq. 1), latent init v = b tan(w / a) (Eq. 4), a and b fixed by default (learnable "
            "per layer is the paper's 'fine' extension), weight decay on w with fixed a, b and on "
            "v with learned ones. Defaults a = b = 1 are the paper's Fig. 2 curve; the paper "
            "grid-searches a, b in [0.5, 1] per model. Powerpropagation's modified Adam step is "
            "not implemented (the paper's experiments use SGD). Until 2026-12 inforeg shipped a "
            "mu-law curve instead (the paper had not been read). compander-digits (protocol 2, "
            "10 seeds, SGD, regime present: plain gap 0.056): test accuracy inconclusive "
            "(-0.0010 [-0.0091, +0.0071]), fewer near-zero weights inconclusive (-0.045 [-0.104, "
            "+0.014]). Caveat: the plain MLP chose the largest weight decay of its grid (0.01) "
            "in 8 of 10 seeds while the compander's was fixed at 0.001, so neither arm's tuning "
            "reached an interior optimum."
        ),
    ),
    Record(
        key="lpn",
        title="What's in a Prior? Learned Proximal Networks for Inverse Problems",
        authors="Zhenghan Fang, Sam Buchanan, Jeremias Sulam",
        year=2023,
        venue="ICLR 2024",
        family="nn",
        spec="remaining.md §4",
        arxiv="2310.14344",
        code="ZhenghanFang/learned-proximal-networks",
        api=(
            "inforeg.nn.LearnedProximalNet",
            "inforeg.nn.ICNNPotential",
            "inforeg.nn.proximal_matching_loss",
            "inforeg.nn.ProximalMatchingLoss",
            "inforeg.nn.prox_matching_gamma",
        ),
        experiment="lpn-laplace-1d",
        status="reproduced",
        reference_tests=("tests/nn/test_learned_proximal_network.py",),
        notes=(
            "Vector (MLP) LPN of the paper's 1-D experiment, any dim; the convolutional MNIST "
            "network is not included. psi checked against its equations, f = grad psi by finite "
            "differences, convexity oracles (symmetric PSD Jacobian, tangent-plane prox "
            "property), the learned prior against its closed form at f(y), the gamma schedule "
            "against the authors' table. The loss uses the squared distance (finite gradient at "
            "zero, unlike the code's sqrt); weights are clipped at construction. lpn-laplace-1d "
            "(10 seeds, hidden 32 and a 10x shorter schedule than the paper): proximal matching "
            "is closer to the MAP soft-threshold than L1 (+0.072 [0.056, 0.087]) and L2 (+0.118 "
            "[0.102, 0.133]) LPNs in 10/10 seeds (MAD 0.094 vs 0.165 / 0.211)."
        ),
    ),
]
