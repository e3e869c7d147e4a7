"""The trainer: one readable function in fixed sections (big_vision style).

    validate → mesh → data (from a checkpoint's saved position) → model + optimizer (eval_shape → shardings → jitted init) → restore →
    update step → loop (log, checkpoint) → final evaluation + results.json

This is the only place where the environment, the model, the objective, the data and the checkpoints meet.
"""

import functools
import json
import operator
import signal
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import parameter_overview
from jax.experimental import multihost_utils

from rlvis import checkpoints, config_lib, methods, metrics, optimizer, profiling, sharding, storage
from rlvis.data import decode, pipeline, sources
from rlvis.envs import crop_env, photometric
from rlvis.errors import ConfigError
from rlvis.evaluators import foresight, suite
from rlvis.methods import bootstraps
from rlvis.models import ab_model
from rlvis.objectives import rewards

SKIPPED = "data/skipped/"  # + a reason from rlvis/data/decode.py: records dropped since the last log line


phase = jax.profiler.TraceAnnotation  # names the trainer's host phases in a profile (rlvis/profiling.py)


def ema_update(ema_params, params, momentum: jax.Array):
    """Target network ← momentum·target + (1 - momentum)·online."""
    return jax.tree.map(lambda e, p: momentum * e + (1.0 - momentum) * p, ema_params, params)


NO_NONFINITE = 2**31 - 1  # "first non-finite step" when every step was finite


def _accumulate(summed: dict | None, step_metrics: dict) -> dict:
    """Sum metrics over steps, except the first non-finite step, which is the minimum."""
    if summed is None:
        return step_metrics
    return {
        k: jnp.minimum(v, step_metrics[k]) if k == "first_nonfinite_step" else v + step_metrics[k]
        for k, v in summed.items()
    }


def _check_finite(summed: dict | None, step: int) -> dict:
    """Average the metrics summed since the last check over the steps that were finite.

    A non-finite loss or gradient stops the run, naming the first bad step and metric, before anything is saved:
    the last checkpoint stays the last good state. With `optim.skip_nonfinite` such steps were already undone on
    device, and are only counted (`nonfinite_skipped`).
    """
    if summed is None:
        return {}
    host = {k: float(v) for k, v in jax.device_get(summed).items()}
    first_bad, finite_steps = int(host.pop("first_nonfinite_step")), host.pop("finite_steps")
    skipped = host.pop("nonfinite_skipped", None)
    if first_bad != NO_NONFINITE and skipped is None:
        bad = [k for k, v in host.items() if not np.isfinite(v)]
        raise FloatingPointError(
            f"non-finite {', '.join(bad) or 'value'} at step {first_bad} (checked at step "
            f"{step}); the last checkpoint is the last good state"
        )
    averaged = {k: v if k.startswith(SKIPPED) else v / max(finite_steps, 1.0) for k, v in host.items()}
    if skipped is not None:
        averaged["nonfinite_skipped"] = skipped
    return averaged


def make_views(key: jax.Array, batch: dict, config: ml_collections.ConfigDict, method) -> dict[str, jax.Array]:
    """Device side of the data flow: the environment renders every view and the tokens of every transition.

    The method renders the annotation views (SimCLR's two augmented crops, DINO's 2 global + N local crops,
    CLIP's single crop with its caption). Bootstrap views stay free of photometric augmentation unless the
    `ab.photometric_bootstrap` ablation asks otherwise. The demo streams' ground truth rides along for the
    diagnostic rewards (rlvis/objectives/rewards.py); the base reward never reads it.
    """
    (annotation_crops, bootstrap_crops, annotation_colour, bootstrap_colour, extra_crops, extra_colour) = (
        jax.random.split(key, 6)
    )
    annotation_keys = jnp.stack([annotation_crops, annotation_colour, extra_crops, extra_colour])
    views = method.render_annotation(annotation_keys, batch["annotation"], config)
    if bootstraps(config):
        bootstrap = crop_env.batch_rollout(
            bootstrap_crops,
            batch["bootstrap"]["image"],
            batch["bootstrap"]["valid"],
            num_views=config.env.views,
            scale=tuple(config.env.scale),
            size=config.env.view_size,
            ratio=tuple(config.env.ratio),
        )
        views.update(
            views=bootstrap["views"],
            actions=bootstrap["actions"],
            boxes=bootstrap["boxes"],
            **rewards.ground_truth(batch),
        )
        if config.ab.photometric_bootstrap:  # colour only: a flip would mirror the view but not its action
            views["views"] = photometric.augment_views(bootstrap_colour, views["views"], without_flip(config.augment))
    return views


