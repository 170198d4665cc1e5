"""``ppvae sample``."""

from __future__ import annotations

from .common import at_least, load, out_path, save_images, write_lines

HELP = "decode draws from the prior"
FLAGS = ("run", "checkpoint", "device", "seed", "out")


def add_arguments(p) -> None:
    p.add_argument("-n", type=at_least(1), default=64, help="number of samples (default: 64)")
    p.add_argument("--label", type=int, help="generate this class (conditional models: cvae, m2)")
    p.add_argument("--decoding", choices=["sample", "greedy", "beam"], default="sample",
                   help="sequence models: token by token at random, the likeliest token, or beam "
                        "search (default: sample)")
    p.add_argument("--sampler", choices=["prior", "gmm"], default="prior",
                   help="draw codes from the prior, or from a Gaussian mixture fitted to the training set's posterior "
                        "means (ex-post density estimation, Ghosh et al. 2020) (default: prior)")
    p.add_argument("--components", type=at_least(1), default=10,
                   help="mixture components of --sampler gmm (default: 10)")
    p.add_argument("--draws", action="store_true",
                   help="draws from the observation distribution instead of its mean (derived from the model's trace)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sequence models: divides the logits when sampling; below 1 is more conservative (default: 1)")


def run(args) -> int:
    from ..evaluate.figures import drawable
    from ..inference.contract import output_of
    from ..inference.program import require, require_class
    from ..plots import plot_samples

    run = load(args)
    generate = require(run.model, "generate", "ppvae sample")
    strings = output_of(run.model).text
    if not strings and (args.decoding != "sample" or args.temperature != 1.0):
        raise ValueError("--decoding and --temperature apply to sequence models (sequence_vae); this run's model "
                         f"{run.spec['model']['name']!r} decodes images")
    if args.draws and (strings or args.sampler != "prior"):
        raise ValueError("--draws applies to the prior sampler of models whose outputs are not token strings "
                         "(sequence models draw with --decoding sample)")
    suffix = "_draws" if args.draws else ""
    if args.sampler == "gmm":
        from ..evaluate.quality import fit_gmm, sample_gmm

        if strings or args.label is not None:
            raise ValueError("--sampler gmm decodes images of an unconditional model; leave out --label, and for "
                             "sequence models use the prior")
        gmm = fit_gmm(run.model, run.data.train, args.components, seed=args.seed)
        path = out_path(args, f"samples_gmm{args.components}.png")
        plot_samples(sample_gmm(run.model, gmm, args.n, seed=args.seed).cpu(), nrow=8, path=path)
        print(f"wrote {path}")
        return 0
    if strings:
        if args.label is not None:
            require_class(run.model, args.label, "ppvae sample --label")
        if not args.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {args.temperature:g}")
        lines = generate(args.n, method=args.decoding, temperature=args.temperature)
        path = out_path(args, "samples.txt")
        print("\n".join(lines))
        write_lines(path, lines)
    elif args.label is None:
        path = save_images(args, f"samples{suffix}",
                            run.program.generate(args.n, draws=True) if args.draws else generate(args.n))
    else:
        label = require_class(run.model, args.label, "ppvae sample --label")
        values = run.program.generate(args.n, label, draws=True) if args.draws else generate(args.n, label)
        if drawable(values):  # titled by its class, by name where the dataset names its classes
            classes = run.data.classes
            name = f" ({classes[label]})" if classes and label < len(classes) and classes[label] != str(label) else ""
            path = out_path(args, f"samples_class{label}{suffix}.png")
            plot_samples(values.detach().cpu(), nrow=8, path=path, title=f"Prior samples of class {label}{name}")
        else:
            path = save_images(args, f"samples_class{label}{suffix}", values)
    print(f"wrote {path}")
    return 0
