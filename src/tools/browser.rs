//! `browser-check`: every composed kernel variant compiled by a browser's WebGPU (Chromium's Dawn,
//! which compiles WGSL with Tint, not naga), and every optimizer case of the registry run there
//! against the f64 CPU reference.
//!
//! The Rust side writes a directory: each variant's WGSL exactly as the optimizer compiles it
//! (`<kernel>.<storage>.<flags>.wgsl`), and `cases.json`, what the page runs: per registry case
//! (an optimizer and flag combination), the inputs, each step's uniforms as the optimizer uploads
//! them (the variant each step needs: a flag such as `FIRST_STEP` changes between steps), and the
//! CPU reference's parameter and state after the last step. The static page and harness
//! (`web/index.html`, `web/harness.js`, copied in) compile every variant with every pipeline
//! constant, run the cases, compare under the replay tolerance and post the verdicts back to a
//! loopback HTTP server of this module, which started headless Chromium on SwiftShader's Vulkan.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::algorithm::{kernels, Carry, OptimizerConfig, StepInput};
use crate::cpu::CpuOptimizer;
use crate::error::{Error, Result};
use crate::kernel::{StepUniform, Storage, Variant};

/// Elements per case: 64 run four-wide, the last 3 one-wide at an offset (`OFFSETS`).
const N: usize = 67;
/// Steps per case: the first (where `FIRST_STEP`-like flags are on) and two more; the last with
/// `SPANS`, as a step where elements `SKIPPED` belong to a tensor without a gradient.
const STEPS: u64 = 3;
const SKIPPED: std::ops::Range<usize> = 41..48;
/// The replay tolerance: `|ours - reference| <= 1e-5 * scale` per element.
pub const RTOL: f64 = 1e-5;

/// The page and its harness, copied next to the cases.
const INDEX_HTML: &str = include_str!("../../web/index.html");
const HARNESS_JS: &str = include_str!("../../web/harness.js");

/// One dispatch of a step, as the page records it.
#[derive(Debug, Serialize)]
struct Dispatch {
    entry: &'static str,
    offsets: bool,
    /// Workgroups along x (the grid is 1-D at these sizes).
    workgroups: u32,
    /// The uniform's bytes as little-endian words (`StepUniform`).
    uniform: Vec<u32>,
    /// With the pipeline constant `SPANS`.
    spans: bool,
}

#[derive(Debug, Serialize)]
struct Step {
    /// The variant's file (its WGSL).
    variant: String,
    /// The gradient of this step.
    grad: Vec<f32>,
    dispatches: Vec<Dispatch>,
    /// What the `spans` binding holds for `SPANS` dispatches (block table, then span pairs), or
    /// nothing.
    spans: Vec<u32>,
}

/// One registry case: inputs, steps and the CPU reference's outputs.
#[derive(Debug, Serialize)]
struct Case {
    name: String,
    kernel: &'static str,
    param: Vec<f32>,
    /// Per state array of the kernel: its initial values, or empty where the config keeps none.
    states: Vec<Vec<f32>>,
    steps: Vec<Step>,
    expected_param: Vec<f64>,
    /// Per element: the largest magnitude the reference parameter takes (the tolerance's scale).
    param_scale: Vec<f64>,
    expected_states: Vec<Vec<f64>>,
}

/// What `cases.json` holds.
#[derive(Debug, Serialize)]
struct Cases {
    rtol: f64,
    /// Every variant file, each compiled with both entry points and every pipeline constant.
    variants: Vec<VariantFile>,
    cases: Vec<Case>,
}

#[derive(Debug, Serialize)]
struct VariantFile {
    file: String,
    kernel: &'static str,
    states: usize,
    /// Whether it binds a master copy after the spans.
    master: bool,
}

/// What [`write()`] wrote: how many variants the page compiles and how many cases it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Composed variants: every kernel and flag combination in f32, and each other supported
    /// storage without f16 (which not every browser's adapter has) with no flag and every flag.
    pub variants: usize,
    /// Registry cases (optimizer and flag combinations), run for three steps each.
    pub cases: usize,
}

