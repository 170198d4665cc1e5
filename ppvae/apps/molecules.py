"""Chemistry metrics of a molecule VAE, with RDKit, as MOSES defines them (Polykovskiy et al. 2020):

* **validity**: the share of generated strings RDKit parses into a molecule (an empty string is invalid);
* **unique@k**: among the first k valid molecules, the share of distinct canonical SMILES;
* **novelty**: the share of distinct valid molecules not in the training set (canonical SMILES compared);
* **internal diversity**: 1 - the mean Tanimoto similarity of Morgan fingerprints (radius 2, 1024 bits) over
  pairs of distinct valid molecules (MOSES's IntDiv1 averages over all pairs, self-pairs included; that is
  1 - mean over pairs i != j scaled by (n - 1) / n plus 1 / n);
* **property distributions**: QED, logP (Crippen), molecular weight and, where RDKit's contributed SA scorer is
  installed, the synthetic-accessibility score, of valid samples against the test molecules, with the
  Wasserstein-1 distance between the two (MOSES's property metric);
* **FCD/Test**: the Frechet ChemNet distance of the valid samples to the test molecules (Preuer et al. 2018), with
  MOSES's implementation ``fcd_torch`` where it is installed (its wheel ships ChemNet's weights);
* **reconstruction accuracy**: the share of test molecules whose greedy decoding of the posterior mean is the same
  molecule (canonical SMILES equal).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data.molecules import need
from ..inference.contract import output_of
from ..progress import Stages, bar

MOLECULES_FILE = "molecules.json"


def _chem():
    need("rdkit")
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")
    return Chem


def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES, or None where the string is not a molecule."""
    if not smiles:
        return None
    mol = _chem().MolFromSmiles(smiles)
    return None if mol is None else _chem().MolToSmiles(mol)


def validity(smiles: list[str]) -> float:
    return sum(canonical(s) is not None for s in smiles) / max(1, len(smiles))


def unique_at(smiles: list[str], k: int) -> float:
    """unique@k: distinct canonical SMILES among the first k valid molecules (all of them where fewer)."""
    valid = [c for c in (canonical(s) for s in smiles) if c is not None][:k]
    return len(set(valid)) / len(valid) if valid else 0.0


def uniqueness(smiles: list[str], ks: tuple[int, ...] = (1000, 10000)) -> dict[str, float]:
    """unique@k for each k the valid molecules reach (``unique@1k``, ``unique@10k``); where they fall short of the
    largest k, uniqueness over all of them is named by their number (``unique@233``), with a warning, rather than
    reported under a name that promises more molecules than were drawn."""
    valid = sum(canonical(s) is not None for s in smiles)
    out = {_at(k): unique_at(smiles, k) for k in ks if valid >= k}
    if valid < max(ks):
        if valid:
            out[f"unique@{valid}"] = unique_at(smiles, valid)
        warnings.warn(f"{_at(max(ks))} needs {max(ks):,} valid molecules; {len(smiles):,} samples gave {valid:,}, so "
                      f"uniqueness is reported as unique@{valid}"
                      + (f" (and {', '.join(_at(k) for k in ks if valid >= k)})" if valid >= min(ks) else "")
                      + "; sample more (-n) for the named metric", stacklevel=2)
    return out


def _at(k: int) -> str:
    return f"unique@{k // 1000}k" if k % 1000 == 0 else f"unique@{k}"


def novelty(smiles: list[str], training: list[str]) -> float:
    """The share of distinct valid generated molecules that are not training molecules."""
    generated = {c for c in (canonical(s) for s in smiles) if c is not None}
    known = {c for c in (canonical(s) for s in training) if c is not None}
    return len(generated - known) / len(generated) if generated else 0.0


def fingerprints(smiles: list[str]):
    from rdkit.Chem import rdFingerprintGenerator
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    mols = [_chem().MolFromSmiles(s) for s in smiles]
    return [generator.GetFingerprint(m) for m in mols if m is not None]


