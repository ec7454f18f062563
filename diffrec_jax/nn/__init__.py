"""Layer 3 (with :mod:`diffrec_jax.diffusion`): neural-network building blocks, pure functions.

- :mod:`~diffrec_jax.nn.layers`: dense layers and MLPs with the originals' initialisations,
  timestep embeddings, 16-bit dropout, torch-style Adam.
- :mod:`~diffrec_jax.nn.transformer`: the Transformer blocks of the sequential models.
- :mod:`~diffrec_jax.nn.packing`: packing short histories into fewer rows.
- :mod:`~diffrec_jax.nn.kmeans`: k-means (L-DiffRec's item groups).
"""
