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

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, Metadata as FileMetadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, Metadata as Header, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::optimizer::{check_momentum, GroupSnapshot, Optimizer, Restore};
use super::registration::TensorInfo;
use super::state::TensorState;
use crate::algorithm::OptimizerConfig;
use crate::error::{Error, Result};
use crate::kernel::StateArray;
use crate::schedule::SchedulerState;

/// The `format` a checkpoint's metadata names.
pub const CHECKPOINT_FORMAT: &str = "wgpu-optim";
/// The newest checkpoint format this library reads and the one it writes. Version 2 added the
/// checksum and made `added_at` required; version 1 files still load (see
/// [`Optimizer::load_state`]).
pub const CHECKPOINT_VERSION: u32 = 2;

/// The metadata key of the checksum.
const CHECKSUM_KEY: &str = "checksum";
/// What the checksum's digits count as while it is computed.
const CHECKSUM_ZEROS: &[u8; 8] = b"00000000";
/// safetensors' own cap on the JSON header (`MAX_HEADER_SIZE`), checked before it is read.
const MAX_HEADER_BYTES: u64 = 100_000_000;
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
}

fn tensor_name(param: usize, state: &str) -> String {
    format!("param.{param}.{state}")
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
        let fail = |message: String| Error::Checkpoint { path: path.into(), message };
        let (target, existing) = save_target(path)?;
        let names = self.state_names();
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
                schedule: g.schedule.map(|(name, state)| ScheduleMeta { name, state }),
            })
            .collect();
        let params: Vec<ParamMeta> = (self.tensor_infos().into_iter())
            .map(|t| ParamMeta { group: t.group, len: t.len, added_at: Some(t.added_at) })
            .collect();
        let metadata = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
            ("optimizer".to_string(), self.algorithm_name().to_string()),
            ("steps".to_string(), self.steps().to_string()),
            ("groups".to_string(), to_json(&groups)),
            ("params".to_string(), to_json(&params)),
            (CHECKSUM_KEY.to_string(), String::from_utf8_lossy(CHECKSUM_ZEROS).into_owned()),
        ]);
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
        let fail = |message: String| Error::Checkpoint { path: path.into(), message };
        let io = |source| Error::Io { path: path.into(), source };

        let (mut file, file_len) = open_regular(path)?;
        let (mut bytes, header) = read_header(&mut file, file_len).map_err(|e| e.into_error(path))?;
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
        let mut added_at = Vec::with_capacity(params.len());
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
            if added > steps {
                return Err(fail(format!("parameter {i}: added at step {added}, after step {steps}")));
            }
            added_at.push(added);
        }
        // Exactly the tensors this optimizer keeps, of the right type and shape: then the data is
        // as long as this optimizer's state, and the file (whose size the header matched) too.
        let mut expected = Vec::new();
        for (param, ours) in our_params.iter().enumerate() {
            let used = snapshots[ours.group].config.algorithm().states_used();
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

        // The data: its length is known and matches this optimizer.
        let header_end = bytes.len();
        bytes.resize(header_end + header.data_len(), 0);
        file.read_exact(&mut bytes[header_end..]).map_err(io)?;
        if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err(fail("the file grew while it was read".into()));
        }
        if let Some(stored) = stored_checksum {
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
        self.restore(Restore { steps, groups: snapshots, added_at, states }).map_err(fail)
    }

    /// The kernel's state arrays, in binding order (every group has the same kernel).
    fn state_arrays(&self) -> Result<&'static [StateArray]> {
        Ok(self.group_config(self.default_group())?.algorithm().kernel().states)
    }
}

fn used_names(states: &[&'static str], used: &[bool]) -> Vec<&'static str> {
    states.iter().zip(used).filter(|(_, &u)| u).map(|(s, _)| *s).collect()
}

/// The values a valid run can hold in `array`: finite, and not negative where the kernel never
/// makes it negative. Names the first value that is not.
fn check_values(array: &StateArray, values: impl Iterator<Item = f32>) -> std::result::Result<(), String> {
    for (i, x) in values.enumerate() {
        if !x.is_finite() {
            return Err(format!("element {i} is {x}: optimizer state is always finite"));
        }
        if array.non_negative && x < 0.0 {
            return Err(format!("element {i} is {x}, but {} is never negative", array.name));
        }
    }
    Ok(())
}

/// A number as a writer writes it: decimal digits, no sign, no leading zero ("007" is refused).
fn canonical_number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    text.parse::<T>().ok().filter(|n| n.to_string() == text)
}

/// Parses a metadata entry and checks that it holds exactly what a writer writes: no unknown key
/// (serde names it), none missing (an `Option` field reads a missing key as `None`, and an
/// internally tagged unit variant such as `{"kind":"Pure"}` ignores extra keys).
fn parse_as_written<T: Serialize + serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let parsed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let written = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    match first_difference(&raw, &written, "") {
        Some(difference) => Err(difference),
        None => Ok(parsed),
    }
}