def internal_diversity(smiles: list[str], max_molecules: int = 2000) -> float:
    """1 - mean Tanimoto similarity over pairs of distinct valid molecules (the first ``max_molecules``)."""
    from rdkit import DataStructs
    fps = fingerprints([s for s in smiles if canonical(s) is not None][:max_molecules])
    if len(fps) < 2:
        return 0.0
    total = 0.0
    for i in range(1, len(fps)):
        total += sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[:i]))
    return 1.0 - total / (len(fps) * (len(fps) - 1) / 2)


def frechet_chemnet_distance(smiles: list[str], reference: list[str]) -> float | None:
    """FCD (Preuer et al. 2018): the Frechet distance between the ChemNet activations of the valid molecules among
    ``smiles`` and those of ``reference`` (canonical SMILES), as MOSES computes FCD/Test, through ``fcd_torch``
    (MOSES's own implementation, whose wheel ships ChemNet's weights; installed by the ``molecules`` extra).
    None where ``fcd_torch`` is not installed; nan with fewer than 2 valid molecules."""
    try:
        from fcd_torch import FCD
    except ImportError:
        return None
    valid = [c for c in map(canonical, smiles) if c is not None]
    if len(valid) < 2 or len(reference) < 2:
        return math.nan
    with warnings.catch_warnings():  # fcd_torch loads its Keras-converted weights with torch.load's old default
        warnings.simplefilter("ignore")
        return float(FCD(device="cpu", n_jobs=1)(valid, list(reference)))


def _sa_scorer():
    from rdkit.Chem import RDConfig
    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(path, "sascorer.py")):
        return None
    if path not in sys.path:
        sys.path.append(path)
    import sascorer
    return sascorer.calculateScore


def properties(smiles: list[str]) -> dict[str, list[float]]:
    """QED, logP, molecular weight (and SA where available) of each valid molecule."""
    from rdkit.Chem import QED, Crippen, Descriptors
    sa = _sa_scorer()
    out = {"qed": [], "logp": [], "mw": [], **({"sa": []} if sa else {})}
    for s in smiles:
        mol = _chem().MolFromSmiles(s) if s else None
        if mol is None:
            continue
        out["qed"].append(QED.qed(mol))
        out["logp"].append(Crippen.MolLogP(mol))
        out["mw"].append(Descriptors.MolWt(mol))
        if sa:
            out["sa"].append(sa(mol))
    return out


PROPERTIES = {"qed": "QED", "logp": "logP", "mw": "molecular weight", "sa": "SA score"}


def property_distances(generated: dict, reference: dict) -> dict[str, float]:
    from scipy.stats import wasserstein_distance
    return {k: float(wasserstein_distance(generated[k], reference[k])) for k in generated
            if generated[k] and reference.get(k)}


def reconstruction_accuracy(model, x: torch.Tensor, batch_size: int = 256, progress: bool = False) -> float:
    """The share of molecules whose greedy reconstruction is the same molecule (canonical SMILES); ``progress``:
    a bar over the molecules, updated per batch."""
    hits = 0
    with bar(len(x), "reconstruction", progress, unit="molecule") as shown:
        for i in range(0, len(x), batch_size):
            part = x[i:i + batch_size]
            for a, b in zip(model.strings(part), model.reconstruct(part)):
                hits += canonical(a) is not None and canonical(a) == canonical(b)
            shown.update(len(part))
    return hits / max(1, len(x))


