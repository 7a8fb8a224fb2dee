"""Sequence parallelism in training (``trainer.sequence_parallel=N`` with ``trainer=fsdp``).

The device mesh is 2-D, (data parallel) x (sequence parallel), the sequence dimension inner, so
the N ranks of a sequence-parallel (SP) group are consecutive and on one node (N must divide the
GPUs per node): the two all-to-alls per attention layer stay on NVLink. Lightning's
``ModelParallelStrategy`` builds that mesh; it names the inner dimension ``"tensor_parallel"``
(:data:`SP_DIM`), which here holds the SP groups.

* The ranks of an SP group form one data-parallel replica: they read the same batches
  (:func:`data_parallel_rank` splits the data by replica, as Lightning's sampler arguments do) and
  draw the same noise, times, guidance dropout and expert (seeded by the replica, not the rank).
* FSDP2 shards every parameter over *all* ranks (the flattened mesh, :func:`shard_mesh`) and
  averages gradients over them. Each rank's gradient sums to ``N`` x the replica's gradient over
  its SP group (:mod:`genprop.scale.sequence_parallel`), so the average over all ranks is the
  average over replicas, as without sequence parallelism.
"""

from __future__ import annotations

import logging
from typing import Any

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from genprop.scale.sequence_parallel import SequenceParallel

DP_DIM = "data_parallel"
SP_DIM = "tensor_parallel"  # Lightning's name of the inner mesh dimension: our SP groups

log = logging.getLogger(__name__)


AUTO = "auto"  # trainer.sequence_parallel=auto: every device of a node shares each sample


def check_size(sequence_parallel: Any) -> int | str:
    """``trainer.sequence_parallel`` checked: a positive integer, or ``auto``.

    Raises:
        ValueError: one line naming it otherwise.
    """
    sp = sequence_parallel
    if sp == AUTO:
        return AUTO
    if isinstance(sp, bool) or not isinstance(sp, int) or sp < 1:
        raise ValueError(
            f"trainer.sequence_parallel: expected a positive integer or 'auto', got {sp!r}"
        )
    return sp


def resolve_size(sequence_parallel: Any, devices: int) -> int:
    """The group size: ``auto`` is the devices per node (an SP group never spans nodes)."""
    sp = check_size(sequence_parallel)
    return devices if sp == AUTO else int(sp)


def mesh_sizes(sequence_parallel: Any, devices: int, nodes: int) -> tuple[int, int]:
    """(data-parallel size, sequence-parallel size) of ``nodes`` x ``devices`` ranks.

    Raises:
        ValueError: one line naming ``trainer.sequence_parallel``, unless it is ``auto`` or a
            positive integer dividing the devices per node (an SP group never spans nodes).
    """
    sp = resolve_size(sequence_parallel, devices)
    if devices % sp:
        raise ValueError(
            f"trainer.sequence_parallel: {sp} does not divide the {devices} devices per node "
            "(trainer.devices)"
        )
    return nodes * devices // sp, sp


def shard_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """The 1-D mesh FSDP2 shards parameters and averages gradients over: every rank (the
    data-parallel mesh itself without sequence parallelism)."""
    if mesh[SP_DIM].size() == 1:
        return mesh[DP_DIM]
    both = mesh[DP_DIM, SP_DIM]
    if hasattr(both, "_flatten"):  # torch >= 2.5: a child of the 2-D mesh
        return both._flatten("data_sequence_parallel")
    return init_device_mesh(mesh.device_type, (mesh.size(),))


def sequence_parallel_group(mesh: DeviceMesh) -> SequenceParallel:
    """This rank's SP group of the 2-D mesh (size 1 without sequence parallelism)."""
    sub = mesh[SP_DIM]
    if sub.size() == 1:
        return SequenceParallel()
    log.info(
        "sequence parallel: %d replicas x %d ranks (tokens split, attention by all-to-all)",
        mesh[DP_DIM].size(),
        sub.size(),
    )
    return SequenceParallel.from_group(sub.get_group())


def data_parallel_rank(trainer: Any) -> tuple[int, int]:
    """(replica index, replica count) of this process: what splits the data and seeds a step.

    Under sequence parallelism a replica is an SP group (Lightning's
    ``distributed_sampler_kwargs`` of the strategy say so); otherwise every rank is one.
    """
    kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None)
    if not kwargs:
        return trainer.global_rank, trainer.world_size
    return int(kwargs["rank"]), int(kwargs["num_replicas"])
