"""English text as token sequences: the fortunes collection, the King James Bible, and a user's text file.

The data sets (all offline):

* ``fortunes``: Debian's ``fortunes`` package (``/usr/share/games/fortunes``), about 15,000 quotations in
  ``%``-separated files. A quotation's lines are joined into one text and its attribution lines (``-- Mark
  Twain``) are dropped.
* ``bible``: Debian's ``bible-kjv`` package; ``bible -f "gen1:1-rev22:21"`` prints the 31,102 verses of the King
  James Bible, one per line, each after its reference (``Ge1:1``), which is dropped.
* ``text``: a user's file, one sentence per line (``data.path``).

Tokens are words and punctuation marks, by a word-level tokenizer of Hugging Face's ``tokenizers`` trained on the
*training* sentences only (``vocab_size`` most frequent tokens, the four special tokens included), lower-cased by
default; a test word outside the vocabulary becomes the unknown-word token, as in a language-model benchmark.
Sentences longer than ``max_length`` tokens are left out and counted (``too_long = "error"`` refuses them), and so
are sentences whose every word is unknown (nothing of them could be learned or reconstructed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import torch

from ..registry import DATASETS, int_option
from .dataset import Dataset, split_arrays
from .sequences import END, PAD, SPECIALS, UNK, Vocabulary

FORTUNES = Path("/usr/share/games/fortunes")
WORDS = r"[\w']+|[^\w\s]"  # a word (letters, digits, apostrophes) or one punctuation mark
INSTALL = {"fortunes": "apt-get install fortunes", "bible": "apt-get install bible-kjv"}


def need_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("text data needs Hugging Face's 'tokenizers' package, which is not installed: "
                          "pip install -e '.[text]'") from None
    return tokenizers


# ---- the corpora --------------------------------------------------------------------------------------------
def read_fortunes(root: str | Path = FORTUNES) -> list[str]:
    """Every quotation of the fortune files under ``root`` (its ``.dat`` indexes and ``.u8`` links skipped), its
    lines joined, attribution lines dropped, in file order."""
    root = Path(root)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix not in (".dat", ".u8")) \
        if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"dataset 'fortunes' reads Debian's fortunes package, which is not installed "
                                f"({str(root)!r} has no fortune files): {INSTALL['fortunes']}")
    quotes = []
    for path in files:
        for block in re.split(r"^%\s*$", path.read_text(encoding="utf-8", errors="replace"), flags=re.M):
            lines = [line.strip() for line in block.splitlines()]
            lines = [line for line in lines if line and not line.startswith("--")]
            text = " ".join("".join(ch for ch in " ".join(lines) if ch.isprintable()).split())  # no bells, no tabs
            if text:
                quotes.append(text)
    return quotes


def read_bible() -> list[str]:
    """The 31,102 verses of the King James Bible from Debian's ``bible`` program, references dropped."""
    program = shutil.which("bible")
    if program is None:
        raise FileNotFoundError(f"dataset 'bible' reads Debian's bible-kjv package, which is not installed: "
                                f"{INSTALL['bible']}")
    out = subprocess.run([program, "-f", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    verses = [re.sub(r"^\S+\d+:\d+\s+", "", line).strip() for line in out.splitlines()]
    return [v for v in verses if v]


def read_text_file(path: str) -> list[str]:
    """A user's text file, one sentence per line (blank lines skipped)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"text file {str(file)!r} does not exist")
    sentences = [" ".join(line.split()) for line in file.read_text(encoding="utf-8", errors="replace").splitlines()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError(f"text file {str(file)!r} has no sentences (it is empty or blank); write "
                         f"one sentence per line")
    return sentences


# ---- the tokenizer --------------------------------------------------------------------------------------------
def train_tokenizer(sentences: list[str], vocab_size: int, lowercase: bool = True):
    """A word-level ``tokenizers.Tokenizer`` fitted on ``sentences``: the ``vocab_size`` most frequent tokens,
    the special tokens first at their fixed ids."""
    tk = need_tokenizers()
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIALS):
        raise ValueError(f"data.vocab_size must be an integer above the {len(SPECIALS)} special tokens "
                         f"({', '.join(SPECIALS)}), got {vocab_size!r}")
    tokenizer = tk.Tokenizer(tk.models.WordLevel(unk_token=SPECIALS[UNK]))
    if lowercase:
        tokenizer.normalizer = tk.normalizers.Lowercase()
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence([
        tk.pre_tokenizers.WhitespaceSplit(), tk.pre_tokenizers.Split(tk.Regex(WORDS), behavior="isolated")])
    trainer = tk.trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS))
    tokenizer.train_from_iterator(sentences, trainer)
    ids = tokenizer.get_vocab()
    assert all(ids[t] == i for i, t in enumerate(SPECIALS)), "the special tokens must keep their fixed ids"
    return tokenizer


def vocabulary_of(tokenizer) -> Vocabulary:
    """The Vocabulary with the tokenizer's ids (specials first, then by frequency)."""
    return Vocabulary(t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]))


