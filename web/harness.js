// The browser side of `wgpu-optim browser-check` (src/tools/browser.rs): loads cases.json and
// every variant's WGSL unchanged, compiles each with both entry points and the pipeline constants
// the optimizer uses, runs each case's steps as the optimizer records them (uniform slots at
// dynamic offsets, the same bindings), compares with the CPU reference under the replay tolerance,
// writes PASS/FAIL lines into the page and posts the report to the server that served it.
"use strict";

const results = [];
function verdict(name, ok, detail) {
  results.push({ name, status: ok ? "PASS" : "FAIL", detail });
  document.getElementById("results").textContent += `${ok ? "PASS" : "FAIL"} ${name}: ${detail}\n`;
}

async function post(report) {
  document.getElementById("summary").textContent = report.error
    ? `ERROR ${report.error}`
    : `${results.filter((r) => r.status === "PASS").length} passed, ${results.filter((r) => r.status === "FAIL").length} failed`;
  // The server takes the report only with the token it gave this page.
  await fetch("/report" + location.search, { method: "POST", body: JSON.stringify(report) });
}

function layoutFor(device, states, master) {
  const buffer = (binding, type, hasDynamicOffset = false) =>
    ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type, hasDynamicOffset } });
  // The gradients are only read but bound read-write, as the crate binds them (one buffer may
  // hold a tensor's parameter and its gradient: src/kernel/compose.rs).
  const entries = [buffer(0, "uniform", true), buffer(1, "storage"), buffer(2, "storage")];
  for (let k = 0; k < states; k++) entries.push(buffer(3 + k, "storage"));
  entries.push(buffer(3 + states, "read-only-storage"));
  // A low-precision parameter's f32 master copy, after the spans.
  if (master) entries.push(buffer(4 + states, "storage"));
  return device.createBindGroupLayout({ entries });
}

async function scoped(device, f) {
  device.pushErrorScope("validation");
  device.pushErrorScope("internal");
  let value, thrown;
  try { value = await f(); } catch (e) { thrown = e; }
  const internal = await device.popErrorScope();
  const validation = await device.popErrorScope();
  const error = thrown || validation || internal;
  if (error) throw new Error(error.message || String(error));
  return value;
}

async function compile(device, code, states, master = false) {
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) throw new Error(errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; "));
  const bindGroupLayout = layoutFor(device, states, master);
  const layout = device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] });
  return { module, layout, bindGroupLayout, pipelines: new Map() };
}

async function pipeline(device, compiled, entry, offsets, spans) {
  const key = `${entry}/${offsets}/${spans}`;
  if (!compiled.pipelines.has(key)) {
    const p = await device.createComputePipelineAsync({
      layout: compiled.layout,
      compute: { module: compiled.module, entryPoint: entry, constants: { OFFSETS: offsets ? 1 : 0, SPANS: spans ? 1 : 0 } },
    });
    compiled.pipelines.set(key, p);
  }
  return compiled.pipelines.get(key);
}

