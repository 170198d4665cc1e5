"""ProdLDA, the topic model of Pyro's tutorial ``tutorial/source/prodlda.ipynb`` (Srivastava and Sutton, 2017),
written the way the tutorial writes it: a plain ``nn.Module`` whose ``model(docs)`` and ``guide(docs)`` take
bag-of-words counts, a plate named "documents", a logistic-normal stand-in for LDA's Dirichlet prior on each
document's topic mix, a product of experts over the vocabulary, and batch norm and dropout against component
collapse. Nothing in it knows about ppvae; it is trained, as in the tutorial, with TraceMeanField_ELBO.

``bible_chapters`` builds the data the way the tutorial builds 20 Newsgroups': scikit-learn's ``CountVectorizer``
over the chapters of the King James Bible, English stop words and rare words dropped."""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    """q(logtheta | docs): a diagonal Gaussian from two softplus layers, its loc and log-variance batch-normed."""

    def __init__(self, vocab_size, num_topics, hidden, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(vocab_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fcmu = nn.Linear(hidden, num_topics)
        self.fclv = nn.Linear(hidden, num_topics)
        self.bnmu = nn.BatchNorm1d(num_topics, affine=False)
        self.bnlv = nn.BatchNorm1d(num_topics, affine=False)

    def forward(self, inputs):
        h = self.drop(F.softplus(self.fc2(F.softplus(self.fc1(inputs)))))
        loc = self.bnmu(self.fcmu(h))
        scale = (0.5 * self.bnlv(self.fclv(h))).exp()
        return loc, scale


class Decoder(nn.Module):
    """The word distribution of a topic mix: softmax of the batch-normed topic-word weights times the mix."""

    def __init__(self, vocab_size, num_topics, dropout):
        super().__init__()
        self.beta = nn.Linear(num_topics, vocab_size, bias=False)
        self.bn = nn.BatchNorm1d(vocab_size, affine=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs):
        return F.softmax(self.bn(self.beta(self.drop(inputs))), dim=1)


class ProdLDA(nn.Module):
    def __init__(self, vocab_size, num_topics, hidden, dropout):
        super().__init__()
        self.vocab_size = vocab_size
        self.num_topics = num_topics
        self.hidden = hidden
        self.dropout = dropout
        self.encoder = Encoder(vocab_size, num_topics, hidden, dropout)
        self.decoder = Decoder(vocab_size, num_topics, dropout)

    def model(self, docs):
        pyro.module("decoder", self.decoder)
        with pyro.plate("documents", docs.shape[0]):
            loc = docs.new_zeros((docs.shape[0], self.num_topics))
            scale = docs.new_ones((docs.shape[0], self.num_topics))
            logtheta = pyro.sample("logtheta", dist.Normal(loc, scale).to_event(1))
            count_param = self.decoder(F.softmax(logtheta, -1))
            # Multinomial wants one total_count; its log_prob reads each document's own from the counts
            total_count = int(docs.sum(-1).max())
            pyro.sample("obs", dist.Multinomial(total_count, count_param), obs=docs)

    def guide(self, docs):
        pyro.module("encoder", self.encoder)
        with pyro.plate("documents", docs.shape[0]):
            loc, scale = self.encoder(docs)
            pyro.sample("logtheta", dist.Normal(loc, scale).to_event(1))

    def beta(self):
        """The topic-word weights, a row per topic."""
        return self.decoder.beta.weight.cpu().detach().T


def bible_chapters(min_df: int = 20, max_df: float = 0.5):
    """(train, test) bag-of-words count matrices of the King James Bible's 1,189 chapters (Debian's ``bible-kjv``:
    ``apt-get install bible-kjv``), over the words in at least ``min_df`` chapters and at most ``max_df`` of them
    (English stop words dropped), shuffled (seed 0: the books come in order); a tenth of them is the test set."""
    import re
    import shutil
    import subprocess

    from sklearn.feature_extraction.text import CountVectorizer

    out = subprocess.run([shutil.which("bible") or "bible", "-f", "gen1:1-rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    chapters: dict[str, list[str]] = {}
    for line in out.splitlines():
        ref = re.match(r"^(\S+?\d+):\d+\s+(.*)", line)  # "Ge1:1 In the beginning ...": book and chapter
        if ref:
            chapters.setdefault(ref.group(1), []).append(ref.group(2))
    texts = [" ".join(verses) for verses in chapters.values()]
    counts = CountVectorizer(min_df=min_df, max_df=max_df, stop_words="english").fit_transform(texts)
    docs = torch.from_numpy(counts.toarray()).float()
    docs = docs[torch.randperm(docs.shape[0], generator=torch.Generator().manual_seed(0))]
    cut = docs.shape[0] * 9 // 10
    return docs[:cut], docs[cut:]
