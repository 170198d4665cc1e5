"""``ppvae``: the command line over the Python API (train, sample, reconstruct, interpolate, evaluate)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

# Nothing heavy at the top: ``ppvae --help`` and a refused command line answer without importing torch or Pyro;
# each verb imports what it uses.


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ppvae")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _at_least(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    return parse


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run directory written by `ppvae train`")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random draws (default: 0)")
    p.add_argument("--out", help="output file (default: a PNG in RUN/figures/, a .txt for sequence models)")


def _add_metric_sizes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-train", type=_at_least(2), default=10000, help="codes for MIG and SAP (default: 10000)")
    p.add_argument("--num-eval", type=_at_least(2), default=5000, help="held-out codes (default: 5000)")
    p.add_argument("--num-votes", type=_at_least(2), default=1000,
                   help="BetaVAE / FactorVAE training points, each a batch of 64; half as many held out (default: 1000)")
    p.add_argument("--dci-train", type=_at_least(2), default=2000, help="codes DCI's boosted trees fit (default: 2000)")
    p.add_argument("--dci-eval", type=_at_least(2), default=1000, help="held-out codes for DCI (default: 1000)")


def _metric_sizes(args) -> dict:
    return {"num_train": args.num_train, "num_eval": args.num_eval, "num_votes": args.num_votes,
            "dci_train": args.dci_train, "dci_eval": args.dci_eval}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppvae", description="Variational autoencoders as Pyro programs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--traceback", action="store_true",
                        help="let an error raise with its full traceback (an error in your own program is otherwise "
                             "one line naming its file and line)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a TOML spec (defaults: a VAE on 5,000 real MNIST digits, offline)")
    p.add_argument("spec", nargs="?", help="TOML spec file; omitted keys take the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set prior.name=normal --set beta.value=4 (repeatable)")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<time>-<data>-<prior>-<likelihood>)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("--deterministic", action="store_true",
                   help="use only torch's deterministic algorithms (for GPUs; CPU training is deterministic "
                        "already); recorded as train.deterministic = true")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes (torchrun with DistributedDataParallel; train.batch_size is per "
                        "process); at most the machine's CPU cores, or its GPUs on CUDA")

    p = sub.add_parser("sample", help="decode draws from the prior")
    _add_run(p)
    p.add_argument("-n", type=_at_least(1), default=64, help="number of samples (default: 64)")
    p.add_argument("--label", type=int, help="generate this class (conditional models: cvae, m2)")
    p.add_argument("--decoding", choices=["sample", "greedy", "beam"], default="sample",
                   help="sequence models: token by token at random, the likeliest token, or beam search (default: sample)")
    p.add_argument("--sampler", choices=["prior", "gmm"], default="prior",
                   help="draw codes from the prior, or from a Gaussian mixture fitted to the training set's posterior "
                        "means (ex-post density estimation, Ghosh et al. 2020) (default: prior)")
    p.add_argument("--components", type=_at_least(1), default=10,
                   help="mixture components of --sampler gmm (default: 10)")
    p.add_argument("--draws", action="store_true",
                   help="draws from the observation distribution instead of its mean (derived from the model's trace)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sequence models: divides the logits when sampling; below 1 is more conservative (default: 1)")

    p = sub.add_parser("augment", help="write labelled samples of every class from a conditional model (cvae, m2)")
    p.add_argument("run", help="a run directory written by `ppvae train`")
    p.add_argument("--per-class", type=_at_least(1), required=True, help="samples of each class")
    p.add_argument("--out", required=True, help="the .npz to write (arrays x and y; read back with data.name=file)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random draws (default: 0)")

    p = sub.add_parser("reconstruct", help="test inputs next to their reconstructions")
    _add_run(p)
    p.add_argument("-n", type=_at_least(1), default=8, help="number of test examples (default: 8)")
    p.add_argument("--draws", action="store_true",
                   help="replay the model on a draw of the guide and draw the observation (derived from the traces) "
                        "instead of decoding the posterior means")

    p = sub.add_parser("interpolate", help="decode paths between the codes of test examples")
    _add_run(p)
    p.add_argument("--method", choices=["linear", "spherical"], default="linear",
                   help="straight line or great-circle arc between the codes (default: linear)")
    p.add_argument("--steps", type=_at_least(2), default=10, help="points along each path (default: 10)")
    p.add_argument("--pairs", type=_at_least(1), default=4, help="paths, each between two test examples (default: 4)")
    p.add_argument("--between", nargs=2, metavar="TEXT", help="sequence models: the two molecules (SMILES) or sentences "
                                                               "to interpolate between (default: test examples)")

    p = sub.add_parser("anomaly", help="anomaly / out-of-distribution scores of a run: AUROC, AP, FPR at 95%% TPR")
    p.add_argument("run", help="a run directory written by `ppvae train`")
    p.add_argument("--normal", choices=["test"], default="test", help="the normal data: the run's test split")
    p.add_argument("--anomalous", help="a dataset name (its test split) or a .npy/.npz file (all its examples)")
    p.add_argument("--normal-class", type=int, help="one-class mode: the run's test examples of this class are normal, "
                                                    "the others anomalous (train with --set data.train_classes=[K])")
    p.add_argument("--score", dest="scores", action="append", metavar="SCORE",
                   help="reconstruction, neg_elbo, neg_iwae, complexity, complexity_zlib (repeatable; default: all "
                        "but complexity_zlib)")
    p.add_argument("-k", "--num-samples", type=_at_least(1), default=100, help="importance samples for neg_iwae and "
                                                                                "complexity (default: 100)")
    p.add_argument("--max-examples", type=_at_least(1), help="at most N examples of each set")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")

    p = sub.add_parser("edit", help="move test codes along an attribute vector (mean code of B minus mean code of A)")
    _add_run(p)
    p.add_argument("--from-label", type=int, required=True, help="the group A the edited examples come from")
    p.add_argument("--to-label", type=int, required=True, help="the group B they move towards")
    p.add_argument("--strengths", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2],
                   help="multiples of the vector (default: 0 0.5 1 1.5 2)")
    p.add_argument("-n", type=_at_least(1), default=8, help="test examples of A to edit (default: 8)")
    p.add_argument("--attribute", type=int, help="with factor labels (N, K): use column K as the binary attribute")

    p = sub.add_parser("inpaint", help="fill hidden pixels of test images by conditioning on the observed ones")
    _add_run(p)
    p.add_argument("--mask", default="center", help="center, left, top, quadrant or random:P (default: center)")
    p.add_argument("--method", choices=["importance", "gibbs"], default="importance",
                   help="importance resampling with the guide, or pseudo-Gibbs (default: importance)")
    p.add_argument("-k", "--num-samples", type=_at_least(1), default=100, help="importance samples (default: 100)")
    p.add_argument("--steps", type=_at_least(2), default=50, help="pseudo-Gibbs steps (default: 50)")
    p.add_argument("-n", type=_at_least(1), default=8, help="examples in the figure (default: 8)")
    p.add_argument("--max-examples", type=_at_least(1), default=500, help="test examples scored (default: 500)")

    p = sub.add_parser("upscale", help="super-resolution: condition on the average-pooled test images")
    _add_run(p)
    p.add_argument("--factor", type=int, choices=[2, 4], default=2, help="pooling factor (default: 2)")
    p.add_argument("-k", "--num-samples", type=_at_least(1), default=100, help="importance samples (default: 100)")
    p.add_argument("-n", type=_at_least(1), default=8, help="examples in the figure (default: 8)")
    p.add_argument("--max-examples", type=_at_least(1), default=500, help="test examples scored (default: 500)")

    p = sub.add_parser("disentanglement", help="BetaVAE, FactorVAE, MIG, DCI and SAP scores of a run's code against "
                                               "its data's ground-truth factors (dsprites)")
    p.add_argument("run", help="a run directory written by `ppvae train`")
    p.add_argument("--metric", dest="metrics", action="append", metavar="NAME",
                   help="beta_vae, factor_vae, mig, dci, sap (repeatable; default: all)")
    _add_metric_sizes(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")

    p = sub.add_parser("molecules", help="validity, uniqueness, novelty, diversity, properties and reconstruction of "
                                         "a molecule VAE (RDKit)")
    p.add_argument("run", help="a run directory written by `ppvae train` on moses or smiles-file data")
    p.add_argument("-n", type=_at_least(1), default=10000, help="molecules to sample (default: 10000)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")

    p = sub.add_parser("optimize", help="property optimisation in a molecule VAE's latent space (gradient ascent on a "
                                        "property predictor), reporting true RDKit values")
    p.add_argument("run", help="a run directory of a molecule model (moses or smiles-file data)")
    p.add_argument("--property", default="qed", choices=["qed", "logp", "mw"], help="the property to raise (default: qed)")
    p.add_argument("--steps", type=_at_least(1), default=100, help="gradient steps from each start (default: 100)")
    p.add_argument("--starts", type=_at_least(1), default=5, help="test molecules to start from (default: 5)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam step size on z (default: 0.05)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")

    p = sub.add_parser("sweep", help="train every combination of a grid of spec values over seeds, then tabulate and "
                                     "plot reconstruction, KL and the disentanglement metrics against them")
    p.add_argument("spec", nargs="?", help="TOML spec file; omitted keys take the defaults")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a spec key and its values, e.g. --grid beta.value=1,2,4,8,16 (repeatable: all combinations)")
    p.add_argument("--seeds", type=_at_least(1), default=1, help="seeds per combination: seed, seed+1, ... (default: 1)")
    p.add_argument("--jobs", type=_at_least(1), default=1, help="runs trained at once, at most one per CPU core "
                                                                "(default: 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field for every run, e.g. --set train.epochs=10")
    p.add_argument("--out", help="sweep directory (default: sweeps/<spec name>)")
    p.add_argument("--no-metrics", action="store_true", help="leave out the disentanglement metrics")
    _add_metric_sizes(p)
    p.add_argument("--no-figures", action="store_true")

    p = sub.add_parser("export", help="write a run's trained model (spec, weights, rebuild record) to one file, "
                                      "for ppvae.load(FILE)")
    p.add_argument("run", help="run directory")
    p.add_argument("out", help="the file to write, e.g. model.pt")

    p = sub.add_parser("evaluate", help="test ELBO, IWAE log-likelihood, collapse and guide diagnostics, figures")
    p.add_argument("run", help="a run directory written by `ppvae train`")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", "--num-samples", type=_at_least(1), default=1000,
                   help="importance samples per example for the IWAE estimate and PSIS (default: 1000)")
    p.add_argument("--max-examples", type=_at_least(2), help="evaluate only the first N test examples (N >= 2)")
    p.add_argument("--tsne", action="store_true", help="also draw a t-SNE of the latent codes (slower)")
    p.add_argument("--sample-quality", action="store_true",
                   help="also the Frechet distance (in a classifier trained once per dataset) and sharpness of prior "
                        "samples, reconstructions and gmm samples (labelled image data)")
    p.add_argument("--no-figures", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    if args.traceback:
        with _traceback_env():
            return _run_command(args)
    try:
        return _run_command(args)
    except (ValueError, OSError, RuntimeError, ArithmeticError, ImportError) as e:  # NaN losses are FloatingPointErrors
        # Pyro's trace appends the sites' shapes to an error raised inside a traced program
        print(f"ppvae {args.command}: error: {str(e).split(chr(10) + 'Trace Shapes:')[0].rstrip()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "started_run", None)
        from .inference.checkpoint import CHECKPOINT

        if run_dir is not None and (run_dir / CHECKPOINT).is_file():
            message = (f"interrupted; the checkpoint of the last finished epoch is intact: continue with "
                       f"`ppvae train --resume {run_dir}`")
        elif run_dir is not None:
            message = "interrupted before the first epoch finished: nothing was saved"
        else:
            message = "interrupted"
        print(f"\n{message}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _traceback_env():
    """``--traceback``: errors in a user's program raise as they are (PPVAE_TRACEBACK=1 for this command)."""
    from .inference.program import TRACEBACK_ENV

    before = os.environ.get(TRACEBACK_ENV)
    os.environ[TRACEBACK_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRACEBACK_ENV, None)
        else:
            os.environ[TRACEBACK_ENV] = before


