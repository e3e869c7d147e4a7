"""Train with a class-level reward that is wrong on part of the scenes: is the reward's accuracy the limit?

    python docs/repro/levers/shuffled_oracle.py --config=configs/demo.py --workdir=runs/levers/NAME \
        --config.ab.reward=oracle --config.ab.oracle_fraction=F [other rlvis.main flags]

`ab.oracle_fraction=F` gives the true classes to the first F of each batch's scenes and the base model's reward to
the rest. Here the rest get the true classes of the next scene in the batch instead: a reward of the oracle's form
(uniform over the annotations of whole classes, the same on every view of a class) that names the wrong digits,
roughly as often as chance. If foresight stays high with this reward but not with the base model's at a similar
accuracy, the base model's reward is limited by its form (per-annotation similarities), not by how often it is right.
"""

import jax.numpy as jnp

from rlvis import main
from rlvis.objectives import bootstrap


mix_rewards = bootstrap.mix_rewards


def next_scenes_oracle(oracle, base, oracle_fraction):
    """The first round(F · B) scenes keep their own oracle reward; the others get the next scene's."""
    del base
    return mix_rewards(oracle, jnp.roll(oracle, -1, axis=0), oracle_fraction)


if __name__ == "__main__":
    bootstrap.mix_rewards = next_scenes_oracle
    main.main()
