"""A deep Markov model written the way Pyro's example writes it (``examples/dmm.py``; Krishnan et al. 2017): a
plain ``nn.Module`` whose ``model`` and ``guide`` take the packed, reversed and masked sequences of a mini-batch,
``model(mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths, annealing_factor=1.0)``, with
its own plate name ("z_minibatch"), a latent and an observed site per time step inside ``pyro.markov``, and an
RNN guide run backwards over the sequence. Nothing in it knows about ppvae."""

import pyro
import pyro.contrib.examples.polyphonic_data_loader as poly
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn as nn


class Emitter(nn.Module):
    """p(x_t | z_t): Bernoulli probabilities of the notes."""

    def __init__(self, input_dim, z_dim, emission_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, emission_dim), nn.ReLU(), nn.Linear(emission_dim, emission_dim),
                                 nn.ReLU(), nn.Linear(emission_dim, input_dim))

    def forward(self, z_t):
        return torch.sigmoid(self.net(z_t))


class GatedTransition(nn.Module):
    """p(z_t | z_{t-1}): a gated mix of a linear map (initially the identity) and a proposed mean."""

    def __init__(self, z_dim, transition_dim):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, transition_dim), nn.ReLU(), nn.Linear(transition_dim, z_dim))
        self.proposal = nn.Sequential(nn.Linear(z_dim, transition_dim), nn.ReLU(), nn.Linear(transition_dim, z_dim))
        self.to_scale = nn.Linear(z_dim, z_dim)
        self.linear = nn.Linear(z_dim, z_dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z_prev):
        gate = torch.sigmoid(self.gate(z_prev))
        proposed = self.proposal(z_prev)
        loc = (1 - gate) * self.linear(z_prev) + gate * proposed
        scale = nn.functional.softplus(self.to_scale(torch.relu(proposed)))
        return loc, scale


class Combiner(nn.Module):
    """q(z_t | z_{t-1}, x_{t:T}) from the previous latent and the backward RNN's state."""

    def __init__(self, z_dim, rnn_dim):
        super().__init__()
        self.from_z = nn.Linear(z_dim, rnn_dim)
        self.to_loc = nn.Linear(rnn_dim, z_dim)
        self.to_scale = nn.Linear(rnn_dim, z_dim)

    def forward(self, z_prev, h_rnn):
        h = 0.5 * (torch.tanh(self.from_z(z_prev)) + h_rnn)
        return self.to_loc(h), nn.functional.softplus(self.to_scale(h))


class DMM(nn.Module):
    def __init__(self, input_dim=88, z_dim=100, emission_dim=100, transition_dim=200, rnn_dim=600, num_layers=1,
                 rnn_dropout_rate=0.0, num_iafs=0, iaf_dim=50, use_cuda=False):
        super().__init__()
        self.emitter = Emitter(input_dim, z_dim, emission_dim)
        self.trans = GatedTransition(z_dim, transition_dim)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.rnn = nn.RNN(input_size=input_dim, hidden_size=rnn_dim, nonlinearity="relu", batch_first=True,
                          num_layers=num_layers, dropout=rnn_dropout_rate if num_layers > 1 else 0.0)
        if num_iafs:
            raise NotImplementedError("this copy of the example has no IAF guide")
        self.z_0 = nn.Parameter(torch.zeros(z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))
        self.h_0 = nn.Parameter(torch.zeros(1, 1, rnn_dim))
        self.use_cuda = use_cuda
        if use_cuda:
            self.cuda()

    def model(self, mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths, annealing_factor=1.0):
        T_max = mini_batch.size(1)
        pyro.module("dmm", self)
        z_prev = self.z_0.expand(mini_batch.size(0), self.z_0.size(0))
        with pyro.plate("z_minibatch", len(mini_batch)):
            for t in pyro.markov(range(1, T_max + 1)):
                z_loc, z_scale = self.trans(z_prev)
                with poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample("z_%d" % t,
                                      dist.Normal(z_loc, z_scale).mask(mini_batch_mask[:, t - 1:t]).to_event(1))
                probs = self.emitter(z_t)
                pyro.sample("obs_x_%d" % t, dist.Bernoulli(probs).mask(mini_batch_mask[:, t - 1:t]).to_event(1),
                            obs=mini_batch[:, t - 1, :])
                z_prev = z_t

    def guide(self, mini_batch, mini_batch_reversed, mini_batch_mask, mini_batch_seq_lengths, annealing_factor=1.0):
        T_max = mini_batch.size(1)
        pyro.module("dmm", self)
        h_0 = self.h_0.expand(1, mini_batch.size(0), self.rnn.hidden_size).contiguous()
        rnn_output, _ = self.rnn(mini_batch_reversed, h_0)
        rnn_output = poly.pad_and_reverse(rnn_output, mini_batch_seq_lengths)
        z_prev = self.z_q_0.expand(mini_batch.size(0), self.z_q_0.size(0))
        with pyro.plate("z_minibatch", len(mini_batch)):
            for t in pyro.markov(range(1, T_max + 1)):
                z_loc, z_scale = self.combiner(z_prev, rnn_output[:, t - 1, :])
                with pyro.poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample("z_%d" % t,
                                      dist.Normal(z_loc, z_scale).mask(mini_batch_mask[:, t - 1:t]).to_event(1))
                z_prev = z_t
