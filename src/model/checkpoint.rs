//! Reads a PyTorch zip checkpoint (what `torch.save` writes since torch 1.6) holding a state_dict.
//!
//! Layout: a zip (entries stored, not compressed) with one top folder whose name varies with the
//! file the checkpoint was saved as (`archive/`, `medsam_lite/`, ...): `<folder>/data.pkl` is the
//! pickled state_dict and `<folder>/data/<key>` holds the raw little-endian bytes of each storage.
//!
//! Output: the float32 tensors in the pickle's order, made contiguous (strided views are gathered).
//! BatchNorm's int64 `num_batches_tracked` counters are skipped by name (inference never reads
//! them); any other non-float32 tensor is an error naming it. Errors name the file, the entry and,
//! where it applies, the tensor and byte offset.

use std::collections::HashMap;
use std::collections::HashSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use super::pickle::{self, Dtype, TensorRef, Value};
use super::tensor::{OwnedTensor, shape_numel, shape_text};

/// Largest `data.pkl` read: a state_dict of a few thousand tensors pickles to well under 1 MiB.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Most of an entry's declared size reserved before reading it.
const PREALLOCATE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not a zip, or a zip entry cannot be read (bad header, CRC mismatch, ...).
    #[error("{path}: corrupt zip archive{}: {message}", entry_suffix(entry))]
    Zip { path: PathBuf, entry: Option<String>, message: String },
    /// A zip, but not laid out like a torch checkpoint.
    #[error("{path}: not a PyTorch checkpoint: {message}")]
    Layout { path: PathBuf, message: String },
    /// `data.pkl` cannot be decoded.
    #[error("{path}: {entry}: byte {offset}: {message}")]
    Pickle { path: PathBuf, entry: String, offset: usize, message: String },
    /// The pickle decodes, but not to a state_dict of tensors.
    #[error("{path}: {entry}: {message}")]
    StateDict { path: PathBuf, entry: String, message: String },
    /// A tensor's storage or view is inconsistent.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    /// A tensor of a type the model does not use.
    #[error("{path}: tensor `{tensor}` is {dtype}; only float32 weights (and int64 BatchNorm counters) are supported")]
    Dtype { path: PathBuf, tensor: String, dtype: &'static str },
}

fn entry_suffix(entry: &Option<String>) -> String {
    entry.as_ref().map(|e| format!(", entry `{e}`")).unwrap_or_default()
}

/// The float32 tensors of a checkpoint's state_dict.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// In the order the state_dict lists them.
    pub tensors: Vec<OwnedTensor>,
    /// Names of the skipped `num_batches_tracked` counters.
    pub skipped: Vec<String>,
    /// The archive's top folder (`archive`, `medsam_lite`, ...).
    pub folder: String,
}

impl Checkpoint {
    /// Reads the checkpoint file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| CheckpointError::Io { path: path.into(), source })?;
        Checkpoint::from_reader(std::io::BufReader::new(file), path)
    }

    /// Reads a checkpoint held in memory; `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], label: &Path) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::from_reader(std::io::Cursor::new(bytes), label)
    }

    pub fn from_reader<R: Read + Seek>(reader: R, label: &Path) -> Result<Checkpoint, CheckpointError> {
        Reader::new(reader, label)?.read()
    }

    /// Tensors in the source state_dict, skipped counters included.
    pub fn source_tensor_count(&self) -> usize {
        self.tensors.len() + self.skipped.len()
    }
}

struct Reader<R: Read + Seek> {
    archive: zip::ZipArchive<R>,
    path: PathBuf,
    folder: String,
    /// Storage bytes already read, by key (several views may share one storage).
    storages: HashMap<String, Vec<u8>>,
}

impl<R: Read + Seek> Reader<R> {
    fn new(reader: R, label: &Path) -> Result<Self, CheckpointError> {
        let archive = zip::ZipArchive::new(reader).map_err(|e| CheckpointError::Zip {
            path: label.into(),
            entry: None,
            message: e.to_string(),
        })?;
        let folders: Vec<&str> = archive
            .file_names()
            .filter_map(|name| name.strip_suffix("/data.pkl"))
            .filter(|folder| !folder.is_empty() && !folder.contains('/'))
            .collect();
        let folder = match folders.as_slice() {
            [one] => one.to_string(),
            [] => {
                return Err(CheckpointError::Layout {
                    path: label.into(),
                    message: "no `<folder>/data.pkl` entry (only zip checkpoints from torch 1.6 or later are read)"
                        .into(),
                });
            }
            many => {
                return Err(CheckpointError::Layout {
                    path: label.into(),
                    message: format!("{} folders hold a data.pkl: {}", many.len(), many.join(", ")),
                });
            }
        };
        Ok(Reader { archive, path: label.into(), folder, storages: HashMap::new() })
    }

