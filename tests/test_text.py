"""Text: the fortunes and Bible corpora, the word tokenizer, word dropout, per-token likelihood and perplexity,
posterior collapse without annealing and word dropout (and not with them), text verbs, and bad input."""

import math
import shutil
from pathlib import Path

import pytest
import torch

import ppvae
from ppvae.cli import main
from ppvae.data.sequences import END, PAD, START, UNK, per_token

pytest.importorskip("tokenizers")

from ppvae.apps.text import homotopy, text_metrics  # noqa: E402
from ppvae.data.text import FORTUNES, encode_sentences, read_bible, read_fortunes, train_tokenizer, vocabulary_of  # noqa: E402
from ppvae.models.sequence import GRUDecoder, SequenceLM  # noqa: E402

needs_fortunes = pytest.mark.skipif(not Path(FORTUNES).is_dir(), reason="Debian's fortunes is not installed "
                                                                         "(apt-get install fortunes)")
needs_bible = pytest.mark.skipif(shutil.which("bible") is None, reason="Debian's bible-kjv is not installed "
                                                                       "(apt-get install bible-kjv)")
SMALL = {"embed_dim": 32, "hidden": 64}


@needs_fortunes
def test_fortunes_are_thousands_of_quotations_without_attributions():
    quotes = read_fortunes()
    assert 12000 < len(quotes) < 20000
    assert not any(q.startswith("--") for q in quotes)
    assert all("\n" not in q and q == q.strip() for q in quotes)
    data = ppvae.load_dataset("fortunes", n=500, n_test=100, vocab_size=1000)
    assert data.train.shape == (450, 31) and data.val.shape == (50, 31) and data.test.shape[1] == 31
    assert len(data.vocabulary) == 1000 - 4 and data.representation == "words"
    assert "over 30 tokens left out" in data.source


@needs_bible
def test_the_bible_has_its_31102_verses():
    verses = read_bible()
    assert len(verses) == 31102
    assert verses[0] == "In the beginning God created the heaven and the earth."
    assert verses[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."


def test_the_tokenizer_keeps_the_special_ids_and_the_vocabulary_size():
    sentences = ["the sat on mat"] * 2 + ["the sat on", "the sat", "the cat"]  # counts 5, 4, 3, 2, 1
    tokenizer = train_tokenizer(sentences, vocab_size=8)
    vocab = vocabulary_of(tokenizer)
    assert vocab.itos == ["<pad>", "<start>", "<end>", "<unk>", "the", "sat", "on", "mat"]  # by frequency
    x = encode_sentences(vocab, ["The cat sat."], max_length=6)
    # lower-cased; "cat" and "." did not make the 8-token vocabulary
    assert x[0].tolist() == [vocab.stoi["the"], UNK, vocab.stoi["sat"], UNK, END, PAD, PAD]
    with pytest.raises(ValueError, match=r"data.vocab_size must be an integer above the 4 special tokens "
                                         r"\(<pad>, <start>, <end>, <unk>\), got 4"):
        train_tokenizer(sentences, vocab_size=4)
    with pytest.raises(ValueError, match=r"sentence 'zebra quokka' has only words outside the model's vocabulary"):
        encode_sentences(vocab, ["zebra quokka"], max_length=6)


def test_bad_text_files_are_refused_in_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match=r"has no sentences \(it is empty or blank\); write one sentence per line"):
        ppvae.load_dataset("text", path=str(empty))
    mine = tmp_path / "mine.txt"
    mine.write_text("a short line\n" * 5 + "this line has rather more words than the limit allows\n")
    data = ppvae.load_dataset("text", path=str(mine), max_length=4)
    assert len(data.train) + len(data.val) + len(data.test) == 5 and "1 over 4 tokens left out" in data.source
    with pytest.raises(ValueError, match=r"sentence 6 has 10 tokens, more than data.max_length = 4"):
        ppvae.load_dataset("text", path=str(mine), max_length=4, too_long="error")
    with pytest.raises(ValueError, match=r"data.vocab_size must be an integer above the 4 special tokens"):
        ppvae.load_dataset("text", path=str(mine), vocab_size=3)


def test_word_dropout_at_rate_one_feeds_only_unknown_tokens():
    x = torch.tensor([[5, 6, 7, END, PAD, PAD], [8, END, PAD, PAD, PAD, PAD]])
    assert GRUDecoder.inputs(x).tolist() == [[START, 5, 6, 7, END, PAD], [START, 8, END, PAD, PAD, PAD]]
    dropped = GRUDecoder.inputs(x, 1.0)
    assert ((dropped == UNK) == (GRUDecoder.inputs(x) != PAD)).all()  # every input but padding is unknown
    torch.manual_seed(0)
    half = GRUDecoder.inputs(torch.full((200, 50), 9), 0.5)
    assert 0.45 < float((half == UNK).float().mean()) < 0.55