def without_flip(augment: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config.augment` with flipping off. Bootstrap views keep their geometry: an action is a box move, and a
    mirrored source view would make the same action point at mirrored content."""
    photometric_only = ml_collections.ConfigDict(augment.to_dict())
    photometric_only.flip = 0.0
    return photometric_only


def _results_table(trained: dict, random_init: dict) -> str:
    width = max([18, *map(len, trained)])
    lines = [f"{'task':<{width}} {'trained':>8} {'random_init':>12} {'margin':>8}"]
    for task, score in trained.items():
        lines.append(f"{task:<{width}} {score:>8.3f} {random_init[task]:>12.3f} {score - random_init[task]:>+8.3f}")
    return "\n".join(lines)


# The bootstrap stream's part of `make_views`' output (the digit fields only on the demo data).
BOOTSTRAP_KEYS = ("views", "actions", "boxes", "digit_boxes", "digit_labels")


def accumulate_gradients(grad_fn: Callable, params, views: dict, chunks: int) -> tuple:
    """The bootstrap batch in `chunks` equal micro-batches, one after another (`lax.scan`), gradients averaged.

    Every AB loss is base(annotation batch) + mean over bootstrap images of a TD term whose vocabulary is the whole
    annotation batch; so each micro-batch keeps the full annotation batch (its negatives and vocabulary), and the
    mean over micro-batches equals the large batch's loss and gradient. The annotation batch is recomputed per
    micro-batch: accumulation saves the bootstrap stream's activation memory, at that compute cost. (Splitting the
    annotation batch would change the contrastive losses, not just the memory.)
    """
    split = {
        k: v.reshape(v.shape[0] // chunks, chunks, *v.shape[1:]).swapaxes(0, 1)
        for k, v in views.items()
        if k in BOOTSTRAP_KEYS
    }  # micro-batch i = rows i::chunks, so each stays spread over every device
    (loss, (metrics, method_state)), grads = grad_fn(params, {**views, **{k: v[0] for k, v in split.items()}})

    def add_micro_batch(totals: tuple, micro: dict) -> tuple:
        (loss, (metrics, method_state)), grads = grad_fn(params, {**views, **micro})
        return jax.tree.map(jnp.add, totals, (loss, metrics, grads)), method_state

    (loss, metrics, grads), method_states = jax.lax.scan(
        add_micro_batch, (loss, metrics, grads), {k: v[1:] for k, v in split.items()}
    )
    mean = lambda tree: jax.tree.map(lambda x: x / chunks, tree)
    return mean(loss), (mean(metrics), jax.tree.map(lambda x: x[-1], method_states)), mean(grads)


class TrainStep(NamedTuple):
    """What the trainer and the benchmark share: the model, a sharded init, and the jitted update step."""

    model: ab_model.ABModel
    init_fn: Callable  # key → train state, born with its target shardings
    init_key: jax.Array
    state_shape: dict  # ShapeDtypeStructs of the train state
    state_sharding: dict
    update_fn: Callable  # (state, global batch) → (state, metrics); the state argument is donated


class Setup(NamedTuple):
    """The fixed parts of one update: what `update` closes over."""

    config: ml_collections.ConfigDict
    method: object  # the method's file (rlvis/methods), resolved once
    model: ab_model.ABModel
    tx: optax.GradientTransformation
    train_key: jax.Array  # folded with the step: every step's crops are a pure function of (seed, step)


def update(setup: Setup, state: dict, batch: dict) -> tuple[dict, dict]:
    """One training step: render the views, the method's loss and its gradient, AdamW, the EMA network."""
    config, method, model = setup.config, setup.method, setup.model
    views = make_views(jax.random.fold_in(setup.train_key, state["step"]), batch, config, method)

    def loss_fn(params, views: dict):
        return method.loss(
            model,
            params,
            ema_params=state["ema_params"],
            batch=views,
            config=config,
            method_state=state["method_state"],
            step=state["step"],
        )

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if config.optim.grad_accum_steps == 1:
        (loss, (step_metrics, method_state)), grads = grad_fn(state["params"], views)
    else:
        loss, (step_metrics, method_state), grads = accumulate_gradients(
            grad_fn, state["params"], views, config.optim.grad_accum_steps
        )
    updates, opt_state = setup.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    momentum = optimizer.ema_momentum_schedule(config)(state["step"])
    ema_params = ema_update(state["ema_params"], params, momentum)
    grad_norm = optax.tree.norm(grads)
    step_metrics.update(
        grad_norm=grad_norm,
        learning_rate=optimizer.learning_rate_schedule(config)(state["step"]),
        ema_momentum=momentum,
    )
    skipped = [stream["skipped"].sum(axis=0) for stream in batch.values() if "skipped" in stream]
    if skipped:  # summed over every host's rows by the sharded reduction
        step_metrics.update({SKIPPED + reason: count for reason, count in zip(decode.SKIP_REASONS, sum(skipped))})
    new_state = dict(params=params, ema_params=ema_params, opt_state=opt_state, method_state=method_state)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if config.optim.skip_nonfinite:  # undo the step: state and metrics as if it never happened
        new_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_state, {k: state[k] for k in new_state}
        )
        step_metrics = {
            k: v if k.startswith(SKIPPED) else jnp.where(finite, v, jnp.zeros_like(v)) for k, v in step_metrics.items()
        }  # the data read in that step is still counted
        step_metrics["nonfinite_skipped"] = 1.0 - finite.astype(jnp.float32)
    step_metrics["finite_steps"] = finite.astype(jnp.float32)
    step_metrics["first_nonfinite_step"] = jnp.where(finite, NO_NONFINITE, state["step"] + 1)
    return dict(**new_state, step=state["step"] + 1), step_metrics


def make_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, channels: int) -> TrainStep:
    """Model + optimizer (eval_shape → shardings → jitted init) and the update step, for any device layout."""
    method = methods.get(config)
    model = method.build_model(config)
    tx = optimizer.make_optimizer(config)
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))

    def init(key: jax.Array) -> dict:
        size = config.env.view_size
        captions = jnp.zeros((1, config.clip.caption_length), jnp.int32) if method.CAPTIONS else None
        params = model.init(
            key,
            jnp.zeros((1, size, size, channels)),
            jnp.tile(crop_env.FULL_BOX, (1, config.env.views - 1, 1)),
            captions,
        )  # "stay"
        return dict(
            params=params,
            ema_params=jax.tree.map(jnp.copy, params),
            opt_state=tx.init(params),
            method_state=method.initial_state(config),
            step=jnp.zeros((), jnp.int32),
        )

    state_shape = jax.eval_shape(init, init_key)
    state_sharding = sharding.state_shardings(state_shape, mesh, config.sharding)
    init_fn = jax.jit(init, out_shardings=state_sharding)  # parameters are born sharded: no host copy first
    update_fn = jax.jit(
        functools.partial(update, Setup(config, method, model, tx, train_key)),
        in_shardings=(state_sharding, sharding.batch_sharded(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    return TrainStep(model, init_fn, init_key, state_shape, state_sharding, update_fn)


def _finished_results(workdir: str, step: int, config: ml_collections.ConfigDict) -> dict | None:
    """results.json of a run that already reached its last step under this very config (re-running the command
    is then a no-op). Anything else — an unfinished run, a changed (e.g. evaluation) field, an unreadable file,
    several processes (which would have to agree) — evaluates again."""
    path = storage.join(workdir, "results.json")
    if step < config.total_steps or jax.process_count() > 1 or not storage.path(path).exists():
        return None
    try:
        results = storage.read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    same = results.get("steps") == step and results.get("config") == json.loads(config.to_json())
    return results if same else None


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop_at_step: int | None = None,
    allow_config_change: bool = False,
    devices: list | None = None,
    profile: tuple[int, int] = (0, 0),
) -> dict | None:
    """Train (resuming from `workdir` if it holds a checkpoint), evaluate, write results.json and return it.

    `stop_at_step` ends this process early (checkpointed, schedules unchanged) for time-limited jobs; it then
    returns None and the same command resumes. `allow_config_change` resumes a checkpoint written under a config
    that differs in fields that change the model or data (refused otherwise), printing which. `devices` (default:
    all) are the mesh's devices; a subset lets one process with 8 fake CPU devices also run 1-device jobs.
    `profile` = (steps done first, steps traced) writes a `jax.profiler` trace into WORKDIR/profile
    (rlvis/profiling.py).
    """
    process_start = time.perf_counter()
    # ---------------------------------------------------------------- validate, before any compute
    devices = list(devices or jax.devices())
    config_lib.validate(config, len(devices))
    checkpoints.check_writable(workdir)  # a full or read-only disk fails now, not at the first save an hour in
    profiler = profiling.StepProfiler(workdir, *profile)
    is_main = jax.process_index() == 0
    saved_steps = checkpoints.checkpoint_steps(workdir)
    done = _finished_results(workdir, saved_steps[-1], config) if saved_steps else None
    if done is not None:  # before any data, model or restore: re-running a finished command costs nothing
        print(_results_table(done["trained"], done["random_init"]), flush=True)
        print(
            f"rlvis: {workdir} is already trained to step {saved_steps[-1]} of {config.total_steps} and "
            "evaluated; delete its results.json to evaluate again",
            flush=True,
        )
        return done

    # ---------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(devices)

    # ---------------------------------------------------------------- where a saved run stands (its metadata only)
    ckpt = checkpoints.Checkpointer(checkpoints.checkpoint_dir(workdir), config.keep_checkpoints)
    latest = ckpt.latest_step()
    position = {name: 0 for name in pipeline.stream_names(config)}
    if latest is not None:
        saved_meta = ckpt.meta(latest)
        changed = config_lib.check_resume(saved_meta["config"], config, allow_config_change)
        if changed and is_main:
            print(f"rlvis: resuming despite config changes (--allow_config_change): {changed}", flush=True)
        position = {name: int(saved_meta["data_position"].get(name, 0)) for name in position}

    # ---------------------------------------------------------------- data, from there (bad paths fail here)
    streams = pipeline.training_streams(config, jax.process_index(), jax.process_count(), position)
    iterators = {name: iter(ds) for name, ds in streams.items()}
    channels = sources.image_channels(config)

    # ---------------------------------------------------------------- model, optimizer, update step
    train_step = make_train_step(config, mesh, channels)
    model, init_fn, init_key = train_step.model, train_step.init_fn, train_step.init_key
    state_shape, state_sharding, update_fn = train_step.state_shape, train_step.state_sharding, train_step.update_fn

    # ---------------------------------------------------------------- restore or start
    if latest is None:
        state, prior_wall = init_fn(init_key), 0.0
    else:
        state, meta = ckpt.restore(latest, checkpoints.abstract_like(state_shape, state_sharding))
        prior_wall = meta["wall_seconds"]
        if is_main:
            saved_by = meta.get("process_count", jax.process_count())
            print(
                f"rlvis: resumed from step {latest} in {workdir}"
                + (
                    f" (saved by {saved_by} processes, resumed on {jax.process_count()})"
                    if saved_by != jax.process_count()
                    else ""
                ),
                flush=True,
            )
    step = int(state["step"])
    if is_main:
        counts = {
            name: parameter_overview.count_parameters({name: tree})
            for name, tree in state_shape["params"]["params"].items()
        }
        print(
            f"rlvis: {config.method}, ViT {config.model.variant}, parameters: "
            + ", ".join(f"{name} {int(n):,}" for name, n in counts.items())
            + f"; {len(devices)} device(s)",
            flush=True,
        )

    # ---------------------------------------------------------------- loop
    def meta(at_step: int) -> dict:
        return dict(
            step=at_step,
            config=json.loads(config.to_json()),
            data_position=position,
            process_count=jax.process_count(),
            wall_seconds=prior_wall + time.perf_counter() - process_start,
        )

    writer = metrics.MetricWriter(workdir)
    writer.drop_after(step)  # lines past the restored checkpoint belong to a run that was lost
    encode = lambda params, views: model.apply(params, views, method=ab_model.ABModel.encode)
    encoder = config_lib.eval_encoder(config)  # "ema" or "online": the one the method's paper scores
    try:  # now: a missing evaluation dataset fails at the start, not after training
        monitors = suite.build(config, encode, channels, "monitor")
        final = suite.build(config, encode, channels, "final")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from None
    monitor_writer = metrics.MetricWriter(workdir, "monitor")
    monitor_writer.drop_after(step)

    def monitor_now(at_step: int, names: list[str]) -> None:
        """The monitors `names` on the encoder the final probes read: monitor.jsonl, TensorBoard, a PNG of curves."""
        if not names:
            return
        scores = suite.run_all(
            {name: monitors[name] for name in names}, state[config_lib.params_key(encoder)], names_from=monitors
        )
        monitor_writer.write(at_step, {f"monitor/{task}": score for task, score in scores.items()})
        if is_main:
            shown = {t: v for t, v in scores.items() if not t.startswith("foresight/") or t.endswith("/all")}
            print(f"step {at_step} | " + " ".join(f"{t} {v:.3f}" for t, v in shown.items()), flush=True)
            suite.plot_curves(monitor_writer.path, "monitor/", storage.join(workdir, "plots", "monitor.png"))
            suite.plot_curves(
                writer.path,
                ("td_accuracy/", "td_invariance_accuracy/"),
                storage.join(workdir, "plots", "td_accuracy.png"),
            )

    if step == 0:
        monitor_now(0, list(monitors))
    images_per_step = sum(config.batch[name] for name in iterators)
    throughput = metrics.Throughput(step, config.total_steps, images_per_step)
    summed, stop_signal, stopping = None, [], False
    handlers = {
        sig: signal.signal(sig, lambda signum, _: stop_signal.append(signal.Signals(signum).name))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }  # preemption, Ctrl-C, lost ssh: save

    def all_processes_stop(at_step: int) -> bool:
        """Whether to stop after this step. Signals reach hosts at different times, and a process that stopped alone
        would leave the others waiting in the next step's collectives, so several processes agree on it, but only
        at log and checkpoint steps (at most `log_every` steps after the signal): a host round trip every step
        would slow every step of a pod. One process acts after the step the signal arrives in."""
        if jax.process_count() == 1:
            return bool(stop_signal)
        if at_step % config.log_every and at_step % config.checkpoint_every:
            return False
        return bool(multihost_utils.process_allgather(np.int32(bool(stop_signal))).max())

    try:
        while step < config.total_steps and (stop_at_step is None or step < stop_at_step) and not stopping:
            profiler.before_step(step)
            with phase("data"):
                host_batch = pipeline.next_batches(iterators)
                position = pipeline.advance(position, config)
                global_batch = sharding.global_batch(host_batch, mesh)
            with phase("update"):  # the dispatch: the device runs on while the host goes on
                state, step_metrics = update_fn(state, global_batch)
            step += 1
            summed = _accumulate(summed, step_metrics)
            if throughput.start_time is None:
                jax.block_until_ready(state)
                throughput.tick(step)
            stopping = all_processes_stop(step)
            log_now = step % config.log_every == 0 or step == config.total_steps
            save_now = step % config.checkpoint_every == 0 or step in (config.total_steps, stop_at_step) or stopping
            monitor = list(monitors) if step == config.total_steps else suite.due(config, step)
            if log_now or save_now or monitor:  # never save, or probe, a non-finite state
                with phase("log"):  # the host waits here for the device to finish the steps so far
                    averaged = _check_finite(summed, step)
            if log_now:
                with phase("log"):
                    images_per_s, eta = throughput.rates(step)
                    digest = functools.reduce(operator.xor, map(pipeline.digest, host_batch.values()))
                    averaged.update(images_per_s=images_per_s, data_digest=digest)
                    writer.write(step, averaged)
                    if is_main:
                        print(metrics.progress_line(step, config.total_steps, averaged, images_per_s, eta), flush=True)
                summed = None
            if monitor:
                with phase("monitor"):
                    monitor_now(step, monitor)
            if save_now:
                with phase("checkpoint"):
                    ckpt.save(step, state, meta(step))
            profiler.after_step(step, state)
    finally:
        profiler.close()  # an interrupted trace ends with what it has
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        writer.close()
        monitor_writer.close()
        ckpt.wait()  # a save in flight completes even when the loop fails, so the last good state is kept
    if step < config.total_steps:
        ckpt.close()
        if is_main:
            reason = f"{stop_signal[0]} received: " if stop_signal else ""
            print(
                f"rlvis: {reason}stopped at step {step}/{config.total_steps}, checkpoint saved; re-run the same "
                "command to resume",
                flush=True,
            )
        return None

    # ---------------------------------------------------------------- final evaluation
    trained = suite.run_all(final, state[config_lib.params_key(encoder)], progress=is_main)
    random_init = suite.run_all(final, init_fn(init_key)["params"], progress=is_main)
    results = dict(
        trained=trained,
        random_init=random_init,
        encoder=encoder,
        margins={task: trained[task] - random_init[task] for task in trained},
        config=json.loads(config.to_json()),
        steps=step,
        wall_seconds=prior_wall + time.perf_counter() - process_start,
    )
    ckpt.close()
    if is_main:
        print(_results_table(trained, random_init), flush=True)
        path = storage.join(workdir, "results.json")
        storage.write_json(path, results)  # whole or not at all: a crash mid-write keeps the previous one
        if any(task.startswith("foresight/") for task in trained):
            foresight.plot(
                trained,
                storage.join(workdir, "plots", "foresight.png"),
                f"foresight at step {step} ({encoder} encoder): {config.method}",
            )
        print(f"rlvis: wrote {path} ({results['wall_seconds']:.0f} s)", flush=True)
    return results