    fn read(mut self) -> Result<Checkpoint, CheckpointError> {
        // Storages are raw native-endian bytes; torch records the writer's byte order since 2.1.
        let byteorder = format!("{}/byteorder", self.folder);
        if self.archive.index_for_name(&byteorder).is_some() {
            let order = self.read_entry(&byteorder, 16)?;
            if order.trim_ascii() != b"little" {
                return Err(CheckpointError::Layout {
                    path: self.path.clone(),
                    message: format!(
                        "storages are {}-endian; only little-endian is read",
                        String::from_utf8_lossy(&order)
                    ),
                });
            }
        }
        let pkl_entry = format!("{}/data.pkl", self.folder);
        let pkl = self.read_entry(&pkl_entry, MAX_PICKLE_BYTES)?;
        let root = pickle::load(&pkl).map_err(|e| CheckpointError::Pickle {
            path: self.path.clone(),
            entry: pkl_entry.clone(),
            offset: e.offset,
            message: e.message,
        })?;
        let entries = state_dict(&root).map_err(|message| CheckpointError::StateDict {
            path: self.path.clone(),
            entry: pkl_entry.clone(),
            message,
        })?;

        let mut tensors = Vec::new();
        let mut skipped = Vec::new();
        for (name, view) in entries {
            match view.storage.dtype {
                Dtype::F32 => {
                    let data = self.gather_f32(&name, &view)?;
                    tensors.push(OwnedTensor { name, shape: view.shape.clone(), data });
                }
                // BatchNorm's training-step counter: meaningless for inference, and folded away.
                Dtype::I64 if name.ends_with(".num_batches_tracked") => skipped.push(name),
                other => return Err(CheckpointError::Dtype { path: self.path, tensor: name, dtype: other.name() }),
            }
        }
        Ok(Checkpoint { tensors, skipped, folder: self.folder })
    }

    /// Reads a whole entry, refusing one that declares more than `max` bytes.
    fn read_entry(&mut self, name: &str, max: u64) -> Result<Vec<u8>, CheckpointError> {
        let zip_error = |path: &Path, message: String| CheckpointError::Zip {
            path: path.into(),
            entry: Some(name.to_string()),
            message,
        };
        let mut file = self.archive.by_name(name).map_err(|e| zip_error(&self.path, e.to_string()))?;
        let size = file.size();
        if size > max {
            return Err(zip_error(&self.path, format!("declares {size} bytes, more than the {max} expected")));
        }
        // The declared size is the file's word, not yet backed by data: reserve at most a
        // little up front and let the read grow the buffer as bytes actually arrive.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(PREALLOCATE_BYTES));
        (&mut file).take(size).read_to_end(&mut bytes).map_err(|e| zip_error(&self.path, e.to_string()))?;
        if bytes.len() as u64 != size {
            return Err(zip_error(
                &self.path,
                format!("holds {} bytes, its header says {size} (truncated?)", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    fn tensor_error(&self, tensor: &str, message: String) -> CheckpointError {
        CheckpointError::Tensor { path: self.path.clone(), tensor: tensor.to_string(), message }
    }

    /// The tensor's values in row-major order, gathered from its storage.
    fn gather_f32(&mut self, name: &str, view: &TensorRef) -> Result<Vec<f32>, CheckpointError> {
        let storage = &view.storage;
        let entry = format!("{}/data/{}", self.folder, storage.key);
        let storage_bytes = storage.numel.checked_mul(4).ok_or_else(|| {
            self.tensor_error(name, format!("storage `{entry}` of {} elements is too large", storage.numel))
        })?;
        if !self.storages.contains_key(&storage.key) {
            if self.archive.index_for_name(&entry).is_none() {
                return Err(self.tensor_error(name, format!("storage entry `{entry}` is missing")));
            }
            let bytes = self.read_entry(&entry, storage_bytes as u64)?;
            if bytes.len() != storage_bytes {
                return Err(self.tensor_error(
                    name,
                    format!(
                        "storage `{entry}` holds {} bytes, the pickle says {} float32 values ({storage_bytes} bytes)",
                        bytes.len(),
                        storage.numel
                    ),
                ));
            }
            self.storages.insert(storage.key.clone(), bytes);
        }
        let bytes = &self.storages[&storage.key];
        gather(bytes, view).map_err(|message| self.tensor_error(name, format!("storage `{entry}`: {message}")))
    }
}

/// The (name, tensor) pairs of the state_dict: the root dict itself, or the dict under `model` or
/// `state_dict` when the checkpoint wraps it (as training scripts often do).
fn state_dict(root: &Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(map) = root else {
        return Err(format!("the pickle holds a {}, not a state_dict", root.kind()));
    };
    let wrapped = map.entries.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(inner)) if matches!(&**k, "model" | "state_dict") => Some(inner),
        _ => None,
    });
    let map = wrapped.unwrap_or(map);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(map.entries.len());
    for (key, value) in &map.entries {
        let Value::Str(name) = key else {
            return Err(format!("state_dict key is a {}, not a str", key.kind()));
        };
        let Value::Tensor(tensor) = value else {
            return Err(format!("state_dict entry `{name}` is a {}, not a tensor", value.kind()));
        };
        if !seen.insert(name.clone()) {
            return Err(format!("state_dict lists `{name}` twice"));
        }
        out.push((name.to_string(), (**tensor).clone()));
    }
    Ok(out)
}

/// Copies a strided float32 view out of little-endian storage bytes, bounds-checked.
fn gather(bytes: &[u8], view: &TensorRef) -> Result<Vec<f32>, String> {
    let storage_numel = bytes.len() / 4;
    let numel = shape_numel(&view.shape).ok_or_else(|| format!("shape {} is too large", shape_text(&view.shape)))?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // A saved weight never holds more values than its storage; a view that does (stride 0, or
    // overlapping) would size the output from the file's shape alone.
    if numel > storage_numel {
        return Err(format!(
            "view of shape {} holds {numel} values, more than the storage's {storage_numel}",
            shape_text(&view.shape)
        ));
    }
    // Largest element index the view touches; strides are non-negative in torch.
    let last = view
        .shape
        .iter()
        .zip(&view.stride)
        .try_fold(view.offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|reach| acc.checked_add(reach)));
    let in_bounds = last.is_some_and(|last| last < storage_numel);
    if !in_bounds {
        return Err(format!(
            "view (offset {}, shape {}, stride {}) reaches past the storage's {} values (byte {})",
            view.offset,
            shape_text(&view.shape),
            shape_text(&view.stride),
            storage_numel,
            bytes.len()
        ));
    }
    let value = |i: usize| {
        let b = &bytes[i * 4..i * 4 + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    if is_contiguous(&view.shape, &view.stride) {
        return Ok((view.offset..view.offset + numel).map(value).collect());
    }
    // Odometer over the row-major index; `at` follows it through the strides.
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; view.shape.len()];
    let mut at = view.offset;
    for _ in 0..numel {
        out.push(value(at));
        // Wrapping: a size-1 dimension may carry any stride, so `at` can step out and straight
        // back; every index actually read was bounds-checked above.
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            at = at.wrapping_add(view.stride[dim]);
            if index[dim] < view.shape[dim] {
                break;
            }
            at = at.wrapping_sub(view.stride[dim].wrapping_mul(view.shape[dim]));
            index[dim] = 0;
        }
    }
    Ok(out)
}

/// Row-major contiguous, ignoring the stride of size-1 dimensions (torch leaves those arbitrary).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    use super::pickle::StorageRef;

