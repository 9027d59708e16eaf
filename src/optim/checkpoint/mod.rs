//! Saving and loading an optimizer's state with safetensors, for bit-exact resume.
//!
//! A checkpoint holds every state array of every tensor (`param.{i}.{state}`, f32, shape
//! `[len]`) and, as safetensors metadata, the format and its version, the algorithm, each group's
//! full config, learning rate, momentum override and schedule state, the tensor layout (group,
//! length and registration step of each), the step count, and a checksum.
//!
//! The checksum (format version 2) is the CRC-32 (IEEE, as zlib and PNG compute it) of the whole
//! file as written, with the eight hex digits of the checksum's own value taken as `00000000`.
//! It is stored as eight lowercase hex digits under the metadata key `checksum`. Covering the
//! whole file, and not a re-serialization of what was parsed, means that every byte counts: the
//! header length, the JSON (its key order, whitespace and safetensors' padding spaces), the
//! tensor offsets and the data. CRC-32 detects every error of one bit and every burst of up to
//! 32 bits; it guards against damage, not against forgery (anyone can recompute it).
//!
//! The parameters themselves are the engine's and are not included, as in PyTorch's
//! `optimizer.state_dict()`.
//!
//! This module holds the format and `save_state` / `load_state`; the rest is one job per file:
//! - `file.rs`: where a save may write and how (beside the target, flushed, renamed into place),
//!   and what a load may open;
//! - `header.rs`: the header read and checked before the data, and the checksum;
//! - `strict.rs`: values accepted only in the form a writer writes them.

mod file;
mod header;
mod strict;

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata as Header, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use self::file::{open_regular, save_target, write_durably};
use self::header::{checksum, checksum_position, read_header, verify_checksum, CHECKSUM_KEY, CHECKSUM_ZEROS};
use self::strict::{canonical_number, check_values, first_difference, parse_as_written};
use super::amp::{ClipGradNorm, GradScalerConfig};
use super::optimizer::{check_momentum, AmpRestore, GroupSnapshot, Optimizer, Restore};
use super::registration::TensorInfo;
use super::state::TensorState;
use super::store::{EMA, MASTER};
use crate::algorithm::{Carry, OptimizerConfig};
use crate::error::{Error, Result};
use crate::kernel::StateArray;
use crate::schedule::SchedulerState;

/// The `format` a checkpoint's metadata names.
pub const CHECKPOINT_FORMAT: &str = "wgpu-optim";
/// The newest checkpoint format this library reads and the one it writes. Version 2 added the
/// checksum and made `added_at` required; version 3 added each tensor's `skipped` steps (steps
/// without a gradient); version 4 the loss scaler's and clipping's state (`amp`) and each
/// tensor's steps skipped on the device (`amp_skipped`). Versions 1 to 3 still load (see
/// [`Optimizer::load_state`]).
pub const CHECKPOINT_VERSION: u32 = 4;

/// The most steps a checkpoint may count: far beyond any training run; what matters is that
/// counting on from it cannot overflow.
const MAX_STEPS: u64 = 1 << 53;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupMeta {
    config: serde_json::Value,
    lr: f64,
    momentum: Option<f64>,
    schedule: Option<ScheduleMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleMeta {
    name: String,
    state: SchedulerState,
    /// The optimizer's step count when the schedule was set: its own step 0 (version 3 on;
    /// earlier versions evaluated schedules at the optimizer's count: 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamMeta {
    group: usize,
    len: u64,
    /// The optimizer's step count when the tensor was registered (its own count is the rest).
    /// Every writer of version 2 writes it; early version-1 writers did not, and meant 0 (a
    /// tensor then counted every step of the optimizer).
    #[serde(skip_serializing_if = "Option::is_none")]
    added_at: Option<u64>,
    /// Steps since then without a gradient, which the tensor sat out (version 3 on; earlier
    /// versions had no such steps: 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u64>,
    /// What the tensor's last step handed to its next, for an algorithm that carries something
    /// (ASGD's `[eta, mu]`, NAdam's `[mu_product, 0]`); version 3 on, written once the tensor has
    /// stepped. Without it a step rebuilds it from the schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    carry: Option<[f64; Carry::LEN]>,
    /// With loss scaling (version 4 on): the steps the device skipped (non-finite gradients)
    /// that the tensor had a gradient in; they do not count in its own step count.
    #[serde(skip_serializing_if = "Option::is_none")]
    amp_skipped: Option<u64>,
}

/// Loss scaling and clipping as a checkpoint holds them (version 4 on; the key is absent
/// without either): the settings, which the loading optimizer must have set alike, and the
/// scaler's state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmpMeta {
    scaler: Option<GradScalerConfig>,
    clip: Option<ClipGradNorm>,
    /// The scale the next step's gradients carry.
    scale: f64,
    growth_tracker: u32,
    /// Steps skipped since loss scaling was set.
    skipped_steps: u32,
}

