"""Inference: the sampler, ``propagate()``, preservation of the unedited region and video I/O."""