/// Writes every variant's WGSL, `cases.json` and the page into `dir` (created if missing).
/// `edit(kernel, wgsl)` may change a module's text before it is written (a test breaks one
/// kernel on purpose); the optimizer compiles the unedited text.
///
/// # Errors
/// [`Error::Io`] if the directory or a file cannot be written.
pub fn write(dir: &Path, edit: &dyn Fn(&str, String) -> String) -> Result<Written> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut variants = Vec::new();
    for kernel in kernels() {
        // bf16 storage needs no feature: it must compile everywhere, browsers included. The flags
        // do not touch the format's code: past f32, each storage with no flag and every flag on
        // (every state array loaded and stored), which keeps the check to about a minute. (The
        // loss-scaling variants are validated by naga; the page binds no `amp` buffer.)
        let all_on = (1u32 << kernel.flags.len()) - 1;
        let wanted = |v: &Variant| {
            !v.amp && (v.storage == Storage::F32 || (!v.storage.uses_f16() && (v.flags == 0 || v.flags == all_on)))
        };
        for variant in Variant::all(kernel).into_iter().filter(wanted) {
            let file = variant.file_name();
            let path = dir.join(&file);
            std::fs::write(&path, edit(kernel.name, variant.source())).map_err(io(&path))?;
            let (states, master) = (kernel.states.len(), variant.storage.master);
            variants.push(VariantFile { file, kernel: kernel.name, states, master });
        }
    }
    let mut cases = Vec::new();
    for (seed, (name, config)) in OptimizerConfig::cases().into_iter().enumerate() {
        cases.push(case(name, &config, seed as u64)?);
    }
    let written = Written { variants: variants.len(), cases: cases.len() };
    let all = Cases { rtol: RTOL, variants, cases };
    let json = serde_json::to_string(&all).map_err(|e| Error::Wgpu(format!("cases.json: {e}")))?;
    for (file, text) in [("cases.json", json.as_str()), ("index.html", INDEX_HTML), ("harness.js", HARNESS_JS)] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(written)
}

/// A registry case run on the CPU for `STEPS` steps, with each step's uniforms as the optimizer
/// would upload them for a tensor of `N` elements alone in its buffers.
fn case(name: &str, config: &OptimizerConfig, seed: u64) -> Result<Case> {
    let algorithm = config.algorithm();
    let kernel = algorithm.kernel();
    // The tools' generator: the same cases every run, magnitudes spread over 2^-10 .. 2^4.
    let mut rng = super::Rng(seed.wrapping_mul(7919).wrapping_add(17));
    let param = rng.vector(N);
    let lr = algorithm.lr();
    let used = algorithm.states_used();
    let states: Vec<Vec<f32>> = (0..kernel.states.len())
        .map(|k| if used[k] { vec![algorithm.initial_state(k, lr) as f32; N] } else { Vec::new() })
        .collect();
    // The reference: every element three steps; the skipped ones only the first two.
    let init: Vec<f64> = param.iter().map(|&x| f64::from(x)).collect();
    let mut cpu = CpuOptimizer::new(config.clone(), init.clone())?;
    let mut sat_out = CpuOptimizer::new(config.clone(), init)?;
    let mut scale: Vec<f64> = param.iter().map(|x| f64::from(x.abs())).collect();
    let mut steps = Vec::new();
    let mut carry: Option<Carry> = None;
    for step in 1..=STEPS {
        let grad = rng.vector(N);
        let mut input = StepInput { step, lr, momentum: None, carry: Carry::default() };
        let this = carry.or_else(|| algorithm.carry_start(&input));
        if let Some(c) = this {
            input.carry = c;
            carry = Some(algorithm.carry_next(&input));
        }
        let scalars = algorithm.scalars(&input);
        let flags = scalars.flags & ((1u32 << kernel.flags.len()) - 1);
        let variant = Variant { kernel, storage: Storage::F32, flags, amp: false }.file_name();
        let spans = step == STEPS;
        // One block (67 elements), whose first candidate is span 0; then the spans around SKIPPED.
        let words: Vec<u32> =
            if spans { vec![0, 0, SKIPPED.start as u32, SKIPPED.end as u32, N as u32] } else { Vec::new() };
        let uniform = |n: u32, off: u32| {
            let u = StepUniform {
                n,
                param_off: off,
                grad_off: off,
                state_off: off,
                flags: scalars.flags,
                span_first: if spans { 1 } else { 0 },
                span_count: if spans { 2 } else { 0 },
                first: off,
                t: step as u32,
                scalars: scalars.values,
                ..Default::default()
            };
            bytemuck::cast_slice::<_, u32>(bytemuck::bytes_of(&u)).to_vec()
        };
        let dispatches = vec![
            Dispatch { entry: "main4", offsets: false, workgroups: 1, uniform: uniform(64, 0), spans },
            Dispatch { entry: "main", offsets: true, workgroups: 1, uniform: uniform(3, 64), spans },
        ];
        let g: Vec<f64> = grad.iter().map(|&g| f64::from(g)).collect();
        cpu.step(&g)?;
        if !spans {
            sat_out.step(&g)?;
        }
        for (s, p) in scale.iter_mut().zip(cpu.param()) {
            *s = s.max(p.abs());
        }
        for (s, p) in scale.iter_mut().zip(sat_out.param()) {
            *s = s.max(p.abs());
        }
        steps.push(Step { variant, grad, dispatches, spans: words });
    }
    let merge = |all: &[f64], skipped: &[f64]| -> Vec<f64> {
        (0..all.len()).map(|i| if SKIPPED.contains(&i) { skipped[i] } else { all[i] }).collect()
    };
    let expected_states = (kernel.states.iter())
        .map(|s| match (cpu.state(s.name), sat_out.state(s.name)) {
            (Some(all), Some(skipped)) => merge(all, skipped),
            _ => Vec::new(),
        })
        .collect();
    Ok(Case {
        name: name.to_string(),
        kernel: kernel.name,
        param,
        states,
        steps,
        expected_param: merge(cpu.param(), sat_out.param()),
        param_scale: scale,
        expected_states,
    })
}