def _run_command(args) -> int:
    from .inference.distributed import leave

    try:
        status = _COMMANDS[args.command](args)
    except BaseException:
        leave()
        raise
    leave(together=True)  # under torchrun: all ranks leave the process group together
    return status


def _train(args) -> int:
    from .inference.run import default_run_dir, resume, spec_world, train_spec
    from .spec import load_spec

    if args.nproc is not None and args.nproc != 1:
        return _launch(args)
    if args.deterministic:
        args.overrides = [*args.overrides, "train.deterministic=true"]
    start, before = time.perf_counter(), 0
    if args.resume:
        if args.spec:
            raise ValueError("give either a spec or --resume RUN, not both (use --set to change the resumed spec)")
        if args.run_dir:
            raise ValueError("--resume RUN continues in RUN; it cannot be combined with --run-dir")
        args.started_run = Path(args.resume)
        run = resume(args.resume, args.overrides, progress=not args.quiet)
        before = run.resumed_from
        if len(run.metrics) == before:
            print(f"nothing to train: {args.resume} has finished its {before} epochs; raise train.epochs "
                  f"(--set train.epochs={before + 10}) to train on")
            return 0
    else:
        spec = load_spec(args.spec, args.overrides)
        args.started_run = run_dir = spec_world(spec).broadcast(Path(args.run_dir) if args.run_dir else
                                                                default_run_dir(spec))  # one name for all ranks
        if args.quiet and spec_world(spec).is_main:  # the progress display names it otherwise
            print(f"run directory: {args.started_run}", flush=True)
        run = train_spec(spec, run_dir=run_dir, progress=not args.quiet)
    if not spec_world(run.spec).is_main:
        return 0
    last = run.metrics[-1] if run.metrics else {}
    print(f"trained {len(run.metrics) - before} epochs (to epoch {len(run.metrics)}) in {time.perf_counter() - start:.1f}s; "
          f"test ELBO {last.get('test_elbo', float('nan')):.2f} nats/example")
    print(f"run directory: {run.run_dir}  (spec.toml, checkpoint.pt, metrics.csv, figures/)")
    return 0


