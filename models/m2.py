"""The semi-supervised M2 model of Kingma et al. (2014), "Semi-supervised learning with deep generative models".

    model:  y ~ p(y) = Cat(1/C),  z ~ p(z),  x ~ p(x | decoder([z, onehot(y)]))
    guide:  y ~ q(y | x) = Cat(classifier(x)),  z ~ q(z | x, y)

The label is a discrete latent, summed out exactly by TraceEnum_ELBO (parallel enumeration in the guide). Where
a row's label is known (batch["labeled"]), q(y) is the point mass at it, so the row's term is the labelled
bound; elsewhere it is the unlabelled one:

    L(x, y) = E_q(z|x,y)[log p(x | y, z) + log p(y) + log p(z) - log q(z | x, y)]
    U(x)    = sum_y q(y | x) L(x, y) + H(q(y | x))

Training adds alpha * sum_labelled -log q(y | x) (:meth:`M2.auxiliary_loss`), so the classifier also learns
from the labels directly; that term is not part of any ELBO ppvae reports. Without a ``labeled`` key every
label in the batch is used.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from ppvae.batch import as_batch
from ppvae.guides.conditional import seen_label_logits
from ppvae.inference.contract import data_plate
from ppvae.registry import ENCODERS, MODELS, component, describe

from .cvae import CVAE


@MODELS.register("m2")
class M2(CVAE):
    """Kingma et al.'s (2014) semi-supervised M2: the label is observed where kept and a discrete latent with guide
    q(y | x) elsewhere, summed out by TraceEnum_ELBO, plus alpha times the labelled rows' classification loss."""

    #: the objective a spec that leaves the default Trace_ELBO trains M2 with: y is summed out, not sampled
    default_objective = {"name": "TraceEnum_ELBO"}
    #: y is read where the batch has it (labelled rows); without it M2 is a mixture over the classes, which is
    #: how anomaly scores and other verbs that see images alone use it
    batch_keys = ("x",)
    #: the share of each batch drawn from the labelled rows when only some are labelled (Kingma et al. mix both
    #: into every minibatch; with 100 labels in 60,000 a uniform shuffle would show a batch a label rarely)
    labeled_fraction = 0.25

    def __init__(self, event_shape, num_classes: int, latent_dim: int = 20, *, features: int = 256,
                 classifier=None, alpha: float = 50.0, encoder="mlp", decoder="mlp", guide="normal",
                 prior="normal", likelihood="bernoulli"):
        super().__init__(event_shape, num_classes, latent_dim, features=features, encoder=encoder, decoder=decoder,
                         guide=guide, prior=prior, likelihood=likelihood)
        self.classifier = component(ENCODERS, classifier or {"name": "mlp", "hidden": [400]}, self.event_shape,
                                    self.num_classes)
        self.alpha = float(alpha)
        if not self.alpha >= 0:
            raise ValueError(f"model.alpha (the weight of the classification term) must be >= 0, got {alpha!r}")
        self.register_buffer("class_logits", torch.zeros(self.num_classes))  # p(y): uniform

    def model(self, batch) -> None:
        x = as_batch(batch)["x"]
        n = x.shape[0]
        self._register_with_pyro()
        with data_plate(n):
            y = pyro.sample("y", dist.Categorical(logits=self.class_logits.expand(n, -1)))
            z = pyro.sample("z", self.prior_of(n, y))  # (C, n, D) when y is enumerated
            pyro.sample("x", self.likelihood(self.decoder(self._joined(z, y))), obs=x)

    def guide(self, batch) -> None:
        batch = as_batch(batch)
        x = batch["x"]
        pyro.module("encoder", self.q)
        pyro.module("classifier", self.classifier)
        with data_plate(x.shape[0]):
            logits = self.classifier(x)
            if "y" in batch:
                logits = seen_label_logits(logits, batch["y"], self._seen(batch))
            y = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            pyro.sample("z", self.q.posterior((x, self.onehot(y))))

    @staticmethod
    def _seen(batch) -> torch.Tensor:
        seen = batch.get("labeled")
        return seen if seen is not None else torch.ones(batch["x"].shape[0], dtype=torch.bool,
                                                        device=batch["x"].device)

    def auxiliary_loss(self, batch) -> torch.Tensor:
        """alpha * sum over the labelled rows of -log q(y | x): the classification term of Kingma et al.'s
        objective, which the ELBO alone lacks (it trains q(y | x) only through the unlabelled rows)."""
        batch = as_batch(batch)
        seen = self._seen(batch)
        logits = self.classifier(batch["x"][seen])
        return self.alpha * F.cross_entropy(logits, batch["y"][seen], reduction="sum")

    # ---- using a trained model -------------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, x) -> torch.Tensor:
        """q(y | x): class probabilities, shape (N, C)."""
        return self.classifier(as_batch(x)["x"]).softmax(-1)

    @torch.no_grad()
    def bound_per_class(self, x, num_samples: int = 4) -> torch.Tensor:
        """L(x, y) for every class y, shape (N, C): the labelled bound of each row under each label, averaged over
        ``num_samples`` draws of z ~ q(z | x, y) (it includes log p(y))."""
        x = as_batch(x)["x"]
        n, c = x.shape[0], self.num_classes
        y = torch.arange(c, device=x.device).repeat_interleave(n)  # (C * n,): class-major
        xs = x.repeat(c, *([1] * (x.dim() - 1)))
        q = self.q.posterior((xs, self.onehot(y)))
        log_py = torch.log_softmax(self.class_logits, -1)[y]
        total = torch.zeros(c * n, device=x.device)
        for _ in range(int(num_samples)):
            z = q.rsample()
            total += (self.likelihood(self.decoder(self._joined(z, y))).log_prob(xs)
                      + self.prior_of(c * n, y).log_prob(z) - q.log_prob(z))
        return (total / num_samples + log_py).view(c, n).T

    @torch.no_grad()
    def classify_by_bound(self, x, num_samples: int = 4) -> torch.Tensor:
        """The model's own posterior over y, p(y | x) proportional to exp L(x, y), shape (N, C).

        This is what the unlabelled bound pulls q(y | x) towards: U(x) = sum_y q(y | x) L(x, y) + H(q(y | x)) is
        largest at q(y | x) = softmax_y L(x, y). So the unlabelled images can teach the classifier only as far as
        this posterior classifies better than q(y | x) does; where the decoder makes little use of y (a z large
        enough to carry the class), it classifies worse and unlabelled training drags q(y | x) down."""
        return self.bound_per_class(x, num_samples).softmax(-1)

    def label_of(self, batch) -> torch.Tensor:
        """The known label where a row has one, else the classifier's most probable class."""
        batch = as_batch(batch)
        guess = self.classify(batch).argmax(-1)
        if "y" not in batch:
            return guess
        return torch.where(self._seen(batch), batch["y"], guess)

    def check_data(self, batch) -> None:
        super().check_data(batch)
        seen = as_batch(batch).get("labeled")
        if seen is not None and seen.dtype != torch.bool:
            raise ValueError(f"M2 reads batch['labeled'] as a boolean mask of the rows whose label it may use, but it "
                             f"has dtype {seen.dtype}")

    def _own_options(self) -> dict:
        return {"alpha": self.alpha, "classifier": describe(self.classifier, structural=2)}
