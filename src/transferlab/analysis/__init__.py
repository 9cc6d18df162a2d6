"""Measurements of a net's feature space: how far apart two domains are (the A-distance) and
what they look like (t-SNE)."""
