"""Beta schedules, capacity and free bits, the IWAE bound, and the IAF guide, against their formulas."""

import math

import pytest
import torch
from conftest import TINY
from pyro.infer import Trace_ELBO

import ppvae
from ppvae import VAE
from ppvae.components.beta import ConstantBeta, CyclicalBeta, LinearWarmupBeta, make_beta
from ppvae.inference.objectives import CapacityKL, FreeBits, KLScale, beta_weighted
from ppvae.inference.train import Trainer
from ppvae.registry import OBJECTIVES
from ppvae.traces import elbo_terms


def test_schedules_give_the_right_values_at_given_steps():
    assert [ConstantBeta(value=4)(t, 10) for t in (0, 5, 9.9)] == [4.0, 4.0, 4.0]
    lin = LinearWarmupBeta(value=1.0, start=0.2, warmup_epochs=4)
    assert [lin(t, 10) for t in (0, 2, 4, 8)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    cyc = CyclicalBeta(value=1.0, cycles=4, ratio=0.5)  # 20 epochs: cycles of 5, rising over 2.5
    assert [cyc(t, 20) for t in (0, 1.25, 2.5, 4.9, 5, 6.25, 10, 19.99)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 0.0, 1.0])
    # Every cycle restarts at exactly 0, also where float arithmetic puts the boundary a hair early
    # (10 epochs in 6 cycles: 5.0 % (10 / 6) is 1.6666666666666665, not 0).
    for epochs, cycles in [(10, 6), (1, 5), (7, 3), (30, 7)]:
        cyc = CyclicalBeta(value=1.0, cycles=cycles)
        assert [cyc(k * epochs / cycles, epochs) for k in range(cycles)] == [0.0] * cycles
    cap = CapacityKL(gamma=100, capacity=20, anneal_epochs=10)
    assert [cap.log_values(t, 30)["capacity"] for t in (0, 5, 10, 25)] == [0.0, 10.0, 20.0, 20.0]
    assert cap.log_values(3, 30)["beta"] == 100


def test_capacity_objective_is_gamma_times_abs_kl_minus_c():
    recon = torch.tensor([-100.0, -120.0, -80.0])
    kl = torch.tensor([4.0, 6.0, 8.0], requires_grad=True)  # mean 6
    cap = CapacityKL(gamma=10.0, capacity=10.0, anneal_epochs=4)
    loss = cap.loss(recon, kl, epoch=2.0, num_epochs=10)  # C = 5: |6 - 5| = 1
    assert loss.item() == pytest.approx(300.0 + 10.0 * 3 * 1.0)
    loss.backward()
    assert torch.allclose(kl.grad, torch.full((3,), 10.0))  # KL above C: pushed down
    assert cap.loss(recon, kl, epoch=4.0, num_epochs=10).item() == pytest.approx(300.0 + 10.0 * 3 * 4.0)


def test_free_bits_floor_each_dimension_at_the_threshold():
    recon = torch.tensor([-50.0, -70.0])
    kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 1.0, 0.8]], requires_grad=True)  # batch means 0.2, 1.5, 0.6
    fb = FreeBits(threshold=0.5)
    loss = fb.loss(recon, kl, 0.0, 1)
    assert loss.item() == pytest.approx(120.0 + 2 * (0.5 + 1.5 + 0.6))
    loss.backward()
    # a dimension under the threshold gets no gradient: nothing to gain by shrinking its KL further
    assert torch.equal(kl.grad, torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))


def test_per_dimension_kl_sums_to_the_total():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3)
    x = torch.rand(6, 1, 4, 4)
    torch.manual_seed(1)
    _, per_dim = elbo_terms(vae.model, vae.guide, x, per_dim=True)
    torch.manual_seed(1)
    _, total = elbo_terms(vae.model, vae.guide, x)
    assert per_dim.shape == (6, 3)
    assert torch.allclose(per_dim.sum(-1), total, atol=1e-5)