    fn view(offset: usize, shape: &[usize], stride: &[usize]) -> TensorRef {
        let storage = Rc::new(StorageRef { key: "0".into(), dtype: Dtype::F32, location: "cpu".into(), numel: 6 });
        TensorRef { storage, offset, shape: shape.to_vec(), stride: stride.to_vec() }
    }

    fn storage(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn gathers_contiguous_and_strided_views() {
        let bytes = storage(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // As a 2×3 matrix [[0,1,2],[3,4,5]]: its transpose, a column slice, a scalar.
        assert_eq!(gather(&bytes, &view(0, &[2, 3], &[3, 1])).unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(gather(&bytes, &view(0, &[3, 2], &[1, 3])).unwrap(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(gather(&bytes, &view(1, &[2, 2], &[3, 1])).unwrap(), [1.0, 2.0, 4.0, 5.0]);
        assert_eq!(gather(&bytes, &view(4, &[], &[])).unwrap(), [4.0]);
        assert_eq!(gather(&bytes, &view(0, &[2, 0], &[3, 1])).unwrap(), Vec::<f32>::new());
        // Size-1 dimensions may carry any stride and still be contiguous.
        assert_eq!(gather(&bytes, &view(2, &[1, 3, 1], &[99, 1, 7])).unwrap(), [2.0, 3.0, 4.0]);
        assert_eq!(gather(&bytes, &view(0, &[2, 1], &[2, usize::MAX])).unwrap(), [0.0, 2.0]);
    }

    #[test]
    fn views_past_the_storage_are_errors() {
        let bytes = storage(&[0.0; 6]);
        let err = gather(&bytes, &view(1, &[2, 3], &[3, 1])).unwrap_err();
        assert!(err.contains("reaches past the storage's 6 values"), "{err}");
        assert!(gather(&bytes, &view(0, &[2, 3], &[usize::MAX, 1])).is_err());
        assert!(gather(&bytes, &view(0, &[usize::MAX, usize::MAX], &[1, 1])).is_err());
    }
}