def _launch(args) -> int:
    """``ppvae train --nproc N ...``: the same command under torchrun, on N processes of this machine."""
    from .inference.distributed import check_backend, check_nproc, launch, torchrun_env
    from .inference.lock import RunLock
    from .inference.train import check_fresh
    from .inference.run import default_run_dir, run_spec
    from .inference.train import resolve_device
    from .spec import load_spec

    if torchrun_env() is not None:
        raise ValueError("--nproc starts torchrun itself; under torchrun, leave --nproc out (torchrun's "
                         "--nproc_per_node says how many processes)")
    spec = run_spec(args.resume, args.overrides) if args.resume else load_spec(args.spec, args.overrides)
    device = resolve_device(spec["device"])
    check_backend(spec["train"].get("backend", "auto"), device)
    check_nproc(args.nproc, device)
    argv = _without_option(args.argv, "--nproc")
    if not args.resume and not args.run_dir:  # named here, so that every process writes to the same place
        argv += ["--run-dir", str(default_run_dir(spec))]
    target = args.resume or args.run_dir
    if target:  # refused here in one line, before torchrun starts processes that would each say it
        if not args.resume:
            check_fresh(Path(target))
        if Path(target).is_dir():
            RunLock(target).acquire().release()
    return launch(args.nproc, argv)


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _export(args) -> int:
    from .inference.run import export

    path = export(args.run, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); in Python: ppvae.load({str(path)!r})")
    return 0


