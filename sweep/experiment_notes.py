"""What each MLflow experiment is for: shown as its description in the MLflow UI."""

DESCRIPTION = (
    "Runs of the Mixer Symmetry Lab: tests of 'Hierarchical Associative Memory, Parallelized "
    "MLP-Mixer, and Symmetry Breaking' (Karakida, Ota, Taki, arXiv:2406.12220). Models: "
    "vanilla (serial Mixer), para (ParaMixer), sym (SymMixer, tied W / W^T: the Hopfield "
    "model), asym (AsymMixer(lam): symmetric + V, penalty lam ||V||^2). Parent runs are "
    "sweeps; child runs are jobs named MODEL[-lamLAM]-dDEPTH-wDIM-sSEED (e.g. "
    "asym-lam1e-4-d2-w64-s0). Metrics: test_acc (%), test_loss, train_loss, symmetry/* "
    "(weight symmetry per block) per epoch."
)
