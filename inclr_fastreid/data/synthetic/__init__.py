"""The embedded synthetic domain-shift benchmark (docs/design.md §7): a procedural pedestrian
renderer (``render``: cameras; ``person``: the appearance model; ``canvas``: the pixel grid), the
domains it draws (``domains``), their copies on disk (``cache``) and the SynthA/SynthB/SynthC datasets
(``datasets``, registered in FastReID's DATASET_REGISTRY on import). Kept apart from the training
data plumbing."""
from . import cache, canvas, datasets, domains, person, render
from .datasets import SynthA, SynthB, SynthB10, SynthC, SyntheticReID

__all__ = ["cache", "canvas", "datasets", "domains", "person", "render", "SynthA", "SynthB", "SynthB10", "SynthC",
           "SyntheticReID"]
