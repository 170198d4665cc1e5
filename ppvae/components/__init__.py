"""Swappable components, each registered by name: priors, likelihoods, networks, beta schedules, optimizers."""