def word_tokens(sentences: list[str], lowercase: bool = True) -> list[list[str]]:
    """Sentences split as the tokenizer splits them (words with apostrophes, single punctuation marks)."""
    return [re.findall(WORDS, s.lower() if lowercase else s) for s in sentences]


def join_words(tokens: list[str]) -> str:
    """Words back to a sentence: spaces between tokens, none before closing punctuation."""
    return re.sub(r" ([.,;:!?)\]}])", r"\1", " ".join(tokens))


def encode_sentences(vocab: Vocabulary, sentences: list[str], max_length: int, *, lowercase: bool = True,
                     what: str = "sentence") -> torch.Tensor:
    """Token rows for sentences given to a trained text model (words outside its vocabulary become unknown);
    a sentence longer than its maximum length or with only unknown words is refused in one line."""
    tokens = word_tokens(sentences, lowercase)
    for s, t in zip(sentences, tokens):
        if not t:
            raise ValueError(f"{what} {s!r} has no words")
        if all(w not in vocab.stoi for w in t):
            raise ValueError(f"{what} {s!r} has only words outside the model's vocabulary of {len(vocab.tokens)} "
                             f"words, so there is nothing of it to encode")
    return vocab.encode(tokens, max_length, unknown="unk")


def keep_short(sentences: list[str], max_length: int, too_long: str, lowercase: bool,
               name: str) -> tuple[list[str], int]:
    """(the sentences of at most ``max_length`` tokens, how many were longer); with ``too_long = "error"`` a longer
    sentence is refused instead."""
    if too_long not in ("skip", "error"):
        raise ValueError(f"data.too_long must be 'skip' (leave longer sentences out and count them) "
                         f"or 'error', got {too_long!r}")
    max_length = int_option(max_length, 1, "data.max_length")
    if not isinstance(lowercase, bool):
        raise ValueError(f"data.lowercase must be true or false, got {lowercase!r}")
    kept = []
    for i, (sentence, tokens) in enumerate(zip(sentences, word_tokens(sentences, lowercase))):
        if len(tokens) <= max_length:
            kept.append(sentence)
        elif too_long == "error":
            raise ValueError(f"{name} sentence {i + 1} has {len(tokens)} tokens, more than data.max_length = "
                             f"{max_length}: {sentence[:60]!r} (data.too_long = 'skip' leaves such sentences out)")
    return kept, len(sentences) - len(kept)


