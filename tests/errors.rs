//! Every error a user can provoke, with its message asserted; and a refused call changes nothing.

mod common;

use common::{buffer, device_with_default_handler, gpu};
use serde_json::json;
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

fn config_error(value: serde_json::Value) -> String {
    match OptimizerConfig::from_json(&value) {
        Ok(c) => panic!("{value} was accepted as {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_hyperparameters_give_pytorchs_messages() {
    let table = [
        (json!({"name": "Adam", "lr": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "Adam", "betas": [1.5, 0.999]}), "Invalid beta parameter at index 0: 1.5"),
        (json!({"name": "Adam", "betas": [0.9, 1.0]}), "Invalid beta parameter at index 1: 1.0"),
        (json!({"name": "Adam", "eps": -1e-8}), "Invalid epsilon value: -1e-08"),
        (json!({"name": "Adam", "weight_decay": -0.1}), "Invalid weight_decay value: -0.1"),
        (json!({"name": "AdamW", "lr": -0.001}), "Invalid learning rate: -0.001"),
        (json!({"name": "AdamW", "betas": [0.9, -0.5]}), "Invalid beta parameter at index 1: -0.5"),
        (json!({"name": "SGD", "lr": -0.5}), "Invalid learning rate: -0.5"),
        (json!({"name": "SGD", "momentum": -0.9}), "Invalid momentum value: -0.9"),
        (json!({"name": "SGD", "weight_decay": -1e-5}), "Invalid weight_decay value: -1e-05"),
        (json!({"name": "SGD", "nesterov": true}), "Nesterov momentum requires a momentum and zero dampening"),
        (
            json!({"name": "SGD", "nesterov": true, "momentum": 0.9, "dampening": 0.1}),
            "Nesterov momentum requires a momentum and zero dampening",
        ),
        (json!({"name": "Adagrad", "lr": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "Adagrad", "lr_decay": -1}), "Invalid lr_decay value: -1.0"),
        (json!({"name": "Adagrad", "weight_decay": -2}), "Invalid weight_decay value: -2.0"),
        (
            json!({"name": "Adagrad", "initial_accumulator_value": -0.1}),
            "Invalid initial_accumulator_value value: -0.1",
        ),
        (json!({"name": "Adagrad", "eps": -1e-10}), "Invalid epsilon value: -1e-10"),
        (json!({"name": "RMSprop", "lr": -0.01}), "Invalid learning rate: -0.01"),
        (json!({"name": "RMSprop", "eps": -1}), "Invalid epsilon value: -1.0"),
        (json!({"name": "RMSprop", "momentum": -0.1}), "Invalid momentum value: -0.1"),
        (json!({"name": "RMSprop", "weight_decay": -0.1}), "Invalid weight_decay value: -0.1"),
        (json!({"name": "RMSprop", "alpha": -0.99}), "Invalid alpha value: -0.99"),
        (json!({"name": "Adamax", "betas": [0.9, 2]}), "Invalid beta parameter at index 1: 2.0"),
        (json!({"name": "Adamax", "eps": -1}), "Invalid epsilon value: -1.0"),
        (json!({"name": "NAdam", "momentum_decay": -0.004}), "Invalid momentum_decay value: -0.004"),
        (json!({"name": "NAdam", "lr": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "RAdam", "betas": [-0.1, 0.999]}), "Invalid beta parameter at index 0: -0.1"),
        (json!({"name": "RAdam", "weight_decay": -1}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "Adadelta", "rho": 1.5}), "Invalid rho value: 1.5"),
        (json!({"name": "Adadelta", "eps": -1e-6}), "Invalid epsilon value: -1e-06"),
        (json!({"name": "ASGD", "lr": -0.01}), "Invalid learning rate: -0.01"),
        (json!({"name": "ASGD", "weight_decay": -1}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "Rprop", "etas": [1.5, 1.2]}), "Invalid eta values: 1.5, 1.2"),
        (json!({"name": "Rprop", "etas": [0.5, 0.9]}), "Invalid eta values: 0.5, 0.9"),
        (json!({"name": "ASGD", "lambd": -1e-4}), "Invalid lambd value: -0.0001"),
        (json!({"name": "ASGD", "alpha": -0.75}), "Invalid alpha value: -0.75"),
        (json!({"name": "Adadelta", "lr": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "Adadelta", "rho": -0.1}), "Invalid rho value: -0.1"),
        (json!({"name": "Adadelta", "weight_decay": -1}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "Rprop", "lr": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "Rprop", "etas": [0, 1.2]}), "Invalid eta values: 0.0, 1.2"),
        (json!({"name": "Rprop", "etas": [0.5, 1]}), "Invalid eta values: 0.5, 1.0"),
        (json!({"name": "NAdam", "betas": [0.9, 1]}), "Invalid beta parameter at index 1: 1.0"),
        (json!({"name": "NAdam", "eps": -1e-8}), "Invalid epsilon value: -1e-08"),
        (json!({"name": "NAdam", "weight_decay": -0.5}), "Invalid weight_decay value: -0.5"),
        (json!({"name": "RAdam", "lr": -2}), "Invalid learning rate: -2.0"),
        (json!({"name": "RAdam", "eps": -1e-20}), "Invalid epsilon value: -1e-20"),
        (json!({"name": "Adamax", "lr": -0.002}), "Invalid learning rate: -0.002"),
        (json!({"name": "Adamax", "weight_decay": -3}), "Invalid weight_decay value: -3.0"),
        (json!({"name": "AdamW", "eps": -1}), "Invalid epsilon value: -1.0"),
        (json!({"name": "AdamW", "weight_decay": -0.01}), "Invalid weight_decay value: -0.01"),
        // lion-pytorch asserts `lr > 0` and `0 <= beta <= 1`; we say so with PyTorch's messages.
        (json!({"name": "Lion", "lr": 0}), "Invalid learning rate: 0.0"),
        (json!({"name": "Lion", "betas": [0.9, 1.5]}), "Invalid beta parameter at index 1: 1.5"),
        (json!({"name": "Lion", "betas": [-0.5, 0.99]}), "Invalid beta parameter at index 0: -0.5"),
        (json!({"name": "Lion", "weight_decay": -1}), "Invalid weight_decay value: -1.0"),
    ];
    for (value, message) in table {
        assert_eq!(config_error(value.clone()), message, "for {value}");
    }
}

