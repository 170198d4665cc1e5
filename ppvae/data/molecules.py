"""Molecules as token sequences: SMILES and SELFIES tokenizers, MOSES's data sets, and a user's SMILES file.

``data.representation`` chooses how a molecule becomes tokens:

* ``smiles``: the regular-expression tokenizer of Schwaller et al. (2019), used by most SMILES models: bracket
  atoms (``[nH]``, ``[C@@H]``), two-letter elements (``Cl``, ``Br``), two-digit ring bonds (``%10``), then single
  characters. A SMILES with a character the expression does not cover is refused (its tokens would not join back).
* ``selfies``: SELFIES (Krenn et al. 2020, the ``selfies`` package), a grammar in which every token string
  decodes to a valid molecule; tokens are its bracketed symbols.

The data sets: ``moses`` reads MOSES's train and test SMILES (Polykovskiy et al. 2020) from the ``molsets`` wheel
(``pip install --no-deps molsets``; its own dependencies do not build, and it is never imported, only read);
``smiles-file`` reads a CSV (a ``smiles`` column) or a text file of one SMILES per line, where an unparsable SMILES
is skipped and counted (``invalid = "skip"``) or refused (``invalid = "error"``).
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import io
import re
from dataclasses import replace
from pathlib import Path

import torch

from ..registry import DATASETS, int_option
from .dataset import Dataset, split_arrays
from .sequences import Vocabulary

REPRESENTATIONS = ("smiles", "selfies")
SMILES_PATTERN = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|"
                            r"%[0-9]{2}|[0-9])")
INSTALL = "pip install -e '.[molecules]' (RDKit and selfies) and pip install --no-deps molsets (MOSES's data)"


def need(module: str):
    """Import an optional chemistry dependency, or say in one line how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"this needs the {module!r} package, which is not installed; install the molecule "
                          f"extras: {INSTALL}") from None


def smiles_tokens(smiles: str) -> list[str]:
    tokens = SMILES_PATTERN.findall(smiles)
    if "".join(tokens) != smiles:
        rest = SMILES_PATTERN.sub("", smiles)
        raise ValueError(f"SMILES {smiles!r} has characters the SMILES tokenizer does not know: {rest!r}")
    return tokens


def tokenize(molecules: list[str], representation: str) -> list[list[str]]:
    """Token lists of SMILES strings in the chosen representation."""
    check_representation(representation)
    if representation == "smiles":
        return [smiles_tokens(s) for s in molecules]
    sf = need("selfies")
    out = []
    for s in molecules:
        try:
            encoded = sf.encoder(s)
        except Exception as e:  # selfies raises its own EncoderError
            raise ValueError(f"SMILES {s!r} cannot be written as SELFIES ({e})") from None
        out.append(list(sf.split_selfies(encoded)))
    return out


def detokenize(tokens: list[str], representation: str) -> str:
    """The SMILES a token list stands for (SELFIES decoded; a SELFIES string always decodes to a molecule)."""
    text = "".join(tokens)
    if representation == "selfies":
        return need("selfies").decoder(text) or ""
    return text


