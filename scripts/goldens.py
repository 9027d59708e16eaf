#!/usr/bin/env python3
"""Write PyTorch golden cases (reference trajectories) in the schema of ../shared/goldens.

Run by hand, not by CI:

    pip install torch==2.15.0 lion-pytorch==0.2.5 numpy
    python3 scripts/goldens.py [--out DIR] [names...]     # default DIR: tests/data
    python3 scripts/goldens.py --check DIR [names...]     # compare with DIR/<name>.json

Each case is one entry of CASES below. For a case the script

  * makes the data from the case name alone (README "How the data was made"): numpy
    ``default_rng(zlib.crc32(name))`` (PCG64), drawn in this order --
    ``scale = 10 ** uniform(-4, 2, n)``, ``bias = uniform(-1, 1, n)``,
    ``z = standard_normal((T, n))``, ``g = scale * (bias + 0.75 * z)`` (float64),
    ``g[random((T, n)) < 0.02] = 0``, then for n >= 3 ``g[:, 2] = 0`` and ``g[:3, 1] = 0``,
    ``init = standard_normal(n) * 10 ** uniform(-2, 1, n)`` with ``init[0] = 0`` (n >= 3);
    both are then rounded to float32. This recipe was reverse-engineered from the shared
    files and reproduces their ``init`` and ``grads`` bit for bit (see scripts/README.md);
  * runs the README's loop ("The loop that produced every file") twice, in float32 and
    with ``torch.set_default_dtype(torch.float64)`` in float64, one thread;
  * writes ``<name>.json`` in the files' layout: one key per line, one row of a 2-D array
    per line, float32 as the shortest decimal that round-trips (numpy's ``str`` of the
    float32), float64 as Python ``repr``.

The shared files were made on an AVX2 CPU. torch picks its vectorised kernels per CPU and
float32 results can differ in the last bits, so unless ATEN_CPU_CAPABILITY is already set
the script sets it to ``avx2`` before importing torch (``--cpu-capability native`` leaves
torch's own choice).

``--check DIR`` makes the named cases (default: every case that has a file in DIR) and
prints, per case, whether the data (init, grads) and the lr are identical, the largest
difference of params (absolute and in float32 ulps) and of params_f64 (absolute and
relative to each element's largest magnitude over the run), and whether the file's bytes
are identical. It exits 1 when data or lr differ, params are more than ``--max-ulps``
(default 1) float32 ulps apart, or params_f64 differ by more than ``--rtol64`` (default
1e-15) relative.

The mixed-precision cases (``AMP_CASES``, names ``amp_*``; tests/data/README.md
"Mixed-precision cases") run PyTorch's AMP loop instead: several tensors, each with the data
recipe above seeded with ``"<name>/<k>"``, gradients multiplied by the GradScaler's scale (and
cast to bfloat16 where the case says) with inf/NaN injected at chosen steps, ``unscale_``,
``clip_grad_norm_``, a fused optimizer, ``scaler.update()``, an optional EMA; float32 only (no
``params_f64``). Their files hold NaN/Infinity tokens. ``--check`` compares data, lr, scale,
found_inf and growth_tracker exactly and total_norm/params/master/ema_params within ``--max-ulps``.

A case's ``losses`` (one metric per step) go to every ReduceLROnPlateau after the other
schedulers' ``step()``; a ``scheduler`` that is a list is several schedulers on one group,
stepped in list order (a warmup, then a plateau). Not covered yet: sched_plateau_min (made
before the script took losses), the Keras InverseTimeDecay formula, timm's Lamb, schedulefree's
AdamWScheduleFree (``eval_params``) and Muon (``params_bf16_ns``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import os
import sys
import zlib
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------
# Cases: one entry each. opt(name, **non-default args); sched(name, **args).
# "ref": add the file's "reference" key (third wave); n, steps, shape, null_rows,
# zero_steps and note as the README's tables say.
# ---------------------------------------------------------------------------------------


def opt(name, **kw):
    return {"name": name, **kw}


def sched(name, **kw):
    return {"name": name, **kw}


SGD01 = opt("SGD", lr=0.1)
SCHED = dict(steps=60, n=33)

CASES = {
    # First waves: torch.optim, T = 40, n = 257.
    "sgd": dict(optimizer=opt("SGD", lr=0.01)),
    "sgd_momentum": dict(optimizer=opt("SGD", lr=0.01, momentum=0.9)),
    "sgd_momentum_dampening": dict(optimizer=opt("SGD", lr=0.01, momentum=0.9, dampening=0.1)),
    "sgd_weight_decay": dict(optimizer=opt("SGD", lr=0.01, weight_decay=0.01)),
    "adagrad": dict(optimizer=opt("Adagrad")),
    "adagrad_init_acc": dict(optimizer=opt("Adagrad", initial_accumulator_value=0.1)),
    "adagrad_weight_decay": dict(optimizer=opt("Adagrad", weight_decay=0.01)),
    "rmsprop": dict(optimizer=opt("RMSprop")),
    "rmsprop_centered": dict(optimizer=opt("RMSprop", centered=True)),
    "rmsprop_momentum": dict(optimizer=opt("RMSprop", momentum=0.9)),
    "adam": dict(optimizer=opt("Adam")),
    # n = 1: no init[0] = 0 and no forced zero columns; the shared file's gradient is 0 at
    # steps 3 and 20 (not explained by the README; taken from the file).
    "adam_n1": dict(optimizer=opt("Adam"), n=1, zero_steps=[3, 20]),
    "adam_amsgrad": dict(optimizer=opt("Adam", amsgrad=True)),
    "adam_weight_decay": dict(optimizer=opt("Adam", weight_decay=0.01)),
    "adam_maximize": dict(optimizer=opt("Adam", maximize=True)),
    "adam_null_grads": dict(optimizer=opt("Adam", amsgrad=True), null_rows=[3, 4, 10]),
    "adamw": dict(optimizer=opt("AdamW")),
    "adamax": dict(optimizer=opt("Adamax")),
    "nadam": dict(optimizer=opt("NAdam")),
    "radam_decoupled_wd": dict(
        optimizer=opt("RAdam", weight_decay=0.01, decoupled_weight_decay=True)),
    "adadelta": dict(optimizer=opt("Adadelta")),
    "asgd": dict(optimizer=opt("ASGD")),
    "rprop": dict(optimizer=opt("Rprop")),
    # Schedulers: SGD(lr=0.1), T = 60, n = 33.
    "sched_step": dict(optimizer=SGD01, scheduler=sched("StepLR", step_size=7, gamma=0.5), **SCHED),
    "sched_multistep": dict(
        optimizer=SGD01, scheduler=sched("MultiStepLR", milestones=[10, 25, 40], gamma=0.3), **SCHED),
    "sched_exponential": dict(optimizer=SGD01, scheduler=sched("ExponentialLR", gamma=0.95), **SCHED),
    "sched_cosine": dict(
        optimizer=SGD01, scheduler=sched("CosineAnnealingLR", T_max=20, eta_min=0.001), **SCHED),
    "sched_cosine_warm_restarts": dict(
        optimizer=SGD01, scheduler=sched("CosineAnnealingWarmRestarts", T_0=10, T_mult=2), **SCHED),
    "sched_cyclic_triangular": dict(
        optimizer=SGD01,
        scheduler=sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=10,
                        mode="triangular", cycle_momentum=False), **SCHED),
    "sched_cyclic_triangular2": dict(
        optimizer=SGD01,
        scheduler=sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=8, step_size_down=4,
                        mode="triangular2", cycle_momentum=False), **SCHED),
    "sched_onecycle_cos": dict(
        optimizer=SGD01,
        scheduler=sched("OneCycleLR", max_lr=0.1, total_steps=60, anneal_strategy="cos",
                        cycle_momentum=False), **SCHED),
    "sched_polynomial": dict(
        optimizer=SGD01, scheduler=sched("PolynomialLR", total_iters=40, power=2.0), **SCHED),
    "sched_linear": dict(
        optimizer=SGD01, scheduler=sched("LinearLR", start_factor=0.1, total_iters=20), **SCHED),
    "sched_constant": dict(optimizer=SGD01, scheduler=sched("ConstantLR"), **SCHED),
    "sched_sequential_warmup_cosine": dict(
        optimizer=SGD01,
        scheduler=sched("SequentialLR",
                        schedulers=[sched("LinearLR", start_factor=0.1, total_iters=5),
                                    sched("CosineAnnealingLR", T_max=55, eta_min=0.001)],
                        milestones=[5]), **SCHED),
    # Issue 11: SequentialLR with milestone 0 (its first piece never runs).
    "sched_sequential_milestone0": dict(
        optimizer=SGD01,
        scheduler=sched("SequentialLR",
                        schedulers=[sched("ConstantLR", factor=0.5, total_iters=3),
                                    sched("LinearLR", start_factor=0.2, total_iters=10),
                                    sched("ExponentialLR", gamma=0.95)],
                        milestones=[0, 20]), **SCHED),
    # ChainedScheduler with a piece that is not a product: PyTorch's recursive cosine on the
    # warmed-up lr, past T_max (the trough step adds a term).
    "sched_chained_linear_cosine": dict(
        optimizer=SGD01,
        scheduler=sched("ChainedScheduler",
                        schedulers=[sched("LinearLR", start_factor=0.1, total_iters=10),
                                    sched("CosineAnnealingLR", T_max=20, eta_min=0.001)]), **SCHED),
    # A warmup and ReduceLROnPlateau on one group: warmup.step() then plateau.step(loss).
    "sched_linear_plateau": dict(
        optimizer=SGD01,
        scheduler=[sched("LinearLR", start_factor=0.1, total_iters=20),
                   sched("ReduceLROnPlateau", factor=0.5, patience=2, cooldown=1, min_lr=0.002)],
        losses=[0.9 ** min(t, 6) + 0.002 * ((7 * t) % 5) for t in range(60)], **SCHED),
    "sched_chained_constant_exponential": dict(
        optimizer=SGD01,
        scheduler=sched("ChainedScheduler",
                        schedulers=[sched("ConstantLR", factor=0.5, total_iters=10),
                                    sched("ExponentialLR", gamma=0.95)]), **SCHED),
    # Optimizer plus scheduler, T = 40, n = 257.
    "adam_sequential_warmup_cosine": dict(
        optimizer=opt("Adam", lr=0.01),
        scheduler=sched("SequentialLR",
                        schedulers=[sched("LinearLR", start_factor=0.1, total_iters=5),
                                    sched("CosineAnnealingLR", T_max=35, eta_min=1e-5)],
                        milestones=[5])),
    "adamw_onecycle_cycle_momentum": dict(
        optimizer=opt("AdamW"),
        scheduler=sched("OneCycleLR", max_lr=0.01, total_steps=40, cycle_momentum=True)),
    # Schedules that drive optimizer state (issue 11), T = 40, n = 257. ASGD's eta and Rprop's
    # first step sizes follow the lr; OneCycleLR/CyclicLR built on a momentum-0 SGD or RMSprop
    # set the group's momentum to max_momentum, so the buffer exists from step one; NAdam's
    # mu_product follows each step's beta1; CyclicLR's momentum is exactly 0.0 at each peak of lr.
    "asgd_steplr": dict(
        optimizer=opt("ASGD", lr=0.01, lambd=0.01), scheduler=sched("StepLR", step_size=5, gamma=0.5)),
    "rprop_linearlr": dict(
        optimizer=opt("Rprop"), scheduler=sched("LinearLR", start_factor=0.1, total_iters=10)),
    "sgd_onecycle_cycle_momentum": dict(
        optimizer=opt("SGD", lr=0.01, dampening=0.1),
        scheduler=sched("OneCycleLR", max_lr=0.01, total_steps=40, cycle_momentum=True)),
    "rmsprop_onecycle_cycle_momentum": dict(
        optimizer=opt("RMSprop"),
        scheduler=sched("OneCycleLR", max_lr=0.01, total_steps=40, cycle_momentum=True)),
    "nadam_onecycle_cycle_momentum": dict(
        optimizer=opt("NAdam"),
        scheduler=sched("OneCycleLR", max_lr=0.01, total_steps=40, cycle_momentum=True)),
    "sgd_cyclic_momentum_zero": dict(
        optimizer=opt("SGD", lr=0.01, momentum=0.9, dampening=0.1),
        scheduler=sched("CyclicLR", base_lr=0.001, max_lr=0.01, step_size_up=5,
                        base_momentum=0.0, max_momentum=0.9)),
    "rmsprop_cyclic_momentum_zero": dict(
        optimizer=opt("RMSprop", momentum=0.9),
        scheduler=sched("CyclicLR", base_lr=0.001, max_lr=0.01, step_size_up=5,
                        base_momentum=0.0, max_momentum=0.9)),
    # Issue 11: the momentum OneCycleLR leaves in the group stays after it ends (and the
    # ConstantLR after it scales initial_lr = max_lr / div_factor, as PyTorch's group holds it).
    "sgd_momentum_sequential_onecycle_constant": dict(
        optimizer=opt("SGD", lr=0.1, momentum=0.9),
        scheduler=sched("SequentialLR",
                        schedulers=[sched("OneCycleLR", max_lr=0.1, total_steps=20),
                                    sched("ConstantLR", factor=0.5, total_iters=10)],
                        milestones=[20])),
    # Third wave: the file names its reference.
    "lion": dict(optimizer=opt("Lion"), ref=True),
    "lion_wd": dict(optimizer=opt("Lion", lr=3e-4, weight_decay=0.1), ref=True),
}

# Mixed-precision cases (issue 12): PyTorch's own AMP loop -- GradScaler, unscale_,
# clip_grad_norm_, a fused optimizer, optionally an EMA (AveragedModel) and bf16 parameters with
# an f32 master copy -- over several tensors. tests/data/README.md "Mixed-precision cases".
# tensors: (n, shape or None); inject: (step, tensor, flat index, "inf" | "-inf" | "nan"),
# written into p.grad after the scale and the cast to grad_dtype.
AMP_TENSORS = [(257, None), (64, [8, 8]), (1031, None)]
AMP_SCALER = dict(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=4)

AMP_CASES = {
    # AdamW (lr 1e-2, weight_decay 0.01 = the default), L2 clipping at about the median norm of
    # the true gradients (active at some steps, not at others), EMA 0.9. Skips at 2, 9-10 (two
    # in a row; step 10 has non-finite values in two tensors), 21 and 30.
    "amp_adamw_clip": dict(
        optimizer=opt("AdamW", lr=1e-2, weight_decay=0.01), scaler=AMP_SCALER,
        clip=dict(max_norm=580.0, norm_type=2.0), ema=dict(decay=0.9),
        inject=[(2, 1, 5, "inf"), (9, 0, 100, "nan"), (10, 2, 1000, "-inf"), (10, 0, 7, "inf"),
                (21, 2, 33, "nan"), (30, 1, 63, "inf")]),
    # Fused SGD with momentum 0.9, inf-norm clipping. Never a skip at step 0: fused SGD's first
    # step makes its momentum buffers with torch.empty_like, and a skipped first step leaves them
    # uninitialised (garbage) for the next one (README).
    "amp_sgd_momentum_clip": dict(
        optimizer=opt("SGD", lr=0.01, momentum=0.9), scaler=AMP_SCALER,
        clip=dict(max_norm=175.0, norm_type="inf"), ema=None,
        inject=[(1, 0, 3, "inf"), (7, 2, 512, "nan"), (8, 1, 0, "inf"), (8, 2, 1030, "nan"),
                (19, 0, 256, "-inf"), (27, 1, 40, "nan")]),
    # bf16 parameters and bf16 gradients; the fused AdamW steps an f32 master copy, which is
    # copied back to the bf16 parameter (round to nearest even) after every iteration. The EMA
    # averages the f32 masters.
    "amp_adamw_bf16_master": dict(
        optimizer=opt("AdamW", lr=1e-2, weight_decay=0.01), scaler=AMP_SCALER,
        clip=dict(max_norm=640.0, norm_type=2.0), ema=dict(decay=0.9),
        param_dtype="bfloat16", grad_dtype="bfloat16", master_weights=True,
        inject=[(3, 0, 9, "inf"), (4, 1, 17, "nan"), (4, 2, 200, "inf"), (15, 2, 999, "nan"),
                (26, 0, 128, "-inf")]),
    # The scaler alone: AdamW at its defaults, no clipping, no EMA. Three skips in a row at the
    # start (the scale backs off 2**24 -> 2**21; Adam's step count stays 0), growth every 3 steps.
    "amp_adamw_noclip": dict(
        optimizer=opt("AdamW"),
        scaler=dict(init_scale=2.0 ** 24, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
        clip=None, ema=None,
        inject=[(0, 0, 11, "inf"), (1, 2, 77, "nan"), (2, 1, 30, "inf"), (2, 2, 5, "-inf"),
                (17, 0, 200, "nan"), (25, 2, 640, "inf")]),
}

# Optimizers from outside torch.optim: class name -> (module, attribute, PyPI distribution).
EXTERNAL_OPTIMIZERS = {
    "Lion": ("lion_pytorch", "Lion", "lion-pytorch"),
}

# Constructor arguments that are implementation switches, not semantics: left out.
SWITCHES = {"foreach", "fused", "capturable", "differentiable", "use_triton"}
SCHED_LEFT_OUT = {"optimizer", "last_epoch", "verbose", "scale_fn"}

N_DEFAULT = 257
STEPS_DEFAULT = 40

# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def make_data(name, n, steps, zero_steps=(), null_rows=()):
    """init (n float32) and grads (steps x n float32, or None rows) from the case name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    scale = 10 ** rng.uniform(-4, 2, n)
    bias = rng.uniform(-1, 1, n)
    z = rng.standard_normal((steps, n))
    g = scale * (bias + 0.75 * z)
    g[rng.random((steps, n)) < 0.02] = 0.0
    if n >= 3:
        g[:, 2] = 0.0
        g[:3, 1] = 0.0
    for t in zero_steps:
        g[t, :] = 0.0
    init = rng.standard_normal(n) * 10 ** rng.uniform(-2, 1, n)
    if n >= 3:
        init[0] = 0.0
    init = init.astype(np.float32)
    g = g.astype(np.float32)
    grads = [None if t in null_rows else g[t] for t in range(steps)]
    return init, grads


