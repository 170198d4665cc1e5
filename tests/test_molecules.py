"""Molecule VAEs: tokenizers on MOSES molecules, the masked sequence likelihood, chemistry metrics against RDKit,
SELFIES validity, training from the CLI and Python, and bad input."""

import json
import math

import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.data.sequences import END, PAD, Vocabulary

Chem = pytest.importorskip("rdkit.Chem")
sf = pytest.importorskip("selfies")

from ppvae.apps.molecules import (  # noqa: E402
    canonical,
    frechet_chemnet_distance,
    internal_diversity,
    novelty,
    unique_at,
    validity,
)
from ppvae.data.molecules import _read_moses, moses_files, smiles_tokens, tokenize  # noqa: E402
from ppvae.models.sequence import SequenceVAE  # noqa: E402

SMALL = {"embed_dim": 16, "hidden": 32, "latent_dim": 8}


@pytest.fixture(scope="module")
def moses_smiles():
    return _read_moses(moses_files()["test"])[:2000]


def test_smiles_tokens_join_back_and_split_atoms(moses_smiles):
    for s in moses_smiles:
        assert "".join(smiles_tokens(s)) == s
    assert smiles_tokens("C[C@@H](Cl)c1ccc[nH]1Br%10") == ["C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c",
                                                           "[nH]", "1", "Br", "%10"]
    with pytest.raises(ValueError, match=r"SMILES 'CCX' has characters the SMILES tokenizer does not know: 'X'"):
        smiles_tokens("CCX")


def test_selfies_tokens_decode_to_the_same_molecule(moses_smiles):
    for s, tokens in zip(moses_smiles[:500], tokenize(moses_smiles[:500], "selfies")):
        assert canonical(sf.decoder("".join(tokens))) == canonical(s)


def test_vocabulary_round_trip_and_bad_tokens():
    vocab = Vocabulary.build([["C", "O"], ["N", "C"]])
    ids = vocab.encode([["C", "O"], ["N"]], max_length=4)
    assert ids.shape == (2, 5) and ids[0, 2] == END and ids[1, 1] == END and ids[1, 2:].eq(PAD).all()
    assert vocab.decode(ids) == [["C", "O"], ["N"]]
    with pytest.raises(ValueError, match=r"token 'Cl' \(in sequence 0: 'CCl'\) is not in the vocabulary of 3 tokens"):
        vocab.encode([["C", "Cl"]], 4)
    with pytest.raises(ValueError, match=r"sequence 0 has 5 tokens, more than the model's maximum length 4"):
        vocab.encode([["C"] * 5], 4)


def test_the_masked_likelihood_ignores_what_follows_the_end_token():
    torch.manual_seed(0)
    vocab = Vocabulary(["C", "O", "N"])
    model = SequenceVAE((9,), vocab.tokens, **SMALL)
    x = vocab.encode([["C", "O"], ["N", "N", "C", "O"]], 8)
    garbage = x.clone()
    garbage[0, 3:] = torch.tensor([4, 5, 6, 4, 5, 6])  # after row 0's END
    z = torch.randn(2, 8)
    lp = model.likelihood(model.decoder(z, x), x).log_prob(x)
    lp2 = model.likelihood(model.decoder(z, garbage), garbage).log_prob(garbage)
    assert torch.allclose(lp, lp2)
    changed = x.clone()
    changed[0, 1] = 6  # a real token: log p changes
    assert not torch.allclose(lp[0], model.likelihood(model.decoder(z, changed), changed).log_prob(changed)[0])
    assert torch.allclose(model.q.encoder(x), model.q.encoder(garbage))  # the encoder reads up to END as well