def test_perplexity_is_exp_of_the_per_token_nll_on_a_uniform_language_model():
    vocab = [f"w{i}" for i in range(16)]  # 20 ids with the specials
    lm = SequenceLM((6,), vocab, representation="words", **SMALL)
    with torch.no_grad():  # logits all equal: every token has probability 1/20
        lm.decoder.out.weight.zero_()
        lm.decoder.out.bias.zero_()
    x = torch.tensor([[4, 5, END, PAD, PAD, PAD], [6, 7, 8, 9, END, PAD], [10, END, PAD, PAD, PAD, PAD]])
    result = text_metrics(lm, x, num_samples=3)
    assert result["tokens"] == 3 + 5 + 2
    assert result["nll_per_token"] == pytest.approx(math.log(20), rel=1e-6)
    assert result["perplexity"] == pytest.approx(20, rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(result["nll_per_token"]))
    assert result["log_likelihood"] == pytest.approx(-10 * math.log(20) / 3, rel=1e-6)
    assert per_token(torch.tensor([-2.0, -4.0]), x[:2])["nll"] == pytest.approx(6.0 / 8)


@needs_fortunes
def test_a_text_vae_trains_from_the_cli_and_its_verbs_print_text(tmp_path, capsys):
    run = tmp_path / "run"
    sets = ["data.name=fortunes", "data.n=300", "data.n_test=50", "data.vocab_size=500", "model.embed_dim=16",
            "model.hidden=32", "model.latent_dim=8", "model.word_dropout=0.5", "beta.name=linear",
            "beta.warmup_epochs=2", "train.epochs=2", "device=cpu"]
    assert main(["train", *[a for s in sets for a in ("--set", s)], "--run-dir", str(run), "--quiet"]) == 0
    loaded = ppvae.load_run(run)
    assert loaded.spec["model"]["name"] == "sequence_vae" and loaded.spec["model"]["word_dropout"] == 0.5
    assert loaded.metrics[-1]["val_elbo"] > loaded.metrics[0]["val_elbo"]
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "3", "--decoding", "greedy"]) == 0
    assert len((run / "figures" / "samples.txt").read_text().splitlines()) == 3
    assert main(["reconstruct", str(run), "-n", "2"]) == 0
    assert main(["interpolate", str(run), "--between", "life is short", "the cat sat on the mat", "--steps", "4"]) == 0
    text = (run / "figures" / "interpolation_linear.txt").read_text().splitlines()
    assert text[0] == "from: life is short" and text[5] == "  to: the cat sat on the mat"
    assert main(["evaluate", str(run), "--num-samples", "10", "--no-figures"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["interpolate", str(run), "--between", "zebra quokka", "life"]) == 2
    assert "has only words outside the model's vocabulary" in capsys.readouterr().err


@needs_fortunes
def test_the_language_model_reference_trains_in_python_and_its_bound_is_exact():
    data = ppvae.load_dataset("fortunes", n=300, n_test=40, vocab_size=500)
    lm = SequenceLM(data.event_shape, data.vocabulary, representation=data.representation, **SMALL)
    run = ppvae.train(lm, data, epochs=2, device="cpu", progress=False, figures=False)
    assert run.metrics[-1]["val_elbo"] > run.metrics[0]["val_elbo"]
    a, b = text_metrics(lm, data.test, num_samples=1), text_metrics(lm, data.test, num_samples=5)
    assert a["log_likelihood"] == pytest.approx(b["log_likelihood"]) == pytest.approx(a["elbo"])  # no z: exact
    assert a["kl"] == 0 and a["active_units"] == 0
    assert all(isinstance(s, str) for s in lm.generate(3))


@needs_fortunes
def test_homotopies_decode_a_sentence_at_every_step(tmp_path):
    run = ppvae.train_spec({"data": {"name": "fortunes", "n": 200, "n_test": 20, "vocab_size": 300}, "device": "cpu",
                            "model": {**SMALL, "latent_dim": 4}, "train": {"epochs": 1, "figures": False}},
                           run_dir=tmp_path / "run", progress=False)
    path = homotopy(run.model, "life is short", run.data.test[0], steps=5, method="spherical")
    assert len(path) == 5 and all(isinstance(s, str) for s in path)
    with pytest.raises(ValueError, match="method must be 'linear' or 'spherical'"):
        homotopy(run.model, "life", "death", method="cubic")


# The cures of collapse on real text (annealing and word dropout keep the KL above 0.4 nats per sentence, the
# plain run falls below it, in text_metrics and in the runs' own per-epoch test KL; more active units) are
# asserted by tutorial 12, which tests/test_tutorials.py runs at the setting this file trained the same two runs
# at (fortunes 3,000 / 300, vocabulary 2,000, hidden 96, 8 epochs, seed 0).
