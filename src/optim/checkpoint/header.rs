//! The header, read and checked before the data, and the checksum that seals the whole file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::Metadata as Header;

use crate::error::Error;

/// The metadata key of the checksum.
pub(super) const CHECKSUM_KEY: &str = "checksum";
/// What the checksum's digits count as while it is computed.
pub(super) const CHECKSUM_ZEROS: &[u8; 8] = b"00000000";
/// safetensors' own cap on the JSON header (`MAX_HEADER_SIZE`), checked before it is read.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A refusal of [`read_header`], made an [`Error`] once the path is known.
pub(super) enum HeaderError {
    Io(std::io::Error),
    Refused(String),
}

impl HeaderError {
    pub(super) fn into_error(self, path: &Path) -> Error {
        match self {
            Self::Io(source) => Error::Io { path: path.into(), source },
            Self::Refused(message) => Error::Checkpoint { path: path.into(), message },
        }
    }
}

/// Reads the 8-byte header length and the JSON header (no more), parses it, and checks that the
/// file is exactly as long as the header says. Returns the bytes read and the header.
pub(super) fn read_header(file: &mut File, file_len: u64) -> std::result::Result<(Vec<u8>, Header), HeaderError> {
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
pub(super) fn checksum_position(file: &[u8]) -> std::result::Result<usize, String> {
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
pub(super) fn checksum(file: &[u8], at: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&file[..at]);
    hasher.update(CHECKSUM_ZEROS);
    hasher.update(&file[at + 8..]);
    hasher.finalize()
}

/// Checks the stored checksum (`stored`, the parsed metadata value) against the file's bytes.
pub(super) fn verify_checksum(file: &[u8], stored: &str) -> std::result::Result<(), String> {
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
