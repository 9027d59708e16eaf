//! Saving and loading an optimizer's state with safetensors, for bit-exact resume.
//!
//! A checkpoint holds every state array of every tensor (`param.{i}.{state}`, f32, shape
//! `[len]`) and, as safetensors metadata, the format and its version, the algorithm, each group's
//! full config, learning rate, momentum override and schedule state, the tensor layout (group and
//! length of each), and the step count. The parameters themselves are the engine's and are not
//! included, as in PyTorch's `optimizer.state_dict()`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::optimizer::{check_momentum, GroupSnapshot, Optimizer, Restore};
use super::registration::TensorInfo;
use super::state::TensorState;
use crate::algorithm::OptimizerConfig;
use crate::error::{Error, Result};
use crate::schedule::SchedulerState;

/// The `format` a checkpoint's metadata names.
pub const CHECKPOINT_FORMAT: &str = "wgpu-optim";
/// The newest checkpoint format this library reads and the one it writes.
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct GroupMeta {
    config: serde_json::Value,
    lr: f64,
    momentum: Option<f64>,
    schedule: Option<ScheduleMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScheduleMeta {
    name: String,
    state: SchedulerState,
}

#[derive(Debug, Serialize, Deserialize)]
struct ParamMeta {
    group: usize,
    len: u64,
    /// The optimizer's step count when the tensor was registered (its own count is the rest).
    #[serde(default)]
    added_at: u64,
}

fn tensor_name(param: usize, state: &str) -> String {
    format!("param.{param}.{state}")
}

impl Optimizer {
    /// Writes the whole optimizer state to `path` (safetensors). The state is read back from the
    /// GPU: the only readback the optimizer ever does. The file is written beside `path` and
    /// renamed into place, so a crash never leaves a half-written checkpoint under that name.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written, [`Error::DeviceLost`] or [`Error::Wgpu`] if the
    /// state cannot be read back.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let names = self.state_names();
        let tensors: Vec<(String, Vec<u8>, usize)> = (self.export_state()?.into_iter())
            .map(|s| {
                let len = s.values.len();
                (tensor_name(s.param, names[s.state]), bytemuck::cast_slice(&s.values).to_vec(), len)
            })
            .collect();
        let groups: Vec<GroupMeta> = (self.group_snapshots().into_iter())
            .map(|g| GroupMeta {
                config: g.config.to_json(),
                lr: g.lr,
                momentum: g.momentum,
                schedule: g.schedule.map(|(name, state)| ScheduleMeta { name, state }),
            })
            .collect();
        let params: Vec<ParamMeta> = (self.tensor_infos().into_iter())
            .map(|t| ParamMeta { group: t.group, len: t.len, added_at: t.added_at })
            .collect();
        let metadata = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
            ("optimizer".to_string(), self.algorithm_name().to_string()),
            ("steps".to_string(), self.steps().to_string()),
            ("groups".to_string(), to_json(&groups)),
            ("params".to_string(), to_json(&params)),
        ]);
        let views = tensors
            .iter()
            .map(|(name, bytes, len)| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*len], bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .and_then(|views| safetensors::serialize(views, Some(metadata)))
            .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
        write_durably(path, &views)
    }

    /// Restores a state written by [`Optimizer::save_state`] into this optimizer, which must have
    /// the same algorithm, the same groups (with the same state arrays: `amsgrad`, `centered` and
    /// `momentum` alike) and the same tensors in the same order; each group with a schedule needs
    /// the same schedule set before loading. Like PyTorch's `load_state_dict`, the groups'
    /// hyperparameters are taken from the checkpoint. Everything is checked before anything
    /// changes: a refused checkpoint leaves the optimizer as it was. The state is queued on the
    /// device's queue and lands at the start of the next submit: submit any encoder that holds a
    /// recorded step first, or that step runs on the loaded state.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Checkpoint`] naming the problem for a
    /// damaged file, another format or a newer version, another algorithm, group layout, shape or
    /// schedule.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check_alive()?;
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let fail = |message: String| Error::Checkpoint { path: path.into(), message };
        let file = SafeTensors::deserialize(&bytes).map_err(|e| fail(format!("not a safetensors file ({e})")))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("not a safetensors file ({e})")))?;
        let metadata =
            header.metadata().as_ref().ok_or_else(|| fail("no metadata: not a wgpu-optim checkpoint".into()))?;
        let get = |key: &str| metadata.get(key).ok_or_else(|| fail(format!("metadata lacks \"{key}\"")));

        if get("format")? != CHECKPOINT_FORMAT {
            return Err(fail(format!("format is \"{}\", not \"{CHECKPOINT_FORMAT}\"", get("format")?)));
        }
        let version: u32 = get("format_version")?.parse().map_err(|_| fail("format_version is not a number".into()))?;
        if version > CHECKPOINT_VERSION {
            return Err(fail(format!(
                "format version {version} is newer than this library's ({CHECKPOINT_VERSION}): update wgpu-optim"
            )));
        }
        let algorithm = self.algorithm_name();
        if get("optimizer")? != algorithm {
            return Err(fail(format!("checkpoint is of {}, but the optimizer is {algorithm}", get("optimizer")?)));
        }
        let steps: u64 = get("steps")?.parse().map_err(|_| fail("steps is not a number".into()))?;
        // Far beyond any training run; what matters is that counting on from it cannot overflow.
        if steps > 1 << 53 {
            return Err(fail(format!("steps is {steps}, past 2^53")));
        }
        let groups: Vec<GroupMeta> =
            serde_json::from_str(get("groups")?).map_err(|e| fail(format!("groups metadata: {e}")))?;
        let params: Vec<ParamMeta> =
            serde_json::from_str(get("params")?).map_err(|e| fail(format!("params metadata: {e}")))?;

        let our_groups = self.group_snapshots();
        if groups.len() != our_groups.len() {
            return Err(fail(format!(
                "checkpoint has {} parameter groups, the optimizer {}",
                groups.len(),
                our_groups.len()
            )));
        }
        let names = self.state_names();
        let mut snapshots = Vec::with_capacity(groups.len());
        for (g, (saved, ours)) in groups.into_iter().zip(&our_groups).enumerate() {
            let config = OptimizerConfig::from_json(&saved.config).map_err(|e| fail(format!("group {g}: {e}")))?;
            if config.name() != algorithm {
                return Err(fail(format!("group {g} is of {}, but the optimizer is {algorithm}", config.name())));
            }
            let (saved_states, our_states) = (config.algorithm().states_used(), ours.config.algorithm().states_used());
            if saved_states != our_states {
                return Err(fail(format!(
                    "group {g}: checkpoint keeps state {:?}, the optimizer {:?} (amsgrad, centered or momentum differ)",
                    used_names(&names, &saved_states),
                    used_names(&names, &our_states)
                )));
            }
            crate::algorithm::check_non_negative("lr", "Invalid learning rate", saved.lr)
                .map_err(|e| fail(format!("group {g}: {e}")))?;
            if let Some(m) = saved.momentum {
                check_momentum(m).map_err(|e| fail(format!("group {g}: {e}")))?;
            }
            match (&saved.schedule, &ours.schedule) {
                (Some(s), Some((o, _))) if s.name != *o => {
                    return Err(fail(format!("group {g}: checkpoint schedule is {}, the optimizer's {o}", s.name)))
                }
                (Some(s), None) => {
                    return Err(fail(format!(
                        "group {g}: checkpoint has a {} schedule and the optimizer none: set the same schedule before loading",
                        s.name
                    )))
                }
                (None, Some((o, _))) => {
                    return Err(fail(format!("group {g}: the optimizer has a {o} schedule and the checkpoint none")))
                }
                _ => {}
            }
            snapshots.push(GroupSnapshot {
                config,
                lr: saved.lr,
                momentum: saved.momentum,
                schedule: saved.schedule.map(|s| (s.name, s.state)),
            });
        }
        let our_params: Vec<TensorInfo> = self.tensor_infos();
        if params.len() != our_params.len() {
            return Err(fail(format!(
                "checkpoint has {} parameters, the optimizer {}",
                params.len(),
                our_params.len()
            )));
        }
        for (i, (saved, ours)) in params.iter().zip(&our_params).enumerate() {
            if saved.group != ours.group {
                return Err(fail(format!(
                    "parameter {i}: group {} in the checkpoint, {} here",
                    saved.group, ours.group
                )));
            }
            if saved.len != ours.len {
                return Err(fail(format!(
                    "parameter {i}: {} elements in the checkpoint, {} here",
                    saved.len, ours.len
                )));
            }
            if saved.added_at > steps {
                return Err(fail(format!("parameter {i}: added at step {}, after step {steps}", saved.added_at)));
            }
        }
        // Every tensor present, of the right type and shape, before anything is written.
        let mut states = Vec::new();
        for (param, ours) in our_params.iter().enumerate() {
            let used = snapshots[ours.group].config.algorithm().states_used();
            for (state, name) in names.iter().enumerate().filter(|(k, _)| used[*k]) {
                let tensor_name = tensor_name(param, name);
                let view = file.tensor(&tensor_name).map_err(|_| fail(format!("lacks tensor {tensor_name}")))?;
                if view.dtype() != Dtype::F32 || view.shape() != [ours.len as usize] {
                    return Err(fail(format!(
                        "tensor {tensor_name} is {:?} {:?}, expected F32 [{}]",
                        view.dtype(),
                        view.shape(),
                        ours.len
                    )));
                }
                states.push(TensorState { param, state, values: view.data() });
            }
        }
        let added_at = params.iter().map(|p| p.added_at).collect();
        self.restore(Restore { steps, groups: snapshots, added_at, states }).map_err(fail)
    }
}

fn used_names(states: &[&'static str], used: &[bool]) -> Vec<&'static str> {
    states.iter().zip(used).filter(|(_, &u)| u).map(|(s, _)| *s).collect()
}

/// Writes `bytes` beside `path` under a name of this process's own, flushes them to the disk, and
/// renames the file into place (then flushes the directory), so that `path` holds either the old
/// checkpoint or the whole new one, whatever happens in between.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.partial", std::process::id()));
    let partial: PathBuf = path.with_file_name(name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let written = std::fs::File::create(&partial)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .map_err(io(&partial))
        .and_then(|()| std::fs::rename(&partial, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    // The rename itself is durable once the directory is; not every platform can open one.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Metadata values are JSON. Every float in them is finite (checked on the way in), so
/// serialization cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