/// Where `found` differs from `written` (what a writer writes for the same values), named by its
/// path: a key too many or too few, or a value in another form (`1` where a writer writes `1.0`).
fn first_difference(found: &serde_json::Value, written: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let join = |key: &dyn std::fmt::Display| if at.is_empty() { key.to_string() } else { format!("{at}.{key}") };
    match (found, written) {
        (Value::Object(f), Value::Object(w)) => {
            if let Some(key) = f.keys().find(|k| !w.contains_key(*k)) {
                return Some(format!("{} is not a key a writer writes", join(key)));
            }
            if let Some(key) = w.keys().find(|k| !f.contains_key(*k)) {
                return Some(format!("{} is missing", join(key)));
            }
            f.iter().find_map(|(k, v)| first_difference(v, &w[k], &join(k)))
        }
        (Value::Array(f), Value::Array(w)) if f.len() == w.len() => {
            f.iter().zip(w).enumerate().find_map(|(i, (f, w))| first_difference(f, w, &format!("{at}[{i}]")))
        }
        _ if found == written => None,
        _ => Some(format!(
            "{} is {found}, which a writer writes as {written}",
            if at.is_empty() { "the value" } else { at }
        )),
    }
}

/// Opens `path` for loading, refusing what is not a regular file (a FIFO would block the open, a
/// device would be read without end).
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let io = |source| Error::Io { path: path.into(), source };
    let not_regular = |m: &FileMetadata| Error::Checkpoint {
        path: path.into(),
        message: format!("is {}, not a regular file", describe(m)),
    };
    let before = std::fs::metadata(path).map_err(io)?;
    if !before.is_file() {
        return Err(not_regular(&before));
    }
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(not_regular(&metadata));
    }
    Ok((file, metadata.len()))
}

/// A refusal of [`read_header`], made an [`Error`] once the path is known.
enum HeaderError {
    Io(std::io::Error),
    Refused(String),
}

impl HeaderError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            Self::Io(source) => Error::Io { path: path.into(), source },
            Self::Refused(message) => Error::Checkpoint { path: path.into(), message },
        }
    }
}

/// Reads the 8-byte header length and the JSON header (no more), parses it, and checks that the
/// file is exactly as long as the header says. Returns the bytes read and the header.
fn read_header(file: &mut File, file_len: u64) -> std::result::Result<(Vec<u8>, Header), HeaderError> {
    let refuse = |message: String| HeaderError::Refused(format!("not a safetensors file ({message})"));
    if file_len < 8 {
        return Err(refuse(format!("{file_len} bytes, too short for the 8-byte header length")));
    }
    let mut bytes = vec![0u8; 8];
    file.read_exact(&mut bytes).map_err(HeaderError::Io)?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(refuse(format!("a header of {n} bytes, past safetensors' limit of {MAX_HEADER_BYTES}")));
    }
    if n > file_len - 8 {
        return Err(refuse(format!("a header of {n} bytes in a file of {file_len}")));
    }
    bytes.resize(8 + n as usize, 0);
    file.read_exact(&mut bytes[8..]).map_err(HeaderError::Io)?;
    let header: Header = serde_json::from_slice(&bytes[8..]).map_err(|e| refuse(format!("header: {e}")))?;
    let described = 8 + n + header.data_len() as u64;
    if described != file_len {
        return Err(HeaderError::Refused(format!(
            "the file is {file_len} bytes, but its header describes {described}: truncated or damaged"
        )));
    }
    Ok((bytes, header))
}

/// Where the eight digits of the checksum's value lie in `file`: after the one `"checksum":"` in
/// its header, as serde_json writes the metadata (no other occurrence is possible in a file a
/// writer wrote: every quote inside a metadata value is escaped).
fn checksum_position(file: &[u8]) -> std::result::Result<usize, String> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header = &file[8..8 + n];
    let key = format!("\"{CHECKSUM_KEY}\":\"");
    let mut found = header.windows(key.len()).enumerate().filter(|(_, w)| *w == key.as_bytes()).map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(i), None) if header.get(i + key.len() + 8) == Some(&b'"') => Ok(8 + i + key.len()),
        (None, _) | (Some(_), None) => Err("the checksum is not in the header as a writer writes it".into()),
        (Some(_), Some(_)) => Err("the header holds the checksum key twice".into()),
    }
}

/// The CRC-32 of `file` with the checksum's digits at `at` taken as zeros.
fn checksum(file: &[u8], at: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&file[..at]);
    hasher.update(CHECKSUM_ZEROS);
    hasher.update(&file[at + 8..]);
    hasher.finalize()
}