def test_chemistry_metrics_agree_with_rdkit_directly():
    generated = ["CCO", "OCC", "c1ccccc1", "C1CC", "XYZ", "", "CCN", "CCO"]
    training = ["CCO", "CCC"]
    mols = [Chem.MolFromSmiles(s) if s else None for s in generated]
    assert validity(generated) == pytest.approx(sum(m is not None for m in mols) / len(generated)) == 5 / 8
    canon = [Chem.MolToSmiles(m) for m in mols if m is not None]
    assert unique_at(generated, 1000) == pytest.approx(len(set(canon)) / len(canon)) == 3 / 5
    assert novelty(generated, training) == pytest.approx(len(set(canon) - {"CCO", "CCC"}) / len(set(canon)))
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in ["CCO", "c1ccccc1", "CCN"]]
    sims = [DataStructs.TanimotoSimilarity(fps[i], fps[j]) for i in range(3) for j in range(i)]
    assert internal_diversity(["CCO", "c1ccccc1", "CCN"]) == pytest.approx(1 - sum(sims) / 3)


def test_fcd_is_zero_between_a_set_and_itself_and_grows_with_the_difference(moses_smiles):
    pytest.importorskip("fcd_torch")  # the molecules extra installs it (ChemNet's weights ship in its wheel)
    a, b = moses_smiles[:200], moses_smiles[200:400]
    assert frechet_chemnet_distance(a + ["XYZ"], a) == pytest.approx(0.0, abs=1e-3)  # invalid strings left out
    near = frechet_chemnet_distance(a, b)  # two samples of MOSES: close, not equal
    far = frechet_chemnet_distance(["C" * k for k in range(1, 60)], b)  # alkane chains against drug-like molecules
    assert 0.0 < near < far and far > 10, (near, far)
    assert math.isnan(frechet_chemnet_distance(["XYZ", "CCO"], b))  # one valid molecule: no covariance


@pytest.fixture(scope="module")
def selfies_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("selfies") / "run"
    ppvae.train_spec({"data": {"name": "moses", "n": 400, "n_test": 60, "representation": "selfies"},
                      "device": "cpu", "model": SMALL, "train": {"epochs": 2}}, run_dir=path, progress=False)
    return path


def test_a_selfies_model_always_samples_valid_molecules(selfies_run):
    run = ppvae.load_run(selfies_run)
    assert run.spec["model"]["name"] == "sequence_vae"  # the default model for token data
    torch.manual_seed(0)
    samples = run.model.generate(200)
    assert validity(samples) == 1.0
    assert (selfies_run / "figures" / "samples.txt").read_text().count("\n") == 32


@pytest.fixture
def legends_drawn(monkeypatch):
    """The legends of every molecule grid RDKit draws during the test, one list per grid."""
    from rdkit.Chem.Draw import rdMolDraw2D

    drawn, cairo = [], rdMolDraw2D.MolDraw2DCairo

    class Recording:
        def __init__(self, *args):
            self.drawer = cairo(*args)

        def DrawMolecules(self, mols, legends):
            drawn.append(list(legends))
            self.drawer.DrawMolecules(mols, legends=legends)

        def __getattr__(self, name):
            return getattr(self.drawer, name)

    monkeypatch.setattr(rdMolDraw2D, "MolDraw2DCairo", Recording)
    return drawn


def test_molecules_verb_writes_the_metrics(selfies_run, capsys, legends_drawn):
    assert main(["molecules", str(selfies_run), "-n", "300"]) == 0
    samples = (selfies_run / "samples.smi").read_text().split("\n")
    assert legends_drawn == [[s for s in samples if canonical(s)][:24]]  # each molecule over its SMILES
    result = json.loads((selfies_run / "molecules.json").read_text())
    assert result["validity"] == 1.0 and result["samples"] == 300 and result["representation"] == "selfies"
    # 300 valid molecules: uniqueness is named by them, never unique@1k
    assert 0 < result["unique@300"] <= 1 and "unique@1k" not in result
    assert 0 <= result["novelty"] <= 1 and 0 < result["internal_diversity"] < 1
    assert set(result["property_wasserstein"]) >= {"qed", "logp", "mw"}
    assert (selfies_run / "figures" / "molecules.png").stat().st_size > 5000
    assert "validity" in capsys.readouterr().out


