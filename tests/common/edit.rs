//! Editing checkpoint files for tests: metadata and tensors rewritten, the checksum resealed.

use std::collections::{BTreeMap, HashMap};

/// The checksum as the format defines it, computed here on its own: the CRC-32 of the whole
/// file with the eight hex digits of the `checksum` value taken as zeros.
pub fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let key = b"\"checksum\":\"";
    let at = 8 + bytes[8..8 + n].windows(key.len()).position(|w| w == key).expect("a checksum") + key.len();
    bytes[at..at + 8].copy_from_slice(b"00000000");
    let sum = crc32fast::hash(&bytes);
    bytes[at..at + 8].copy_from_slice(format!("{sum:08x}").as_bytes());
    bytes
}

pub type Tensors = BTreeMap<String, Vec<u8>>;
/// An edit of a checkpoint's metadata and tensors.
pub type Edit = Box<dyn FnOnce(&mut HashMap<String, String>, &mut Tensors)>;

/// `bytes` re-serialized with its metadata and tensors edited (f32 tensors, shape from length).
pub fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, String>, &mut Tensors)) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    let mut tensors: Tensors = file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect();
    edit(&mut metadata, &mut tensors);
    let views: Vec<_> = (tensors.iter())
        .map(|(name, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![data.len() / 4], data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// A metadata entry that holds JSON, edited.
pub fn edit_json(metadata: &mut HashMap<String, String>, key: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&metadata[key]).unwrap();
    edit(&mut value);
    metadata.insert(key.into(), value.to_string());
}