def test_trainer_uses_the_free_bits_loss(small_mnist):
    """The training loss under free bits is exactly FreeBits.loss of the trace terms (same draws)."""
    spec = ppvae.load_spec(None, ["beta.name=free_bits", "beta.threshold=2.0", "model.latent_dim=4",
                                  "device=cpu", "objective.name=TraceMeanField_ELBO"])
    vae = ppvae.build_model(spec, small_mnist.event_shape)
    trainer = Trainer(vae, small_mnist, spec)
    x = small_mnist.train[:32]
    torch.manual_seed(5)
    loss = trainer.loss(x, 0.0)
    torch.manual_seed(5)
    recon, kl = elbo_terms(vae.model, vae.guide, x, analytic=True, per_dim=True)
    expected = -recon.sum() + 32 * kl.mean(0).clamp(min=2.0).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() > -recon.sum().item() + 32 * kl.mean(0).sum().item()  # the floor is active at init


def _mean_loss(elbo, vae, x, repeats):
    return sum(elbo.differentiable_loss(vae.model, vae.guide, x).item() for _ in range(repeats)) / repeats


def test_iwae_with_one_particle_is_the_elbo_and_rises_with_k():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=2, encoder={"name": "mlp", "hidden": [8]})
    x = (torch.rand(40, 1, 4, 4) > 0.5).float()
    # K = 1: the very same estimate as Trace_ELBO on the same draw
    torch.manual_seed(3)
    iwae1 = OBJECTIVES.build("IWAE", num_particles=1).differentiable_loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    elbo = Trace_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
    assert iwae1.item() == pytest.approx(elbo.item(), rel=1e-6)
    # the bound (minus the loss) does not fall as K grows, beyond Monte Carlo error
    torch.manual_seed(4)
    bounds = [-_mean_loss(OBJECTIVES.build("IWAE", num_particles=k), vae, x, 30) for k in (1, 5, 50, 500)]
    assert bounds[0] < bounds[1] < bounds[2] <= bounds[3] + 0.05
    assert bounds[3] - bounds[0] > 1.0  # an untrained guide leaves a real gap for K to close


def test_iwae_trains_and_reports(small_mnist):
    torch.manual_seed(0)
    vae = VAE(small_mnist.event_shape, latent_dim=4, encoder={"name": "mlp", "hidden": [64]},
              decoder={"name": "mlp", "hidden": [64]})
    run = ppvae.train(vae, small_mnist, epochs=3, batch_size=64, objective={"name": "IWAE", "num_particles": 8},
                      device="cpu", progress=False, figures=False)
    elbos = [m["val_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 10
    assert run.spec["objective"] == {"name": "IWAE", "num_particles": 8, "vectorize_particles": True}


def test_kl_rules_refuse_objectives_they_cannot_rewrite(small_mnist):
    spec = ppvae.load_spec(None, ["beta.name=capacity", "objective.name=IWAE", "device=cpu"])
    vae = ppvae.build_model(spec, small_mnist.event_shape)
    with pytest.raises(ValueError, match="beta 'capacity' rewrites the ELBO's KL term, so it needs objective "
                                         "Trace_ELBO or TraceMeanField_ELBO with num_particles = 1, not IWAE"):
        Trainer(vae, small_mnist, spec)


def test_free_bits_needs_a_factorized_prior():
    vae = VAE((1, 4, 4), latent_dim=2, prior="mixture")
    with pytest.raises(ValueError, match="a KL per latent dimension needs a prior and guide that factorize"):
        elbo_terms(vae.model, vae.guide, torch.rand(3, 1, 4, 4), per_dim=True)


@pytest.mark.parametrize("beta,message", [
    ({"name": "cyclical", "cycles": 0}, r"beta cycles must be an integer >= 1, got 0"),
    ({"name": "cyclical", "ratio": 1.5}, r"beta ratio must be in \(0, 1\], got 1.5"),
    ({"name": "capacity", "gamma": -1}, r"beta gamma must be >= 0, got -1"),
    ({"name": "free_bits", "threshold": -0.1}, r"beta threshold must be >= 0, got -0.1"),
])
def test_bad_schedule_parameters(beta, message):
    with pytest.raises(ValueError, match=message):
        make_beta(beta)


@pytest.mark.parametrize("objective,message", [
    ({"name": "IWAE", "num_particles": 0}, r"objective num_particles must be an integer >= 1, got 0"),
    ({"name": "Trace_ELBO", "num_particles": -3}, r"objective num_particles must be an integer >= 1, got -3"),
    ({"name": "RWS"}, r"unknown objective 'RWS'; choose one of: IWAE, TraceEnum_ELBO, TraceGraph_ELBO, "
                      r"TraceMeanField_ELBO, Trace_ELBO"),
])
def test_bad_objectives(objective, message):
    opts = dict(objective)
    with pytest.raises(ValueError, match=message):
        OBJECTIVES.build(opts.pop("name"), **opts)


def test_iaf_guide_log_density_is_the_change_of_variables():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), latent_dim=3, guide={"name": "iaf", "flows": 2, "context_dim": 5, "hidden": [12]})
    with torch.no_grad():
        for p in vae.q.steps.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.rand(1, 1, 4, 4)
    q = vae.q.posterior(x)
    base, context = vae.q._base_and_context(x)
    eps = base.sample()

    def flow(z):
        for step in vae.q.steps:
            z = step.condition(context)(z)
        return z

    z = flow(eps)
    jac = torch.autograd.functional.jacobian(lambda e: flow(e[None])[0], eps[0])
    expected = base.log_prob(eps) - math.log(abs(torch.linalg.det(jac).item()))
    assert q.log_prob(z).item() == pytest.approx(expected.item(), abs=1e-4)
    # and the flow really changes the density (not the identity)
    assert abs(torch.linalg.det(jac).item() - 1.0) > 1e-3