def _load(args):
    import torch
    from .inference.program import DERIVABLE
    from .inference.run import load_run

    torch.manual_seed(args.seed)
    run = load_run(args.run, device=args.device)
    if not all(run.program.declares(c) for c in DERIVABLE[:4]):
        run.data  # a capability derived from the traces shapes the program's arguments with rows of the data
    return run


def _out(args, default: str) -> Path:
    return Path(args.out) if args.out else Path(args.run) / "figures" / default


def _write_lines(path: Path, lines: list[str]) -> None:
    from .inference.checkpoint import atomic_write_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def _sample(args) -> int:
    from .inference.program import require, require_class
    from .plots import plot_samples

    run = _load(args)
    generate = require(run.model, "generate", "ppvae sample")
    strings = getattr(run.model, "output", None) == "strings"
    if not strings and (args.decoding != "sample" or args.temperature != 1.0):
        raise ValueError("--decoding and --temperature apply to sequence models (sequence_vae); this run's model "
                         f"{run.spec['model']['name']!r} decodes images")
    if args.draws and (strings or args.sampler != "prior"):
        raise ValueError("--draws applies to the prior sampler of models whose outputs are not token strings "
                         "(sequence models draw with --decoding sample)")
    suffix = "_draws" if args.draws else ""
    if args.sampler == "gmm":
        from .evaluate.quality import fit_gmm, sample_gmm

        if strings or args.label is not None:
            raise ValueError("--sampler gmm decodes images of an unconditional model; leave out --label, and for "
                             "sequence models use the prior")
        gmm = fit_gmm(run.model, run.data.train, args.components, seed=args.seed)
        path = _out(args, f"samples_gmm{args.components}.png")
        plot_samples(sample_gmm(run.model, gmm, args.n, seed=args.seed).cpu(), nrow=8, path=path)
        print(f"wrote {path}")
        return 0
    if strings:
        if args.label is not None:
            require_class(run.model, args.label, "ppvae sample --label")
        if not args.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {args.temperature:g}")
        lines = generate(args.n, method=args.decoding, temperature=args.temperature)
        path = _out(args, "samples.txt")
        print("\n".join(lines))
        _write_lines(path, lines)
    elif args.label is None:
        path = _save_images(args, f"samples{suffix}",
                            run.program.generate(args.n, draws=True) if args.draws else generate(args.n))
    else:
        label = require_class(run.model, args.label, "ppvae sample --label")
        path = _save_images(args, f"samples_class{label}{suffix}",
                            run.program.generate(args.n, label, draws=True) if args.draws else generate(args.n, label))
    print(f"wrote {path}")
    return 0