def molecule_metrics(model, data, n: int = 10000, *, seed: int = 0, max_reconstruct: int = 1000,
                     temperature: float = 1.0, progress: bool = True) -> dict:
    """Every metric above for ``n`` samples of a trained sequence model on its data (``molecules.json``'s
    content), with the samples themselves. ``progress``: a bar over the metrics, and one over the samples and
    the reconstructed molecules."""
    from ..traces import seeded_eval
    if not output_of(model).text:
        raise ValueError(f"{type(model).__name__} does not generate strings; molecule metrics need a sequence model "
                         f"trained on molecules (data.name=moses or smiles-file)")
    device = next(model.parameters()).device
    with Stages("molecule metrics", 8, progress) as stage:
        with seeded_eval(seed, device, model):
            stage(f"sampling {n} molecules")
            samples = []
            with bar(n, "sampling", progress, unit="molecule") as shown:
                for start in range(0, n, 1000):
                    samples += model.generate(min(1000, n - start), temperature=temperature)
                    shown.update(min(1000, n - start))
            stage("decoding the training and test molecules")
            train = model.strings(data.train)
            test = model.strings(data.test)
            stage("reconstruction")
            recon = reconstruction_accuracy(model, data.test[:max_reconstruct].to(device), progress=progress)
        stage("properties")
        gen_props, test_props = properties(samples), properties(test)
        stage("validity and uniqueness")
        valid, unique = validity(samples), uniqueness(samples)
        stage("novelty")
        novel = novelty(samples, train)
        stage("internal diversity")
        diversity = internal_diversity(samples)
        stage("FCD")
        fcd = frechet_chemnet_distance(samples, test)
    return {
        "samples": n, "seed": seed, "temperature": temperature, "representation": model.representation,
        "validity": valid, **unique,
        "novelty": novel, "internal_diversity": diversity,
        "fcd_test": fcd,
        **({} if fcd is not None else {"fcd_how": "not computed: pip install fcd_torch (in the molecules extra)"}),
        "reconstruction_accuracy": recon, "reconstruction_examples": min(max_reconstruct, len(data.test)),
        "property_wasserstein": property_distances(gen_props, test_props),
        "property_means": {k: {"samples": float(np.mean(v)) if v else math.nan,
                               "test": float(np.mean(test_props[k])) if test_props.get(k) else math.nan}
                           for k, v in gen_props.items()},
        "_samples": samples, "_properties": (gen_props, test_props),
    }


def molecules_report(run_dir, n: int = 10000, *, seed: int = 0, device: str = "cpu", figures: bool = True,
                     progress: bool = True, checkpoint: str = "auto") -> dict:
    """``ppvae molecules RUN``: the metrics written to ``RUN/molecules.json``, the samples to
    ``RUN/samples.smi``, and ``RUN/figures/molecules.png`` (a grid of valid samples) and
    ``RUN/figures/properties.png`` (property histograms of samples against the test set). ``progress``: a bar over
    the metrics (``--quiet``: none). ``checkpoint``: which weights, as :func:`~ppvae.load_run` reads them
    (``"auto"``: ``best.pt`` where the run kept one, else the latest); the metrics record the file and the epoch."""
    from ..inference.checkpoint import atomic_write_bytes
    from ..inference.run import load_run

    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    result = molecule_metrics(run.model, run.data, n, seed=seed, progress=progress)
    result["checkpoint"] = run.read_from
    samples = result.pop("_samples")
    gen_props, test_props = result.pop("_properties")
    atomic_write_bytes(run_dir / MOLECULES_FILE, json.dumps(result, indent=2).encode())
    atomic_write_bytes(run_dir / "samples.smi", ("\n".join(samples) + "\n").encode())
    if figures:
        from .. import plots
        out = run_dir / "figures"
        out.mkdir(parents=True, exist_ok=True)
        draw_molecules([s for s in samples if canonical(s)][:24], out / "molecules.png")  # each over its SMILES
        plots.plot_property_histograms(gen_props, test_props, path=out / "properties.png")
    return result


def draw_molecules(smiles: list[str], path, per_row: int = 6, legends: list[str] | None = None) -> None:
    """A grid image of molecules (RDKit's drawing), each over its SMILES (under its legend, where given); a string
    that is no molecule is a cell with a dummy atom marked "(invalid)"."""
    from rdkit.Chem.Draw import rdMolDraw2D
    Chem = _chem()
    mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    legends = molecule_legends(smiles, mols, legends)
    per_row = max(1, min(per_row, len(mols)))
    rows = max(1, -(-len(mols) // per_row))
    # The Cairo drawer directly, not Draw.MolsToGridImage, which returns an IPython image inside Jupyter.
    drawer = rdMolDraw2D.MolDraw2DCairo(250 * per_row, 200 * rows, 250, 200)  # room for the SMILES
    blank = Chem.MolFromSmiles("*")  # an invalid string's cell: a lone dummy atom over its "(invalid)" legend
    drawer.DrawMolecules([m if m is not None else blank for m in mols], legends=legends)
    drawer.FinishDrawing()
    from ..inference.checkpoint import atomic_write_bytes
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), drawer.GetDrawingText())


