//! Schedules from PyTorch-style JSON: class names, argument names and defaults as in
//! `torch.optim.lr_scheduler` (the `scheduler` objects of the golden cases).

use serde_json::{Map, Value};

use super::cosine_annealing_warm_restarts::{t_0_error, t_mult_error};
use super::cyclic_lr::step_size_down_error;
use super::*;
use crate::error::{Error, Result};

/// Builds the scheduler a JSON object describes, PyTorch's way:
/// `{"name": "StepLR", "step_size": 7, "gamma": 0.5}`,
/// `{"name": "SequentialLR", "schedulers": [{...}, {...}], "milestones": [5]}`,
/// `{"name": "ChainedScheduler", "schedulers": [...]}`, `{"name": "ReduceLROnPlateau", ...}`.
///
/// A list `[{"name": "LinearLR", ...}, {"name": "ReduceLROnPlateau", ...}]` is a schedule and a
/// plateau scheduler on one group, stepped in that order ([`LrScheduler::with_plateau`]).
///
/// `base_lr` is the optimizer's `lr`. Nested schedules are built in order on one group, as
/// PyTorch's are, so each takes the group's `initial_lr` as its base lr: the optimizer's lr,
/// except after a `OneCycleLR` (which sets it to `max_lr / div_factor`) or when a `CyclicLR`
/// was built first (its `base_lr`). Missing keys take PyTorch's
/// defaults; `null` means `None` where PyTorch's default is `None`; `"last_epoch": -1` is
/// accepted. Besides PyTorch's classes (except `LambdaLR` and `MultiplicativeLR`, which need a
/// closure), it knows Keras's `InverseTimeDecay` and `ExponentialDecay` (`decay_steps`,
/// `decay_rate`, `staircase`, and `"source": "keras-formula"`) and `RandomLR` (`min_lr`,
/// `max_lr`, `seed`).
///
/// ```
/// use wgpu_optim::schedule::from_json;
/// # fn main() -> wgpu_optim::Result<()> {
/// let spec = serde_json::json!({"name": "StepLR", "step_size": 7, "gamma": 0.5});
/// let sched = from_json(&spec, 0.1)?;
/// assert_eq!(sched.lr(7)?, 0.05);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::UnsupportedScheduler`] for an unknown class name (`unsupported scheduler: StepLRR`);
/// [`Error::Config`] for a value that is not an object, a missing `name` or required key, an
/// unknown key or a value of the wrong type (the message names the key);
/// [`Error::InvalidHyperparameter`] for values out of their domain, with PyTorch's messages.
pub fn from_json(value: &Value, base_lr: f64) -> Result<LrScheduler> {
    if let Some(list) = value.as_array() {
        return with_plateau(list, base_lr);
    }
    Ok(match build(value, &mut Group::new(base_lr))? {
        Built::Pure(s) => LrScheduler::from_boxed(s),
        Built::Plateau(p) => LrScheduler::plateau(p),
    })
}

/// `[schedule, plateau]`: the two schedulers of [`LrScheduler::with_plateau`], in the order
/// PyTorch's loop steps them.
fn with_plateau(list: &[Value], base_lr: f64) -> Result<LrScheduler> {
    let shape = || {
        config_error(
            "a list of schedulers must be [a schedule, a ReduceLROnPlateau] (stepped in that order, the \
             plateau with the metric)"
                .into(),
        )
    };
    let [first, second] = list else { return Err(shape()) };
    let mut group = Group::new(base_lr);
    let Built::Pure(schedule) = build(first, &mut group)? else { return Err(shape()) };
    let Built::Plateau(plateau) = build(second, &mut Group::new(base_lr))? else { return Err(shape()) };
    Ok(LrScheduler::with_plateau_boxed(schedule, plateau))
}

/// The optimizer group's lr and PyTorch's `group["initial_lr"]` while the schedulers of one spec
/// are built in order on it: the first scheduler built sets `initial_lr` (to the group's lr, or
/// to its own `base_lr` for `CyclicLR`), `OneCycleLR` overwrites it with `max_lr / div_factor`,
/// and every other scheduler takes it as its base lr. So in
/// `SequentialLR([OneCycleLR(max_lr=0.1), ConstantLR])` the `ConstantLR` scales 0.004, not the
/// optimizer's lr, as in PyTorch.
#[derive(Clone, Copy)]
struct Group {
    lr: f64,
    initial: Option<f64>,
}

