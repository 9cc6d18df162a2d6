"""Alignment losses of domain adaptation: each measures how far apart the source and target
feature distributions are, and training lowers it. Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D).

Conventions shared by the adversarial ones: the **source domain is labelled 1**, the target 0,
and the loss is ½·(mean over the source samples + mean over the target samples), i.e. half of
Ganin et al.'s L_d = (1/n)·Σ_source + (1/n')·Σ_target, for any two batch sizes (a plain mean
over the concatenated batch would weight the domains by their sample counts instead).

One file per adaptation method's loss; the method's LightningModule (``methods/adaptation/``)
holds it and calls it in ``alignment_loss``.
"""

from transferlab.losses.alignment.common import balanced_domain_bce, domain_accuracy, entropy

__all__ = ["balanced_domain_bce", "domain_accuracy", "entropy"]