def check_representation(representation: str) -> str:
    if representation not in REPRESENTATIONS:
        raise ValueError(f"data.representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    return representation


def is_valid(smiles: str) -> bool:
    """Whether RDKit parses the SMILES into a molecule (the empty string is not one)."""
    if not smiles:
        return False
    Chem = need("rdkit").Chem
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")
    return Chem.MolFromSmiles(smiles) is not None


def token_dataset(name: str, source: str, train: list[str], test: list[str], representation: str,
                  max_length: int | None) -> Dataset:
    """A Dataset of molecules as integer token rows, with the vocabulary of both splits (so no test token is
    unknown) and ``max_length`` (default: the longest sequence)."""
    train_tokens, test_tokens = tokenize(train, representation), tokenize(test, representation)
    vocab = Vocabulary.build(train_tokens + test_tokens)
    longest = max(len(t) for t in train_tokens + test_tokens)
    length = longest if max_length is None else int_option(max_length, 1, "data.max_length")
    data = Dataset(name, vocab.encode(train_tokens, length), vocab.encode(test_tokens, length), source=source)
    return replace(data, vocabulary=vocab.tokens, representation=representation)


def moses_files() -> dict[str, Path]:
    try:
        files = importlib.metadata.files("molsets") or []
    except importlib.metadata.PackageNotFoundError:
        raise ImportError("dataset 'moses' reads MOSES's SMILES from the molsets wheel, which is not installed: "
                          "pip install --no-deps molsets") from None
    out = {Path(str(f)).name.split(".")[0]: Path(f.locate()) for f in files if str(f).endswith(".csv.gz")}
    return {k: out[k] for k in ("train", "test")}


def _read_moses(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        rows = csv.reader(f)
        header = next(rows)
        column = [h.upper() for h in header].index("SMILES")
        return [r[column] for r in rows]


def _pick(items: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or n >= len(items):
        return items
    index = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:n]
    return [items[i] for i in index.tolist()]


@DATASETS.register("moses")
def moses(*, n: int = 20000, n_test: int = 2000, seed: int = 0, representation: str = "smiles",
          max_length: int | None = None) -> Dataset:
    """``n`` of MOSES's 1,584,663 training molecules and ``n_test`` of its 176,074 test molecules, each drawn
    without replacement with ``seed``, as ``representation`` tokens."""
    check_representation(representation)
    n, n_test = int_option(n, 1, "data.n"), int_option(n_test, 1, "data.n_test")
    files = moses_files()
    train = _pick(_read_moses(files["train"]), n, seed)
    test = _pick(_read_moses(files["test"]), n_test, seed + 1)
    return token_dataset("moses", f"MOSES (molsets wheel: {n} train / {n_test} test, seed {seed}, {representation})",
                         train, test, representation, max_length)


def read_smiles_file(path: str, column: str = "smiles", invalid: str = "skip") -> tuple[list[str], int]:
    """(SMILES, how many were skipped) from a CSV with a ``column`` column or a text file of one per line."""
    if invalid not in ("skip", "error"):
        raise ValueError(f"data.invalid must be 'skip' (drop and count unparsable SMILES) or 'error', got {invalid!r}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"SMILES file {str(file)!r} does not exist")
    text = file.read_text()
    if file.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        header = {h.lower(): h for h in (rows[0].keys() if rows else [])}
        if rows and column.lower() not in header:
            raise ValueError(f"{str(file)!r} has no column {column!r} (columns: "
                             f"{', '.join(rows[0])}); set data.column")
        smiles = [r[header[column.lower()]].strip() for r in rows] if rows else []
    else:
        smiles = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not smiles:
        raise ValueError(f"SMILES file {str(file)!r} has no molecules")
    kept, skipped = [], 0
    for i, s in enumerate(smiles):
        try:
            ok = is_valid(s) and (smiles_tokens(s) is not None)
        except ValueError:
            ok = False
        if ok:
            kept.append(s)
        elif invalid == "error":
            raise ValueError(f"{str(file)!r}, molecule {i + 1}: {s!r} is not a SMILES RDKit can parse (data.invalid "
                             f"= 'skip' drops such rows and counts them)")
        else:
            skipped += 1
    if len(kept) < 2:
        raise ValueError(f"SMILES file {str(file)!r} has {len(kept)} parsable molecule(s) ({skipped} skipped); at "
                         f"least 2 are needed for a train and a test split")
    return kept, skipped


@DATASETS.register("smiles-file")
def smiles_file(*, path: str, column: str = "smiles", invalid: str = "skip", representation: str = "smiles",
                max_length: int | None = None, test_fraction: float, split_seed: int) -> Dataset:
    """Your molecules: a ``.csv`` with a ``column`` of SMILES, or a text file of one SMILES per line (the first
    word), split with ``test_fraction`` and ``split_seed``."""
    smiles, skipped = read_smiles_file(path, column, invalid)
    cut = split_arrays(torch.arange(len(smiles)), None, "smiles-file", "", test_fraction, split_seed)
    train, test = [smiles[i] for i in cut.train.tolist()], [smiles[i] for i in cut.test.tolist()]
    data = token_dataset("smiles-file", f"{path} ({len(smiles)} molecules, {skipped} unparsable skipped)", train, test,
                         representation, max_length)
    data.spec = {"path": str(Path(path).expanduser().resolve())}
    return data
