//! Every composed kernel variant parses and validates with naga, without a GPU, and agrees with
//! the host on its bindings and its uniform's layout; the names in each kernel's WGSL, its Rust
//! declaration and its CPU mirror agree.

use std::collections::BTreeSet;
use std::path::Path;

use wgpu_optim::algorithm::kernels;
use wgpu_optim::kernel::{compose, compose_correct, compose_variant, Format, Kernel, Storage, UNIFORM_SIZE};

fn module(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    module_with(name, source, naga::valid::Capabilities::empty())
}

/// As [`module`], for a device with `capabilities` (f16 storage needs `SHADER_FLOAT16`).
fn module_with(
    name: &str,
    source: &str,
    capabilities: naga::valid::Capabilities,
) -> (naga::Module, naga::valid::ModuleInfo) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

/// Every flag combination of a kernel.
fn flag_sets(kernel: &Kernel) -> impl Iterator<Item = u32> {
    0..1u32 << kernel.flags.len()
}

#[test]
fn every_composed_variant_validates() {
    let mut count = 0;
    let test_only = Storage { grad: Format::ScaledF32 { log2_scale: -2 }, ..Storage::F32 };
    for kernel in kernels() {
        // Each storage with and without an EMA of the weights.
        let with_ema = Storage::supported().into_iter().map(|s| Storage { ema: true, ..s });
        for storage in Storage::supported().into_iter().chain(with_ema).chain([test_only]) {
            for flags in flag_sets(kernel) {
                for amp in [false, true] {
                    let source = compose_variant(kernel, storage, flags, amp);
                    let name = format!("{} {} flags {flags:#b} amp {amp}", kernel.name, storage.name());
                    // Only f16 storage needs the capability, and starts with `enable f16;`.
                    assert_eq!(source.contains("enable f16;"), storage.uses_f16(), "{name}");
                    let capabilities = match storage.uses_f16() {
                        true => naga::valid::Capabilities::SHADER_FLOAT16,
                        false => naga::valid::Capabilities::empty(),
                    };
                    module_with(&name, &source, capabilities);
                    count += 1;
                }
            }
        }
    }
    assert!(count >= 20 * 11, "validated only {count} variants");
}

/// Pieces the composition puts into kernels' modules (validated there, by
/// `every_composed_variant_validates`), not modules of their own.
const FRAGMENTS: [&str; 4] = ["amp_state.wgsl", "amp_scan.wgsl", "device_step.wgsl", "adam_step.wgsl"];

#[test]
fn every_correction_pass_validates() {
    // The slot sizes a device may have: the uniform's own size, or a 256-byte alignment.
    let mut count = 0;
    for kernel in kernels() {
        for slot in [u64::from(UNIFORM_SIZE), 256] {
            module(&format!("{} correct, slot {slot}", kernel.name), &compose_correct(kernel, slot));
            count += 1;
        }
    }
    assert!(count >= 2 * 11, "validated only {count} correct passes");
}

#[test]
fn standalone_shaders_validate() {
    // Files that are whole modules (helpers such as the non-finite scan), not a kernel's update().
    let kernel_files: BTreeSet<String> = kernels().iter().map(|k| format!("{}.wgsl", k.name)).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".wgsl") || kernel_files.contains(&name) || FRAGMENTS.contains(&name.as_str()) {
            continue;
        }
        let mut source = std::fs::read_to_string(&path).unwrap();
        if name == "amp.wgsl" {
            // The crate composes `struct Amp` in front of it.
            source = format!("{}\n{source}", std::fs::read_to_string(path.with_file_name("amp_state.wgsl")).unwrap());
        }
        module(&name, &source);
    }
}

#[test]
fn kernel_files_hold_only_update_and_helpers() {
    for kernel in kernels() {
        let code: String = kernel.source.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
        for composed_only in ["@compute", "@binding", "struct Step", "struct Values", "override ", "fn main"] {
            assert!(
                !code.contains(composed_only),
                "shaders/{}.wgsl contains `{composed_only}`: the crate composes that from the declaration",
                kernel.name
            );
        }
        assert!(
            kernel.source.contains("fn update(grad: vec4<f32>, x: Values) -> Values"),
            "shaders/{}.wgsl has no `fn update(grad: vec4<f32>, x: Values) -> Values`",
            kernel.name
        );
    }
}

