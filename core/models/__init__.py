"""Models: the notebooks' preset architectures and safe loading of user models."""
