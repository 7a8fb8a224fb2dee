"""Scale: FSDP2 sharding, sharded weights, meta-device models and steps, memory and FLOP plans."""