/// Checks the stored checksum (`stored`, the parsed metadata value) against the file's bytes.
fn verify_checksum(file: &[u8], stored: &str) -> std::result::Result<(), String> {
    let lowercase_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if stored.len() != 8 || !stored.bytes().all(|b| lowercase_hex(&b)) {
        return Err(format!("checksum \"{stored}\" is not eight lowercase hex digits"));
    }
    let at = checksum_position(file)?;
    if &file[at..at + 8] != stored.as_bytes() {
        return Err("the checksum is not in the header as a writer writes it".into());
    }
    let computed = checksum(file, at);
    if format!("{computed:08x}") != stored {
        return Err(format!(
            "checksum mismatch: the file says {stored}, its bytes give {computed:08x}: the file is damaged"
        ));
    }
    Ok(())
}

/// What a file that is not a regular file is, in words.
fn describe(metadata: &FileMetadata) -> &'static str {
    let kind = metadata.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The file `save_state` replaces: `path`, or the final target of the symlinks it starts (each
/// relative link read from its own directory), and that file's metadata if it exists. Anything
/// but a regular file or a new path is refused.
fn save_target(path: &Path) -> Result<(PathBuf, Option<FileMetadata>)> {
    // Linux's own limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    let refuse = |message: String| Error::Checkpoint { path: path.into(), message };
    let mut target = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|source| Error::Io { path: target.clone(), source })?;
                target = target.parent().map_or_else(|| link.clone(), |dir| dir.join(&link));
            }
            Ok(m) if m.is_file() => return Ok((target, Some(m))),
            Ok(m) => {
                let what = if target == path {
                    describe(&m).to_string()
                } else {
                    format!("a symlink to {}, which is {}", target.display(), describe(&m))
                };
                return Err(refuse(format!(
                    "is {what}, not a regular file: a checkpoint replaces only a regular file or goes to a new path"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((target, None)),
            Err(source) => return Err(Error::Io { path: target, source }),
        }
    }
    Err(refuse(format!("more than {MAX_LINKS} symlinks in a row")))
}

/// How long a partial file of a dead process must have been left before it counts as a crash's.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Saves so far in this process: with the pid, a name no other save (thread or process) uses.
static SAVES: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` beside `path` under a name of this call's own, flushes them to the disk, and
/// renames the file into place (then flushes the directory), so that `path` holds either the old
/// checkpoint or the whole new one, whatever happens in between. `existing` is the file replaced,
/// whose permissions the new one takes.
fn write_durably(path: &Path, existing: Option<&FileMetadata>, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    remove_stale_partials(path, &name);
    let mut partial_name = name;
    partial_name.push(format!(".{}-{}.partial", std::process::id(), SAVES.fetch_add(1, Ordering::Relaxed)));
    let partial: PathBuf = path.with_file_name(partial_name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    // create_new: never write into a file someone else made under this name.
    let written = File::options()
        .write(true)
        .create_new(true)
        .open(&partial)
        .and_then(|mut file| {
            if let Some(existing) = existing {
                file.set_permissions(existing.permissions())?;
            }
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(io(&partial))
        .and_then(|()| std::fs::rename(&partial, path).map_err(io(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    // The rename itself is durable once the directory is; not every platform can open one.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Removes `{name}.{pid}-{n}.partial` files beside `path` (and `{name}.{pid}.partial`, the name
/// earlier versions used) whose process no longer runs and that were last written over an hour
/// ago: what a crash during `save_state` leaves. Only on Linux with `/proc` mounted, where a pid
/// can be looked up. The hour spares a save in progress by a process this one cannot see (in
/// another pid namespace, or on another host sharing the directory); a pid now reused by another
/// process keeps its file until a later save. The dash keeps the pattern from matching the
/// partial files of another checkpoint whose name starts with this one's (`ckpt.7`). Best
/// effort: a file that cannot be listed, dated or removed is left.
fn remove_stale_partials(path: &Path, name: &std::ffi::OsStr) {
    if !cfg!(target_os = "linux") || !Path::new("/proc/self").exists() {
        return;
    }
    let Some(name) = name.to_str() else { return };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let ours = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|f| f.strip_prefix(name)) else { continue };
        let Some(middle) = rest.strip_prefix('.').and_then(|r| r.strip_suffix(".partial")) else { continue };
        let pid = match middle.split_once('-') {
            Some((pid, n)) if canonical_number::<u64>(n).is_some() => canonical_number::<u32>(pid),
            Some(_) => None,
            None => canonical_number::<u32>(middle),
        };
        let dead = pid.is_some_and(|pid| pid != ours && !Path::new(&format!("/proc/{pid}")).exists());
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if dead && age.is_some_and(|age| age >= STALE_AFTER) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Metadata values are JSON. Every float in them is finite (checked on the way in), so
/// serialization cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