def _save_images(args, name: str, values, like=None) -> Path:
    """A grid of images where the values are images (beside ``like``, the inputs, where given); otherwise, as an
    output that is not an image (a vector, a sequence of another shape), the numbers themselves in an .npy."""
    import numpy as np

    from .evaluate.figures import drawable
    from .plots import plot_reconstructions, plot_samples

    values = values.detach().cpu()
    if drawable(values) and (like is None or values.shape[1:] == like.shape[1:]):
        path = _out(args, f"{name}.png")
        if like is None:
            plot_samples(values, nrow=8, path=path)
        else:
            plot_reconstructions(like.cpu(), values, path=path, n=len(values))
        return path
    path = _out(args, f"{name}.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, values.numpy())
    print(f"{name}: shape {tuple(values.shape)} (not images: saved as numbers)")
    return path


def _augment(args) -> int:
    from .apps.augment import synthesize, write_npz

    if not args.out.endswith(".npz"):  # before the run is loaded: a typo costs nothing
        raise ValueError(f"--out must name an .npz file (the 'file' dataset reads its arrays x and y), got {args.out!r}")
    run = _load(args)
    x, y = synthesize(run.model, args.per_class, seed=args.seed)
    path = write_npz(args.out, x, y)
    names = run.spec["data"]["name"]
    print(f"wrote {path}: {len(y)} samples ({args.per_class} of each of {run.model.num_classes} classes, E[x | z, y] "
          f"from {names}'s {run.spec['model']['name']} run); train on them with --set data.name=file "
          f"--set data.path={path}")
    return 0


def _test_batch(run, n: int | None = None):
    """The first n test examples as the batch the model reads (x, or the whole batch for a conditional model)."""
    from .evaluate.figures import model_inputs
    from .batch import take, to_device

    batch = to_device(take(run.data.batch("test"), slice(0, n)), next(run.model.parameters()).device)
    return model_inputs(run.model, batch)


def _reconstruct(args) -> int:
    from .inference.program import require
    from .batch import as_batch

    run = _load(args)
    reconstruct = require(run.model, "reconstruct", "ppvae reconstruct")
    inputs = _test_batch(run, args.n)
    strings = getattr(run.model, "output", None) == "strings"
    if args.draws and strings:
        raise ValueError("--draws applies to models whose outputs are not token strings")
    if strings:
        pairs = list(zip(run.model.strings(inputs), reconstruct(inputs)))
        for a, b in pairs:
            print(f"  input: {a}\n  recon: {b}\n")
        path = _out(args, "reconstructions.txt")
        _write_lines(path, ["input\treconstruction", *(f"{a}\t{b}" for a, b in pairs)])
        print(f"{sum(a == b for a, b in pairs)} of {len(pairs)} reconstructed exactly; wrote {path}")
        return 0
    x = as_batch(inputs)["x"] if isinstance(inputs, dict) else inputs
    values = run.program.reconstruct(inputs, draws=True) if args.draws else reconstruct(inputs)
    path = _save_images(args, "reconstructions_draws" if args.draws else "reconstructions", values, like=x)
    print(f"wrote {path}")
    return 0


def _interpolate(args) -> int:
    from .inference.program import require
    from .evaluate.figures import interpolation_strips
    from .inference.program import conditional
    from .plots import plot_interpolation

    run = _load(args)
    require(run.model, "encode", "ppvae interpolate")
    require(run.model, "decode", "ppvae interpolate")
    if getattr(run.model, "output", None) == "strings":
        if run.model.representation in ("smiles", "selfies"):
            return _interpolate_molecules(args, run)
        return _interpolate_text(args, run)
    if args.between:
        raise ValueError("--between names two molecules or sentences; it applies to sequence models (sequence_vae on "
                         "moses, smiles-file, fortunes, bible or text data)")
    cond = conditional(run.model)
    available = run.data.test.shape[0] // 2
    if args.pairs > available and not cond:
        raise ValueError(f"--pairs {args.pairs} needs {2 * args.pairs} test examples; this run's test set has "
                         f"{run.data.test.shape[0]}, so at most --pairs {available}")
    batch = _test_batch(run, None if cond else 2 * args.pairs)  # a conditional model pairs examples of one class
    strips = interpolation_strips(run.model, batch, args.pairs, steps=args.steps, method=args.method)
    if strips is None:
        raise ValueError("no class has two test examples to interpolate between")
    path = _out(args, f"interpolation_{args.method}.png")
    within = " within a class (the label held fixed)" if cond else ""
    plot_interpolation(strips.cpu(), path=path, title=f"{args.method.capitalize()} interpolation{within}")
    print(f"wrote {path}")
    return 0


def _interpolate_molecules(args, run) -> int:
    from .apps.molecules import draw_molecules, interpolate_molecules

    ends = args.between or run.model.strings(run.data.test[:2])
    steps = interpolate_molecules(run.model, ends[0], ends[1], steps=args.steps, method=args.method)
    for s in steps:
        print(f"{s['step']:>3}  {'valid  ' if s['valid'] else 'invalid'}  {s['smiles']}")
    print(f"{sum(s['valid'] for s in steps)} of {len(steps)} steps are valid molecules")
    path = _out(args, f"interpolation_{args.method}.png")
    draw_molecules([s["smiles"] if s["valid"] else "" for s in steps], path, per_row=min(len(steps), 5),
                   legends=[f"step {s['step']}" for s in steps])
    print(f"wrote {path}")
    return 0


def _interpolate_text(args, run) -> int:
    from .apps.text import homotopy

    if args.between:
        pairs = [tuple(args.between)]
    else:
        test = run.data.test
        if test.shape[0] < 2:
            raise ValueError("the test set has fewer than two sentences to interpolate between")
        k = min(args.pairs, test.shape[0] // 2)
        pairs = [(test[2 * i], test[2 * i + 1]) for i in range(k)]
    lines = []
    for a, b in pairs:
        path = homotopy(run.model, a, b, steps=args.steps, method=args.method)
        ends = [s if isinstance(s, str) else run.model.strings(s.unsqueeze(0))[0] for s in (a, b)]
        lines += [f"from: {ends[0]}", *(f"{i:>4}  {s}" for i, s in enumerate(path)), f"  to: {ends[1]}", ""]
    print("\n".join(lines).rstrip())
    out = _out(args, f"interpolation_{args.method}.txt")
    _write_lines(out, lines)
    print(f"wrote {out}")
    return 0


def _anomaly(args) -> int:
    from .apps.anomaly import ANOMALY_FILE, SCORES_FILE, evaluate_anomalies

    report = evaluate_anomalies(args.run, anomalous=args.anomalous, normal_class=args.normal_class,
                                scores=args.scores, num_samples=args.num_samples, max_examples=args.max_examples,
                                seed=args.seed, device=args.device, figures=not args.no_figures)
    print(f"normal: {report['normal']['data']} ({report['normal']['examples']}); anomalous: "
          f"{report['anomalous']['data']} ({report['anomalous']['examples']}); higher score = more anomalous")
    print(f"{'score':<16} {'AUROC':>7} {'AP':>7} {'FPR@95%TPR':>11}")
    for name, m in report["scores"].items():
        print(f"{name:<16} {m['auroc']:7.3f} {m['average_precision']:7.3f} {m['fpr_at_95_tpr']:11.3f}")
    run = Path(args.run)
    print(f"wrote {run / ANOMALY_FILE}, {run / SCORES_FILE}"
          + ("" if args.no_figures else f", {run / 'figures' / 'anomaly_roc.png'}, anomaly_histograms.png"))
    return 0


def _edit(args) -> int:
    import torch
    from .evaluate.classify import train_classifier
    from .apps.edit import attribute_vector, edit
    from .plots import plot_interpolation

    run = _load(args)
    data = run.data
    device = next(run.model.parameters()).device

    def labels(y):
        if y is None:
            raise ValueError(f"ppvae edit needs labels, but {run.spec['data']['name']!r} has none")
        if y.ndim == 2:
            if args.attribute is None or not 0 <= args.attribute < y.shape[1]:
                raise ValueError(f"the labels are {y.shape[1]} factor columns; choose one with --attribute "
                                 f"0..{y.shape[1] - 1}")
            return y[:, args.attribute]
        return y

    y_train, y_test = labels(data.train_labels), labels(data.test_labels)
    vector = attribute_vector(run.model, data.train.to(device), y_train.to(device), args.from_label, args.to_label)
    rows = (y_test == args.from_label).nonzero().squeeze(1)[: args.n]
    if len(rows) == 0:
        raise ValueError(f"--from-label {args.from_label}: no test example has that label")
    strips = edit(run.model, data.test[rows].to(device), vector, args.strengths).cpu()
    path = _out(args, f"edit_{args.from_label}_to_{args.to_label}.png")
    plot_interpolation(strips, path=path, title=f"Edit along mean code({args.to_label}) - mean code({args.from_label}), "
                                                f"strengths {', '.join(f'{s:g}' for s in args.strengths)}")
    print(f"wrote {path}")
    # the judge: the benchmarks' small classifier, trained on the real training data
    judge = train_classifier(data.train, y_train, int(y_train.max()) + 1, steps=1000, seed=args.seed)
    with torch.no_grad():
        probs = [judge(strips[:, i]).softmax(-1)[:, args.to_label].mean().item() for i in range(strips.shape[1])]
    print(f"P(label {args.to_label}) by a classifier trained on the real data, mean over {len(rows)} edits:")
    for s, p in zip(args.strengths, probs):
        print(f"  strength {s:<5g} {p:.3f}")
    return 0


def _inpaint(args) -> int:
    from .apps.inpaint import inpaint_report, make_mask
    from .plots import plot_inpainting

    run = _load(args)
    device = next(run.model.parameters()).device
    x = run.data.test[: args.max_examples].to(device)
    mask = make_mask(args.mask, x.shape[1:], seed=args.seed).to(device)
    report, filled = inpaint_report(run.model, run.data.train.to(device), x, mask, method=args.method,
                                    num_samples=args.num_samples, steps=args.steps, seed=args.seed)
    name = args.mask.replace(":", "")
    path = _out(args, f"inpaint_{name}_{args.method}.png")
    plot_inpainting(x[: args.n].cpu(), mask.cpu(), filled[: args.n].cpu(), path=path,
                    title=f"{args.mask}, {args.method}")
    print(f"mask {args.mask}: {int((~mask).sum())} of {mask.numel()} pixels hidden; {len(x)} test examples, per example")
    print(f"{'way':<14} {'held-out log-lik (nats)':>24} {'squared error':>14}")
    for way, r in report.items():
        ll = r.get("held_out_log_likelihood")
        print(f"{way:<14} {'-' if ll is None else f'{ll:.2f}':>24} {r['squared_error']:14.2f}")
    print(f"wrote {path}")
    return 0


def _upscale(args) -> int:
    import torch
    from .apps.inpaint import upscale_report
    from .plots import plot_interpolation

    run = _load(args)
    x = run.data.test[: args.max_examples].to(next(run.model.parameters()).device)
    report, images = upscale_report(run.model, x, args.factor, num_samples=args.num_samples, seed=args.seed)
    side = x.shape[-1] // args.factor
    print(f"x{args.factor} super-resolution of {len(x)} test examples from {side}x{side}, per example")
    print(f"{'way':<10} {'log-lik of the truth (nats)':>28} {'squared error':>14}")
    for way, r in report.items():
        note = "   (its pixels read as Bernoulli means)" if way == "bilinear" else ""
        print(f"{way:<10} {r['log_likelihood']:28.2f} {r['squared_error']:14.2f}{note}")
    path = _out(args, f"upscale_x{args.factor}.png")
    strips = torch.stack([images["low"][: args.n], images["bilinear"][: args.n], images["model"][: args.n],
                          x[: args.n]], 1)
    plot_interpolation(strips.cpu(), path=path, title=f"x{args.factor}: low-res | bilinear | model | truth")
    print(f"wrote {path}")
    return 0


def _disentanglement(args) -> int:
    from .evaluate.disentanglement import DISENTANGLEMENT_FILE, METRICS, disentanglement_report

    scores = disentanglement_report(args.run, device=args.device, figures=not args.no_figures, seed=args.seed,
                                    metrics=tuple(args.metrics or METRICS), **_metric_sizes(args))
    s = scores["settings"]
    print(f"factors: {', '.join(f'{n} ({k})' for n, k in zip(scores['factor_names'], scores['factor_sizes']))}; "
          f"seed {s['seed']}; {s['num_train']} / {s['num_eval']} codes (MIG, SAP), {s['dci_train']} / {s['dci_eval']} "
          f"(DCI), {s['num_votes']} / {s['num_votes_eval']} points of {s['batch_size']} (BetaVAE, FactorVAE)")
    for name, value in scores["summary"].items():
        print(f"{name:<22} {value:.3f}")
    if "dimension_factors" in scores:
        print("most informative factor per code dimension: " + ", ".join(
            f"z{i}={f} ({m:.2f})" for i, (f, m) in enumerate(zip(scores["dimension_factors"], scores["dimension_mi"]))))
    run = Path(args.run)
    print(f"wrote {run / DISENTANGLEMENT_FILE}" + ("" if args.no_figures or "dimension_factors" not in scores else
          f", {run / 'figures' / 'mutual_information.png'}, {run / 'figures' / 'factor_traversals.png'}"))
    return 0


def _molecules(args) -> int:
    from .apps.molecules import MOLECULES_FILE, molecules_report

    r = molecules_report(args.run, args.n, seed=args.seed, device=args.device, figures=not args.no_figures)
    print(f"{r['samples']} samples ({r['representation']}), seed {r['seed']}")
    for k in ("validity", "unique@1k", "unique@10k", "novelty", "internal_diversity", "reconstruction_accuracy"):
        print(f"{k:<24} {r[k]:.3f}")
    for k, v in r["property_wasserstein"].items():
        m = r["property_means"][k]
        print(f"{k + ' W1 to test':<24} {v:.3f}  (mean {m['samples']:.2f} samples, {m['test']:.2f} test)")
    run = Path(args.run)
    print(f"wrote {run / MOLECULES_FILE}, {run / 'samples.smi'}" + ("" if args.no_figures else
          f", {run / 'figures' / 'molecules.png'}, {run / 'figures' / 'properties.png'}"))
    return 0


def _optimize(args) -> int:
    import json

    from .apps.molecules import draw_molecules, optimize_property
    from .inference.checkpoint import atomic_write_bytes
    from .inference.run import load_run

    run = load_run(args.run, device=args.device)
    r = optimize_property(run.model, run.data, args.property, steps=args.steps, lr=args.lr, starts=args.starts,
                          seed=args.seed)
    print(f"{args.property}: predictor R^2 {r['predictor_r2']:.3f} on training codes; {r['steps']} steps from "
          f"{r['starts']} test molecules; improved {r['improved']} of {r['starts']}")
    for i, x in enumerate(r["runs"]):
        best = x["best"]
        tail = f"best {best['smiles']} ({best['value']:.3f}, step {best['step']})" if best else "no valid decoding"
        print(f"  {i}: start {x['start']} ({x['start_value']:.3f}) -> {tail}")
    path = Path(args.run) / "optimize.json"
    atomic_write_bytes(path, json.dumps(r, indent=2).encode())
    wrote = [str(path)]
    if not args.no_figures:
        pairs = [(x["start"], f"start {x['start_value']:.2f}") for x in r["runs"] if x["start_value"] is not None] + \
                [(x["best"]["smiles"], f"best {x['best']['value']:.2f}") for x in r["runs"] if x["best"]]
        figure = Path(args.run) / "figures" / f"optimize_{args.property}.png"
        draw_molecules([p[0] for p in pairs], figure, per_row=max(1, len(r["runs"])), legends=[p[1] for p in pairs])
        wrote.append(str(figure))
    print("wrote " + ", ".join(wrote))
    return 0


def _sweep(args) -> int:
    from .apps.sweep import SUMMARY_FILE, SWEEP_FIGURE, format_summary, parse_grid, sweep, sweep_dir

    grid = parse_grid(args.grid)
    metrics = None if args.no_metrics else {"figures": not args.no_figures, **_metric_sizes(args)}
    rows = sweep(args.spec, grid, seeds=args.seeds, jobs=args.jobs, out=args.out, overrides=args.overrides,
                 metric_options=metrics, figures=not args.no_figures)
    print(format_summary(rows, list(grid)))
    where = sweep_dir(args.spec, args.out)
    print(f"wrote {where / SUMMARY_FILE}" + ("" if args.no_figures else f", {where / 'figures' / SWEEP_FIGURE}"))
    return 0


def _evaluate(args) -> int:
    import torch
    from .evaluate.report import REPORT_FILE, evaluate_run, summary

    torch.manual_seed(args.seed)
    report = evaluate_run(args.run, num_samples=args.num_samples, max_examples=args.max_examples, seed=args.seed,
                          device=args.device, figures=not args.no_figures, tsne=args.tsne,
                          quality=args.sample_quality)
    print(summary(report))
    print(f"wrote {Path(args.run) / REPORT_FILE}, {Path(args.run) / 'posterior.nc'}"
          + (f" and {len(report['figures'])} figures in {Path(args.run) / 'figures'}" if "figures" in report else "")
          + f" in {report['seconds']:.0f}s")
    return 0


_COMMANDS = {"export": _export, "train": _train, "sample": _sample, "augment": _augment, "anomaly": _anomaly, "edit": _edit, "inpaint": _inpaint, "upscale": _upscale, "reconstruct": _reconstruct, "interpolate": _interpolate,
             "evaluate": _evaluate, "disentanglement": _disentanglement, "sweep": _sweep, "molecules": _molecules,
             "optimize": _optimize}

if __name__ == "__main__":
    sys.exit(main())