# ---------------------------------------------------------------------------------------
# Optimizer / scheduler construction and their JSON description
# ---------------------------------------------------------------------------------------


def _coerce(value, annotation):
    """Write a default the way the files do: tuples as lists, ints as floats where the
    argument is annotated float."""
    ann = str(annotation)
    if isinstance(value, (tuple, list)):
        return [_coerce(v, ann) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and "float" in ann and "int" not in ann:
        return float(value)
    return value


def _described(cls, given, left_out):
    """{name, every constructor argument with defaults filled in} in signature order."""
    out = {"name": given["name"]}
    params = inspect.signature(cls.__init__).parameters
    unknown = set(given) - {"name"} - set(params)
    if unknown:
        raise SystemExit(f"{given['name']}: unknown arguments {sorted(unknown)}")
    for pname, p in params.items():
        if pname in ("self", "params") or pname in left_out or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if pname in given:
            value = given[pname]
        elif p.default is not inspect.Parameter.empty:
            value = p.default
        else:
            raise SystemExit(f"{given['name']}: argument {pname} has no default")
        out[pname] = _coerce(value, p.annotation)
    return out


def optimizer_class(name):
    import torch

    if name in EXTERNAL_OPTIMIZERS:
        module, attr, _ = EXTERNAL_OPTIMIZERS[name]
        return getattr(importlib.import_module(module), attr)
    return getattr(torch.optim, name)


def describe_optimizer(spec):
    return _described(optimizer_class(spec["name"]), spec, SWITCHES)


def describe_scheduler(spec):
    import torch

    if isinstance(spec, list):  # schedulers stepped in turn on one group (a warmup and a plateau)
        return [describe_scheduler(s) for s in spec]
    cls = getattr(torch.optim.lr_scheduler, spec["name"])
    out = _described(cls, spec, SCHED_LEFT_OUT)
    if "schedulers" in out:
        out["schedulers"] = [describe_scheduler(s) for s in spec["schedulers"]]
    return out


def build_optimizer(spec, p):
    cls = optimizer_class(spec["name"])
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if "foreach" in inspect.signature(cls.__init__).parameters:
        kwargs["foreach"] = False
    return cls([p], **kwargs)


def build_scheduler(spec, optimizer):
    import torch

    if isinstance(spec, list):
        return [build_scheduler(s, optimizer) for s in spec]
    cls = getattr(torch.optim.lr_scheduler, spec["name"])
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if "schedulers" in kwargs:
        subs = [build_scheduler(s, optimizer) for s in kwargs.pop("schedulers")]
        if spec["name"] == "ChainedScheduler":
            return cls(subs, **kwargs)
        return cls(optimizer, subs, **kwargs)
    return cls(optimizer, **kwargs)


def reference_string(opt_name):
    if opt_name in EXTERNAL_OPTIMIZERS:
        dist = EXTERNAL_OPTIMIZERS[opt_name][2]
        return f"{dist} {importlib.metadata.version(dist)}"
    import torch

    return f"torch {torch.__version__.split('+')[0]}"


# ---------------------------------------------------------------------------------------
# The loop (README "The loop that produced every file")
# ---------------------------------------------------------------------------------------


def run(case, init, grads, dtype):
    import torch

    torch.set_default_dtype(dtype)
    try:
        shape = case.get("shape") or [len(init)]
        p = torch.nn.Parameter(torch.from_numpy(init.copy()).to(dtype).reshape(shape))
        opt_ = build_optimizer(case["optimizer"], p)
        sch = build_scheduler(case["scheduler"], opt_) if case.get("scheduler") else None
        lrs, params = [], []
        losses = case.get("losses")
        for t, g in enumerate(grads):
            p.grad = None if g is None else torch.from_numpy(g.copy()).to(dtype).reshape(shape)
            lrs.append(float(opt_.param_groups[0]["lr"]))
            opt_.step()
            params.append(p.detach().clone().flatten().numpy())
            for s in sch if isinstance(sch, list) else [] if sch is None else [sch]:
                if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    s.step(losses[t])
                else:
                    s.step()
        return lrs, np.array(params)
    finally:
        torch.set_default_dtype(torch.float32)


def make_case(name):
    spec = CASES[name]
    n = spec.get("n", N_DEFAULT)
    steps = spec.get("steps", STEPS_DEFAULT)
    if "shape" in spec:
        rows, cols = spec["shape"]
        n = rows * cols
    init, grads = make_data(name, n, steps, spec.get("zero_steps", ()), spec.get("null_rows", ()))
    import torch

    lr32, p32 = run(spec, init, grads, torch.float32)
    lr64, p64 = run(spec, init, grads, torch.float64)
    if lr32 != lr64:
        raise SystemExit(f"{name}: lr differs between the float32 and float64 runs")
    out = {"name": name, "optimizer": describe_optimizer(spec["optimizer"])}
    if spec.get("ref"):
        out["reference"] = reference_string(spec["optimizer"]["name"])
    out["scheduler"] = describe_scheduler(spec["scheduler"]) if spec.get("scheduler") else None
    out["steps"] = steps
    if "losses" in spec:
        out["losses"] = [float(x) for x in spec["losses"]]
    if "shape" in spec:
        out["shape"] = list(spec["shape"])
    if "note" in spec:
        out["note"] = spec["note"]
    out["init"] = init
    out["grads"] = grads
    out["lr"] = lr32
    out["params"] = p32.astype(np.float32)
    out["params_f64"] = p64.astype(np.float64)
    return out


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def f32_text(x):
    x = np.float32(x)
    s = str(x)
    # The README's promise: the decimal reads back to x parsed as f32 and as f64 -> f32.
    assert np.float32(s) == x and np.float32(float(s)) == x, (s, x)
    return s


def f64_text(x):
    s = repr(float(x))
    assert float(s) == float(x)
    return s


def vec(values, fmt):
    return "[" + ",".join(fmt(v) for v in values) + "]"


def rows(values, fmt):
    lines = ["null" if r is None else vec(r, fmt) for r in values]
    return "[\n" + ",\n".join(lines) + "\n]"


F32_VECTORS = {"init", "eval_params"}
F64_VECTORS = {"lr", "losses", "eval_params_f64"}
F32_ROWS = {"grads", "params", "params_bf16_ns"}
F64_ROWS = {"params_f64"}


def to_text(case):
    lines = []
    for key, value in case.items():
        if key in F32_VECTORS:
            text = vec(value, f32_text)
        elif key in F64_VECTORS:
            text = vec(value, f64_text)
        elif key in F32_ROWS:
            text = rows(value, f32_text)
        elif key in F64_ROWS:
            text = rows(value, f64_text)
        else:
            text = json.dumps(value)
        lines.append(f"{json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


# ---------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------


def _as_rows(rows_, dtype):
    return [None if r is None else np.array(r, dtype=dtype) for r in rows_]


def _f32_ulp_diff(a, b):
    """Distance in float32 ulps (ordered-integer distance; +0 and -0 are 0 apart)."""
    ia = a.astype(np.float32).view(np.int32).astype(np.int64)
    ib = b.astype(np.float32).view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


def check_case(case, path, max_ulps, rtol64):
    if not path.exists():
        print(f"{case['name']}: MISMATCH  no file {path}")
        return False
    ref_text = path.read_text()
    ref = json.loads(ref_text)
    new_text = to_text(case)
    init_ok = np.array_equal(np.array(ref["init"], np.float32).view(np.uint32),
                             case["init"].view(np.uint32))
    rg, ng = _as_rows(ref["grads"], np.float32), case["grads"]
    grads_ok = len(rg) == len(ng) and all(
        (a is None and b is None) or (a is not None and b is not None
                                      and np.array_equal(a.view(np.uint32), b.view(np.uint32)))
        for a, b in zip(rg, ng))
    lr_ok = [float(x) for x in ref["lr"]] == case["lr"]
    meta_keys = [k for k in ref if k not in ("init", "grads", "lr", "params", "params_f64")]
    meta_ok = all(ref.get(k) == json.loads(json.dumps(case.get(k))) for k in meta_keys) and \
        set(meta_keys) <= set(case)
    p_ref = np.array(ref["params"], np.float32)
    p_new = case["params"]
    p_abs = float(np.max(np.abs(p_ref.astype(np.float64) - p_new.astype(np.float64))))
    p_ulps = int(np.max(_f32_ulp_diff(p_ref, p_new)))
    p_ndiff = int(np.sum(p_ref.view(np.uint32) != p_new.view(np.uint32)))
    q_ref = np.array(ref["params_f64"], np.float64)
    q_new = case["params_f64"]
    q_abs = float(np.max(np.abs(q_ref - q_new)))
    # relative to each element's largest magnitude over the run (elements pass near zero)
    span = np.maximum(np.max(np.abs(q_ref), axis=0), np.finfo(np.float64).tiny)
    q_rel = float(np.max(np.abs(q_ref - q_new) / span))
    q_ndiff = int(np.sum(q_ref != q_new))
    ok = (init_ok and grads_ok and lr_ok and meta_ok and p_ulps <= max_ulps and q_rel <= rtol64)
    print(f"{case['name']}: {'OK' if ok else 'MISMATCH'}"
          f"  data(init,grads) {'identical' if init_ok and grads_ok else 'DIFFERENT'}"
          f" [init {'=' if init_ok else '!='}, grads {'=' if grads_ok else '!='}]"
          f"  lr {'identical' if lr_ok else 'DIFFERENT'}"
          f"  header {'identical' if meta_ok else 'DIFFERENT'}")
    print(f"    params:     max|d| {p_abs:.3e}  max {p_ulps} f32 ulp  ({p_ndiff} of {p_ref.size} values differ)")
    print(f"    params_f64: max|d| {q_abs:.3e}  max rel (to element range) {q_rel:.3e}"
          f"  ({q_ndiff} of {q_ref.size} values differ)")
    print(f"    file bytes {'identical' if ref_text == new_text else 'differ'}")
    return ok


# ---------------------------------------------------------------------------------------
# Mixed-precision cases (tests/data/README.md "Mixed-precision cases")
# ---------------------------------------------------------------------------------------

NONFINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def make_amp_data(name, spec, steps):
    """Per tensor k: init and true gradients from the plain recipe seeded with "<name>/<k>"."""
    out = []
    for k, (n, shape) in enumerate(spec.get("tensors", AMP_TENSORS)):
        init, grads = make_data(f"{name}/{k}", n, steps)
        out.append((n, shape, init, np.array(grads)))
    return out


def run_amp(name, spec, data, steps):
    """PyTorch's AMP loop, float32 (and bfloat16 where the case says), one thread."""
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    param_dtype = getattr(torch, spec.get("param_dtype", "float32"))
    grad_dtype = getattr(torch, spec.get("grad_dtype", "float32"))
    master_weights = spec.get("master_weights", False)
    clip, ema_spec = spec.get("clip"), spec.get("ema")
    inject = {}
    for t, k, i, v in spec.get("inject", ()):
        if not (0 <= t < steps and 0 <= k < len(data) and 0 <= i < data[k][0]):
            raise SystemExit(f"{name}: injection {(t, k, i, v)} out of range")
        inject.setdefault(t, []).append((k, i, NONFINITE[v]))
    if spec["optimizer"]["name"] == "SGD" and 0 in inject:
        raise SystemExit(f"{name}: fused SGD must not skip its first step (README)")

    shapes = [shape or [n] for n, shape, _, _ in data]
    params = [torch.nn.Parameter(torch.from_numpy(init.copy()).to(param_dtype).reshape(shape))
              for (_, _, init, _), shape in zip(data, shapes)]
    if master_weights:
        opt_params = [torch.nn.Parameter(p.detach().float().clone()) for p in params]
    else:
        opt_params = params
    cls = optimizer_class(spec["optimizer"]["name"])
    kwargs = {k: v for k, v in spec["optimizer"].items() if k != "name"}
    opt_ = cls(opt_params, fused=True, **kwargs)
    scaler = torch.amp.GradScaler("cpu", **spec["scaler"])
    module = torch.nn.ParameterList(opt_params)
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(ema_spec["decay"])) if ema_spec else None

    def snap(tensors):
        return [t.detach().float().clone().flatten().numpy() for t in tensors]

    rec = {k: [] for k in ("grads", "lr", "scale", "found_inf", "growth_tracker", "total_norm",
                           "params", "master", "ema_params")}
    rec["init"] = snap(params)          # the parameters as made: bf16-rounded where param_dtype says
    for t in range(steps):
        before = snap(params) + (snap(opt_params) if master_weights else [])
        for k, (p, shape) in enumerate(zip(params, shapes)):
            true_g = torch.from_numpy(data[k][3][t].copy()).reshape(shape)   # float32
            g = scaler.scale(true_g).to(grad_dtype)      # true gradient * scale, in float32, cast
            for kk, i, v in inject.get(t, ()):
                if kk == k:
                    g.view(-1)[i] = v
            p.grad = g
        rec["grads"].append(snap([p.grad for p in params]))
        rec["scale"].append(scaler.get_scale())
        if master_weights:
            for p, m in zip(params, opt_params):
                m.grad = p.grad.float()
        rec["lr"].append(float(opt_.param_groups[0]["lr"]))
        scaler.unscale_(opt_)
        if clip:
            norm_type = float("inf") if clip["norm_type"] == "inf" else clip["norm_type"]
            total = torch.nn.utils.clip_grad_norm_(opt_params, clip["max_norm"], norm_type)
            rec["total_norm"].append(float(total))
        scaler.step(opt_)
        found = sum(v.item() for v in scaler._found_inf_per_device(opt_).values()) > 0
        scale_before = scaler.get_scale()
        scaler.update()
        scale_after = scaler.get_scale()
        if master_weights:
            with torch.no_grad():
                for p, m in zip(params, opt_params):
                    p.copy_(m)                          # float32 -> bfloat16, nearest even
        if ema is not None:
            ema.update_parameters(module)
        rec["found_inf"].append(bool(found))
        rec["growth_tracker"].append(int(scaler._growth_tracker.item()))
        rec["params"].append(snap(params))
        if master_weights:
            rec["master"].append(snap(opt_params))
        if ema is not None:
            rec["ema_params"].append(snap(list(ema.module.parameters())))
        # The loop's own checks: a skip is exactly the backoff, and it changes nothing.
        backoff = spec["scaler"]["backoff_factor"]
        if found != (scale_after == np.float32(scale_before * backoff)) or found != (t in inject):
            raise SystemExit(f"{name}: step {t}: found_inf {found}, scale {scale_before} -> "
                             f"{scale_after}, injected {t in inject}")
        after = snap(params) + (snap(opt_params) if master_weights else [])
        if found and not all(np.array_equal(a.view(np.uint32), b.view(np.uint32))
                             for a, b in zip(before, after)):
            raise SystemExit(f"{name}: step {t} was skipped but the parameters changed")
    return rec


def make_amp_case(name):
    import torch

    spec = AMP_CASES[name]
    steps = spec.get("steps", STEPS_DEFAULT)
    data = make_amp_data(name, spec, steps)
    rec = run_amp(name, spec, data, steps)
    master_weights = spec.get("master_weights", False)
    out = {"name": name, "reference": f"torch {torch.__version__.split('+')[0]}",
           "optimizer": describe_optimizer(spec["optimizer"]), "scheduler": None, "steps": steps,
           "scaler": {k: spec["scaler"][k] for k in
                      ("init_scale", "growth_factor", "backoff_factor", "growth_interval")},
           "clip": dict(spec["clip"]) if spec.get("clip") else None,
           "ema": dict(spec["ema"]) if spec.get("ema") else None,
           "param_dtype": spec.get("param_dtype", "float32"),
           "grad_dtype": spec.get("grad_dtype", "float32"),
           "master_weights": master_weights,
           "injected": [{"step": t, "tensor": k, "index": i, "value": v}
                        for t, k, i, v in sorted(spec.get("inject", ()))]}
    if "note" in spec:
        out["note"] = spec["note"]
    out["tensors"] = [{"n": n, **({"shape": list(shape)} if shape else {}), "init": init}
                      for (n, shape, _, _), init in zip(data, rec["init"])]
    out["grads"] = rec["grads"]
    out["lr"] = rec["lr"]
    out["scale"] = rec["scale"]
    out["found_inf"] = rec["found_inf"]
    out["growth_tracker"] = rec["growth_tracker"]
    if spec.get("clip"):
        out["total_norm"] = rec["total_norm"]
    out["params"] = rec["params"]
    if master_weights:
        out["master"] = rec["master"]
    if spec.get("ema"):
        out["ema_params"] = rec["ema_params"]
    return out


def f32_token(x):
    """f32_text, with Python json's NaN / Infinity / -Infinity for non-finite values."""
    x = np.float32(x)
    if np.isnan(x):
        return "NaN"
    if np.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return f32_text(x)


def f64_token(x):
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return json.dumps(x)
    return f64_text(x)


AMP_F32_VECTORS = {"scale"}
AMP_F64_VECTORS = {"lr", "total_norm"}
AMP_TENSOR_ROWS = {"grads", "params", "master", "ema_params"}


def amp_to_text(case):
    """One key per line; tensors one per line; T rows of per-tensor vectors one step per line."""
    lines = []
    for key, value in case.items():
        if key == "tensors":
            objs = []
            for tensor in value:
                head = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in tensor.items()
                                 if k != "init")
                objs.append("{" + head + ', "init": ' + vec(tensor["init"], f32_token) + "}")
            text = "[\n" + ",\n".join(objs) + "\n]"
        elif key in AMP_TENSOR_ROWS:
            text = "[\n" + ",\n".join("[" + ",".join(vec(v, f32_token) for v in row) + "]"
                                      for row in value) + "\n]"
        elif key in AMP_F32_VECTORS:
            text = vec(value, f32_token)
        elif key in AMP_F64_VECTORS:
            text = vec(value, f64_token)
        elif key in ("found_inf", "growth_tracker"):
            text = "[" + ",".join(json.dumps(v) for v in value) + "]"
        elif key == "injected":
            text = "[\n" + ",\n".join(json.dumps(v) for v in value) + "\n]"
        else:
            text = json.dumps(value)
        lines.append(f"{json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _ulps(a, b, dtype):
    """Largest distance in ulps of dtype ("float32" or "bfloat16", values held as float32);
    NaN against NaN is 0 apart, NaN against a number is reported as -1 (a mismatch)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    na, nb = np.isnan(a), np.isnan(b)
    if np.any(na != nb):
        return -1
    d = _f32_ulp_diff(np.where(na, 0, a), np.where(nb, 0, b))
    return int(np.max(d, initial=0)) >> (16 if dtype == "bfloat16" else 0)


def check_amp_case(case, path, max_ulps):
    if not path.exists():
        print(f"{case['name']}: MISMATCH  no file {path}")
        return False
    ref_text = path.read_text()
    ref = json.loads(ref_text)
    new = json.loads(amp_to_text(case))     # the numbers exactly as written

    def bits(rows_):
        return [[np.array(v, np.float32).view(np.uint32).tolist() for v in row] for row in rows_]

    data_ok = ([t["init"] for t in ref["tensors"]] == [t["init"] for t in new["tensors"]]
               and bits(ref["grads"]) == bits(new["grads"]))
    scaler_keys = ("lr", "scale", "found_inf", "growth_tracker")
    scaler_ok = all(ref.get(k) == new.get(k) for k in scaler_keys)
    traj_keys = ("grads", "tensors", "total_norm", "params", "master", "ema_params") + scaler_keys
    meta_ok = set(ref) == set(new) and all(ref[k] == new[k] for k in ref if k not in traj_keys)
    ok = data_ok and scaler_ok and meta_ok
    details = []
    if "total_norm" in ref:
        u = _ulps(ref["total_norm"], new.get("total_norm", []), "float32") \
            if len(ref["total_norm"]) == len(new.get("total_norm", [])) else -1
        ok = ok and 0 <= u <= max_ulps
        details.append(f"    total_norm: max {u} f32 ulp")
    for key, dtype in (("params", ref["param_dtype"]), ("master", "float32"), ("ema_params", "float32")):
        if key not in ref:
            continue
        a = [np.concatenate([np.array(v, np.float32) for v in row]) for row in ref[key]]
        b = [np.concatenate([np.array(v, np.float32) for v in row]) for row in new.get(key, [])]
        u = _ulps(a, b, dtype) if len(a) == len(b) else -1
        ok = ok and 0 <= u <= max_ulps
        details.append(f"    {key}: max {u} {'bf16' if dtype == 'bfloat16' else 'f32'} ulp")
    print(f"{case['name']}: {'OK' if ok else 'MISMATCH'}"
          f"  data(init,grads) {'identical' if data_ok else 'DIFFERENT'}"
          f"  lr/scale/found_inf/growth_tracker {'identical' if scaler_ok else 'DIFFERENT'}"
          f"  header {'identical' if meta_ok else 'DIFFERENT'}")
    print("\n".join(details))
    print(f"    file bytes {'identical' if ref_text == amp_to_text(case) else 'differ'}")
    return ok


# ---------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="cases to make (default: all; with --check, all in DIR)")
    ap.add_argument("--out", default="tests/data", help="where to write <name>.json (default tests/data)")
    ap.add_argument("--check", metavar="DIR", help="compare fresh cases with DIR/<name>.json; write nothing")
    ap.add_argument("--max-ulps", type=int, default=1, help="--check: params tolerance in float32 ulps")
    ap.add_argument("--rtol64", type=float, default=1e-15,
                    help="--check: params_f64 tolerance relative to each element's range")
    ap.add_argument("--cpu-capability", default="avx2",
                    help="ATEN_CPU_CAPABILITY when not set already (avx2 as the shared files; "
                         "'native': torch's own choice)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)

    if args.list:
        print("\n".join(list(CASES) + list(AMP_CASES)))
        return 0
    names = args.names
    every = list(CASES) + list(AMP_CASES)
    if args.check and not names:
        names = [n for n in every if (Path(args.check) / f"{n}.json").exists()]
    elif not names:
        names = every
    unknown = [n for n in names if n not in CASES and n not in AMP_CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; --list shows them")

    if args.cpu_capability != "native":
        os.environ.setdefault("ATEN_CPU_CAPABILITY", args.cpu_capability)
    import torch

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, numpy {np.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}", file=sys.stderr)

    if args.check:
        bad = [n for n in names if not (
            check_amp_case(make_amp_case(n), Path(args.check) / f"{n}.json", args.max_ulps)
            if n in AMP_CASES else
            check_case(make_case(n), Path(args.check) / f"{n}.json", args.max_ulps, args.rtol64))]
        print(f"{len(names) - len(bad)} of {len(names)} cases match" +
              (f"; mismatched: {' '.join(bad)}" if bad else ""))
        return 1 if bad else 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        text = amp_to_text(make_amp_case(n)) if n in AMP_CASES else to_text(make_case(n))
        (out / f"{n}.json").write_text(text)
        print(f"wrote {out / f'{n}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