#[test]
fn the_first_bad_value_in_pytorchs_order_is_the_one_named() {
    // Two bad values each: PyTorch's constructor names the first it checks (each row checked
    // against torch 2.15), and the checks beyond PyTorch come after all of PyTorch's.
    let table = [
        (json!({"name": "Adam", "lr": -1, "eps": -1}), "Invalid learning rate: -1.0"),
        (json!({"name": "Adam", "eps": -1, "betas": [2, 2]}), "Invalid epsilon value: -1.0"),
        (json!({"name": "Adam", "betas": [2, 2]}), "Invalid beta parameter at index 0: 2.0"),
        (json!({"name": "AdamW", "betas": [0.9, 2], "weight_decay": -1}), "Invalid beta parameter at index 1: 2.0"),
        (json!({"name": "NAdam", "weight_decay": -1, "momentum_decay": -1}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "SGD", "momentum": -1, "weight_decay": -1}), "Invalid momentum value: -1.0"),
        (json!({"name": "SGD", "weight_decay": -1, "nesterov": true}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "SGD", "momentum": 1.5, "weight_decay": -1}), "Invalid weight_decay value: -1.0"),
        (
            json!({"name": "SGD", "momentum": 0.9, "dampening": 2, "nesterov": true}),
            "Nesterov momentum requires a momentum and zero dampening",
        ),
        (json!({"name": "RMSprop", "eps": -1, "momentum": -1}), "Invalid epsilon value: -1.0"),
        (json!({"name": "RMSprop", "weight_decay": -1, "alpha": -1}), "Invalid weight_decay value: -1.0"),
        (json!({"name": "RMSprop", "alpha": 2, "lr": -1}), "Invalid learning rate: -1.0"),
        (
            json!({"name": "Adagrad", "initial_accumulator_value": -1, "eps": -1}),
            "Invalid initial_accumulator_value value: -1.0",
        ),
        (json!({"name": "Adagrad", "lr_decay": -1, "weight_decay": -1}), "Invalid lr_decay value: -1.0"),
        (json!({"name": "ASGD", "lambd": -1, "alpha": -1}), "Invalid lambd value: -1.0"),
        (json!({"name": "ASGD", "alpha": -1, "weight_decay": -1}), "Invalid alpha value: -1.0"),
        (json!({"name": "Adadelta", "rho": 2, "eps": -1}), "Invalid rho value: 2.0"),
        (json!({"name": "Rprop", "lr": -1, "etas": [2, 1]}), "Invalid learning rate: -1.0"),
        (json!({"name": "Rprop", "etas": [2, 1], "step_sizes": [1, 0]}), "Invalid eta values: 2.0, 1.0"),
    ];
    for (value, message) in table {
        assert_eq!(config_error(value.clone()), message, "for {value}");
    }
}