def molecule_legends(smiles: list[str], mols: list, legends: list[str] | None = None) -> list[str]:
    """The text under each molecule of a grid: its legend (where given) over its SMILES as given, with
    "(invalid)" where the string is no molecule."""
    legends = list(legends) if legends else ["" for _ in smiles]
    return ["\n".join(t for t in (text, f"{s} (invalid)".strip() if m is None else s) if t)
            for text, s, m in zip(legends, smiles, mols)]


# ---- the latent space ------------------------------------------------------------------------------------
def encode_molecules(model, smiles: list[str]) -> torch.Tensor:
    """Token rows of SMILES for a trained sequence model: tokenized in its representation and checked against its
    vocabulary and maximum length (one line naming the molecule and the token or the length otherwise)."""
    from ..data.molecules import tokenize
    for s in smiles:
        if canonical(s) is None:
            raise ValueError(f"{s!r} is not a SMILES RDKit can parse")
    ids = model.vocab.encode(tokenize(smiles, model.representation), model.max_length)
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def interpolate_molecules(model, start: str, end: str, steps: int = 8, method: str = "linear") -> list[dict]:
    """The decoded path between two molecules' posterior means (``linear`` or ``spherical``): each step's SMILES and
    whether it is a valid molecule."""
    from ..evaluate.latent import lerp, slerp
    if method not in ("linear", "spherical"):
        raise ValueError(f"method must be 'linear' or 'spherical', got {method!r}")
    z = model.encode(encode_molecules(model, [start, end]))
    path = (lerp if method == "linear" else slerp)(z[:1], z[1:], steps).reshape(steps, -1)
    return [{"step": i, "smiles": s, "valid": canonical(s) is not None} for i, s in enumerate(model.decode(path))]


@torch.no_grad()
def neighbourhood(model, smiles: str, n: int = 16, scale: float = 0.5, *, seed: int = 0) -> list[str]:
    """Greedy decodings of codes drawn around a molecule's posterior mean: z = mean + scale * N(0, I)."""
    z = model.encode(encode_molecules(model, [smiles]))
    g = torch.Generator(device=z.device).manual_seed(seed)
    return model.decode(z + scale * torch.randn(n, z.shape[-1], generator=g, device=z.device))


PROPERTY_FUNCTIONS = ("qed", "logp", "mw")


def property_value(smiles: str, name: str) -> float | None:
    """The RDKit value of a property (QED, logP, molecular weight) of a molecule, or None where it is invalid."""
    if name not in PROPERTY_FUNCTIONS:
        raise ValueError(f"property must be one of {', '.join(PROPERTY_FUNCTIONS)}, got {name!r}")
    mol = _chem().MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return None
    from rdkit.Chem import QED, Crippen, Descriptors
    return {"qed": QED.qed, "logp": Crippen.MolLogP, "mw": Descriptors.MolWt}[name](mol)