impl Group {
    fn new(lr: f64) -> Self {
        Self { lr, initial: None }
    }

    /// The base lr of the next scheduler built.
    fn base(&self) -> f64 {
        self.initial.unwrap_or(self.lr)
    }
}

/// Like [`from_json`], for a pure schedule.
///
/// # Errors
/// As [`from_json`], and [`Error::Config`] for `ReduceLROnPlateau`, which is not pure.
pub fn schedule_from_json(value: &Value, base_lr: f64) -> Result<Box<dyn Schedule>> {
    match build(value, &mut Group::new(base_lr))? {
        Built::Pure(s) => Ok(s),
        Built::Plateau(_) => {
            Err(config_error("ReduceLROnPlateau is not a pure schedule: build it with from_json".into()))
        }
    }
}

enum Built {
    Pure(Box<dyn Schedule>),
    Plateau(ReduceLrOnPlateau),
}

fn pure(schedule: impl Schedule + 'static) -> Result<Built> {
    Ok(Built::Pure(Box::new(schedule)))
}

fn build(value: &Value, group: &mut Group) -> Result<Built> {
    let base_lr = group.base();
    let built = build_one(value, group, base_lr)?;
    if matches!(built, Built::Pure(_)) && group.initial.is_none() {
        group.initial = Some(group.lr);
    }
    Ok(built)
}

