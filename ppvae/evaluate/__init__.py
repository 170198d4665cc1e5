"""Evaluation of any ppvae model: the ELBO per site, IWAE log p(x), diagnostics, exact answers and the report."""

from ..traces import elbo_terms, seeded_eval, site_terms
from .elbo import evaluate_elbo, iwae_log_likelihood, log_importance_weights, particles_vectorize

__all__ = ["elbo_terms", "evaluate_elbo", "iwae_log_likelihood", "log_importance_weights", "particles_vectorize",
           "seeded_eval", "site_terms"]