def train_property_head(model, x: torch.Tensor, name: str, *, steps: int = 500, seed: int = 0):
    """A predictor p(property | z) fitted afterwards on the posterior means of ``x``'s molecules (an MLP
    latent-64-1 with Adam on the squared error), as the property model of Gomez-Bombarelli et al. (2018);
    returns (predictor, training R^2)."""
    smiles = model.strings(x)
    values = [property_value(s, name) for s in smiles]
    keep = [i for i, v in enumerate(values) if v is not None]
    with torch.no_grad():
        z = model.encode(x[keep])
    y = torch.tensor([values[i] for i in keep], dtype=z.dtype, device=z.device)
    mean, std = y.mean(), y.std().clamp(min=1e-6)
    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(z.shape[-1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).to(z.device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    target = (y - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        loss = (head(z).squeeze(-1) - target).square().mean()
        loss.backward()
        opt.step()
    r2 = 1.0 - float(loss.detach()) / float(target.var().clamp(min=1e-12))
    return (lambda codes: head(codes).squeeze(-1) * std + mean), r2


def optimize_property(model, data, name: str = "qed", *, steps: int = 100, lr: float = 0.05, starts: int = 5,
                      seed: int = 0, head_examples: int = 2000, max_norm: float = 3.0) -> dict:
    """Property optimisation in latent space: gradient ascent on a property predictor from the codes of ``starts``
    test molecules, each step's code decoded greedily and scored with RDKit. The codes are kept within a ball of
    radius ``max_norm`` times sqrt(latent_dim) (where the prior has its mass), since far outside it the decoder
    has never been trained. Reports each start's molecule and true value and the best valid decoded molecule."""
    from ..traces import seeded_eval
    device = next(model.parameters()).device
    with seeded_eval(seed, device, model):
        predict, r2 = train_property_head(model, data.train[:head_examples].to(device), name, seed=seed)
        x = data.test[:starts].to(device)
        z0 = model.encode(x)
        radius = max_norm * math.sqrt(z0.shape[-1])
        runs = []
        for i, start in enumerate(model.strings(x)):
            z = z0[i:i + 1].clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            path = []
            for step in range(steps + 1):
                if step % max(1, steps // 10) == 0 or step == steps:
                    with torch.no_grad():
                        smiles = model.decode(z)[0]
                        predicted = float(predict(z))
                    path.append({"step": step, "smiles": smiles, "value": property_value(smiles, name),
                                 "predicted": predicted})
                if step == steps:
                    break
                opt.zero_grad()
                (-predict(z).sum()).backward()
                opt.step()
                with torch.no_grad():
                    norm = z.norm()
                    if norm > radius:
                        z.mul_(radius / norm)
            valid = [p for p in path if p["value"] is not None]
            best = max(valid, key=lambda p: p["value"]) if valid else None
            runs.append({"start": start, "start_value": property_value(start, name), "best": best, "path": path})
    improved = [r for r in runs if r["best"] and r["start_value"] is not None and r["best"]["value"] > r["start_value"]]
    return {"property": name, "steps": steps, "lr": lr, "seed": seed, "predictor_r2": r2, "runs": runs,
            "improved": len(improved), "starts": len(runs)}


OPTIMIZE_FILE = "optimize.json"


def optimize_report(run_dir, name: str = "qed", *, steps: int = 100, lr: float = 0.05, starts: int = 5, seed: int = 0,
                    device: str = "cpu", figures: bool = True, checkpoint: str = "auto") -> tuple[dict, list[Path]]:
    """``ppvae optimize RUN``: ``optimize_property`` on the run's model, written to ``RUN/optimize.json`` and drawn
    (each start beside its best valid molecule) to ``RUN/figures/optimize_<property>.png``; the report and the
    files written. ``checkpoint``: which weights, as in :func:`molecules_report`."""
    from ..inference.checkpoint import atomic_write_bytes
    from ..inference.run import load_run

    run_dir = Path(run_dir)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    r = optimize_property(run.model, run.data, name, steps=steps, lr=lr, starts=starts, seed=seed)
    r["checkpoint"] = run.read_from
    atomic_write_bytes(run_dir / OPTIMIZE_FILE, json.dumps(r, indent=2).encode())
    wrote = [run_dir / OPTIMIZE_FILE]
    if figures:
        pairs = [(x["start"], f"start {x['start_value']:.2f}") for x in r["runs"] if x["start_value"] is not None] + \
                [(x["best"]["smiles"], f"best {x['best']['value']:.2f}") for x in r["runs"] if x["best"]]
        wrote.append(run_dir / "figures" / f"optimize_{name}.png")
        draw_molecules([p[0] for p in pairs], wrote[-1], per_row=max(1, len(r["runs"])), legends=[p[1] for p in pairs])
    return r, wrote