fn build_one(value: &Value, group: &mut Group, base_lr: f64) -> Result<Built> {
    let map =
        value.as_object().ok_or_else(|| config_error(format!("a scheduler must be a JSON object, got {value}")))?;
    let name = match map.get("name") {
        Some(Value::String(name)) => name.as_str(),
        Some(other) => return Err(config_error(format!("\"name\" must be a string, got {other}"))),
        None => return Err(config_error("missing key \"name\"".into())),
    };
    match name {
        "StepLR" => {
            let a = Args::new(name, map, &["step_size", "gamma"])?;
            let step_size = a.uint_req("step_size", &|v| positive_int("step_size", v))?;
            pure(StepLr::new(base_lr, StepLrConfig { step_size, gamma: a.f64_or("gamma", 0.1)? })?)
        }
        "MultiStepLR" => {
            let a = Args::new(name, map, &["milestones", "gamma"])?;
            let milestones = a.uint_list("milestones", &|v| non_negative_int("milestones", v))?;
            pure(MultiStepLr::new(base_lr, MultiStepLrConfig { milestones, gamma: a.f64_or("gamma", 0.1)? })?)
        }
        "ConstantLR" => {
            let a = Args::new(name, map, &["factor", "total_iters"])?;
            let d = ConstantLrConfig::default();
            let config = ConstantLrConfig {
                factor: a.f64_or("factor", d.factor)?,
                total_iters: a.uint_or("total_iters", d.total_iters, &|v| non_negative_int("total_iters", v))?,
            };
            pure(ConstantLr::new(base_lr, config)?)
        }
        "LinearLR" => {
            let a = Args::new(name, map, &["start_factor", "end_factor", "total_iters"])?;
            let d = LinearLrConfig::default();
            let config = LinearLrConfig {
                start_factor: a.f64_or("start_factor", d.start_factor)?,
                end_factor: a.f64_or("end_factor", d.end_factor)?,
                total_iters: a.uint_or("total_iters", d.total_iters, &|v| non_negative_int("total_iters", v))?,
            };
            pure(LinearLr::new(base_lr, config)?)
        }
        "ExponentialLR" => {
            let a = Args::new(name, map, &["gamma"])?;
            pure(ExponentialLr::new(base_lr, ExponentialLrConfig { gamma: a.f64_req("gamma")? })?)
        }
        "PolynomialLR" => {
            let a = Args::new(name, map, &["total_iters", "power"])?;
            let d = PolynomialLrConfig::default();
            let config = PolynomialLrConfig {
                total_iters: a.uint_or("total_iters", d.total_iters, &|v| non_negative_int("total_iters", v))?,
                power: a.f64_or("power", d.power)?,
            };
            pure(PolynomialLr::new(base_lr, config)?)
        }
        "CosineAnnealingLR" => {
            let a = Args::new(name, map, &["T_max", "eta_min"])?;
            let t_max = a.uint_req("T_max", &|v| positive_int("T_max", v))?;
            pure(CosineAnnealingLr::new(
                base_lr,
                CosineAnnealingLrConfig { t_max, eta_min: a.f64_or("eta_min", 0.0)? },
            )?)
        }
        "CosineAnnealingWarmRestarts" => {
            let a = Args::new(name, map, &["T_0", "T_mult", "eta_min"])?;
            let config = CosineAnnealingWarmRestartsConfig {
                t_0: a.uint_req("T_0", &|v| t_0_error(v))?,
                t_mult: a.uint_or("T_mult", 1, &|v| t_mult_error(v))?,
                eta_min: a.f64_or("eta_min", 0.0)?,
            };
            pure(CosineAnnealingWarmRestarts::new(base_lr, config)?)
        }
        "CyclicLR" => {
            let cyclic = cyclic(map, base_lr)?;
            group.initial.get_or_insert(cyclic.config().base_lr);
            pure(cyclic)
        }
        "OneCycleLR" => {
            let one_cycle = one_cycle(map, base_lr)?;
            group.initial = Some(one_cycle.initial_lr());
            pure(one_cycle)
        }
        "SequentialLR" => {
            let a = Args::new(name, map, &["schedulers", "milestones"])?;
            let list = a.list_req("schedulers")?;
            let mut schedules = children(name, list, group)?;
            let milestones = a.uint_list("milestones", &|v| non_negative_int("milestones", v))?;
            // PyTorch resets the group's lr to initial_lr once every piece is built, and the
            // first active piece runs from there.
            if group.initial != Some(base_lr) {
                if let (Some(first), Some(slot)) = (list.first(), schedules.first_mut()) {
                    if let Built::Pure(s) = build_one(first, &mut group.clone(), group.base())? {
                        *slot = s;
                    }
                }
            }
            pure(SequentialLr::new(schedules, milestones)?)
        }
        "ChainedScheduler" => {
            let a = Args::new(name, map, &["schedulers"])?;
            let schedules = children(name, a.list_req("schedulers")?, group)?;
            pure(ChainedScheduler::new(group.lr, schedules)?)
        }
        "ReduceLROnPlateau" => Ok(Built::Plateau(plateau(map, base_lr)?)),
        "InverseTimeDecay" | "ExponentialDecay" => {
            let a = Args::new(name, map, &["decay_steps", "decay_rate", "staircase", "source"])?;
            if let Some(source) = a.get("source") {
                if source.as_str() != Some("keras-formula") {
                    return Err(config_error(format!("{name}: \"source\" must be \"keras-formula\", got {source}")));
                }
            }
            let (decay_steps, decay_rate) = (a.f64_req("decay_steps")?, a.f64_req("decay_rate")?);
            let staircase = a.bool_or("staircase", false)?;
            if name == "InverseTimeDecay" {
                pure(InverseTimeDecay::new(base_lr, InverseTimeDecayConfig { decay_steps, decay_rate, staircase })?)
            } else {
                pure(ExponentialDecay::new(base_lr, ExponentialDecayConfig { decay_steps, decay_rate, staircase })?)
            }
        }
        "RandomLR" => {
            let a = Args::new(name, map, &["min_lr", "max_lr", "seed"])?;
            let config = RandomLrConfig {
                min_lr: a.f64_req("min_lr")?,
                max_lr: a.f64_req("max_lr")?,
                seed: a.uint_or("seed", 0, &|v| non_negative_int("seed", v))?,
            };
            pure(RandomLr::new(base_lr, config)?)
        }
        _ => Err(Error::UnsupportedScheduler(name.to_string())),
    }
}

/// The nested schedules of a composite; PyTorch refuses a plateau among them.
fn children(class: &str, list: &[Value], group: &mut Group) -> Result<Vec<Box<dyn Schedule>>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, value) in list.iter().enumerate() {
        match build(value, group)? {
            Built::Pure(s) => out.push(s),
            Built::Plateau(_) => {
                return Err(Error::invalid(
                    "schedulers",
                    format!(
                        "{class} does not support `ReduceLROnPlateau` scheduler as it requires \
                         additional kwargs to be specified when calling `step`, but got one at \
                         index {i} in the given schedulers sequence."
                    ),
                ))
            }
        }
    }
    Ok(out)
}

