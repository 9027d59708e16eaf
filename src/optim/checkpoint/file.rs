//! Where a save may write and how (beside the target, flushed, renamed into place), and what a
//! load may open.

use std::fs::{File, Metadata as FileMetadata};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::strict::canonical_number;
use crate::error::{Error, Result};

/// Opens `path` for loading, refusing what is not a regular file (a FIFO would block the open, a
/// device would be read without end).
pub(super) fn open_regular(path: &Path) -> Result<(File, u64)> {
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
pub(super) fn save_target(path: &Path) -> Result<(PathBuf, Option<FileMetadata>)> {
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
pub(super) fn write_durably(path: &Path, existing: Option<&FileMetadata>, bytes: &[u8]) -> Result<()> {
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
