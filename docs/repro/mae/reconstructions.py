"""MAE's reconstructions of held-out digits (one per class 0–7) from a trained demo checkpoint: original, what the encoder
saw, the reconstruction (hidden patches from the decoder, de-normalised with each patch's true mean/std, as MAE's
own visualisation does), written as a PNG.

    python docs/repro/mae/reconstructions.py runs/repro/mae/mae/seed0 docs/repro/mae/reconstructions.png
"""
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from rlvis import checkpoints, methods
from rlvis.data import digits
from rlvis.methods import mae as mae_method
from rlvis.models.ab_model import ABModel
from rlvis.objectives import mae

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

workdir, out = sys.argv[1], sys.argv[2]
config, state, step = checkpoints.load_run(workdir)
model = methods.build_model(config)
splits = digits.load_digits(config.eval.digits_per_class)
picks = [int(np.flatnonzero(splits.probe_test_labels == c)[0]) for c in range(8)]
images = np.stack([digits.centred_digit(splits.probe_test_images[i])["image"] for i in picks]).astype(np.float32)
views = jnp.asarray(images / 127.5 - 1.0)  # [8, 32, 32, 1] in [-1, 1]
patch = 8
keep, hidden = mae.random_masking(jax.random.PRNGKey(0), len(views), (32 // patch) ** 2, config.mae.mask_ratio)
params = state["params"]
tokens = model.apply(params, views, keep, method=ABModel.encode)
predicted = model.apply(params, tokens, keep, method=mae_method.reconstruct)
target = mae.patchify(views, patch)
mean, std = target.mean(-1, keepdims=True), jnp.sqrt(target.var(-1, keepdims=True) + 1e-6)
pixels = jnp.where(hidden[..., None], predicted * std + mean if config.mae.norm_pix else predicted, target)
error = float(mae.reconstruction_loss(predicted, mae.normalized_targets(target), hidden))

def unpatchify(p):
    g = 32 // patch
    return p.reshape(-1, g, g, patch, patch, 1).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 32, 32)

seen = unpatchify(jnp.where(hidden[..., None], 0.0, target))  # hidden: grey
fig, axes = plt.subplots(3, 8, figsize=(10, 4))
for i in range(8):
    for row, img in enumerate((views[i, ..., 0], seen[i], unpatchify(pixels)[i])):
        axes[row, i].imshow(np.clip(np.asarray(img), -1, 1), cmap="gray", vmin=-1, vmax=1)
        axes[row, i].axis("off")
for row, name in enumerate(("held-out digit", "visible (hidden: grey)", "reconstruction")):
    axes[row, 0].set_title(name, fontsize=8, loc="left")
fig.suptitle(f"MAE at step {step}: hidden-patch loss on these {error:.3f} (normalised pixels; 1.0 = predicting the mean)",
             fontsize=9)
fig.tight_layout()
fig.savefig(out, dpi=110)
print("hidden-patch loss", error)