function storage(device, data, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST) {
  const size = Math.max(16, Math.ceil((data.byteLength || 0) / 16) * 16);
  const buffer = device.createBuffer({ size, usage, mappedAtCreation: true });
  if (data.byteLength) new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

async function read(device, buffer, n) {
  const staging = device.createBuffer({ size: buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const values = Array.from(new Float32Array(staging.getMappedRange().slice(0, n * 4)));
  staging.unmap();
  return values;
}

// The worst element of `ours` against `reference`: |a - b| / (rtol * max(scale, 1e-6)).
function worst(ours, reference, scale, rtol) {
  let w = { ratio: 0, index: 0 };
  for (let i = 0; i < reference.length; i++) {
    const ratio = Math.abs(ours[i] - reference[i]) / (rtol * Math.max(scale[i], 1e-6));
    if (!(ratio <= w.ratio)) w = { ratio, index: i, ours: ours[i], reference: reference[i] };
    if (Number.isNaN(ratio)) break;
  }
  return w;
}

async function runCase(device, c, compiled, rtol) {
  const states = c.states.length;
  const param = storage(device, new Float32Array(c.param));
  const grad = storage(device, new Float32Array(c.param.length));
  const stateBuffers = c.states.map((s) => storage(device, new Float32Array(s)));
  const spans = storage(device, new Uint32Array(64));
  for (const step of c.steps) {
    const module = compiled.get(step.variant);
    if (!module) throw new Error(`variant ${step.variant} did not compile`);
    device.queue.writeBuffer(grad, 0, new Float32Array(step.grad));
    if (step.spans.length) device.queue.writeBuffer(spans, 0, new Uint32Array(step.spans));
    const slot = 256;
    const uniform = device.createBuffer({ size: slot * step.dispatches.length, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    step.dispatches.forEach((d, i) => device.queue.writeBuffer(uniform, i * slot, new Uint32Array(d.uniform)));
    const entries = [
      // The uniform (StepUniform) is as long as the words each dispatch carries.
      { binding: 0, resource: { buffer: uniform, offset: 0, size: 4 * step.dispatches[0].uniform.length } },
      { binding: 1, resource: { buffer: param } },
      { binding: 2, resource: { buffer: grad } },
    ];
    stateBuffers.forEach((b, k) => entries.push({ binding: 3 + k, resource: { buffer: b } }));
    entries.push({ binding: 3 + states, resource: { buffer: spans } });
    const bindGroup = device.createBindGroup({ layout: module.bindGroupLayout, entries });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const [i, d] of step.dispatches.entries()) {
      pass.setPipeline(await pipeline(device, module, d.entry, d.offsets, d.spans));
      pass.setBindGroup(0, bindGroup, [i * slot]);
      pass.dispatchWorkgroups(d.workgroups);
    }
    pass.end();
    device.queue.submit([encoder.finish()]);
  }
  const n = c.param.length;
  const parts = [];
  let ok = true;
  const wp = worst(await read(device, param, n), c.expected_param, c.param_scale, rtol);
  ok = ok && wp.ratio <= 1;
  parts.push(`param worst ${wp.ratio.toFixed(3)} of tolerance (element ${wp.index})`);
  for (let k = 0; k < states; k++) {
    if (!c.expected_states[k].length) continue;
    const reference = c.expected_states[k];
    const m = Math.max(...reference.map(Math.abs));
    const w = worst(await read(device, stateBuffers[k], n), reference, reference.map(() => m), rtol);
    ok = ok && w.ratio <= 1;
    parts.push(`state ${k} worst ${w.ratio.toFixed(3)}`);
  }
  return { ok, detail: parts.join(", ") };
}

async function main() {
  if (!navigator.gpu) return post({ adapter: null, error: "no navigator.gpu (WebGPU is off in this browser)" });
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return post({ adapter: null, error: "no WebGPU adapter" });
  const device = await adapter.requestDevice();
  const description = `${adapter.info.vendor} ${adapter.info.architecture}`.trim();
  const all = await (await fetch("cases.json")).json();
  // Every variant: compiled, and its pipelines created with both entry points and the pipeline
  // constants the optimizer sets (OFFSETS, SPANS: off together and on together).
  const compiled = new Map();
  for (const v of all.variants) {
    try {
      const code = await (await fetch(v.file)).text();
      const c = await scoped(device, () => compile(device, code, v.states, v.master));
      for (const entry of ["main", "main4"]) {
        for (const on of [false, true]) await scoped(device, () => pipeline(device, c, entry, on, on));
      }
      compiled.set(v.file, c);
      verdict(`compile ${v.file}`, true, "4 pipelines");
    } catch (e) {
      verdict(`compile ${v.file}`, false, String(e.message || e));
    }
  }
  for (const c of all.cases) {
    try {
      const r = await scoped(device, () => runCase(device, c, compiled, all.rtol));
      verdict(`run ${c.name}`, r.ok, r.detail);
    } catch (e) {
      verdict(`run ${c.name}`, false, String(e.message || e));
    }
  }
  await post({ adapter: description, shader_f16: adapter.features.has("shader-f16"), results });
}

main().catch((e) => post({ adapter: null, error: String(e && e.stack || e), results }));