fn cyclic(map: &Map<String, Value>, base_lr: f64) -> Result<CyclicLr> {
    let a = Args::new(
        "CyclicLR",
        map,
        &[
            "base_lr",
            "max_lr",
            "step_size_up",
            "step_size_down",
            "mode",
            "gamma",
            "scale_fn",
            "scale_mode",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
        ],
    )?;
    if a.get("scale_fn").is_some_and(|v| !v.is_null()) {
        return Err(config_error(
            "CyclicLR: \"scale_fn\" is a function and cannot come from JSON (use CyclicLrConfig::scale_fn)".into(),
        ));
    }
    let d = CyclicLrConfig::new(a.f64_req("base_lr")?, a.f64_req("max_lr")?);
    let mode = match a.str_or("mode", "triangular")? {
        "triangular" => CyclicMode::Triangular,
        "triangular2" => CyclicMode::Triangular2,
        "exp_range" => CyclicMode::ExpRange,
        _ => return Err(Error::invalid("mode", "mode is invalid and scale_fn is None".into())),
    };
    let scale_mode = match a.str_or("scale_mode", "cycle")? {
        "cycle" => ScaleMode::Cycle,
        "iterations" => ScaleMode::Iterations,
        other => {
            return Err(Error::invalid(
                "scale_mode",
                format!("scale_mode must be one of 'cycle' or 'iterations', instead got {other}"),
            ))
        }
    };
    let config = CyclicLrConfig {
        step_size_up: a.uint_or("step_size_up", d.step_size_up, &|v| positive_int("step_size_up", v))?,
        step_size_down: a.opt_uint("step_size_down", &|v| step_size_down_error(v))?,
        mode,
        gamma: a.f64_or("gamma", d.gamma)?,
        scale_mode,
        cycle_momentum: a.bool_or("cycle_momentum", d.cycle_momentum)?,
        base_momentum: a.f64_or("base_momentum", d.base_momentum)?,
        max_momentum: a.f64_or("max_momentum", d.max_momentum)?,
        ..d
    };
    CyclicLr::new(base_lr, config)
}

fn one_cycle(map: &Map<String, Value>, base_lr: f64) -> Result<OneCycleLr> {
    let a = Args::new(
        "OneCycleLR",
        map,
        &[
            "max_lr",
            "total_steps",
            "epochs",
            "steps_per_epoch",
            "pct_start",
            "anneal_strategy",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
            "div_factor",
            "final_div_factor",
            "three_phase",
        ],
    )?;
    let positive = |key: &'static str| {
        move |v: String| Error::invalid(key, format!("Expected positive integer {key}, but got {v}"))
    };
    let d = OneCycleLrConfig::new(a.f64_req("max_lr")?, 0);
    let strategy = match a.str_or("anneal_strategy", "cos")? {
        "cos" => Ok(AnnealStrategy::Cos),
        "linear" => Ok(AnnealStrategy::Linear),
        other => Err(Error::invalid(
            "anneal_strategy",
            format!("anneal_strategy must be one of 'cos' or 'linear', instead got {other}"),
        )),
    };
    let config = OneCycleLrConfig {
        total_steps: a.opt_uint("total_steps", &positive("total_steps"))?,
        epochs: a.opt_uint("epochs", &positive("epochs"))?,
        steps_per_epoch: a.opt_uint("steps_per_epoch", &positive("steps_per_epoch"))?,
        pct_start: a.f64_or("pct_start", d.pct_start)?,
        cycle_momentum: a.bool_or("cycle_momentum", d.cycle_momentum)?,
        base_momentum: a.f64_or("base_momentum", d.base_momentum)?,
        max_momentum: a.f64_or("max_momentum", d.max_momentum)?,
        div_factor: a.f64_or("div_factor", d.div_factor)?,
        final_div_factor: a.f64_or("final_div_factor", d.final_div_factor)?,
        three_phase: a.bool_or("three_phase", d.three_phase)?,
        ..d
    };
    // PyTorch checks total_steps and pct_start before anneal_strategy, and ours come after.
    OneCycleLr::pytorch_checks(&config)?;
    OneCycleLr::new(base_lr, OneCycleLrConfig { anneal_strategy: strategy?, ..config })
}