fn tensor_name(param: usize, state: &str) -> String {
    format!("param.{param}.{state}")
}

/// The metadata of a checkpoint as its writer wrote it, before it is matched against the
/// optimizer that loads it.
struct SavedMeta<'h> {
    version: u32,
    steps: u64,
    groups: Vec<GroupMeta>,
    params: Vec<ParamMeta>,
    /// The stored checksum (version 2 on), verified once the data is read.
    checksum: Option<&'h str>,
    /// Loss scaling and clipping (version 4 on, where set).
    amp: Option<AmpMeta>,
}

/// The [`Error::Checkpoint`] for `path` with a message.
fn refusal(path: &Path) -> impl Fn(String) -> Error + Copy + '_ {
    move |message| Error::Checkpoint { path: path.into(), message }
}

impl Optimizer {
    /// Writes the whole optimizer state to `path` (safetensors, format version
    /// [`CHECKPOINT_VERSION`], with a CRC-32 of the whole file in its metadata; the format is
    /// described in `docs/ARCHITECTURE.md`). The state is read back from the GPU: the only
    /// readback the optimizer ever does.
    ///
    /// The file is written beside its destination under a name of its own
    /// (`{name}.{pid}-{n}.partial`, unique to this call), flushed to the disk and renamed into
    /// place, so a crash never leaves a half-written checkpoint under the final name, and two
    /// threads or processes saving to one path at once both succeed (the last rename wins; the
    /// file is whole either way). `.partial` files of that name left by a process that no longer
    /// runs (a crash), untouched for an hour, are removed on Linux, where `/proc` tells;
    /// elsewhere they are left alone.
    ///
    /// The destination must be a regular file or a new path: a directory, device node, FIFO or
    /// socket is refused, since replacing it would break it (as root, `/dev/null`). A symlink is
    /// followed (each link in turn) and its final target is replaced, as writing to a link does;
    /// the link itself stays. An existing file keeps its permissions.
    ///
    /// A state holding a NaN or infinite value (a non-finite gradient reached it), or a negative
    /// value in an array that is never negative, is refused rather than written:
    /// [`Optimizer::load_state`] would refuse the file.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a destination that is not a regular file (naming what it is) or
    /// a state that is not finite; [`Error::Io`] if the file cannot be written;
    /// [`Error::DeviceLost`] or [`Error::Wgpu`] if the state cannot be read back.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let fail = refusal(path);
        let (target, existing) = save_target(path)?;
        let names = self.stored_names();
        let arrays = self.state_arrays()?;
        let mut tensors: Vec<(String, Vec<u8>, usize)> = Vec::new();
        for s in self.export_state()? {
            check_values(&arrays[s.state], s.values.iter().copied()).map_err(|e| {
                fail(format!(
                    "not written: parameter {}'s {}: {e} (a NaN or infinite gradient reached it?), and load_state \
                     would refuse the file",
                    s.param, names[s.state]
                ))
            })?;
            let len = s.values.len();
            tensors.push((tensor_name(s.param, names[s.state]), bytemuck::cast_slice(&s.values).to_vec(), len));
        }
        let groups: Vec<GroupMeta> = (self.group_snapshots().into_iter())
            .map(|g| GroupMeta {
                config: g.config.to_json(),
                lr: g.lr,
                momentum: g.momentum,
                schedule: g.schedule.map(|(name, state)| ScheduleMeta { name, state, at: Some(g.schedule_at) }),
            })
            .collect();
        let amp = self.amp_snapshot()?;
        let params: Vec<ParamMeta> = (self.tensor_infos().into_iter().enumerate())
            .map(|(i, t)| ParamMeta {
                group: t.group,
                len: t.len,
                added_at: Some(t.added_at),
                skipped: Some(t.skipped),
                carry: self.tensor_carry(i).map(|c| c.0),
                amp_skipped: amp.as_ref().and_then(|a| a.tensor_skips.as_ref()).map(|s| u64::from(s[i])),
            })
            .collect();
        let mut metadata = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
            ("optimizer".to_string(), self.algorithm_name().to_string()),
            ("steps".to_string(), self.steps().to_string()),
            ("groups".to_string(), to_json(&groups)),
            ("params".to_string(), to_json(&params)),
            (CHECKSUM_KEY.to_string(), String::from_utf8_lossy(CHECKSUM_ZEROS).into_owned()),
        ]);
        if let Some(decay) = self.ema_decay() {
            metadata.insert("ema_decay".to_string(), to_json(&decay));
        }
        if let Some(a) = amp {
            let meta = AmpMeta {
                scaler: a.scaler,
                clip: a.clip,
                scale: f64::from(a.status.scale),
                growth_tracker: a.status.growth_tracker,
                skipped_steps: a.status.skipped_steps,
            };
            metadata.insert("amp".to_string(), to_json(&meta));
        }
        let views = tensors
            .iter()
            .map(|(name, bytes, len)| Ok((name.clone(), TensorView::new(Dtype::F32, vec![*len], bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .and_then(|views| safetensors::serialize(views, Some(metadata)))
            .map_err(|e| fail(e.to_string()));
        let mut bytes = views?;
        let at = checksum_position(&bytes).map_err(fail)?;
        let sum = checksum(&bytes, at);
        bytes[at..at + 8].copy_from_slice(format!("{sum:08x}").as_bytes());
        write_durably(&target, existing.as_ref(), &bytes)
    }

    /// Restores a state written by [`Optimizer::save_state`] into this optimizer, which must have
    /// the same algorithm, the same groups (with the same state arrays: `amsgrad`, `centered` and
    /// `momentum` alike) and the same tensors in the same order; each group with a schedule needs
    /// the same schedule set before loading, built with the same arguments. Like PyTorch's
    /// `load_state_dict`, the groups' hyperparameters are taken from the checkpoint. The state is
    /// queued on the device's queue and lands at the start of the next submit: submit any
    /// encoder that holds a recorded step first, or that step runs on the loaded state.
    ///
    /// Everything is checked before anything changes, and a refused checkpoint leaves the
    /// optimizer exactly as it was. In order: the path is a regular file; the header length is
    /// within safetensors' 100 MB cap and the file; the header parses; the file's size is the one
    /// the header describes; the metadata holds exactly the keys a writer writes, each in the
    /// form it writes them, and matches this optimizer (algorithm, groups, state arrays,
    /// schedules, tensors, shapes, and no tensor besides). Only then is the data read (so a huge
    /// file that does not fit is refused without reading it), the checksum verified, and every
    /// state value checked: finite, and not negative in the arrays that never are (`exp_avg_sq`,
    /// `max_exp_avg_sq`, `sum`, `square_avg`, `acc_delta`, `exp_inf`, `step_size`). A
    /// `ReduceLROnPlateau` state is checked against the schedule set here: counters a run with its
    /// arguments cannot reach are refused. A file whose header was damaged is refused by the first
    /// of these checks that it fails, which may be a mismatch named from the damaged header.
    ///
    /// Version-1 files (written before checksums) still load: a valid writer wrote them, and
    /// they pass every check but the checksum, which they lack; a missing `added_at` in them
    /// means 0, as it did for their writers.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Checkpoint`] naming the problem for a
    /// path that is not a regular file, a damaged file (a checksum mismatch, a wrong size, a value
    /// no writer produces), another format or a newer version, another algorithm, group layout,
    /// shape or schedule.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check_alive()?;
        let fail = refusal(path);
        let io = |source| Error::Io { path: path.into(), source };

        // The header, and all it says checked against this optimizer, before any data is read.
        let (mut file, file_len) = open_regular(path)?;
        let (mut bytes, header) = read_header(&mut file, file_len).map_err(|e| e.into_error(path))?;
        let saved = self.read_metadata(path, &header)?;
        let snapshots = self.check_groups(path, saved.groups, saved.version, saved.steps)?;
        let (counts, carries) = self.check_params(path, &saved.params, saved.version, saved.steps)?;
        let amp = self.check_amp(path, saved.amp, &saved.params, &counts, saved.steps)?;
        let expected = self.expected_tensors(path, &header, &snapshots)?;

        // The data: its length is known and matches this optimizer.
        let header_end = bytes.len();
        bytes.resize(header_end + header.data_len(), 0);
        file.read_exact(&mut bytes[header_end..]).map_err(io)?;
        if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err(fail("the file grew while it was read".into()));
        }
        if let Some(stored) = saved.checksum {
            verify_checksum(&bytes, stored).map_err(fail)?;
        }
        let data = SafeTensors::deserialize(&bytes).map_err(|e| fail(format!("not a safetensors file ({e})")))?;
        let arrays = self.state_arrays()?;
        let mut states = Vec::with_capacity(expected.len());
        for (param, state, name) in expected {
            let view = data.tensor(&name).map_err(|_| fail(format!("lacks tensor {name}")))?;
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            check_values(&arrays[state], values).map_err(|e| fail(format!("tensor {name}: {e}")))?;
            states.push(TensorState { param, state, values: view.data() });
        }
        self.restore(Restore { steps: saved.steps, groups: snapshots, counts, carries, states, amp }).map_err(fail)
    }

    /// The metadata of `header`: exactly the keys a writer of its version writes, each in the
    /// form it writes them; the format, a version this library reads, this optimizer's algorithm,
    /// a step count that cannot overflow, and the groups and parameters parsed (matched against
    /// this optimizer's by the checks that follow).
    fn read_metadata<'h>(&self, path: &Path, header: &'h Header) -> Result<SavedMeta<'h>> {
        let fail = refusal(path);
        let metadata =
            header.metadata().as_ref().ok_or_else(|| fail("no metadata: not a wgpu-optim checkpoint".into()))?;
        let get = |key: &str| metadata.get(key).ok_or_else(|| fail(format!("metadata lacks \"{key}\"")));
        let not_a_number = |key: &str| {
            fail(format!("{key} is \"{}\", not a number as a writer writes it", metadata.get(key).map_or("", |v| v)))
        };

        if get("format")? != CHECKPOINT_FORMAT {
            return Err(fail(format!("format is \"{}\", not \"{CHECKPOINT_FORMAT}\"", get("format")?)));
        }
        let version: u32 = canonical_number(get("format_version")?).ok_or_else(|| not_a_number("format_version"))?;
        if version > CHECKPOINT_VERSION {
            return Err(fail(format!(
                "format version {version} is newer than this library's ({CHECKPOINT_VERSION}): update wgpu-optim"
            )));
        }
        if version == 0 {
            return Err(fail("format version 0 does not exist".into()));
        }
        let mut expected_keys = vec!["format", "format_version", "optimizer", "steps", "groups", "params"];
        if version >= 2 {
            expected_keys.push(CHECKSUM_KEY);
        }
        if version >= 4 {
            expected_keys.extend(["amp", "ema_decay"]);
        }
        if let Some(key) = metadata.keys().filter(|k| !expected_keys.contains(&k.as_str())).min() {
            return Err(fail(format!("metadata has the key \"{key}\", which no version-{version} writer writes")));
        }
        let stored_checksum = if version >= 2 { Some(get(CHECKSUM_KEY)?) } else { None };
        let algorithm = self.algorithm_name();
        if get("optimizer")? != algorithm {
            return Err(fail(format!("checkpoint is of {}, but the optimizer is {algorithm}", get("optimizer")?)));
        }
        let steps: u64 = canonical_number(get("steps")?).ok_or_else(|| not_a_number("steps"))?;
        if steps > MAX_STEPS {
            return Err(fail(format!("steps is {steps}, past 2^53")));
        }
        let groups: Vec<GroupMeta> =
            parse_as_written(get("groups")?).map_err(|e| fail(format!("groups metadata: {e}")))?;
        let params: Vec<ParamMeta> =
            parse_as_written(get("params")?).map_err(|e| fail(format!("params metadata: {e}")))?;
        let ema_decay: Option<f64> = match metadata.get("ema_decay") {
            Some(text) => Some(parse_as_written(text).map_err(|e| fail(format!("ema_decay metadata: {e}")))?),
            None => None,
        };
        if ema_decay != self.ema_decay() {
            return Err(fail(format!(
                "checkpoint keeps {}, the optimizer {}: set the same EMA (set_ema) before loading",
                ema_decay.map_or("no EMA of the weights".into(), |d| format!("an EMA with decay {d}")),
                self.ema_decay().map_or("none".into(), |d| format!("one with decay {d}"))
            )));
        }
        let amp: Option<AmpMeta> = match metadata.get("amp") {
            Some(text) => Some(parse_as_written(text).map_err(|e| fail(format!("amp metadata: {e}")))?),
            None => None,
        };
        Ok(SavedMeta { version, steps, groups, params, checksum: stored_checksum.map(String::as_str), amp })
    }

    /// The checkpoint's loss scaling and clipping checked against this optimizer's (set alike
    /// before loading, as schedules are), its scaler state against what a run can reach, and
    /// each tensor's steps skipped on the device against its own step count.
    fn check_amp(
        &self,
        path: &Path,
        saved: Option<AmpMeta>,
        params: &[ParamMeta],
        counts: &[(u64, u64)],
        steps: u64,
    ) -> Result<Option<AmpRestore>> {
        let fail = refusal(path);
        let (scaler, clip) = self.amp_settings();
        let describe = |scaler: &Option<GradScalerConfig>, clip: &Option<ClipGradNorm>| match (scaler, clip) {
            (None, None) => "neither loss scaling nor clipping".to_string(),
            _ => format!("loss scaling {scaler:?} and clipping {clip:?}"),
        };
        let (ours_scaler, ours_clip) = (scaler.cloned(), clip.cloned());
        let Some(saved) = saved else {
            if ours_scaler.is_some() || ours_clip.is_some() {
                return Err(fail(format!(
                    "the optimizer has {}, the checkpoint neither: turn them off before loading",
                    describe(&ours_scaler, &ours_clip)
                )));
            }
            if let Some(i) = params.iter().position(|p| p.amp_skipped.is_some()) {
                return Err(fail(format!("params metadata: parameter {i} has \"amp_skipped\" without loss scaling")));
            }
            return Ok(None);
        };
        if saved.scaler != ours_scaler || saved.clip != ours_clip {
            return Err(fail(format!(
                "checkpoint was saved with {}, the optimizer has {}: set the same (set_loss_scaling, \
                 set_grad_clipping) before loading",
                describe(&saved.scaler, &saved.clip),
                describe(&ours_scaler, &ours_clip)
            )));
        }
        let scale = saved.scale as f32;
        if !(scale.is_finite() && scale > 0.0 && f64::from(scale) == saved.scale && (1.0 / scale).is_normal()) {
            return Err(fail(format!(
                "amp metadata: scale {} is not a scale a run holds",
                crate::error::py_float(saved.scale)
            )));
        }
        if let Some(s) = &saved.scaler {
            if s.growth_interval > 0 && saved.growth_tracker >= s.growth_interval {
                return Err(fail(format!(
                    "amp metadata: growth_tracker {} is not below growth_interval {}",
                    saved.growth_tracker, s.growth_interval
                )));
            }
        }
        if u64::from(saved.skipped_steps) > steps {
            return Err(fail(format!("amp metadata: {} skipped steps of {steps}", saved.skipped_steps)));
        }
        let mut tensor_skips = Vec::with_capacity(params.len());
        for (i, (p, &(added, skipped))) in params.iter().zip(counts).enumerate() {
            match (p.amp_skipped, &saved.scaler) {
                (Some(n), Some(_)) if n <= steps - added - skipped && n <= u64::from(saved.skipped_steps) => {
                    tensor_skips.push(n as u32)
                }
                (Some(n), Some(_)) => {
                    return Err(fail(format!(
                    "params metadata: parameter {i} skipped {n} steps on the device, more than it or the scaler took"
                )))
                }
                (None, Some(_)) => return Err(fail(format!("params metadata: parameter {i} lacks \"amp_skipped\""))),
                (Some(_), None) => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} has \"amp_skipped\" without loss scaling"
                    )))
                }
                (None, None) => {}
            }
        }
        Ok(Some(AmpRestore {
            scale,
            growth_tracker: saved.growth_tracker,
            skipped_steps: saved.skipped_steps,
            tensor_skips: saved.scaler.is_some().then_some(tensor_skips),
        }))
    }

    /// The checkpoint's groups checked against this optimizer's (count, algorithm, every config
    /// key, state arrays, learning rate, momentum, schedule), as the snapshots to restore.
    fn check_groups(
        &self,
        path: &Path,
        groups: Vec<GroupMeta>,
        version: u32,
        steps: u64,
    ) -> Result<Vec<GroupSnapshot>> {
        let fail = refusal(path);
        let algorithm = self.algorithm_name();
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
            // A writer writes every key of the config; a missing one would silently take its default.
            if let Some(difference) = first_difference(&saved.config, &config.to_json(), "config") {
                return Err(fail(format!("group {g}: {difference}")));
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
            let schedule_at = match (saved.schedule.as_ref().map(|s| s.at), version) {
                (None, _) => 0,
                (Some(Some(_)), 1 | 2) => {
                    return Err(fail(format!(
                        "group {g}: the schedule has \"at\", which no version-{version} writer writes"
                    )))
                }
                (Some(Some(at)), _) if at > steps => {
                    return Err(fail(format!("group {g}: schedule set at step {at}, after step {steps}")))
                }
                (Some(Some(at)), _) => at,
                (Some(None), 1 | 2) => 0,
                (Some(None), _) => return Err(fail(format!("group {g}: the schedule lacks \"at\""))),
            };
            snapshots.push(GroupSnapshot {
                config,
                lr: saved.lr,
                momentum: saved.momentum,
                schedule: saved.schedule.map(|s| (s.name, s.state)),
                schedule_at,
            });
        }
        Ok(snapshots)
    }

    /// The checkpoint's parameters checked against this optimizer's tensors (count, group,
    /// length), as the step each was registered at (0 where a version-1 file lacks it) and the
    /// steps it sat out since (0 before version 3).
    #[allow(clippy::type_complexity)]
    fn check_params(
        &self,
        path: &Path,
        params: &[ParamMeta],
        version: u32,
        steps: u64,
    ) -> Result<(Vec<(u64, u64)>, Vec<Option<Carry>>)> {
        let fail = refusal(path);
        let our_params: Vec<TensorInfo> = self.tensor_infos();
        if params.len() != our_params.len() {
            return Err(fail(format!(
                "checkpoint has {} parameters, the optimizer {}",
                params.len(),
                our_params.len()
            )));
        }
        let mut counts = Vec::with_capacity(params.len());
        let mut carries = Vec::with_capacity(params.len());
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
            let added = match (saved.added_at, version) {
                (Some(added), _) => added,
                (None, 1) => 0,
                (None, _) => return Err(fail(format!("params metadata: parameter {i} lacks \"added_at\""))),
            };
            let skipped = match (saved.skipped, version) {
                (Some(_), 1 | 2) => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} has \"skipped\", which no version-{version} writer writes"
                    )))
                }
                (Some(skipped), _) => skipped,
                (None, 1 | 2) => 0,
                (None, _) => return Err(fail(format!("params metadata: parameter {i} lacks \"skipped\""))),
            };
            if added > steps {
                return Err(fail(format!("parameter {i}: added at step {added}, after step {steps}")));
            }
            if skipped > steps - added {
                return Err(fail(format!(
                    "parameter {i}: sat out {skipped} steps of the {} since it was added at step {added}",
                    steps - added
                )));
            }
            // A version-3 writer writes a carry exactly for the tensors of an algorithm that
            // carries something and that took a step of their own, and only values its steps
            // can hand on.
            let own_steps = steps - added - skipped;
            let carrying = self.group_carries(ours.group);
            let carry = match (saved.carry, version) {
                (Some(_), 1 | 2) => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} has \"carry\", which no version-{version} writer writes"
                    )))
                }
                (None, 1 | 2) => None,
                (Some(_), _) if !carrying => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} has \"carry\", but {} carries nothing from step to step",
                        self.algorithm_name()
                    )))
                }
                (Some(_), _) if own_steps == 0 => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} has \"carry\" but has taken no step of its own"
                    )))
                }
                (None, _) if carrying && own_steps > 0 => {
                    return Err(fail(format!(
                        "params metadata: parameter {i} lacks \"carry\" after {own_steps} steps of its own"
                    )))
                }
                (Some(values), _) => {
                    let carry = Carry(values);
                    if let Err(why) = self.check_carry(ours.group, &carry) {
                        return Err(fail(format!("params metadata: parameter {i}'s carry: {why}")));
                    }
                    Some(carry)
                }
                (None, _) => None,
            };
            counts.push((added, skipped));
            carries.push(carry);
        }
        Ok((counts, carries))
    }

    /// The tensors the header must hold, as (parameter, state array, name) in the order they are
    /// restored.
    fn expected_tensors(
        &self,
        path: &Path,
        header: &Header,
        snapshots: &[GroupSnapshot],
    ) -> Result<Vec<(usize, usize, String)>> {
        let fail = refusal(path);
        let names = self.stored_names();
        let our_params = self.tensor_infos();
        // Exactly the tensors this optimizer keeps, of the right type and shape: then the data is
        // as long as this optimizer's state, and the file (whose size the header matched) too.
        let mut expected = Vec::new();
        for (param, ours) in our_params.iter().enumerate() {
            let mut used = snapshots[ours.group].config.algorithm().states_used();
            // A low-precision parameter's master copy, after the kernel's arrays.
            used.push(self.keeps_master(ours.group));
            // The EMA of the weights, the last.
            used.push(self.keeps_ema(ours.group));
            for (state, name) in names.iter().enumerate().filter(|(k, _)| used[*k]) {
                let tensor_name = tensor_name(param, name);
                let info = header.info(&tensor_name).ok_or_else(|| fail(format!("lacks tensor {tensor_name}")))?;
                if info.dtype != Dtype::F32 || info.shape != [ours.len as usize] {
                    return Err(fail(format!(
                        "tensor {tensor_name} is {:?} {:?}, expected F32 [{}]",
                        info.dtype, info.shape, ours.len
                    )));
                }
                expected.push((param, state, tensor_name));
            }
        }
        if header.tensors().len() != expected.len() {
            let known: BTreeSet<&str> = expected.iter().map(|(_, _, name)| name.as_str()).collect();
            let extra =
                header.offset_keys().into_iter().find(|name| !known.contains(name.as_str())).unwrap_or_default();
            return Err(fail(format!("holds tensor {extra}, which this optimizer does not keep")));
        }
        Ok(expected)
    }

    /// The kernel's state arrays, in binding order (every group has the same kernel), and the
    /// master copy of a low-precision parameter (any finite value).
    fn state_arrays(&self) -> Result<Vec<StateArray>> {
        let kernel = self.group_config(self.default_group())?.algorithm().kernel();
        Ok(kernel.states.iter().copied().chain([StateArray::always(MASTER), StateArray::always(EMA)]).collect())
    }

    /// The names of the arrays a checkpoint may hold per tensor: the kernel's state arrays, then
    /// the master copy.
    fn stored_names(&self) -> Vec<&'static str> {
        self.state_names().into_iter().chain([MASTER, EMA]).collect()
    }
}

fn used_names(states: &[&'static str], used: &[bool]) -> Vec<&'static str> {
    states.iter().zip(used).filter(|(_, &u)| u).map(|(s, _)| *s).collect()
}

/// Metadata values are JSON. Every float in them is finite (checked on the way in), so
/// serialization cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
