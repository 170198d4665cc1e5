"""A VAE over token sequences (Bowman et al. 2016; for molecules, Gomez-Bombarelli et al. 2018) as a Pyro program.

    model:  z ~ p(z),  x_t ~ Categorical(softmax(W h_t)),  h_t = GRU(h_{t-1}, embed(x_{t-1})),  h_0 = tanh(A z)
    guide:  z ~ q(z | x) = guides.*(GRU encoder(x))

The likelihood is categorical over the vocabulary at every position up to and including the end token and masked
after it, so padding never enters log p(x | z). Training is teacher-forced (the true previous token feeds the
decoder). ``generate``, ``reconstruct`` and ``decode`` return strings (SMILES where the data are molecules, SELFIES
decoded), by greedy decoding, sampling with a temperature, or beam search. Prior and guide are swappable by name
like the stock VAE's; the networks' sizes are model options.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppvae.batch import as_batch
from ppvae.data.sequences import END, PAD, SPECIALS, START, UNK, Vocabulary, check_tokens, lengths, sequence_mask
from ppvae.inference.contract import Model, data_plate
from ppvae.registry import GUIDES, MODELS, PRIORS, component, describe, int_option

DECODING = ("greedy", "sample", "beam")


class GRUEncoder(nn.Module):
    """Token rows (B, T) -> (B, out_dim) features: embedding, a GRU over each row up to its end token, and a
    linear map of the last hidden state (bidirectional: both directions' last states)."""

    def __init__(self, vocab_size: int, out_dim: int, embed_dim: int, hidden: int, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = nn.GRU(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        n = lengths(x).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(x), n, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)                      # (2 * layers, B, hidden)
        return self.out(torch.cat([h[-2], h[-1]], -1)).reshape(*lead, -1)


class GRUDecoder(nn.Module):
    """z -> logits over the vocabulary at each position, teacher-forced on the previous true token. With
    ``latent_dim = 0`` it is a plain language model: a learned initial state and nothing fed but the tokens.

    Word dropout (Bowman et al. 2016): during training each previous token fed to the decoder is replaced by the
    unknown-word token with probability ``word_dropout``, so that the decoder must take what it cannot see from
    z; at 1 it sees no words at all. The targets it predicts are never changed."""

    def __init__(self, vocab_size: int, latent_dim: int, embed_dim: int, hidden: int, layers: int = 1):
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        if latent_dim > 0:
            self.init = nn.Linear(latent_dim, layers * hidden)
        else:
            self.h0 = nn.Parameter(torch.zeros(layers * hidden))
        self.rnn = nn.GRU(embed_dim + latent_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def initial(self, z: torch.Tensor) -> torch.Tensor:
        h = self.init(z) if hasattr(self, "init") else self.h0.expand(z.shape[0], -1)
        return torch.tanh(h).reshape(z.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()

    def step(self, tokens: torch.Tensor, z: torch.Tensor, h: torch.Tensor):
        """One step: previous tokens (B,) -> (logits (B, V), new hidden state)."""
        inp = torch.cat([self.embed(tokens), z], -1).unsqueeze(1)
        out, h = self.rnn(inp, h)
        return self.out(out[:, 0]), h

    @staticmethod
    def inputs(x: torch.Tensor, word_dropout: float = 0.0) -> torch.Tensor:
        """What the decoder is fed for rows x: the start token, then each row's tokens but the last, with a share
        ``word_dropout`` of them (padding aside) replaced by the unknown-word token."""
        prev = torch.cat([torch.full_like(x[..., :1], START), x[..., :-1]], -1)
        if word_dropout > 0:
            drop = (torch.rand(prev.shape, device=prev.device) < word_dropout) & (prev != PAD)
            prev = prev.masked_fill(drop, UNK)
        return prev

    def forward(self, z: torch.Tensor, x: torch.Tensor, word_dropout: float = 0.0) -> torch.Tensor:
        lead, d = z.shape[:-1], z.shape[-1]
        zf = z.reshape(math.prod(lead), d)
        xf = x.expand(*lead, x.shape[-1]).reshape(-1, x.shape[-1])
        prev = self.inputs(xf, word_dropout)
        inp = torch.cat([self.embed(prev), zf.unsqueeze(1).expand(-1, xf.shape[1], -1)], -1)
        out, _ = self.rnn(inp, self.initial(zf))
        return self.out(out).reshape(*lead, x.shape[-1], -1)


REPRESENTATIONS = ("smiles", "selfies", "words", "cased-words", "chars")


def _sequence_options(self, event_shape, vocab, representation, embed_dim, hidden, layers, word_dropout, who):
    """The options a sequence model and a language model share, checked and stored."""
    self.event_shape = tuple(int(s) for s in event_shape)
    if len(self.event_shape) != 1:
        raise ValueError(f"{who} reads rows of token ids, event shape (max_length + 1,), got {self.event_shape}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"{who} representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    if isinstance(word_dropout, bool) or not isinstance(word_dropout, (int, float)) or not 0 <= word_dropout <= 1:
        raise ValueError(f"{who} word_dropout is the share of decoder inputs replaced by the unknown-word token, in "
                         f"[0, 1]; got {word_dropout!r}")
    self.vocab = Vocabulary(list(vocab))
    self.max_length = self.event_shape[0] - 1
    self.representation = representation
    self.embed_dim = int_option(embed_dim, 1, "embed_dim")
    self.hidden = int_option(hidden, 1, "hidden")
    self.layers = int_option(layers, 1, "layers")
    self.word_dropout = float(word_dropout)


class TokenDecoding:
    """Decoding token rows from codes, and strings from token rows: what the sequence VAE and the language model
    share (``self.decoder``, ``self.vocab``, ``self.max_length``, ``self.representation``, ``self._not_first``)."""

    output = "strings"

    def likelihood(self, logits: torch.Tensor, x: torch.Tensor):
        """Categorical over tokens at each position up to and including the end token; what follows it
        (padding) is masked out."""
        return dist.Categorical(logits=logits).mask(sequence_mask(x)).to_event(1)

    def _dropout(self) -> float:
        return self.word_dropout if self.training else 0.0

    def check_data(self, batch) -> None:
        check_tokens(as_batch(batch)["x"], len(self.vocab), self.max_length, self.registry_name)

    @torch.no_grad()
    def decode_ids(self, z: torch.Tensor, method: str = "greedy", temperature: float = 1.0,
                   beam_width: int = 5) -> torch.Tensor:
        """Token rows (n, max_length + 1) decoded from codes z (n, latent_dim)."""
        if method not in DECODING:
            raise ValueError(f"decoding method must be one of {', '.join(DECODING)}, got {method!r}")
        if method == "beam":
            return torch.stack([self._beam(z[i:i + 1], beam_width) for i in range(z.shape[0])])
        n, t = z.shape[0], self.max_length + 1
        h = self.decoder.initial(z)
        tokens = torch.full((n,), START, dtype=torch.long, device=z.device)
        out = torch.full((n, t), PAD, dtype=torch.long, device=z.device)
        done = torch.zeros(n, dtype=torch.bool, device=z.device)
        for step in range(t):
            logits, h = self.decoder.step(tokens, z, h)
            logits[:, [PAD, START, UNK]] = -float("inf")
            if step == 0:
                logits[:, self._not_first] = -float("inf")
            if step == t - 1:
                tokens = torch.full_like(tokens, END)  # the row's last slot: the sequence must end
            elif method == "greedy":
                tokens = logits.argmax(-1)
            else:
                tokens = torch.distributions.Categorical(logits=logits / float(temperature)).sample()
            out[:, step] = torch.where(done, torch.full_like(tokens, PAD), tokens)
            done |= tokens == END
            if bool(done.all()):
                break
        return out

    def _beam(self, z: torch.Tensor, width: int) -> torch.Tensor:
        t = self.max_length + 1
        h = self.decoder.initial(z)                              # (layers, 1, H)
        beams = [(0.0, [], h, False)]
        for step in range(t):
            candidates = []
            live = [b for b in beams if not b[3]]
            if not live:
                break
            tokens = torch.tensor([b[1][-1] if b[1] else START for b in live], device=z.device)
            hs = torch.cat([b[2] for b in live], 1)
            logits, new_h = self.decoder.step(tokens, z.expand(len(live), -1), hs)
            logits[:, [PAD, START, UNK]] = -float("inf")
            if step == 0:
                logits[:, self._not_first] = -float("inf")
            logp = torch.log_softmax(logits, -1)
            if step == t - 1:
                logp = torch.full_like(logp, -float("inf"))
                logp[:, END] = 0.0
            top = logp.topk(min(width, logp.shape[-1]), -1)
            for i, b in enumerate(live):
                for lp, tok in zip(top.values[i].tolist(), top.indices[i].tolist()):
                    candidates.append((b[0] + lp, b[1] + [tok], new_h[:, i:i + 1], tok == END))
            candidates += [b for b in beams if b[3]]
            beams = sorted(candidates, key=lambda b: -b[0] / max(1, len(b[1])))[:width]
            if all(b[3] for b in beams):
                break
        best = beams[0][1]
        row = torch.full((t,), PAD, dtype=torch.long, device=z.device)
        row[:len(best)] = torch.tensor(best, dtype=torch.long, device=z.device)
        return row

    def strings(self, ids: torch.Tensor) -> list[str]:
        """The strings token rows spell (SMILES for molecules, SELFIES decoded to SMILES; sentences for text)."""
        from ppvae.data.molecules import detokenize
        from ppvae.data.text import join_words
        out = []
        for seq in self.vocab.decode(ids):
            seq = [s for s in seq if s not in SPECIALS]
            if self.representation in ("smiles", "selfies"):
                out.append(detokenize(seq, self.representation))
            elif self.representation in ("words", "cased-words"):
                out.append(join_words(seq))
            else:
                out.append("".join(seq))
        return out

    @torch.no_grad()
    def decode(self, z: torch.Tensor, method: str = "greedy", temperature: float = 1.0) -> list[str]:
        return self.strings(self.decode_ids(z, method, temperature))

    def _first_tokens_refused(self) -> list[int]:
        # Tokens a decoding may not start with: END (the empty string is no molecule) and, for SELFIES, branch and
        # ring symbols, which the SELFIES grammar skips before the first atom, so that a sample of only those
        # would decode to the empty molecule. Starting with an atom, every SELFIES sample is a valid molecule.
        return [END] + ([self.vocab.stoi[t] for t in self.vocab.tokens if "Branch" in t or "Ring" in t]
                        if self.representation == "selfies" else [])

@MODELS.register("sequence_vae")
class SequenceVAE(TokenDecoding, Model):
    """The VAE for integer token data (the default model for sequence data sets: ``moses``, ``fortunes``, ...).

    :param event_shape: ``(max_length + 1,)``, the length of a token row (from the data).
    :param vocab: the ordinary tokens (from the data; ids 0-3 are padding, start, end, unknown).
    :param representation: what the tokens spell: ``smiles``, ``selfies`` (decoded to SMILES), ``words`` (text,
        lower-cased), ``cased-words`` or ``chars``.
    :param word_dropout: the share of the decoder's inputs replaced by the unknown-word token in training
        (Bowman et al. 2016).
    """

    default_for = "tokens"  # the model a spec that leaves model.name at its default gets on token data

    def __init__(self, event_shape, vocab, latent_dim: int = 56, *, representation: str = "chars",
                 embed_dim: int = 64, hidden: int = 256, layers: int = 1, word_dropout: float = 0.0,
                 guide="normal", prior="normal"):
        super().__init__()
        _sequence_options(self, event_shape, vocab, representation, embed_dim, hidden, layers, word_dropout,
                          "sequence_vae")
        self.latent_dim = int_option(latent_dim, 1, "latent_dim")
        v = len(self.vocab)
        self.prior = component(PRIORS, prior, self.latent_dim, self.event_shape)
        options = {"name": guide} if isinstance(guide, str) else guide
        width = GUIDES.get(options.get("name")).encoder_out_dim(self.latent_dim, options) \
            if not isinstance(guide, nn.Module) else None
        self.q = guide if isinstance(guide, nn.Module) else component(
            GUIDES, guide, GRUEncoder(v, width, self.embed_dim, self.hidden, self.layers), self.latent_dim)
        self.decoder = GRUDecoder(v, self.latent_dim, self.embed_dim, self.hidden, self.layers)
        self._not_first = self._first_tokens_refused()

    @classmethod
    def options_from_data(cls, data) -> dict:
        if data.vocabulary is None:
            raise ValueError(f"model 'sequence_vae' reads integer token data with a vocabulary, but dataset "
                             f"{data.name!r} has none; use a sequence data set (moses, smiles-file, "
                             f"fortunes, bible, text)")
        return {"vocab": list(data.vocabulary), "representation": data.representation or "chars"}

    # ---- the programs ------------------------------------------------------------------------------------
    def model(self, batch) -> None:
        x = as_batch(batch)["x"]
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with data_plate(x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.likelihood(self.decoder(z, x, self._dropout()), x), obs=x)

    def guide(self, batch) -> torch.Tensor:
        return self.q(as_batch(batch)["x"])

    # ---- using a trained model ---------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x) -> torch.Tensor:
        return self.q.encode(as_batch(x)["x"])

    @torch.no_grad()
    def generate(self, n: int, method: str = "sample", temperature: float = 1.0) -> list[str]:
        """Strings decoded from n draws z ~ p(z) (sampled token by token unless ``method`` says otherwise)."""
        return self.decode(self.prior(n).sample(), method, temperature)

    @torch.no_grad()
    def reconstruct(self, x, method: str = "greedy") -> list[str]:
        """The greedy decoding of each example's posterior mean."""
        return self.decode(self.encode(x), method)

    def spec(self) -> dict:
        return {"model": {"name": "sequence_vae", "event_shape": list(self.event_shape), "vocab": self.vocab.tokens,
                          "latent_dim": self.latent_dim, "representation": self.representation,
                          "embed_dim": self.embed_dim, "hidden": self.hidden, "layers": self.layers,
                          "word_dropout": self.word_dropout},
                "guide": describe(self.q, structural=2), "prior": describe(self.prior, structural=2)}


@MODELS.register("sequence_lm")
class SequenceLM(TokenDecoding, Model):
    """The sequence VAE's decoder alone, as a plain language model: p(x) = prod_t p(x_t | x_<t), no z (a learned
    initial state instead of tanh(A z), nothing concatenated to the inputs). It has no latent variable, so its
    ELBO *is* log p(x), exactly: the reference a sentence VAE's likelihood bound is read against (Bowman et al.
    2016). Word dropout applies as in ``sequence_vae``."""

    def __init__(self, event_shape, vocab, *, representation: str = "chars", embed_dim: int = 64, hidden: int = 256,
                 layers: int = 1, word_dropout: float = 0.0):
        super().__init__()
        _sequence_options(self, event_shape, vocab, representation, embed_dim, hidden, layers, word_dropout,
                          "sequence_lm")
        self.decoder = GRUDecoder(len(self.vocab), 0, self.embed_dim, self.hidden, self.layers)
        self._not_first = self._first_tokens_refused()

    options_from_data = SequenceVAE.options_from_data

    def _no_code(self, n: int, device=None) -> torch.Tensor:
        return torch.zeros(n, 0, device=device if device is not None else self.decoder.out.weight.device)

    def model(self, batch) -> None:
        x = as_batch(batch)["x"]
        pyro.module("decoder", self.decoder)
        with data_plate(x.shape[0]):
            pyro.sample("x", self.likelihood(self.decoder(self._no_code(x.shape[0], x.device), x, self._dropout()),
                                             x), obs=x)

    def guide(self, batch) -> None:
        """Nothing to infer: the language model has no latent variable."""

    @torch.no_grad()
    def generate(self, n: int, method: str = "sample", temperature: float = 1.0) -> list[str]:
        """n strings decoded from the language model (sampled token by token unless ``method`` says otherwise)."""
        return self.decode(self._no_code(n), method, temperature)

    def spec(self) -> dict:
        return {"model": {"name": "sequence_lm", "event_shape": list(self.event_shape), "vocab": self.vocab.tokens,
                          "representation": self.representation, "embed_dim": self.embed_dim, "hidden": self.hidden,
                          "layers": self.layers, "word_dropout": self.word_dropout}}