/// What the page reported.
#[derive(Debug, Deserialize, Serialize)]
pub struct Report {
    /// The WebGPU adapter (`vendor architecture`), or `None` if the browser offered none.
    pub adapter: Option<String>,
    /// Whether the adapter offers `shader-f16`.
    #[serde(default)]
    pub shader_f16: bool,
    /// One per variant compiled and per case run.
    #[serde(default)]
    pub results: Vec<Verdict>,
    /// An error of the harness itself, if it stopped.
    #[serde(default)]
    pub error: Option<String>,
}

/// One line of the report.
#[derive(Debug, Deserialize, Serialize)]
pub struct Verdict {
    /// `compile <file>` or `run <case>`.
    pub name: String,
    /// `PASS` or `FAIL`.
    pub status: String,
    /// The worst element against the tolerance, or the error.
    pub detail: String,
}

/// How to reach Chromium and how long to wait for it.
#[derive(Clone, Debug)]
pub struct BrowserOptions {
    /// The browser binary (default `chromium`, found on `PATH`).
    pub chromium: PathBuf,
    /// How long the page may take.
    pub timeout: Duration,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self { chromium: PathBuf::from("chromium"), timeout: Duration::from_secs(300) }
    }
}

/// The install hint for a machine without Chromium.
pub const INSTALL_HINT: &str =
    "install Debian's Chromium (`apt-get install chromium`) or pass its path with --chromium";

/// Serves `dir` on loopback, opens its page in headless Chromium (WebGPU on SwiftShader) and
/// returns what the page posted.
///
/// # Errors
/// [`Error::UnsupportedDevice`] if Chromium cannot be started (with [`INSTALL_HINT`]) or the page
/// posts nothing in time; [`Error::Io`] for the server's socket.
pub fn run(dir: &Path, options: &BrowserOptions) -> Result<Report> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io { path: dir.into(), source })?;
    let port = listener.local_addr().map_err(|source| Error::Io { path: dir.into(), source })?.port();
    let (tx, rx) = mpsc::channel::<String>();
    let root = dir.to_path_buf();
    // Only the page this run opens may post the report: it carries this token in its address.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let token = format!("{:x}", nanos ^ (u128::from(std::process::id()) << 64));
    let expected = format!("/report?token={token}");
    std::thread::spawn(move || {
        // A thread per connection: a socket the browser opens and leaves idle blocks no other.
        for stream in listener.incoming().flatten() {
            let (tx, root, expected) = (tx.clone(), root.clone(), expected.clone());
            std::thread::spawn(move || {
                if let Some(body) = serve(stream, &root, &expected) {
                    let _ = tx.send(body);
                }
            });
        }
    });
    let profile = dir.join("chromium-profile");
    let mut child = Command::new(&options.chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--use-vulkan=swiftshader",
            "--enable-unsafe-swiftshader",
            "--use-webgpu-adapter=swiftshader",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{port}/index.html?token={token}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::UnsupportedDevice(format!("cannot start {}: {e}; {INSTALL_HINT}", options.chromium.display()))
        })?;
    let started = Instant::now();
    let body = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(body) => break Ok(body),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("Chromium exited ({status}) before the page reported; {INSTALL_HINT}"));
                }
                if started.elapsed() > options.timeout {
                    break Err(format!("the page reported nothing in {} s", options.timeout.as_secs()));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("the server stopped".into()),
        }
    };
    stop(&mut child);
    let body = body.map_err(Error::UnsupportedDevice)?;
    serde_json::from_str(&body).map_err(|e| Error::UnsupportedDevice(format!("the page's report: {e}: {body}")))
}

/// Stops the browser. (Its GPU and renderer processes exit when their browser process does.)
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The largest report the server reads (the real one is tens of kilobytes).
const MAX_REPORT: usize = 16 << 20;

/// Answers one request: a GET of a file directly in `root`, or the POST of the report to
/// `report` (the path with this run's token), which it returns.
fn serve(mut stream: TcpStream, root: &Path, report: &str) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request = String::new();
    reader.read_line(&mut request).ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    if method == "POST" {
        if target != report || length > MAX_REPORT {
            let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return None;
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return String::from_utf8(body).ok();
    }
    // Only plain file names of the directory: no paths, no parent directories.
    let name = target.trim_start_matches('/').split('?').next().unwrap_or_default();
    let file = (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)))
        .then(|| std::fs::read(root.join(name)).ok())
        .flatten();
    let response = match file {
        Some(bytes) => {
            let kind = match name.rsplit('.').next() {
                Some("html") => "text/html",
                Some("js") => "text/javascript",
                Some("json") => "application/json",
                _ => "text/plain",
            };
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            )
            .into_bytes();
            r.extend(bytes);
            r
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
    None
}