#[test]
fn values_pytorch_runs_to_nonsense_are_refused_naming_the_value() {
    // PyTorch 2.15 accepts every one of these (checked with torch itself); each message starts as
    // PyTorch's would for the parameter, then says why.
    let table = [
        (json!({"name": "SGD", "momentum": 1.5}), "Invalid momentum value: 1.5 (momentum must be at most 1"),
        (json!({"name": "SGD", "dampening": 1.5}), "Invalid dampening value: 1.5 (dampening must be in [0, 1]"),
        (json!({"name": "SGD", "dampening": -0.5}), "Invalid dampening value: -0.5 (dampening must be in [0, 1]"),
        (json!({"name": "RMSprop", "momentum": 2}), "Invalid momentum value: 2.0 (momentum must be at most 1"),
        (json!({"name": "RMSprop", "alpha": 1.01}), "Invalid alpha value: 1.01 (alpha must be at most 1"),
        (json!({"name": "Rprop", "step_sizes": [1, 0.5]}), "Invalid step_sizes values: 1.0, 0.5 (step_sizes must be"),
        (json!({"name": "Rprop", "step_sizes": [-1, 1]}), "Invalid step_sizes values: -1.0, 1.0 (step_sizes must be"),
    ];
    for (value, message) in table {
        let error = config_error(value.clone());
        assert!(error.starts_with(message), "for {value}: expected {message:?}..., got {error:?}");
    }
    // The edges are allowed: momentum and dampening 1, alpha 1, equal step sizes.
    for value in [
        json!({"name": "SGD", "momentum": 1, "dampening": 1}),
        json!({"name": "RMSprop", "momentum": 1, "alpha": 1}),
        json!({"name": "Rprop", "step_sizes": [0.5, 0.5]}),
    ] {
        OptimizerConfig::from_json(&value).unwrap_or_else(|e| panic!("{value}: {e}"));
    }
}

/// The message for a config given as text that Python's `json.dump` wrote.
fn python_error(text: &str) -> String {
    config_error(wgpu_optim::pyjson::parse(text).unwrap_or_else(|e| panic!("{text} does not parse: {e}")))
}

