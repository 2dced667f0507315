"""The MLP member: configs on the batched engine, fitting, checkpoints, permutation importance."""
