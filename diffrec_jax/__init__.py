"""diffrec_jax: diffusion recommender models and the tuned baselines they must beat, in JAX."""

__version__ = "0.1.0"
