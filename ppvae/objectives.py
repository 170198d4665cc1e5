"""Objectives: the Pyro ELBO estimators a spec can name.

The names are Pyro's own class names, so a reader can look them up in Pyro's documentation.
"""

from __future__ import annotations

from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO

from .registry import OBJECTIVES


def _register(cls: type[ELBO]) -> None:
    def build(*, num_particles: int = 1, vectorize_particles: bool = True) -> ELBO:
        if int(num_particles) < 1:
            raise ValueError(f"objective num_particles must be >= 1, got {num_particles}")
        # max_plate_nesting=1: the data plate is the only plate, so Pyro need not trace the model to find it.
        elbo = cls(num_particles=int(num_particles), vectorize_particles=bool(vectorize_particles),
                   max_plate_nesting=1)
        elbo.spec = lambda: {"name": cls.__name__, "num_particles": int(num_particles),
                             "vectorize_particles": bool(vectorize_particles)}
        return elbo

    build.__doc__ = cls.__doc__
    OBJECTIVES.register(cls.__name__)(build)


_register(Trace_ELBO)  # E_q[log p(x,z) - log q(z|x)], Monte Carlo with reparameterized z
_register(TraceMeanField_ELBO)  # the same with KL(q || p) in closed form where one is registered
