"""A small polyphonic-style data set for the DMM, made here (the JSB chorales need a download): binary "piano
rolls" of a few voices stepping up and down over ``notes`` pitches, of random lengths, padded with silence; and
the per-batch transform that builds the DMM's arguments from a batch, sorting it by length as Pyro's loader does."""

import pyro.contrib.examples.polyphonic_data_loader as poly
import torch
import torch.nn as nn


def load(n: int = 240, steps: int = 12, notes: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, steps, notes)
    lengths = torch.randint(steps // 2, steps + 1, (n,), generator=g)
    for i in range(n):
        for _ in range(2):  # two voices
            pitch = int(torch.randint(0, notes, (1,), generator=g))
            direction = 1 if torch.rand(1, generator=g) < 0.5 else -1
            for t in range(int(lengths[i])):
                x[i, t, pitch] = 1.0
                if not 0 <= pitch + direction < notes:
                    direction = -direction
                pitch += direction
    cut = n * 3 // 4
    return {"x": x[:cut], "lengths": lengths[:cut]}, {"x": x[cut:], "lengths": lengths[cut:]}


def mini_batch(batch):
    """The DMM's arguments for a batch, its rows sorted by decreasing length (and that order returned)."""
    lengths = batch["lengths"]
    order = torch.argsort(lengths, descending=True, stable=True)
    seq_lengths = lengths[order]
    t_max = int(seq_lengths.max())
    sequences = batch["x"][order, :t_max]
    reversed_sequences = poly.reverse_sequences(sequences, seq_lengths)
    mask = poly.get_mini_batch_mask(sequences, seq_lengths).to(sequences.device)
    packed = nn.utils.rnn.pack_padded_sequence(reversed_sequences, seq_lengths.cpu(), batch_first=True)
    return {"mini_batch": sequences, "mini_batch_reversed": packed, "mini_batch_mask": mask,
            "mini_batch_seq_lengths": seq_lengths}, order