@pytest.mark.parametrize("representation", ["smiles", "selfies"])
def test_both_representations_train_from_the_cli_with_swapped_components(tmp_path, representation):
    run = tmp_path / representation
    sets = ["data.name=moses", "data.n=300", "data.n_test=50", f"data.representation={representation}",
            "model.embed_dim=16", "model.hidden=32",
            "model.latent_dim=8", "prior.name=laplace", "beta.name=linear", "beta.warmup_epochs=2",
            "train.epochs=3", "train.figures=false", "device=cpu"]
    assert main(["train", *[a for s in sets for a in ("--set", s)], "--run-dir", str(run), "--quiet"]) == 0
    loaded = ppvae.load_run(run)
    assert loaded.metrics[-1]["train_loss"] < loaded.metrics[0]["train_loss"]
    assert loaded.spec["prior"]["name"] == "laplace" and loaded.spec["model"]["representation"] == representation
    assert all(isinstance(s, str) for s in loaded.model.reconstruct(loaded.data.test[:4]))


def test_a_sequence_model_trains_in_python_with_iwae():
    data = ppvae.load_dataset("moses", n=200, n_test=40)
    model = SequenceVAE(data.event_shape, data.vocabulary, representation="smiles", **SMALL)
    run = ppvae.train(model, data, epochs=2, objective={"name": "IWAE", "num_particles": 3}, device="cpu",
                      progress=False, figures=False)
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]


def test_smiles_files_skip_or_refuse_unparsable_molecules(tmp_path, moses_smiles):
    path = tmp_path / "mine.csv"
    path.write_text("name,smiles\n" + "\n".join(f"m{i},{s}" for i, s in enumerate(moses_smiles[:20])) +
                    "\nbad,C1CC(\nworse,CCX\n")
    data = ppvae.load_dataset("smiles-file", path=str(path))
    assert len(data.train) + len(data.val) + len(data.test) == 20 and "2 unparsable skipped" in data.source
    with pytest.raises(ValueError, match=r"molecule 21: 'C1CC\(' is not a SMILES RDKit can parse"):
        ppvae.load_dataset("smiles-file", path=str(path), invalid="error")
    empty = tmp_path / "empty.smi"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"has no molecules"):
        ppvae.load_dataset("smiles-file", path=str(empty))
    with pytest.raises(ValueError, match=r"sequence \d+ has \d+ tokens, more than the model's maximum length 5"):
        ppvae.load_dataset("smiles-file", path=str(path), max_length=5)
    with pytest.raises(ValueError, match=r"data.representation must be one of smiles, selfies, got 'inchi'"):
        ppvae.load_dataset("moses", n=10, representation="inchi")


def test_molecule_metrics_refuse_an_image_model(digits_vae_run, capsys):
    assert main(["molecules", str(digits_vae_run), "-n", "10"]) == 2
    assert "does not generate strings; molecule metrics need a sequence model" in capsys.readouterr().err


