"""Shared test setup: absl flags parsed (Grain threads read them) and JAX on the CPU."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
