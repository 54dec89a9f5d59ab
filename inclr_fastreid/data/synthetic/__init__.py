"""The embedded synthetic domain-shift benchmark (docs/design.md §7): a procedural pedestrian
renderer (``render``) and the SynthA/SynthB/SynthC datasets built on it (``datasets``, registered
in FastReID's DATASET_REGISTRY on import). Kept apart from the training data plumbing."""
from . import datasets, render
from .datasets import SynthA, SynthB, SynthB10, SynthC, SyntheticReID

__all__ = ["datasets", "render", "SynthA", "SynthB", "SynthB10", "SynthC", "SyntheticReID"]
