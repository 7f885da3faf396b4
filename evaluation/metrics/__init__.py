"""disentanglement_lib-compatible metrics, one per module.

Every metric has disentanglement_lib's signature
``compute_x(ground_truth_data, representation_function, random_state, **settings) -> dict``
and is a gin configurable under disentanglement_lib's name (``beta_vae_sklearn``,
``factor_vae_score``, ``mig``, ``dci``, ``sap_score``, ``modularity_explicitness``,
``irs``); the three data arguments are on the denylist. Defaults are the values
of VCT's published evaluation and disentanglement_lib's configs otherwise.

``METRICS`` maps the short names used by ``evaluation.runner.run_metrics`` to
the functions.
"""
from .beta_vae import compute_beta_vae_sklearn
from .dci import compute_dci
from .factor_vae import compute_factor_vae
from .irs import compute_irs
from .mig import compute_mig
from .modularity_explicitness import compute_modularity_explicitness
from .sap_score import compute_sap

METRICS = {
    "beta_vae": compute_beta_vae_sklearn,
    "factor_vae": compute_factor_vae,
    "mig": compute_mig,
    "dci": compute_dci,
    "sap": compute_sap,
    "modularity_explicitness": compute_modularity_explicitness,
    "irs": compute_irs,
}

# The four metrics of the VCT protocol, in the order VCT reports them.
VCT_PROTOCOL = ("beta_vae", "factor_vae", "mig", "dci")

__all__ = ["METRICS", "VCT_PROTOCOL", "compute_beta_vae_sklearn", "compute_dci",
           "compute_factor_vae", "compute_irs", "compute_mig",
           "compute_modularity_explicitness", "compute_sap"]