def text_dataset(name: str, source: str, train: list[str], test: list[str], *, vocab_size: int, lowercase: bool,
                 max_length: int) -> Dataset:
    """Sentences (each of at most ``max_length`` tokens) as token rows, with a vocabulary fitted on the training
    sentences; sentences of only unknown words are dropped and counted in ``source``."""
    tokenizer = train_tokenizer(train, vocab_size, lowercase)  # fitted on what is trained on
    dropped = {}

    def rows(sentences: list[str], split: str) -> torch.Tensor:
        kept = [enc.ids for enc in tokenizer.encode_batch(sentences) if any(t != UNK for t in enc.ids)]
        dropped[split] = len(sentences) - len(kept)
        if not kept:
            raise ValueError(f"{name} has no {split} sentence with a word of the vocabulary")
        out = torch.full((len(kept), max_length + 1), PAD, dtype=torch.long)
        for r, ids in enumerate(kept):
            out[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            out[r, len(ids)] = END
        return out

    train_rows, test_rows = rows(train, "training"), rows(test, "test")
    unknown = sum(dropped.values())
    data = Dataset(name, train_rows, test_rows,
                   source=f"{source}; {len(train_rows)} train / {len(test_rows)} test sentences"
                          + (f", {unknown} of only unknown words left out" if unknown else ""))
    return replace(data, vocabulary=vocabulary_of(tokenizer).tokens,
                   representation="words" if lowercase else "cased-words")


def _corpus(sentences: list[str], *, n: int | None, n_test: int, seed: int, name: str, max_length: int,
            too_long: str, lowercase: bool, source: str, vocab_size: int) -> Dataset:
    """A corpus's sentences of at most ``max_length`` tokens, shuffled with ``seed``: ``n_test`` for testing, then
    up to ``n`` for training."""
    short, longer = keep_short(sentences, max_length, too_long, lowercase, name)
    n_test = int_option(n_test, 1, "data.n_test")
    if n is not None:
        n = int_option(n, 1, "data.n (None: all)")
    if len(short) <= n_test:
        raise ValueError(f"{name} has {len(short)} sentences of at most {max_length} tokens, not more than "
                         f"data.n_test = {n_test}")
    order = torch.randperm(len(short), generator=torch.Generator().manual_seed(seed)).tolist()
    test = [short[i] for i in order[:n_test]]
    train = [short[i] for i in order[n_test:]][:n]
    return text_dataset(name, f"{source}, seed {seed}, {longer} of {len(sentences)} over {max_length} tokens left out",
                        train, test, vocab_size=vocab_size, lowercase=lowercase, max_length=max_length)


@DATASETS.register("fortunes")
def fortunes(*, n: int | None = None, n_test: int = 1000, seed: int = 0, vocab_size: int = 10000,
             lowercase: bool = True, max_length: int = 30, too_long: str = "skip",
             root: str = str(FORTUNES)) -> Dataset:
    """Debian's fortune quotations (attributions dropped) of at most ``max_length`` tokens, shuffled with ``seed``:
    ``n_test`` for testing, then up to ``n`` (None: all the rest) for training. ``vocab_size`` counts the four
    special tokens; longer quotations are left out and counted (``too_long = "skip"``) or refused (``"error"``)."""
    return _corpus(read_fortunes(root), n=n, n_test=n_test, seed=seed, name="fortunes", max_length=max_length,
                   too_long=too_long, lowercase=lowercase, source=f"fortunes ({root})", vocab_size=vocab_size)


@DATASETS.register("bible")
def bible(*, n: int | None = None, n_test: int = 1000, seed: int = 0, vocab_size: int = 10000,
          lowercase: bool = True, max_length: int = 30, too_long: str = "skip") -> Dataset:
    """The King James Bible's verses (Debian's bible-kjv), selected, shuffled and limited as ``fortunes``'s."""
    return _corpus(read_bible(), n=n, n_test=n_test, seed=seed, name="bible", max_length=max_length,
                   too_long=too_long, lowercase=lowercase, source="King James Bible (bible-kjv)", vocab_size=vocab_size)


@DATASETS.register("text")
def text_file(*, path: str, vocab_size: int = 10000, lowercase: bool = True, max_length: int = 30,
              too_long: str = "skip", test_fraction: float, split_seed: int) -> Dataset:
    """Your text: one sentence per line (sentences over ``max_length`` tokens left out and counted, or refused with
    ``too_long = "error"``), split with ``test_fraction`` and ``split_seed``."""
    sentences = read_text_file(path)
    short, longer = keep_short(sentences, max_length, too_long, lowercase, f"text file {path!r}")
    if len(short) < 2:
        raise ValueError(f"text file {str(path)!r} has {len(short)} sentence(s) of at most {max_length} tokens "
                         f"({longer} longer); at least 2 are needed for a train and a test split")
    cut = split_arrays(torch.arange(len(short)), None, "text", "", test_fraction, split_seed)
    train, test = [short[i] for i in cut.train.tolist()], [short[i] for i in cut.test.tolist()]
    data = text_dataset("text", f"{path} ({len(sentences)} lines, {longer} over {max_length} tokens left out)", train,
                        test, vocab_size=vocab_size, lowercase=lowercase, max_length=max_length)
    data.spec = {"path": str(Path(path).expanduser().resolve())}
    return data
