"""Evaluation of concept representations.

Sub-modules (imported on demand, so that importing ``evaluation`` stays cheap
and does not pull in torch):

- ``evaluation.metrics``: disentanglement_lib-compatible metrics
  (BetaVAE, FactorVAE, MIG, DCI, SAP, Modularity/Explicitness, IRS) and the
  registry ``evaluation.metrics.METRICS``.
- ``evaluation.runner``: ``run_metrics``, ``format_table``, ``write_results_json``.
- ``evaluation.representation``: concept tokens -> per-image codes
  (PCA(1) per concept or per-concept norm) with an on-disk cache.
- ``evaluation.objects``: ARI, FG-ARI and mean best overlap for masks.
- ``evaluation.toy_data``: tiny in-memory ground-truth datasets for tests.
- ``evaluation.progress``: progress bars, off when stderr is not a terminal.
- ``evaluation.errors``: the ``ValueError`` subclasses raised on bad input.
"""
from .errors import EvaluationError, GroundTruthDataError, RepresentationError

__all__ = ["EvaluationError", "GroundTruthDataError", "RepresentationError"]
