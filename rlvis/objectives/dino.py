"""DINO's base loss (Caron et al. 2021): a student matches a centred, sharpened EMA teacher across crops.

In AB terms (docs/method.md) the annotations are the K prototypes and p(ℓ | x) is the teacher's prototype
distribution. Teacher outputs are centred (a running mean subtracted, against collapse to one prototype) and
sharpened (a low temperature, warmed up from `warmup_teacher_temp`, against collapse to uniform).
"""

import jax
import jax.numpy as jnp
import ml_collections


def teacher_temperature(step: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """Linear warm-up from dino.warmup_teacher_temp to dino.teacher_temp, then constant (DINO's schedule)."""
    progress = jnp.minimum(step / max(config.dino.teacher_temp_warmup_steps, 1), 1.0)
    return config.dino.warmup_teacher_temp + progress * (config.dino.teacher_temp - config.dino.warmup_teacher_temp)


def teacher_distribution(logits: jax.Array, center: jax.Array, temperature: jax.Array) -> jax.Array:
    return jax.nn.softmax((logits - center) / temperature, axis=-1)


def dino_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    student_temperature: float,
    teacher_temperature: jax.Array,
) -> tuple[jax.Array, jax.Array, dict]:
    """student_logits [B, V, K] (the 2 global crops first, then the local ones), teacher_logits [B, 2, K].

    Loss = mean over images and over pairs (teacher global g, student crop v ≠ g) of
    CE(softmax((t_g - c) / τ_t), softmax(s_v / τ_s)). Returns (loss, the batch mean of the teacher logits for the
    centre update, metrics).
    """
    targets = jax.lax.stop_gradient(teacher_distribution(teacher_logits, center, teacher_temperature))
    log_student = jax.nn.log_softmax(student_logits / student_temperature, axis=-1)
    cross_entropy = -jnp.einsum("bgk,bvk->bgv", targets, log_student)  # [B, 2, V]
    num_views = student_logits.shape[1]
    different = jnp.arange(2)[:, None] != jnp.arange(num_views)[None, :]  # [2, V]
    loss = jnp.sum(cross_entropy * different) / (student_logits.shape[0] * jnp.sum(different))
    entropy = -jnp.sum(targets * jnp.log(targets + 1e-12), axis=-1).mean()
    batch_center = jax.lax.stop_gradient(teacher_logits).mean(axis=(0, 1))
    return loss, batch_center, dict(teacher_entropy=entropy)


def update_center(center: jax.Array, batch_center: jax.Array, momentum: float) -> jax.Array:
    return momentum * center + (1.0 - momentum) * batch_center