#[test]
fn every_kernel_binds_what_the_host_binds_and_shares_the_uniform_layout() {
    for kernel in kernels() {
        let source = compose(kernel, Storage::F32, 0);
        let (module, _) = module(kernel.name, &source);
        let mut bindings: Vec<u32> =
            module.global_variables.iter().filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding)).collect();
        bindings.sort();
        // Every storage binding twice: as `array<f32>` for `main`, as `array<vec4<f32>>` for `main4`;
        // then the spans, once.
        let spans = 3 + kernel.states.len() as u32;
        let expected: Vec<u32> = [0].into_iter().chain((1..spans).flat_map(|b| [b, b])).chain([spans]).collect();
        assert_eq!(bindings, expected, "{}: bindings", kernel.name);

        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (_, uniform) = module
            .global_variables
            .iter()
            .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
            .unwrap_or_else(|| panic!("{}: no uniform", kernel.name));
        assert_eq!(layouter[uniform.ty].size, UNIFORM_SIZE, "{}: struct Step and StepUniform differ", kernel.name);
        // The host's pipeline constants are the only overrides.
        let overrides: Vec<&str> = module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        assert_eq!(overrides, ["OFFSETS", "SPANS"], "{}: override constants", kernel.name);
        let entries: Vec<_> = module.entry_points.iter().map(|e| (e.name.as_str(), e.workgroup_size)).collect();
        assert_eq!(entries, [("main", [256, 1, 1]), ("main4", [256, 1, 1])], "{}", kernel.name);
    }
}

/// The identifiers that follow `prefix` (`u.` or `x.`) in `source`, outside `//` comments.
fn fields(source: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `mu.x` is not `u.x`
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Whether `word` occurs in `source` as a whole identifier.
fn mentions(source: &str, word: &str) -> bool {
    source.match_indices(word).any(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn names_in_the_wgsl_the_declaration_and_the_cpu_mirror_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for kernel in kernels() {
        let name = kernel.name;
        let mirror = std::fs::read_to_string(root.join(format!("src/cpu/{name}.rs")))
            .unwrap_or_else(|e| panic!("{name}: no CPU mirror at src/cpu/{name}.rs: {e}"));
        let declared: BTreeSet<String> = kernel.scalars.iter().map(|s| s.to_string()).collect();
        assert_eq!(kernel.scalars.len(), kernel.scalar_docs.len(), "{name}: a doc per scalar");

        // Scalars: the WGSL reads only declared ones, and every declared one is read by both.
        let wgsl_scalars = fields(kernel.source, "u.");
        let undeclared: Vec<_> = wgsl_scalars.difference(&declared).collect();
        assert!(undeclared.is_empty(), "{name}: the WGSL reads scalars the declaration lacks: {undeclared:?}");
        let unused: Vec<_> = declared.difference(&wgsl_scalars).collect();
        assert!(unused.is_empty(), "{name}: declared scalars the WGSL never reads: {unused:?}");
        let mirror_fields = fields(&mirror, "u.");
        let missing: Vec<_> = declared.difference(&mirror_fields).collect();
        assert!(missing.is_empty(), "{name}: declared scalars the CPU mirror never reads: {missing:?}");

        // State arrays: the WGSL reads `x.<state>` only for declared ones, and the mirror names each.
        let states: BTreeSet<String> = kernel.state_names().map(str::to_string).chain(["param".into()]).collect();
        let wgsl_states = fields(kernel.source, "x.");
        let unknown: Vec<_> = wgsl_states.difference(&states).collect();
        assert!(unknown.is_empty(), "{name}: the WGSL reads state the declaration lacks: {unknown:?}");
        for state in kernel.state_names() {
            assert!(mentions(&mirror, state), "{name}: the CPU mirror never names state `{state}`");
        }

        // Flags: each declared flag is tested in the WGSL, and every upper-case name there is one.
        for flag in kernel.flags {
            assert!(mentions(kernel.source, flag), "{name}: flag {flag} is declared but the WGSL never tests it");
        }
        for word in kernel.source.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            let looks_like_flag = word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            if looks_like_flag && !kernel.source.lines().all(|l| !l.split("//").next().unwrap_or("").contains(word)) {
                assert!(kernel.flags.contains(&word), "{name}: the WGSL tests {word}, which is not a declared flag");
            }
        }
    }
}