def test_ppvae_imports_without_the_chemistry_packages_and_says_how_to_install_them():
    import subprocess
    import sys
    code = ("import sys; sys.modules['rdkit'] = None; sys.modules['selfies'] = None\n"
            "import ppvae\ntry:\n    ppvae.load_dataset('moses', n=10, n_test=5, representation='selfies')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs the 'selfies' package, which is not installed; install the molecule extras: pip install -e " \
           "'.[molecules]'" in out.stdout


def test_interpolating_between_two_molecules(selfies_run, capsys, legends_drawn):
    assert main(["interpolate", str(selfies_run), "--steps", "5", "--between", "CCO", "c1ccccc1O"]) == 0
    out = capsys.readouterr().out
    assert "5 of 5 steps are valid molecules" in out  # SELFIES: every decoding is a molecule
    steps = [line.split()[-1] for line in out.splitlines() if line.split()[:2][1:] == ["valid"]]
    assert legends_drawn == [[f"step {i}\n{s}" for i, s in enumerate(steps)]]  # its step over its SMILES
    assert (selfies_run / "figures" / "interpolation_linear.png").stat().st_size > 3000
    assert main(["interpolate", str(selfies_run), "--between", "CCO", "C[Si](C)C"]) == 2
    assert "is not in the vocabulary" in capsys.readouterr().err


def test_property_optimisation_reports_true_rdkit_values(selfies_run, capsys):
    from ppvae.apps.molecules import property_value
    assert main(["optimize", str(selfies_run), "--property", "logp", "--steps", "10", "--starts", "2"]) == 0
    result = json.loads((selfies_run / "optimize.json").read_text())
    assert result["starts"] == 2 and len(result["runs"]) == 2 and result["property"] == "logp"
    for r in result["runs"]:
        valid = [p for p in r["path"] if p["value"] is not None]
        assert r["best"]["value"] == max(p["value"] for p in valid)
        assert r["best"]["value"] == pytest.approx(property_value(r["best"]["smiles"], "logp"))
        assert r["start_value"] == pytest.approx(property_value(r["start"], "logp"))
    assert "improved" in capsys.readouterr().out
    assert (selfies_run / "figures" / "optimize_logp.png").is_file()


class _Interrupt(Exception):
    pass


def test_a_sequence_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    from ppvae.inference.run import resume

    spec = {"seed": 3, "device": "cpu", "data": {"name": "moses", "n": 200, "n_test": 40},
            "model": SMALL, "beta": {"name": "linear", "warmup_epochs": 2}, "train": {"epochs": 3, "figures": False}}
    full = ppvae.train_spec(spec, run_dir=tmp_path / "full", progress=False)

    def stop(trainer, row):
        if row["epoch"] == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        ppvae.train_spec(spec, run_dir=tmp_path / "cut", progress=False, callbacks=[stop])
    resumed = resume(tmp_path / "cut", progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["val_elbo"] for m in full.metrics] == [m["val_elbo"] for m in resumed.metrics]
    assert resumed.model.reconstruct(resumed.data.test[:5]) == full.model.reconstruct(full.data.test[:5])


def test_a_run_refuses_data_whose_vocabulary_changed(tmp_path, moses_smiles):
    path = tmp_path / "mine.smi"
    path.write_text("\n".join(moses_smiles[:60]) + "\n")
    ppvae.train_spec({"data": {"name": "smiles-file", "path": str(path)}, "device": "cpu", "model": SMALL,
                      "train": {"epochs": 1, "figures": False}}, run_dir=tmp_path / "run", progress=False)
    path.write_text(path.read_text() + "C[Se]C\n")  # the file gained a molecule with a new token
    run = ppvae.load_run(tmp_path / "run")
    with pytest.raises(ValueError, match=r"the data rebuilt from this run's spec has a different vocabulary .*"
                                         r"'\[Se\]'.* the run cannot be evaluated or resumed on it"):
        run.data
    from ppvae.inference.run import resume
    with pytest.raises(ValueError, match=r"different vocabulary .* cannot be evaluated or resumed on it"):
        resume(tmp_path / "run", ["train.epochs=2"], progress=False)


def test_sample_and_reconstruct_print_strings_and_write_text_files(selfies_run, capsys):
    assert main(["sample", str(selfies_run), "-n", "5", "--decoding", "greedy"]) == 0
    lines = (selfies_run / "figures" / "samples.txt").read_text().splitlines()
    assert len(lines) == 5 and all(canonical(s) for s in lines)
    assert "\n".join(lines) in capsys.readouterr().out
    assert main(["sample", str(selfies_run), "-n", "4", "--temperature", "0.5",
                 "--out", str(selfies_run / "t.txt")]) == 0
    assert len((selfies_run / "t.txt").read_text().splitlines()) == 4
    assert main(["reconstruct", str(selfies_run), "-n", "3"]) == 0
    rows = (selfies_run / "figures" / "reconstructions.txt").read_text().splitlines()
    assert rows[0] == "input\treconstruction" and len(rows) == 4
    assert "reconstructed exactly" in capsys.readouterr().out
    assert main(["sample", str(selfies_run), "--temperature", "0"]) == 2
    assert "--temperature must be > 0, got 0" in capsys.readouterr().err


def test_decoding_options_are_refused_for_image_models(digits_vae_run, capsys):
    assert main(["sample", str(digits_vae_run), "--decoding", "greedy"]) == 2
    assert "--decoding and --temperature apply to sequence models" in capsys.readouterr().err