def test_iaf_guide_trains_on_real_data(small_mnist):
    torch.manual_seed(0)
    vae = VAE(small_mnist.event_shape, latent_dim=4, guide="iaf", encoder={"name": "mlp", "hidden": [64]},
              decoder={"name": "mlp", "hidden": [64]})
    run = ppvae.train(vae, small_mnist, epochs=3, batch_size=64, device="cpu", progress=False, figures=False)
    elbos = [m["val_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 10 and all(math.isfinite(e) for e in elbos)


@pytest.mark.parametrize("prior", ["normal", "student_t"])  # analytic KL, and the Monte Carlo fallback
@pytest.mark.parametrize("name,pyro_cls", [("Trace_ELBO", Trace_ELBO), ("TraceMeanField_ELBO", None)])
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_sync_free_path_equals_pyros_estimator(prior, name, pyro_cls, beta):
    """ppvae's training objective: the same loss and gradients as Pyro's class on the same random draws."""
    import pyro
    from pyro.infer import TraceMeanField_ELBO

    pyro_cls = pyro_cls or TraceMeanField_ELBO
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, prior=prior)
    x = torch.rand(16, 1, 8, 8)
    params = list(vae.parameters())
    torch.manual_seed(1)
    scale = KLScale(beta)
    ref = pyro_cls(max_plate_nesting=1).differentiable_loss(scale(vae.model), scale(vae.guide), x)
    ref_grads = torch.autograd.grad(ref, params)
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        fast = OBJECTIVES.build(name).differentiable_loss(scale(vae.model), scale(vae.guide), x)
    fast_grads = torch.autograd.grad(fast, params)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, b in zip(ref_grads, fast_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("guide", ["normal", "iaf"])
@pytest.mark.parametrize("prior", ["normal", "student_t", "mixture"])
@pytest.mark.parametrize("name", ["Trace_ELBO", "TraceMeanField_ELBO"])
@pytest.mark.parametrize("beta", [1.0, 0.0, 2.5])
def test_fast_path_equals_pyros_trace_elbo_on_the_same_draws(guide, prior, name, beta):
    """The trainer's direct evaluation of the stock VAE program: Pyro's loss and gradients, bit for bit in
    distribution, on the same random draws."""
    import pyro
    from pyro.infer import TraceMeanField_ELBO


    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, prior=prior, guide=guide)
    assert vae.supports_direct_loss({"name": name, "num_particles": 1})
    x = torch.rand(16, 1, 8, 8)
    params = list(vae.parameters())
    ref_cls = Trace_ELBO if name == "Trace_ELBO" else TraceMeanField_ELBO
    torch.manual_seed(1)
    scale = KLScale(beta)
    ref = ref_cls(max_plate_nesting=1).differentiable_loss(scale(vae.model), scale(vae.guide), x)
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        fast = beta_weighted(*vae.direct_terms(x, {"name": name, "num_particles": 1}), beta)
    fast_grads = torch.autograd.grad(fast, params, allow_unused=True)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, b in zip(ref_grads, fast_grads):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fast_path_only_for_programs_it_knows():
    class MyVAE(VAE):
        def model(self, x):  # a user's own program: must go through Pyro
            return super().model(x)

    assert not MyVAE((4,), 2).supports_direct_loss({"name": "Trace_ELBO", "num_particles": 1})
    assert not VAE((4,), 2).supports_direct_loss({"name": "IWAE", "num_particles": 5})
    assert not VAE((4,), 2).supports_direct_loss({"name": "Trace_ELBO", "num_particles": 2})


@pytest.mark.parametrize("rule", [["name=free_bits", "threshold=2.0"], ["name=capacity", "gamma=10", "capacity=5"],
                                  ["name=tcvae", "beta=4"]])
def test_a_kl_rule_is_an_objective_and_its_old_beta_name_an_alias_for_it(rule, tmp_path):
    """objective.name = free_bits trains exactly as beta.name = free_bits did (the same losses, metrics and weights
    from the same seed); each run records the rule where it was named, and the alias's beta is the rule's."""
    base = [*TINY, "train.epochs=2", "train.figures=false", "data.name=digits", "seed=3"]
    old = ppvae.train_spec(None, [*base, *(f"beta.{r}" for r in rule)], run_dir=tmp_path / "old", progress=False)
    new = ppvae.train_spec(None, [*base, *(f"objective.{r}" for r in rule)], run_dir=tmp_path / "new",
                           progress=False)
    assert [m["train_loss"] for m in new.metrics] == [m["train_loss"] for m in old.metrics]
    assert [m["val_elbo"] for m in new.metrics] == [m["val_elbo"] for m in old.metrics]
    assert [m["beta"] for m in new.metrics] == [m["beta"] for m in old.metrics]
    for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()):
        assert torch.equal(a, b)
    name = rule[0].split("=")[1]
    assert old.spec["beta"]["name"] == name and old.spec["objective"]["name"] == "Trace_ELBO"
    assert new.spec["objective"]["name"] == name and new.spec["beta"] == {"name": "constant", "value": 1.0}
    resumed = ppvae.resume(tmp_path / "new", ["train.epochs=3"], progress=False)  # the recorded spec rebuilds it
    assert len(resumed.metrics) == 3


def test_a_kl_rule_named_twice_is_refused_in_one_line(small_mnist):
    spec = ppvae.load_spec(None, [*TINY, "beta.name=tcvae", "objective.name=free_bits"])
    with pytest.raises(ValueError, match=r"^beta 'tcvae' and objective 'free_bits' both rewrite the KL term; name "
                                         r"one of them \(as the objective\)$"):
        Trainer(ppvae.build_model(spec, small_mnist.event_shape), small_mnist, spec, progress=False)


def test_a_kl_rule_as_the_objective_keeps_beta_at_one_rather_than_ignoring_it(small_mnist):
    spec = ppvae.load_spec(None, [*TINY, "objective.name=free_bits", "beta.value=4"])
    with pytest.raises(ValueError, match=r"^objective 'free_bits' rewrites the KL term with its own weights, so beta "
                                         r"must stay constant 1; got \{'name': 'constant', 'value': 4"):
        Trainer(ppvae.build_model(spec, small_mnist.event_shape), small_mnist, spec, progress=False)
    with pytest.raises(TypeError, match="beta must be a number"):
        make_beta(ppvae.VAE((4,), 2).prior)  # a component, but no beta
