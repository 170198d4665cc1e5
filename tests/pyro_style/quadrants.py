"""The data of Pyro's CVAE example from a batch of digits: ``xs`` shows some quadrants of each digit (the others
are -1) and ``ys`` the quadrants it hides (the shown ones are -1); the class label is not used."""

import torch


def one_quadrant(batch):
    """The top-right quadrant shown, the other three to predict (as the example's ``num_quadrant_inputs=1``)."""
    image = batch["x"].reshape(-1, 28, 28)
    shown = torch.zeros_like(image, dtype=torch.bool)
    shown[:, :14, 14:] = True
    xs = torch.where(shown, image, torch.full_like(image, -1.0))
    ys = torch.where(shown, torch.full_like(image, -1.0), image)
    return {"xs": xs, "ys": ys}