#[test]
fn pythons_nan_and_infinity_tokens_are_read_and_refused_naming_the_parameter() {
    let table = [
        (r#"{"name": "Adam", "lr": NaN}"#, "Invalid learning rate: nan"),
        (r#"{"name": "Adam", "betas": [NaN, 0.999]}"#, "Invalid beta parameter at index 0: nan"),
        (r#"{"name": "AdamW", "betas": [0.9, Infinity]}"#, "Invalid beta parameter at index 1: inf"),
        (r#"{"name": "AdamW", "eps": Infinity}"#, "Invalid epsilon value: inf"),
        (r#"{"name": "SGD", "lr": NaN}"#, "Invalid learning rate: nan"),
        (r#"{"name": "SGD", "momentum": Infinity}"#, "Invalid momentum value: inf"),
        (r#"{"name": "SGD", "dampening": NaN}"#, "Invalid dampening value: nan (dampening must be in [0, 1]"),
        (r#"{"name": "RMSprop", "alpha": -Infinity}"#, "Invalid alpha value: -inf"),
        (r#"{"name": "Adagrad", "eps": NaN}"#, "Invalid epsilon value: nan"),
        (
            r#"{"name": "Adagrad", "initial_accumulator_value": Infinity}"#,
            "Invalid initial_accumulator_value value: inf",
        ),
        (r#"{"name": "NAdam", "momentum_decay": NaN}"#, "Invalid momentum_decay value: nan"),
        (r#"{"name": "Adadelta", "rho": NaN}"#, "Invalid rho value: nan"),
        (r#"{"name": "ASGD", "lambd": NaN}"#, "Invalid lambd value: nan"),
        (r#"{"name": "ASGD", "t0": Infinity}"#, "Invalid t0 value: inf (t0 must be finite)"),
        (r#"{"name": "Rprop", "etas": [0.5, Infinity]}"#, "Invalid eta values: 0.5, inf"),
        (r#"{"name": "Rprop", "step_sizes": [1e-06, Infinity]}"#, "Invalid step_sizes values: 1e-06, inf"),
        (r#"{"name": "Lion", "lr": NaN}"#, "Invalid learning rate: nan"),
        (r#"{"name": "Lion", "weight_decay": -Infinity}"#, "Invalid weight_decay value: -inf"),
        // Where no float is asked for, a token is a float of the wrong type.
        (
            r#"{"name": "Adam", "amsgrad": NaN}"#,
            "invalid optimizer config: invalid type: floating point `NaN`, expected a boolean",
        ),
        (r#"{"name": NaN}"#, "invalid optimizer config: \"name\" must be a string, got NaN"),
    ];
    for (text, message) in table {
        let error = python_error(text);
        assert!(error.starts_with(message), "for {text}: expected {message:?}..., got {error:?}");
    }
    // A token inside a string is the string: a wrong type, as before.
    let quoted = python_error(r#"{"name": "Adam", "lr": "NaN"}"#);
    assert!(quoted.starts_with("invalid optimizer config: invalid type: string \"NaN\""), "{quoted}");
}

#[test]
fn schedule_arguments_read_pythons_tokens_too() {
    use wgpu_optim::schedule::from_json;
    let parse = |text: &str| wgpu_optim::pyjson::parse(text).unwrap();
    // A float argument that is checked names itself...
    let power = from_json(&parse(r#"{"name": "PolynomialLR", "total_iters": 5, "power": NaN}"#), 0.1).unwrap_err();
    assert_eq!(power.to_string(), "Invalid power value: nan (must be non-negative)");
    let factor = from_json(&parse(r#"{"name": "ReduceLROnPlateau", "factor": Infinity}"#), 0.1).unwrap_err();
    assert_eq!(factor.to_string(), "Factor should be < 1.0.");
    // ...and every float argument reads the token as a number, not as a string of the wrong type:
    // StepLR's gamma is NaN, which its own check refuses naming gamma.
    let gamma = from_json(&parse(r#"{"name": "StepLR", "step_size": 3, "gamma": NaN}"#), 0.1).unwrap_err();
    let e = gamma.to_string();
    assert!(e.contains("gamma") && e.contains("nan") && !e.contains("must be a number"), "{e}");
    // An integer argument given as a token is the wrong type, shown as Python wrote it.
    let steps = from_json(&parse(r#"{"name": "StepLR", "step_size": NaN}"#), 0.1).unwrap_err();
    assert!(steps.to_string().ends_with("got NaN"), "{steps}");
}

#[test]
fn non_finite_hyperparameters_are_refused() {
    let nan = AdamConfig { lr: f64::NAN, ..Default::default() };
    assert_eq!(
        OptimizerConfig::from(nan).algorithm().validate().unwrap_err().to_string(),
        "Invalid learning rate: nan"
    );
    let inf = SgdConfig { weight_decay: f64::INFINITY, ..Default::default() };
    assert_eq!(
        OptimizerConfig::from(inf).algorithm().validate().unwrap_err().to_string(),
        "Invalid weight_decay value: inf"
    );
    let e = AdamWConfig { eps: f64::NEG_INFINITY, ..Default::default() };
    assert_eq!(OptimizerConfig::from(e).algorithm().validate().unwrap_err().to_string(), "Invalid epsilon value: -inf");
}

#[test]
fn malformed_configs_name_the_problem() {
    // Every name of the registry, in its order.
    let known = wgpu_optim::algorithm::OPTIMIZER_NAMES.join(", ");
    assert!(known.starts_with("SGD, Adagrad, RMSprop, Adam, AdamW"), "{known}");
    assert_eq!(config_error(json!({"name": "Adamm"})), format!("unknown optimizer \"Adamm\" (known: {known})"));
    let unknown = config_error(json!({"name": "Adam", "lrr": 0.1}));
    assert!(unknown.starts_with("invalid optimizer config: unknown field `lrr`, expected one of"), "{unknown}");
    let adamw_flag = config_error(json!({"name": "AdamW", "decoupled_weight_decay": true}));
    assert!(adamw_flag.contains("unknown field `decoupled_weight_decay`"), "{adamw_flag}");
    assert_eq!(config_error(json!({"lr": 0.1})), "invalid optimizer config: missing key \"name\"");
    assert_eq!(config_error(json!({"name": 3})), "invalid optimizer config: \"name\" must be a string, got 3");
    assert_eq!(config_error(json!([1, 2])), "invalid optimizer config: expected a JSON object, got [1,2]");
    let wrong_type = config_error(json!({"name": "SGD", "lr": "fast"}));
    assert!(wrong_type.starts_with("invalid optimizer config: invalid type: string \"fast\""), "{wrong_type}");
}

#[test]
fn missing_keys_take_pytorchs_defaults() {
    let config = OptimizerConfig::from_json(&json!({"name": "AdamW"})).unwrap();
    assert_eq!(config, OptimizerConfig::AdamW(AdamWConfig::default()));
    assert_eq!(AdamWConfig::default().weight_decay, 0.01);
    assert_eq!(SgdConfig::default().lr, 1e-3);
    assert_eq!(AdaGradConfig::default().eps, 1e-10);
    assert_eq!(RmsPropConfig::default().alpha, 0.99);
    assert_eq!(AdamConfig::default().betas, (0.9, 0.999));
    // And what we write we read back.
    for name in wgpu_optim::algorithm::OPTIMIZER_NAMES {
        let config = OptimizerConfig::from_json(&json!({"name": name, "lr": 0.25})).unwrap();
        assert_eq!(OptimizerConfig::from_json(&config.to_json()).unwrap(), config);
    }
}

#[test]
fn no_adapter_says_how_to_get_one() {
    let options = ContextOptions { adapter_name: Some("no adapter has this name".into()), ..Default::default() };
    let message = GpuContext::with_options(&options).unwrap_err().to_string();
    assert!(message.starts_with("no GPU adapter found matching \"no adapter has this name\""), "{message}");
    assert!(message.contains("apt-get install mesa-vulkan-drivers libvulkan1"), "{message}");
}

fn storage(ctx: &GpuContext, n: usize) -> wgpu::Buffer {
    buffer(ctx, &vec![1.0; n])
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bad_registrations_are_refused_and_change_nothing() {
    let ctx = gpu();
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    let g = opt.default_group();
    let (p, gr) = (storage(&ctx, 100), storage(&ctx, 100));
    let message = |opt: &mut Optimizer, b: ParamBinding| opt.add_params(g, &[b]).unwrap_err().to_string();

    let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 400,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    assert_eq!(
        message(&mut opt, ParamBinding::whole(&uniform, &gr, 10)),
        "buffer \"param 0\" lacks usage STORAGE: create it with `BufferUsages::STORAGE`"
    );
    assert_eq!(
        message(&mut opt, ParamBinding::whole(&p, &uniform, 10)),
        "buffer \"grad 0\" lacks usage STORAGE: create it with `BufferUsages::STORAGE`"
    );
    // The same buffer is fine (tests/grads_move.rs), the same elements are not.
    assert!(message(&mut opt, ParamBinding::whole(&p, &p, 10))
        .starts_with("parameter 0's gradient overlaps parameter 0's elements in the same buffer"));
    assert_eq!(
        message(&mut opt, ParamBinding::whole(&p, &gr, 101)),
        "param 0: elements 0..101 do not fit in a buffer of 100 elements"
    );
    let past = ParamBinding { grad_offset: 95, ..ParamBinding::whole(&p, &gr, 10) };
    assert_eq!(message(&mut opt, past), "grad 0: elements 95..105 do not fit in a buffer of 100 elements");
    let huge = ParamBinding { param_offset: u64::MAX, ..ParamBinding::whole(&p, &gr, 10) };
    assert!(message(&mut opt, huge).starts_with("param 0: elements 18446744073709551615.."));

    // Overlaps, within one call and with what is registered.
    let a = ParamBinding::whole(&p, &gr, 50);
    let b = ParamBinding { param_offset: 49, grad_offset: 50, ..ParamBinding::whole(&p, &gr, 10) };
    assert_eq!(
        opt.add_params(g, &[a.clone(), b.clone()]).unwrap_err().to_string(),
        "param: parameter 0 and parameter 1 overlap in the same buffer"
    );
    assert_eq!(opt.param_count(), 0);
    opt.add_params(g, &[a]).unwrap();
    assert_eq!(message(&mut opt, b), "param: parameter 0 and parameter 1 overlap in the same buffer");
    assert_eq!(opt.param_count(), 1);

    // Groups.
    let mut other = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    let foreign = other.add_group(AdamConfig::default()).unwrap();
    assert_eq!(
        opt.add_params(foreign, &[ParamBinding { param_offset: 60, ..ParamBinding::whole(&p, &gr, 10) }])
            .unwrap_err()
            .to_string(),
        "unknown parameter group 1"
    );
    assert_eq!(
        opt.add_group(SgdConfig::default()).unwrap_err().to_string(),
        "parameter group config is SGD, but the optimizer is Adam"
    );
    assert_eq!(
        opt.add_group(AdamConfig { lr: -2.0, ..Default::default() }).unwrap_err().to_string(),
        "Invalid learning rate: -2.0"
    );
    assert_eq!(opt.set_lr(g, -1.0).unwrap_err().to_string(), "Invalid learning rate: -1.0");
    assert_eq!(opt.set_momentum(g, Some(1.5)).unwrap_err().to_string(), "Invalid momentum value: 1.5");
    assert_eq!(opt.lr(g).unwrap(), 1e-3, "a refused set_lr keeps the rate");
    assert_eq!(opt.lr(foreign).unwrap_err().to_string(), "unknown parameter group 1");

    // Readback needs COPY_SRC.
    let no_copy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    assert_eq!(
        read_f32(&ctx, &no_copy, 0, 4).unwrap_err().to_string(),
        "buffer \"buffer of 16 bytes\" lacks usage COPY_SRC: create it with `BufferUsages::COPY_SRC`"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_step_with_nothing_registered_is_an_error() {
    let ctx = gpu();
    let mut opt = Optimizer::new(&ctx, SgdConfig::default()).unwrap();
    assert_eq!(
        opt.step().unwrap_err().to_string(),
        "the optimizer has no parameters: register some with `add_params` before stepping"
    );
    assert_eq!(opt.steps(), 0);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_refused_step_leaves_parameters_and_state_as_they_were() {
    let ctx = gpu();
    let (param, grad) = (buffer(&ctx, &[0.5, -1.0, 2.0]), buffer(&ctx, &[0.1, 0.2, -0.3]));
    let mut opt = Optimizer::new(&ctx, AdamConfig { amsgrad: true, ..Default::default() }).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 3)]).unwrap();
    opt.step().unwrap();
    let snapshot = |opt: &Optimizer| {
        let mut all = read_f32(&ctx, &param, 0, 3).unwrap();
        for name in opt.state_names() {
            all.extend(opt.read_state(0, name).unwrap().unwrap());
        }
        all.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    let before = snapshot(&opt);
    grad.destroy();
    let error = opt.step().unwrap_err();
    assert!(matches!(error, Error::Wgpu(_)), "{error}");
    assert!(error.to_string().contains("destroyed"), "{error}");
    assert_eq!(opt.steps(), 1, "the refused step is not counted");
    assert_eq!(snapshot(&opt), before, "parameters and state are bit-identical");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn cycling_momentum_needs_an_algorithm_with_momentum() {
    use wgpu_optim::schedule::{from_json, LrScheduler};
    let ctx = gpu();
    let one_cycle = || from_json(&json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}), 0.01).unwrap();
    let mut adagrad = Optimizer::new(&ctx, AdaGradConfig::default()).unwrap();
    let g = adagrad.default_group();
    assert_eq!(
        adagrad.set_schedule(g, one_cycle()).unwrap_err().to_string(),
        "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
    );
    // SGD with momentum 0 takes the cycle's first momentum, as PyTorch's group does (more in
    // tests/carried_state.rs).
    let mut sgd = Optimizer::new(&ctx, SgdConfig::default()).unwrap();
    sgd.set_schedule(sgd.default_group(), one_cycle()).unwrap();
    assert_eq!(sgd.momentum(sgd.default_group()).unwrap(), Some(0.95));
    let mut adam = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    let g = adam.default_group();
    adam.set_schedule(g, one_cycle()).unwrap();
    assert_eq!(adam.momentum(g).unwrap(), Some(0.95), "OneCycleLR starts beta1 at max_momentum");
    assert!((adam.lr(g).unwrap() - 0.1 / 25.0).abs() < 1e-15, "OneCycleLR starts at max_lr / div_factor");
    // set_lr replaces the schedule.
    adam.set_lr(g, 0.5).unwrap();
    assert!(adam.schedule(g).unwrap().is_none());
    assert_eq!((adam.lr(g).unwrap(), adam.momentum(g).unwrap()), (0.5, None));
    let _: Option<&LrScheduler> = adam.schedule(g).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_public_input_is_checked() {
    let ctx = gpu();
    let zero = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 0,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let (p, g) = (storage(&ctx, 10), storage(&ctx, 10));
    let arena = ParamArena::new(&ctx, &[3, 5]).unwrap();
    let mut opt = Optimizer::new(&ctx, RmsPropConfig::default()).unwrap();
    let group = opt.default_group();
    let mut table: Vec<(&str, Result<()>, &str)> = vec![
        (
            "a zero-size buffer",
            opt.add_params(group, &[ParamBinding::whole(&zero, &g, 1)]).map(drop),
            "param 0: elements 0..1 do not fit in a buffer of 0 elements",
        ),
        (
            "an offset past the end",
            opt.add_params(group, &[ParamBinding { param_offset: 11, ..ParamBinding::whole(&p, &g, 0) }]).map(drop),
            "param 0: elements 11..11 do not fit in a buffer of 10 elements",
        ),
        ("a NaN learning rate", opt.set_lr(group, f64::NAN), "Invalid learning rate: nan"),
        ("an infinite learning rate", opt.set_lr(group, f64::INFINITY), "Invalid learning rate: inf"),
        ("a negative momentum", opt.set_momentum(group, Some(-0.5)), "Invalid momentum value: -0.5"),
        (
            "arena data of the wrong length",
            arena.write_params(&ctx, 1, &[1.0; 4]),
            "parameter 1: expected 5 elements, got 4",
        ),
        (
            "an arena tensor that does not exist",
            arena.write_grads(&ctx, 2, &[1.0]),
            "arena tensor index: elements 2..3 do not fit in a buffer of 2 elements",
        ),
        (
            "a readback past the end",
            read_f32(&ctx, &p, 8, 3).map(drop),
            "buffer of 40 bytes: elements 8..11 do not fit in a buffer of 10 elements",
        ),
        (
            "a state read of a tensor never registered",
            opt.read_state(0, "square_avg").map(drop),
            "parameter index: elements 0..1 do not fit in a buffer of 0 elements",
        ),
        ("a step with no tensor", opt.step(), "the optimizer has no parameters"),
    ];
    let too_big = ParamArena::new(&ctx, &[ctx.limits().max_buffer_size / 4 + 1]).map(drop);
    table.push(("an arena past max_buffer_size", too_big, "parameter arena: elements 0.."));
    for (what, result, message) in table {
        let error = result.expect_err(what).to_string();
        assert!(error.starts_with(message), "{what}: expected \"{message}\", got \"{error}\"");
    }
    assert_eq!((opt.param_count(), opt.steps()), (0, 0), "nothing was registered or stepped");
    // A zero-length tensor in a zero-size buffer is fine: there is nothing to update.
    opt.add_params(group, &[ParamBinding::whole(&zero, &g, 0)]).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_destroyed_parameter_buffer_is_an_error_from_record_and_step_not_a_panic() {
    let ctx = device_with_default_handler();
    let (param, grad) = (buffer(&ctx, &[0.5; 10]), buffer(&ctx, &[0.1; 10]));
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 10)]).unwrap();
    // The engine frees the tensor but does not tell the optimizer.
    param.destroy();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for _ in 0..2 {
        let error = opt.record(&mut encoder).unwrap_err();
        assert!(matches!(error, Error::Wgpu(_)), "{error}");
        assert!(error.to_string().contains("destroyed"), "{error}");
        assert_eq!(opt.steps(), 0, "a refused step is not counted");
    }
    // Nothing was recorded: the engine's encoder still submits cleanly.
    ctx.queue.submit([encoder.finish()]);
    let error = opt.step().unwrap_err();
    assert!(error.to_string().contains("destroyed"), "{error}");
    assert_eq!(opt.steps(), 0);
    ctx.wait().unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn set_step_count_rewinds_a_step_the_engine_aborted() {
    let ctx = gpu();
    let init = [0.5f32, -1.0, 2.0, 0.25, 3.0];
    let grads = [0.1f32, 0.2, -0.3, 0.4, -0.5];
    let run = |abort: bool| {
        let (param, grad) = (buffer(&ctx, &init), buffer(&ctx, &grads));
        let mut opt = Optimizer::new(&ctx, AdamConfig { lr: 0.1, ..Default::default() }).unwrap();
        opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 5)]).unwrap();
        opt.step().unwrap();
        if abort {
            // Recorded, then the encoder is dropped: the step counted, but never ran.
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            opt.record(&mut encoder).unwrap();
            drop(encoder);
            assert_eq!(opt.steps(), 2);
            opt.set_step_count(1).unwrap();
        }
        opt.step().unwrap();
        assert_eq!(opt.steps(), 2);
        let bits: Vec<u32> = read_f32(&ctx, &param, 0, 5).unwrap().iter().map(|x| x.to_bits()).collect();
        (opt, bits)
    };
    let (_, straight) = run(false);
    let (mut opt, rewound) = run(true);
    assert_eq!(rewound, straight, "the rewound run takes the straight run's bias corrections");

    // A tensor registered at step 2 has taken no step before it: the count cannot go below 2.
    let (p, g) = (buffer(&ctx, &[1.0; 4]), buffer(&ctx, &[1.0; 4]));
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 4)]).unwrap();
    assert_eq!(
        opt.set_step_count(1).unwrap_err().to_string(),
        "step count 1 is below 2, the step at which parameter 1 was registered"
    );
    assert_eq!(opt.set_step_count(1 << 60).unwrap_err().to_string(), "step count 1152921504606846976 is past 2^53");
    assert_eq!(opt.steps(), 2, "a refused count changes nothing");
    opt.set_step_count(2).unwrap();
    opt.set_step_count(10).unwrap();
    assert_eq!(opt.steps(), 10);
}