fn plateau(map: &Map<String, Value>, base_lr: f64) -> Result<ReduceLrOnPlateau> {
    let a = Args::new(
        "ReduceLROnPlateau",
        map,
        &["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"],
    )?;
    let d = ReduceLrOnPlateauConfig::default();
    let config = ReduceLrOnPlateauConfig {
        factor: a.f64_or("factor", d.factor)?,
        patience: a.uint_or("patience", d.patience, &|v| non_negative_int("patience", v))?,
        threshold: a.f64_or("threshold", d.threshold)?,
        cooldown: a.uint_or("cooldown", d.cooldown, &|v| non_negative_int("cooldown", v))?,
        min_lr: a.f64_or("min_lr", d.min_lr)?,
        eps: a.f64_or("eps", d.eps)?,
        ..d
    };
    let mode = a.str_or("mode", "min")?;
    let threshold_mode = a.str_or("threshold_mode", "rel")?;
    // PyTorch checks factor before the modes, and ours come after both.
    super::reduce_lr_on_plateau::check_factor_below_one(config.factor)?;
    let config = ReduceLrOnPlateauConfig { mode: mode.parse()?, threshold_mode: threshold_mode.parse()?, ..config };
    ReduceLrOnPlateau::new(base_lr, config)
}

/// The keyword arguments of one scheduler, checked against the keys its class takes.
struct Args<'a> {
    class: &'a str,
    map: &'a Map<String, Value>,
}

type BadInt<'f> = &'f dyn Fn(String) -> Error;

impl<'a> Args<'a> {
    fn new(class: &'a str, map: &'a Map<String, Value>, allowed: &[&str]) -> Result<Self> {
        for (key, value) in map {
            if key == "name" || allowed.contains(&key.as_str()) {
                continue;
            }
            if key == "last_epoch" {
                if value.as_i64() == Some(-1) {
                    continue;
                }
                return Err(config_error(format!(
                    "{class}: \"last_epoch\" must be -1 (resume by restoring the optimizer's step instead), got {value}"
                )));
            }
            return Err(config_error(format!("{class}: unknown key \"{key}\" (expected: {})", allowed.join(", "))));
        }
        Ok(Self { class, map })
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| config_error(format!("{}: missing required key \"{key}\"", self.class)))
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> Error {
        config_error(format!("{}: \"{key}\" must be {expected}, got {}", self.class, crate::pyjson::show(got)))
    }

    fn float(&self, key: &str, v: &Value) -> Result<f64> {
        // Python's `NaN`, `Infinity` and `-Infinity` (see `crate::pyjson`) are numbers here too,
        // refused by the check that names the argument.
        crate::pyjson::as_f64(v).ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    fn f64_req(&self, key: &str) -> Result<f64> {
        self.float(key, self.required(key)?)
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        self.get(key).map_or(Ok(default), |v| self.float(key, v))
    }

    fn int(&self, key: &str, v: &Value, bad: BadInt) -> Result<u64> {
        match v {
            Value::Number(n) => n.as_u64().ok_or_else(|| bad(n.to_string())),
            _ => Err(self.wrong_type(key, "an integer", v)),
        }
    }

    fn uint_req(&self, key: &str, bad: BadInt) -> Result<u64> {
        self.int(key, self.required(key)?, bad)
    }

    fn uint_or(&self, key: &str, default: u64, bad: BadInt) -> Result<u64> {
        self.get(key).map_or(Ok(default), |v| self.int(key, v, bad))
    }

    /// An argument whose PyTorch default is `None`: missing or `null` give `None`.
    fn opt_uint(&self, key: &str, bad: BadInt) -> Result<Option<u64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.int(key, v, bad).map(Some),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        self.get(key).map_or(Ok(default), |v| v.as_bool().ok_or_else(|| self.wrong_type(key, "true or false", v)))
    }

    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        self.get(key).map_or(Ok(default), |v| v.as_str().ok_or_else(|| self.wrong_type(key, "a string", v)))
    }

    fn list_req(&self, key: &str) -> Result<&'a [Value]> {
        let v = self.required(key)?;
        v.as_array().map(Vec::as_slice).ok_or_else(|| self.wrong_type(key, "a list", v))
    }

    fn uint_list(&self, key: &str, bad: BadInt) -> Result<Vec<u64>> {
        self.list_req(key)?.iter().map(|v| self.int(key, v, bad)).collect()
    }
}
