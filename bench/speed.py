"""Seconds per epoch of the same VAE trained eight ways, in one process, alternating:

  (a) floor:  a hand-written PyTorch VAE (analytic KL, one torch.optim.Adam), as in PyTorch's VAE example
  (a') fused: the same with torch's fused Adam kernel, which ppvae uses by default (the fair reference for
              what ppvae adds on top of the network itself)
  (a*) fused-mc: the fused floor with Trace_ELBO's estimator written by hand (the KL as log q(z) - log p(z) at the
              draw, torch.distributions.Normal): what the estimator costs, apart from what Pyro and ppvae add
  (b) pyro:   the plain Pyro way, as Pyro's own VAE example trains (SVI, Trace_ELBO, pyro.optim.Adam)
  (c) ppvae:  ppvae's training path (the Trainer over models/vae.py and guides/gaussian.py), Trace_ELBO
  (c') ppvae-mf: the same with TraceMeanField_ELBO, whose analytic KL is the floor's estimator
  (d) user:   the same network written as a user's own Pyro program against ppvae's contract (a ppvae.Model
              subclass, model(batch)), trained by ppvae's Trainer through Pyro's Trace_ELBO (no direct evaluation)
  (e) pyro-style: the same network as Pyro's VAE example writes it (a plain nn.Module, model(x) / guide(x),
              pyro.plate("data", ...)), trained by ppvae's Trainer: what calling a program by its signature costs

    .venv/bin/python bench/speed.py [--device cpu] [--batch-sizes 128 512] [--epochs 1] [--repeats 3]

Same data (Fashion-MNIST from Debian's dataset-fashion-mnist when present, else the embedded MNIST digits),
the same 784-400-20 MLP, Bernoulli likelihood, Adam 1e-3. It prints the median seconds per epoch of each way,
the ratios to a and to a', the peak memory during each way's run, and the test ELBO each reaches (per example,
nats, one draw with analytic KL, the same estimator for every way) so speed is never bought with a different
objective. Peak memory is the CUDA allocator's peak on a GPU and the growth of resident memory on a CPU: the median
over the repeats ("peak MiB"), and the first repeat's ("first"), which also holds what a way pays once per process
(modules imported on first use, the allocator's first touch of its heap). On a CPU with glibc, "held" is the median
growth of what malloc has handed out and not had back: the memory the way itself holds. Resident memory also counts
what glibc keeps after a free for reuse, which grows with the sizes freed before (its mmap threshold rises to the
largest block freed, up to 32 MiB, and blocks under it come from heaps it does not return); run the bench under
MALLOC_MMAP_THRESHOLD_=131072 to fix the threshold and see resident memory follow "held".

On CUDA three more ways: (a'') the floor's step captured as one CUDA graph, and (c eager, e eager) ppvae's ways
with ``train.graph = "off"`` (c and e are graphed there by default); ratios to a'' are the GPU targets (1.3x).

Targets at batch 128 on the CPU, against a' (the fused floor): the stock VAE (c) within 1.05x, a user's own
program (d, e) within 1.15x, peak training memory within 2x of the floor's. CPU budget: 2 cores, about 5 minutes
for the defaults (2 batch sizes x 3 repeats x 8 ways, plus the IWAE timing); run it on a quiet machine, the
ratios are what to read.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import threading
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from torch import nn

import ppvae
from ppvae.inference.train import Trainer, resolve_device

HIDDEN, LATENT, LR = 400, 20, 1e-3


# ---- (a) the floor: a hand-written PyTorch VAE -----------------------------------------------------------
class TorchVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(784, HIDDEN)
        self.enc_out = nn.Linear(HIDDEN, 2 * LATENT)
        self.dec = nn.Linear(LATENT, HIDDEN)
        self.dec_out = nn.Linear(HIDDEN, 784)

    def posterior(self, x):
        loc, raw = self.enc_out(F.relu(self.enc(x.flatten(1)))).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4

    def decode(self, z):
        return self.dec_out(F.relu(self.dec(z)))

    def loss(self, x, mc=False):
        loc, scale = self.posterior(x)
        z = loc + scale * torch.randn_like(scale)
        recon = F.binary_cross_entropy_with_logits(self.decode(z), x.flatten(1), reduction="sum")
        if mc:  # Trace_ELBO's estimator: log q(z | x) - log p(z) at the draw
            q = torch.distributions.Normal(loc, scale, validate_args=False)
            p = torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(scale), validate_args=False)
            return recon + (q.log_prob(z) - p.log_prob(z)).sum()
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum()
        return recon + kl


def train_floor(train_x, batch_size, epochs, gen, fused=False, mc=False):
    model = TorchVAE().to(train_x.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=fused or None)
    times = []
    for _ in range(epochs):
        start = _sync_time(train_x)
        for idx in torch.randperm(train_x.shape[0], generator=gen).to(train_x.device).split(batch_size):
            loss = model.loss(train_x[idx], mc)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(_sync_time(train_x) - start)
    return times, model.posterior, model.decode


def train_floor_graphed(train_x, batch_size, epochs, gen):
    """(a'') the floor's step (fused, capturable Adam) captured once as a CUDA graph and replayed; the short last
    batch eager. The three warm-up steps that capture needs train too (a floor for speed, not for equality)."""
    model = TorchVAE().to(train_x.device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True, capturable=True)
    static = train_x[:batch_size].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            model.loss(static).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        model.loss(static).backward()
        opt.step()
    times = []
    for _ in range(epochs):
        start = _sync_time(train_x)
        for idx in torch.randperm(train_x.shape[0], generator=gen).to(train_x.device).split(batch_size):
            if len(idx) == batch_size:
                static.copy_(train_x[idx])
                graph.replay()
            else:
                opt.zero_grad(set_to_none=True)
                model.loss(train_x[idx]).backward()
                opt.step()
        times.append(_sync_time(train_x) - start)
    return times, model.posterior, model.decode


# ---- (b) the plain Pyro way, as in Pyro's examples/vae/vae.py ----------------------------------------------
class PyroVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.torch_vae = TorchVAE()

    def model(self, x):
        pyro.module("decoder", self.torch_vae)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(x.shape[0], LATENT), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.torch_vae.decode(z), validate_args=False).to_event(1),
                        obs=x.flatten(1))

    def guide(self, x):
        pyro.module("encoder", self.torch_vae)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.torch_vae.posterior(x)
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))


def train_pyro(train_x, batch_size, epochs, gen):
    pyro.clear_param_store()
    vae = PyroVAE().to(train_x.device)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": LR}), loss=Trace_ELBO())
    times = []
    for _ in range(epochs):
        start = _sync_time(train_x)
        for idx in torch.randperm(train_x.shape[0], generator=gen).to(train_x.device).split(batch_size):
            svi.step(train_x[idx])
        times.append(_sync_time(train_x) - start)
    return times, vae.torch_vae.posterior, vae.torch_vae.decode


# ---- (c) ppvae ------------------------------------------------------------------------------------------------
LAST_PPVAE = {}


def _spec(seed, device, objective, epochs, batch_size, graph="auto"):
    return ppvae.load_spec(None, [f"seed={seed}", f"device={device}", f"objective.name={objective}",
                                  f"train.graph={graph}", f"train.epochs={epochs}", f"train.batch_size={batch_size}",
                                  f"model.latent_dim={LATENT}", f"encoder.hidden=[{HIDDEN}]",
                                  f"decoder.hidden=[{HIDDEN}]", f"optimizer.lr={LR}", "train.figures=false",
                                  "train.progress_every=1000000"])


def train_ppvae(data, batch_size, epochs, device, seed, objective="Trace_ELBO", graph="auto"):
    spec = _spec(seed, device, objective, epochs, batch_size, graph)
    torch.manual_seed(seed)
    vae = ppvae.build_model(spec, data.event_shape)
    trainer = Trainer(vae, data, spec, progress=False)
    metrics = trainer.fit()
    LAST_PPVAE["vae"] = vae

    def posterior(x):
        d = vae.q.posterior(x)
        return d.base_dist.loc, d.base_dist.scale

    return [m["seconds"] for m in metrics], posterior, vae.decoder


# ---- (d) the same network as a user's own program ------------------------------------------------------------
class UserVAE(ppvae.Model):
    """What a user writes: Pyro's VAE example against ppvae's contract (batch in, plate over the data)."""

    def __init__(self):
        super().__init__()
        self.net = TorchVAE()

    def model(self, batch):
        x = batch["x"].flatten(1)
        pyro.module("net", self.net)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.net.decode(z), validate_args=False).to_event(1), obs=x)

    def guide(self, batch):
        x = batch["x"].flatten(1)
        pyro.module("net", self.net)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.net.posterior(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def train_user(data, batch_size, epochs, device, seed, cls=UserVAE, graph="auto"):
    """A user's program (d, or e with ``cls=PyroStyleVAE``) trained by ppvae's Trainer."""
    spec = _spec(seed, device, "Trace_ELBO", epochs, batch_size, graph)
    torch.manual_seed(seed)
    model = cls()
    metrics = Trainer(model, data, spec, progress=False).fit()
    return [m["seconds"] for m in metrics], model.net.posterior, model.net.decode


# ---- (e) the same network as Pyro's VAE example writes it: a plain nn.Module, model(x) and guide(x) --------------
class PyroStyleVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TorchVAE()

    def model(self, x):
        x = x.flatten(1)
        pyro.module("net", self.net)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.net.decode(z), validate_args=False).to_event(1), obs=x)

    def guide(self, x):
        x = x.flatten(1)
        pyro.module("net", self.net)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.net.posterior(x)
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))



# ---- shared measurement ------------------------------------------------------------------------------------
def _sync_time(x):
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


@torch.no_grad()
def test_elbo(posterior, decode, test_x):
    """Per-example ELBO in nats: one reparameterized draw, analytic KL to N(0, I); the same for every way."""
    torch.manual_seed(0)
    total = 0.0
    for x in test_x.split(1000):
        loc, scale = posterior(x)
        z = loc + scale * torch.randn_like(scale)
        logits = decode(z).flatten(1)
        recon = -F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
        total += (recon - kl).sum().item()
    return total / test_x.shape[0]


def _malloc_in_use():
    """Bytes glibc's malloc has handed out and not had back (mallinfo2: heap chunks in use plus mmapped ones), or
    None where the C library is not glibc 2.33 or newer."""
    try:
        libc = ctypes.CDLL(None)
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    info.restype = MallInfo2

    def in_use():
        m = info()
        return m.uordblks + m.hblkhd

    return in_use


IN_USE = _malloc_in_use()


class PeakMemory:
    """Peak memory during a block: the CUDA allocator's peak; on a CPU, sampled every 5 ms, the growth of resident
    set size (``mib``: what the operating system sees, including the freed memory glibc keeps for reuse) and of
    the bytes malloc has handed out and not had back (``held``: what the program holds, None without glibc)."""

    def __init__(self, device):
        self.device = device
        self.held = None

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        self.base = self.peak = self._rss()
        self.base_held = self.peak_held = IN_USE() if IN_USE else 0
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, self._rss())
                if IN_USE:
                    self.peak_held = max(self.peak_held, IN_USE())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.mib = (self.peak - self.base) / 2**20
            if IN_USE:
                self.held = (self.peak_held - self.base_held) / 2**20


def load_data():
    try:
        data = ppvae.load_dataset("fashion-mnist", download=False)
        return data, "Fashion-MNIST (60,000 train / 10,000 test, from the local IDX files)"
    except FileNotFoundError:
        return ppvae.load_dataset(), "the embedded MNIST digits (4,000 / 1,000): Fashion-MNIST was not found"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats, at least 1 (default: 3)")
    parser.add_argument("--iwae-k", type=int, default=1000,
                        help="after the runs, time ppvae's IWAE log-likelihood with this K over the test set (0: skip)")
    args = parser.parse_args()
    if args.repeats < 1 or args.epochs < 1:
        parser.error(f"--repeats and --epochs must be >= 1, got {args.repeats} and {args.epochs}")
    device = resolve_device(args.device)
    data, which = load_data()
    train_x, test_x = data.train.to(device), data.test.to(device)
    print(f"data: {which}; device: {device}; torch {torch.__version__}, pyro {pyro.__version__}, "
          f"{torch.get_num_threads()} threads; {args.epochs} epoch(s) x {args.repeats} repeats, alternating")
    ways = {
        "a floor": lambda b, g: train_floor(train_x, b, args.epochs, g),
        "a' fused": lambda b, g: train_floor(train_x, b, args.epochs, g, fused=True),
        "a* fused-mc": lambda b, g: train_floor(train_x, b, args.epochs, g, fused=True, mc=True),
        "b pyro": lambda b, g: train_pyro(train_x, b, args.epochs, g),
        "c ppvae": lambda b, g: train_ppvae(data, b, args.epochs, args.device, g.initial_seed()),
        "c' ppvae-mf": lambda b, g: train_ppvae(data, b, args.epochs, args.device, g.initial_seed(),
                                                "TraceMeanField_ELBO"),
        "d user": lambda b, g: train_user(data, b, args.epochs, args.device, g.initial_seed()),
        "e pyro-style": lambda b, g: train_user(data, b, args.epochs, args.device, g.initial_seed(), PyroStyleVAE),
    }
    if device.type == "cuda":  # the steps as CUDA graphs (ppvae's default there) against the same steps eager
        ways["a'' graphed"] = lambda b, g: train_floor_graphed(train_x, b, args.epochs, g)
        ways["c eager"] = lambda b, g: train_ppvae(data, b, args.epochs, args.device, g.initial_seed(), graph="off")
        ways["e eager"] = lambda b, g: train_user(data, b, args.epochs, args.device, g.initial_seed(), PyroStyleVAE,
                                                  graph="off")
    for batch_size in args.batch_sizes:
        seconds = {k: [] for k in ways}
        memory, held, elbo = {}, {}, {k: [] for k in ways}
        for rep in range(args.repeats):
            for name, run in ways.items():
                torch.manual_seed(rep)
                with PeakMemory(device) as peak:
                    times, posterior, decode = run(batch_size, torch.Generator().manual_seed(rep))
                seconds[name] += times
                memory.setdefault(name, []).append(peak.mib)
                held.setdefault(name, []).append(peak.held)
                elbo[name].append(test_elbo(posterior, decode, test_x))
        floor, fused = statistics.median(seconds["a floor"]), statistics.median(seconds["a' fused"])
        graphed = statistics.median(seconds["a'' graphed"]) if "a'' graphed" in seconds else None
        print(f"\nbatch {batch_size}")
        header = ("way", "s/epoch (median)", "ratio to a", "to a'", "to a''", "runs", "peak MiB", "first", "held",
                  "test ELBO (mean, sd)")
        print("{:<14}{:>18}{:>12}{:>8}{:>8}{:>6}{:>10}{:>7}{:>6}{:>22}".format(*header))
        for name in ways:
            med = statistics.median(seconds[name])
            to_graphed = f"{med / graphed:>8.2f}" if graphed else f"{'-':>8}"
            mib = statistics.median(memory[name])
            kept = f"{statistics.median(held[name]):>6.0f}" if held[name][0] is not None else f"{'-':>6}"
            print(f"{name:<14}{med:>18.4f}{med / floor:>12.2f}{med / fused:>8.2f}{to_graphed}{len(seconds[name]):>6}"
                  f"{mib:>10.0f}{memory[name][0]:>7.0f}{kept}{statistics.mean(elbo[name]):>15.2f} "
                  f"{statistics.stdev(elbo[name]) if len(elbo[name]) > 1 else 0.0:>6.2f}")
        mc = statistics.median(seconds["a* fused-mc"])
        print(f"against a* (Trace_ELBO's estimator by hand, {mc / fused:.2f}x a'): "
              + ", ".join(f"{name} {statistics.median(seconds[name]) / mc:.2f}x" for name in ways
                          if name[0] in "bcde" and "mf" not in name and "eager" not in name)
              + " (what Pyro and ppvae add to the estimator's own cost)")
    if args.iwae_k:
        from ppvae.evaluate import iwae_log_likelihood

        with PeakMemory(device) as peak:
            start = _sync_time(test_x)
            ll = iwae_log_likelihood(LAST_PPVAE["vae"], test_x, args.iwae_k)
            seconds = _sync_time(test_x) - start
        print(f"\nIWAE log-likelihood, K={args.iwae_k}, {test_x.shape[0]} test examples (last ppvae model): "
              f"{ll.mean():.2f} nats/example in {seconds:.1f} s, peak {peak.mib:.0f} MiB")


if __name__ == "__main__":
    main()
