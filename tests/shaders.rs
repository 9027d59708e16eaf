//! Every shader parses and validates with naga, without a GPU, and agrees with the host on its
//! bindings and its uniform's layout.

use wgpu_optim::algorithm::OPTIMIZER_NAMES;
use wgpu_optim::kernel::UNIFORM_SIZE;
use wgpu_optim::OptimizerConfig;

fn module(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_file_in_shaders_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            module(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
            count += 1;
        }
    }
    assert!(count >= 4, "found only {count} shaders");
}

#[test]
fn every_kernel_binds_what_the_host_binds_and_shares_the_uniform_layout() {
    for name in OPTIMIZER_NAMES {
        let config = OptimizerConfig::from_json(&serde_json::json!({ "name": name })).unwrap();
        let kernel = config.algorithm().kernel();
        let (module, _) = module(kernel.name, kernel.source);
        let mut bindings: Vec<u32> =
            module.global_variables.iter().filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding)).collect();
        bindings.sort();
        // Every storage binding twice: as `array<f32>` for `main`, as `array<vec4<f32>>` for `main4`.
        let expected: Vec<u32> =
            [0].into_iter().chain((1..3 + kernel.states.len() as u32).flat_map(|b| [b, b])).collect();
        assert_eq!(bindings, expected, "{}: bindings", kernel.name);

        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (_, uniform) = module
            .global_variables
            .iter()
            .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
            .unwrap_or_else(|| panic!("{}: no uniform", kernel.name));
        assert_eq!(layouter[uniform.ty].size, UNIFORM_SIZE, "{}: struct Step and StepUniform differ", kernel.name);
        // Every flag the host sets is a boolean override the shader declares, and no other.
        let mut overrides: Vec<&str> = module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        overrides.sort();
        let mut expected: Vec<&str> = kernel.flags.iter().copied().chain(["OFFSETS"]).collect();
        expected.sort();
        assert_eq!(overrides, expected, "{}: override constants", kernel.name);
        let entries: Vec<_> = module.entry_points.iter().map(|e| (e.name.as_str(), e.workgroup_size)).collect();
        assert_eq!(entries, [("main", [256, 1, 1]), ("main4", [256, 1, 1])], "{}", kernel.name);
    }
}
