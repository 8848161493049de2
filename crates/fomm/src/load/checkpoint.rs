//! Reading First Order Motion Model checkpoints into named Candle tensors, without running
//! anything from the file.
//!
//! Three file layouts are recognised by their first bytes (the extension is not trusted):
//!
//! * **PyTorch legacy** (`torch.save` before 1.6, and with `_use_new_zipfile_serialization=False`;
//!   the published FOMM `.pth.tar` files, which are *not* tar archives). The file is several
//!   pickles back to back: a magic number (the integer `0x1950a86a20f9469cfc6c`), the format
//!   version 1001, a small dict describing the writer's machine (endianness, type sizes), the
//!   object itself, and a list of storage keys. Tensors inside the object are pickled as calls to
//!   `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, where `storage` is a
//!   persistent id `('storage', <storage class>, key, location, numel, view)`. After the key list,
//!   each storage follows in the list's order as a little-endian `u64` element count and then its
//!   raw little-endian elements.
//! * **PyTorch zip** (torch >= 1.6 default): a zip archive holding `<dir>/data.pkl` (the object)
//!   and one uncompressed record `<dir>/data/<key>` per storage; persistent ids are
//!   `('storage', <storage class>, key, location, numel)`. The directory name varies.
//! * **safetensors**: an 8-byte little-endian header length, a JSON header, then the raw tensors;
//!   read with `candle_core::safetensors`.
//!
//! A FOMM training checkpoint is a dict with `generator`, `kp_detector`, `discriminator`, three
//! optimizer states and `epoch`. Only the `generator` and `kp_detector` state dicts are decoded;
//! the result maps `generator.<name>` / `kp_detector.<name>` to tensors, the key layout of the
//! safetensors files this module writes. Storages that no needed tensor uses are never copied,
//! but the legacy framing of all of them is still checked.
//!
//! Safety: the pickles are decoded by the crate's own `load::pickle` reader, which never imports
//! or calls anything; this module only *interprets* recorded calls to the tensor-rebuilding
//! functions. Every size
//! taken from the file is checked against the file's length before memory is reserved, tensor
//! views are checked to stay inside their storage, and the bytes of all tensors together may not
//! exceed twice the file's size (plus 1 MiB). Every malformed input gives a [`CheckpointError`].
//!
//! Tensors are created on the CPU in their stored type: float32 storages become `F32`, int64
//! (`num_batches_tracked`) `I64`; float64, float16, bfloat16, int32, int16, uint8 and bool (as
//! `U8`) are kept as such. int8 and complex tensors are rejected.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use zip::ZipArchive;
use zip::result::ZipError;

use super::pickle::{self, Global, ObjId, Object, Pickle, PickleError, StorageKind};

/// The legacy format's magic number `0x1950a86a20f9469cfc6c` (torch/serialization.py,
/// `MAGIC_NUMBER`), as the little-endian bytes of its LONG1 pickle.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The legacy format's version (torch/serialization.py, `PROTOCOL_VERSION`).
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// The state dicts a FOMM checkpoint must provide (Logger.save_cpk in the original logger.py).
const MODEL_KEYS: [&str; 2] = ["generator", "kp_detector"];

/// Deflate cannot expand data by more than about 1032:1 (zlib technical details), so a deflated
/// zip record that claims more is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// How deep `_rebuild_parameter(_rebuild_tensor_v2(...))`-style wrappers may nest.
const MAX_REBUILD_DEPTH: usize = 4;

/// How the checkpoint was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// PyTorch before 1.6: concatenated pickles followed by raw storages.
    LegacyPickle,
    /// PyTorch 1.6 and later: a zip archive with `data.pkl` and `data/<key>` records.
    ZipPickle,
    /// A safetensors file.
    Safetensors,
}

/// The FOMM weights: `generator.*` and `kp_detector.*` tensors, on the CPU.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The layout the file was read from.
    pub format: CheckpointFormat,
    /// Tensors by name (`generator.<name>`, `kp_detector.<name>`), in their stored type.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Everything that can be wrong with a checkpoint file. `path` is the file (or the origin given to
/// [`Checkpoint::from_bytes`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read.
    #[error(
        "cannot read the checkpoint {path}: {source}; check that the file exists and is readable"
    )]
    Io {
        /// The checkpoint file.
        path: String,
        /// The error from reading it.
        source: std::io::Error,
    },
    /// The file has no bytes.
    #[error("the checkpoint {path} is empty: the download failed; download it again")]
    Empty {
        /// The checkpoint file.
        path: String,
    },
    /// The first bytes match none of the three layouts.
    #[error(
        "{path} is not a checkpoint this program can read (it starts with {head}); expected a \
         PyTorch .pth/.pth.tar file (legacy or zip format) or a .safetensors file"
    )]
    UnknownFormat {
        /// The checkpoint file.
        path: String,
        /// Its first (up to 8) bytes in hex, with a note when it is a tar archive.
        head: String,
    },
    /// One of the file's pickles could not be decoded.
    #[error(
        "{path}: cannot decode the {part} pickle: {source}; the checkpoint is corrupt or truncated, \
         download it again"
    )]
    Pickle {
        /// The checkpoint file.
        path: String,
        /// Which pickle: "magic-number", "format-version", "system-info", "main",
        /// "storage-key list" (legacy) or "data.pkl" (zip).
        part: &'static str,
        /// What the pickle decoder found wrong.
        source: PickleError,
    },
    /// The file starts with a pickle, but not with the legacy magic number and version 1001.
    #[error(
        "{path} starts like a pickle but is not a PyTorch legacy checkpoint ({detail}); save the \
         model with torch.save"
    )]
    NotLegacyCheckpoint {
        /// The checkpoint file.
        path: String,
        /// What was found instead.
        detail: String,
    },
    /// The legacy file ends inside a storage or its element count.
    #[error(
        "{path}: the file ends after {file_len} bytes while reading {what} (expected {missing} \
         more): the checkpoint is truncated, download it again"
    )]
    Truncated {
        /// The checkpoint file.
        path: String,
        /// The file's length in bytes.
        file_len: usize,
        /// What was being read (`storage '<key>'` or its size).
        what: String,
        /// Bytes missing at the end.
        missing: u64,
    },
    /// A legacy storage's element count times its element size exceeds the file's length.
    #[error(
        "{path}: storage '{key}' claims {numel} elements of {element_size} bytes, more than the \
         whole file ({file_len} bytes): the checkpoint is corrupt, download it again"
    )]
    StorageTooLarge {
        /// The checkpoint file.
        path: String,
        /// The storage's key.
        key: String,
        /// The element count the file gives for it.
        numel: u64,
        /// Bytes per element of its storage type.
        element_size: usize,
        /// The file's length in bytes.
        file_len: usize,
    },
    /// The checkpoint was written on a big-endian machine (legacy `little_endian: False`, or a
    /// zip `byteorder` record saying "big").
    #[error(
        "{path}: the checkpoint was written on a big-endian machine, which is not supported; \
         load and re-save it with PyTorch on a little-endian (x86/ARM) machine"
    )]
    BigEndian {
        /// The checkpoint file.
        path: String,
    },
    /// The decoded objects are not laid out as a FOMM checkpoint (not a dict, an empty or
    /// non-dict state dict, inconsistent storages, no or several `data.pkl` records, ...).
    #[error(
        "{path}: unexpected checkpoint layout: {detail}; is this a First Order Motion Model \
         checkpoint (a dict with 'generator' and 'kp_detector' state dicts)?"
    )]
    Structure {
        /// The checkpoint file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The `generator` or `kp_detector` state dict is missing.
    #[error(
        "{path}: the checkpoint has no '{name}' entry (top-level keys: {found}); FOMM checkpoints \
         from the original repository have 'generator' and 'kp_detector'"
    )]
    MissingModel {
        /// The checkpoint file.
        path: String,
        /// The missing entry: "generator" or "kp_detector".
        name: &'static str,
        /// The top-level keys found (at most 20), or for safetensors which prefix had no tensor.
        found: String,
    },
    /// A tensor's value, storage reference, size, stride or view is malformed or out of range.
    #[error(
        "{path}: tensor '{name}' is malformed: {detail}; the checkpoint is corrupt, download it again"
    )]
    Tensor {
        /// The checkpoint file.
        path: String,
        /// The tensor's full name (`generator.<name>` or `kp_detector.<name>`).
        name: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A tensor has a type that is not loaded (int8 or complex storages; in safetensors, any type
    /// Candle reads other than u8, u32, i16, i32, i64, bf16, f16, f32 and f64).
    #[error(
        "{path}: tensor '{name}' is stored as {storage}, which is not supported (FOMM weights are \
         float32); convert the checkpoint to float32"
    )]
    UnsupportedStorage {
        /// The checkpoint file.
        path: String,
        /// The tensor's full name.
        name: String,
        /// Its storage class (`torch.CharStorage`, ...) or Candle dtype.
        storage: String,
    },
    /// The tensors together would take more than twice the file's size plus 1 MiB.
    #[error(
        "{path}: the tensors would need more than {budget} bytes, over twice the file's size \
         (storages are shared in an unusual way); refusing to load"
    )]
    TooLarge {
        /// The checkpoint file.
        path: String,
        /// The byte budget that would be exceeded.
        budget: usize,
    },
    /// The zip archive could not be opened, or a record in it could not be looked up.
    #[error("{path}: the zip archive is damaged: {source}; download the checkpoint again")]
    Zip {
        /// The checkpoint file.
        path: String,
        /// The zip reader's error.
        source: ZipError,
    },
    /// A record the zip checkpoint needs (a storage's `<dir>/data/<key>`) is absent.
    #[error(
        "{path}: the zip checkpoint has no record '{record}': the archive is incomplete, download \
         it again"
    )]
    MissingRecord {
        /// The checkpoint file.
        path: String,
        /// The record's name inside the archive.
        record: String,
    },
    /// A zip record has an impossible size, does not match its storage, or fails to decompress
    /// (CRC included).
    #[error("{path}: cannot read zip record '{record}': {detail}; download the checkpoint again")]
    Record {
        /// The checkpoint file.
        path: String,
        /// The record's name inside the archive.
        record: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Candle could not parse the safetensors file.
    #[error("{path}: not a valid safetensors file: {source}; re-create or download it again")]
    Safetensors {
        /// The checkpoint file.
        path: String,
        /// Candle's error.
        source: Box<candle_core::Error>,
    },
    /// Candle refused to build a tensor from the gathered bytes.
    #[error("{path}: cannot create tensor '{name}': {source}")]
    Candle {
        /// The checkpoint file.
        path: String,
        /// The tensor's full name.
        name: String,
        /// Candle's error.
        source: Box<candle_core::Error>,
    },
    /// [`Checkpoint::save_safetensors`] could not write or rename the file.
    #[error("cannot write {path}: {detail}; check the directory exists and is writable")]
    Write {
        /// The file being written.
        path: String,
        /// What failed.
        detail: String,
    },
}

type Result<T, E = CheckpointError> = std::result::Result<T, E>;

impl Checkpoint {
    /// Read a checkpoint file; the format is detected from its contents.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: origin.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, &origin)
    }

    /// Decode a checkpoint held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Checkpoint> {
        let path = origin.to_owned();
        let format = detect_format(bytes).map_err(|head| {
            if bytes.is_empty() {
                CheckpointError::Empty { path: path.clone() }
            } else {
                CheckpointError::UnknownFormat {
                    path: path.clone(),
                    head,
                }
            }
        })?;
        let tensors = match format {
            CheckpointFormat::LegacyPickle => load_legacy(bytes, &path)?,
            CheckpointFormat::ZipPickle => load_zip(bytes, &path)?,
            CheckpointFormat::Safetensors => load_safetensors(bytes, &path)?,
        };
        Ok(Checkpoint { format, tensors })
    }

    /// Write all tensors (`generator.*`, `kp_detector.*`) to a safetensors file. The file is written
    /// next to `path` first and renamed into place, so a failed write leaves no partial file.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let write_err = |detail: String| CheckpointError::Write {
            path: path.display().to_string(),
            detail,
        };
        let map: HashMap<&str, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        if let Err(e) = candle_core::safetensors::save(&map, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e.to_string()));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(e.to_string())
        })
    }
}

/// The format from the first bytes; on failure a hex dump of them.
fn detect_format(bytes: &[u8]) -> std::result::Result<CheckpointFormat, String> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(CheckpointFormat::ZipPickle);
    }
    if bytes.first() == Some(&0x80) {
        return Ok(CheckpointFormat::LegacyPickle);
    }
    if let (Some(len), Some(b'{')) = (bytes.get(..8), bytes.get(8)) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(len);
        let header_len = u64::from_le_bytes(buf);
        if header_len <= (bytes.len() - 8) as u64 {
            return Ok(CheckpointFormat::Safetensors);
        }
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut head = format!("bytes {}", head.join(" "));
    if bytes.get(257..262) == Some(b"ustar") {
        head.push_str(", a tar archive: very old (torch < 0.1.10) checkpoints are not supported");
    }
    Err(head)
}

fn parse_part(bytes: &[u8], start: usize, part: &'static str, path: &str) -> Result<Pickle> {
    pickle::parse(bytes, start).map_err(|source| CheckpointError::Pickle {
        path: path.to_owned(),
        part,
        source,
    })
}

fn structure(path: &str, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::Structure {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy format

fn load_legacy(bytes: &[u8], path: &str) -> Result<BTreeMap<String, Tensor>> {
    let not_legacy = |detail: String| CheckpointError::NotLegacyCheckpoint {
        path: path.to_owned(),
        detail,
    };
    let magic = parse_part(bytes, 0, "magic-number", path)?;
    match magic.get(magic.root()) {
        Object::BigInt(b) if b.as_slice() == LEGACY_MAGIC => {}
        _ => {
            return Err(not_legacy(format!(
                "its first value is {}, not the magic number",
                magic.describe(magic.root())
            )));
        }
    }
    let version = parse_part(bytes, magic.end(), "format-version", path)?;
    if version.as_int(version.root()) != Some(LEGACY_PROTOCOL_VERSION) {
        return Err(not_legacy(format!(
            "format version {}, expected {LEGACY_PROTOCOL_VERSION}",
            version.describe(version.root())
        )));
    }
    let sys_info = parse_part(bytes, version.end(), "system-info", path)?;
    if let Some(little) = sys_info.dict_get(sys_info.root(), "little_endian")
        && sys_info.get(little) == &Object::Bool(false)
    {
        return Err(CheckpointError::BigEndian {
            path: path.to_owned(),
        });
    }
    let main = parse_part(bytes, sys_info.end(), "main", path)?;
    let keys_pickle = parse_part(bytes, main.end(), "storage-key list", path)?;
    let keys = keys_pickle
        .as_sequence(keys_pickle.root())
        .ok_or_else(|| {
            structure(
                path,
                format!(
                    "the storage-key list is {}, not a list",
                    keys_pickle.describe(keys_pickle.root())
                ),
            )
        })?
        .iter()
        .map(|&k| storage_key(&keys_pickle, k))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| structure(path, "the storage-key list holds a non-string key"))?;

    let infos = storage_infos(&main, path)?;
    let mut ranges = HashMap::with_capacity(keys.len());
    let mut pos = keys_pickle.end();
    for key in keys {
        let &(element_size, declared) = infos.get(&key).ok_or_else(|| {
            structure(
                path,
                format!("storage '{key}' is listed but no tensor refers to it"),
            )
        })?;
        let count_bytes = bytes
            .get(pos..)
            .and_then(|rest| rest.get(..8))
            .ok_or_else(|| CheckpointError::Truncated {
                path: path.to_owned(),
                file_len: bytes.len(),
                what: format!("the size of storage '{key}'"),
                missing: (pos as u64 + 8).saturating_sub(bytes.len() as u64),
            })?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(count_bytes);
        let numel = u64::from_le_bytes(buf);
        pos += 8;
        let too_large = || CheckpointError::StorageTooLarge {
            path: path.to_owned(),
            key: key.clone(),
            numel,
            element_size,
            file_len: bytes.len(),
        };
        let nbytes = numel
            .checked_mul(element_size as u64)
            .filter(|&n| n <= bytes.len() as u64)
            .ok_or_else(too_large)?;
        let available = bytes.len().saturating_sub(pos) as u64;
        if nbytes > available {
            return Err(CheckpointError::Truncated {
                path: path.to_owned(),
                file_len: bytes.len(),
                what: format!("storage '{key}'"),
                missing: nbytes - available,
            });
        }
        if numel != declared {
            return Err(structure(
                path,
                format!("storage '{key}' holds {numel} elements but its tensors say {declared}"),
            ));
        }
        // nbytes <= available <= usize::MAX, so the conversion holds.
        let end = pos + nbytes as usize;
        ranges.insert(key, (pos, end));
        pos = end;
    }
    let mut source = StorageSource::Legacy { bytes, ranges };
    extract_models(&main, &mut source, path, bytes.len())
}

/// A storage key: a string (an int is accepted and printed).
fn storage_key(p: &Pickle, id: ObjId) -> Option<String> {
    match p.get(id) {
        Object::Str(s) => Some(s.clone()),
        Object::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Element size and element count of every storage the pickle mentions (for the legacy
/// framing). Persistent ids that are no storage references are skipped here.
fn storage_infos(main: &Pickle, path: &str) -> Result<HashMap<String, (usize, u64)>> {
    let mut infos: HashMap<String, (usize, u64)> = HashMap::new();
    for obj in main.objects() {
        let Object::PersistentId(pid) = obj else {
            continue;
        };
        let Ok(r) = parse_storage_ref(main, *pid) else {
            continue;
        };
        let info = (r.kind.element_size(), r.numel);
        if let Some(previous) = infos.insert(r.key.clone(), info)
            && previous != info
        {
            return Err(structure(
                path,
                format!(
                    "storage '{}' is described inconsistently ({} vs {} elements of {} vs {} bytes)",
                    r.key, previous.1, info.1, previous.0, info.0
                ),
            ));
        }
    }
    Ok(infos)
}

// ---------------------------------------------------------------------------------------------
// Zip format

fn load_zip(bytes: &[u8], path: &str) -> Result<BTreeMap<String, Tensor>> {
    let zip_err = |source| CheckpointError::Zip {
        path: path.to_owned(),
        source,
    };
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(Cow::into_owned))
        .collect();
    let pickles: Vec<&String> = names
        .iter()
        .filter(|n| match n.strip_suffix("data.pkl") {
            Some("") => true,
            Some(dir) => dir.ends_with('/') && dir.matches('/').count() == 1,
            None => false,
        })
        .collect();
    let pkl_name = match pickles.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(structure(
                path,
                "the zip archive has no <dir>/data.pkl record, so it is no PyTorch checkpoint",
            ));
        }
        _ => {
            return Err(structure(
                path,
                format!("the zip archive has several data.pkl records: {pickles:?}"),
            ));
        }
    };
    let prefix = pkl_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_owned();

    let byteorder = format!("{prefix}byteorder");
    if names.contains(&byteorder) {
        let order = read_record(&mut archive, &byteorder, None, path, bytes.len())?;
        if order.as_slice() == b"big" {
            return Err(CheckpointError::BigEndian {
                path: path.to_owned(),
            });
        }
        if order.as_slice() != b"little" {
            return Err(structure(
                path,
                format!("record '{byteorder}' is neither 'little' nor 'big'"),
            ));
        }
    }

    let pkl = read_record(&mut archive, &pkl_name, None, path, bytes.len())?;
    let main = parse_part(&pkl, 0, "data.pkl", path)?;
    let mut source = StorageSource::Zip {
        archive,
        prefix,
        file_len: bytes.len(),
        cache: HashMap::new(),
    };
    extract_models(&main, &mut source, path, bytes.len())
}

/// Read a whole zip record, with its size checked before anything is reserved and its CRC
/// checked by reading to the end.
fn read_record(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    record: &str,
    expected: Option<u64>,
    path: &str,
    file_len: usize,
) -> Result<Vec<u8>> {
    let record_err = |detail: String| CheckpointError::Record {
        path: path.to_owned(),
        record: record.to_owned(),
        detail,
    };
    let mut file = match archive.by_name(record) {
        Ok(f) => f,
        Err(ZipError::FileNotFound) => {
            return Err(CheckpointError::MissingRecord {
                path: path.to_owned(),
                record: record.to_owned(),
            });
        }
        Err(source) => {
            return Err(CheckpointError::Zip {
                path: path.to_owned(),
                source,
            });
        }
    };
    let size = file.size();
    if let Some(expected) = expected
        && size != expected
    {
        return Err(record_err(format!(
            "it holds {size} bytes but the storage needs {expected}"
        )));
    }
    let compressed = file.compressed_size();
    if compressed > file_len as u64 {
        return Err(record_err(format!(
            "it claims {compressed} stored bytes, more than the whole file ({file_len} bytes)"
        )));
    }
    let bound = match file.compression() {
        zip::CompressionMethod::Stored => compressed,
        _ => compressed
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(64),
    };
    if size > bound {
        return Err(record_err(format!(
            "it claims {size} bytes, impossible for {compressed} stored bytes"
        )));
    }
    let capacity = usize::try_from(size)
        .map_err(|_| record_err(format!("{size} bytes do not fit in memory")))?;
    let mut buf = Vec::with_capacity(capacity);
    (&mut file)
        .take(size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| record_err(e.to_string()))?;
    if buf.len() as u64 != size {
        return Err(record_err(format!(
            "it holds {} bytes but its header says {size}",
            buf.len()
        )));
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Safetensors

fn load_safetensors(bytes: &[u8], path: &str) -> Result<BTreeMap<String, Tensor>> {
    let all = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|source| {
        CheckpointError::Safetensors {
            path: path.to_owned(),
            source: Box::new(source),
        }
    })?;
    let mut tensors = BTreeMap::new();
    for (name, tensor) in all {
        if !MODEL_KEYS.iter().any(|m| {
            name.strip_prefix(m)
                .is_some_and(|rest| rest.starts_with('.'))
        }) {
            continue;
        }
        match tensor.dtype() {
            DType::U8
            | DType::U32
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::BF16
            | DType::F16
            | DType::F32
            | DType::F64 => {}
            other => {
                return Err(CheckpointError::UnsupportedStorage {
                    path: path.to_owned(),
                    name,
                    storage: format!("{other:?}"),
                });
            }
        }
        tensors.insert(name, tensor);
    }
    for model in MODEL_KEYS {
        let prefix = format!("{model}.");
        if !tensors.keys().any(|k| k.starts_with(&prefix)) {
            return Err(CheckpointError::MissingModel {
                path: path.to_owned(),
                name: model,
                found: "no tensor named '".to_owned() + &prefix + "*'",
            });
        }
    }
    Ok(tensors)
}

// ---------------------------------------------------------------------------------------------
// Interpreting the pickled object

/// Where storage bytes come from.
enum StorageSource<'a> {
    /// Byte ranges of the file, per storage key (framing already validated).
    Legacy {
        bytes: &'a [u8],
        ranges: HashMap<String, (usize, usize)>,
    },
    /// `<prefix>data/<key>` records, read on first use.
    Zip {
        archive: ZipArchive<Cursor<&'a [u8]>>,
        prefix: String,
        file_len: usize,
        cache: HashMap<String, Vec<u8>>,
    },
}

impl StorageSource<'_> {
    /// The raw bytes of storage `key` (exactly `numel * element_size` of them).
    fn get(&mut self, r: &StorageRef, path: &str, tensor: &str) -> Result<&[u8]> {
        let tensor_err = |detail: String| CheckpointError::Tensor {
            path: path.to_owned(),
            name: tensor.to_owned(),
            detail,
        };
        let nbytes = r
            .numel
            .checked_mul(r.kind.element_size() as u64)
            .ok_or_else(|| tensor_err(format!("storage '{}' size overflows", r.key)))?;
        match self {
            StorageSource::Legacy { bytes, ranges } => {
                let &(start, end) = ranges.get(&r.key).ok_or_else(|| {
                    tensor_err(format!(
                        "storage '{}' is not in the file's storage list",
                        r.key
                    ))
                })?;
                if (end - start) as u64 != nbytes {
                    return Err(tensor_err(format!(
                        "storage '{}' has {} bytes, expected {nbytes}",
                        r.key,
                        end - start
                    )));
                }
                bytes
                    .get(start..end)
                    .ok_or_else(|| tensor_err(format!("storage '{}' is out of range", r.key)))
            }
            StorageSource::Zip {
                archive,
                prefix,
                file_len,
                cache,
            } => {
                if !cache.contains_key(&r.key) {
                    let record = format!("{prefix}data/{}", r.key);
                    let data = read_record(archive, &record, Some(nbytes), path, *file_len)?;
                    cache.insert(r.key.clone(), data);
                }
                cache
                    .get(&r.key)
                    .map(Vec::as_slice)
                    .ok_or_else(|| tensor_err(format!("storage '{}' vanished", r.key)))
            }
        }
    }
}

/// A decoded `('storage', class, key, location, numel[, view])` persistent id.
struct StorageRef {
    kind: StorageKind,
    key: String,
    numel: u64,
    /// Legacy views of a larger storage: (element offset, element count) within it.
    view: Option<(u64, u64)>,
}

fn non_negative(p: &Pickle, id: ObjId, what: &str) -> std::result::Result<u64, String> {
    p.as_int(id)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{what} is {}, not a non-negative integer", p.describe(id)))
}

fn parse_storage_ref(p: &Pickle, pid: ObjId) -> std::result::Result<StorageRef, String> {
    let items = p
        .as_sequence(pid)
        .ok_or_else(|| format!("persistent id {} is not a tuple", p.describe(pid)))?;
    let (tag, class, key, _location, numel, view) = match items {
        [t, c, k, l, n] => (*t, *c, *k, *l, *n, None),
        [t, c, k, l, n, v] => (*t, *c, *k, *l, *n, Some(*v)),
        _ => {
            return Err(format!(
                "persistent id {} has the wrong shape",
                p.describe(pid)
            ));
        }
    };
    if p.as_str(tag) != Some("storage") {
        return Err(format!(
            "persistent id {} is not a storage reference",
            p.describe(pid)
        ));
    }
    let kind = match p.get(class) {
        Object::Global(Global::Storage { kind, .. }) => *kind,
        _ => {
            return Err(format!(
                "storage class {} is not a known PyTorch storage type",
                p.describe(class)
            ));
        }
    };
    let key = storage_key(p, key).ok_or_else(|| format!("storage key {}", p.describe(key)))?;
    let numel = non_negative(p, numel, "the storage size")?;
    let view = match view.map(|v| p.get(v)) {
        None | Some(Object::None) => None,
        Some(Object::Tuple(v)) => match v.as_slice() {
            [_view_key, offset, size] => Some((
                non_negative(p, *offset, "the view offset")?,
                non_negative(p, *size, "the view size")?,
            )),
            _ => return Err("storage view metadata has the wrong shape".to_owned()),
        },
        Some(_) => return Err("storage view metadata is not a tuple".to_owned()),
    };
    Ok(StorageRef {
        kind,
        key,
        numel,
        view,
    })
}

/// Find `generator` and `kp_detector` in the top-level dict and rebuild their tensors.
fn extract_models(
    main: &Pickle,
    source: &mut StorageSource<'_>,
    path: &str,
    file_len: usize,
) -> Result<BTreeMap<String, Tensor>> {
    let root = main.root();
    let Object::Dict(top) = main.get(root) else {
        return Err(structure(
            path,
            format!("the checkpoint is {}, not a dict", main.describe(root)),
        ));
    };
    let mut budget = Budget {
        left: file_len.saturating_mul(2).saturating_add(1 << 20),
        total: file_len.saturating_mul(2).saturating_add(1 << 20),
    };
    let mut tensors = BTreeMap::new();
    for model in MODEL_KEYS {
        let state = main.dict_get(root, model).ok_or_else(|| {
            let found: Vec<String> = top
                .iter()
                .take(20)
                .map(|(k, _)| main.describe(*k))
                .collect();
            CheckpointError::MissingModel {
                path: path.to_owned(),
                name: model,
                found: found.join(", "),
            }
        })?;
        let Object::Dict(entries) = main.get(state) else {
            return Err(structure(
                path,
                format!("'{model}' is {}, not a state dict", main.describe(state)),
            ));
        };
        if entries.is_empty() {
            return Err(structure(
                path,
                format!("the '{model}' state dict is empty"),
            ));
        }
        for &(k, v) in entries {
            let name = main.as_str(k).ok_or_else(|| {
                structure(
                    path,
                    format!("'{model}' has a non-string key {}", main.describe(k)),
                )
            })?;
            let full = format!("{model}.{name}");
            let tensor = rebuild_value(main, v, &full, source, path, &mut budget, 0)?;
            tensors.insert(full, tensor);
        }
    }
    Ok(tensors)
}

/// Bytes the tensors may still take.
struct Budget {
    left: usize,
    total: usize,
}

fn rebuild_value(
    p: &Pickle,
    id: ObjId,
    name: &str,
    source: &mut StorageSource<'_>,
    path: &str,
    budget: &mut Budget,
    depth: usize,
) -> Result<Tensor> {
    match p.get(id) {
        Object::Call { callable, args } => {
            rebuild_call(p, *callable, *args, name, source, path, budget, depth)
        }
        _ => Err(CheckpointError::Tensor {
            path: path.to_owned(),
            name: name.to_owned(),
            detail: format!("the value is {}, not a tensor", p.describe(id)),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn rebuild_call(
    p: &Pickle,
    callable: ObjId,
    args: ObjId,
    name: &str,
    source: &mut StorageSource<'_>,
    path: &str,
    budget: &mut Budget,
    depth: usize,
) -> Result<Tensor> {
    let tensor_err = |detail: String| CheckpointError::Tensor {
        path: path.to_owned(),
        name: name.to_owned(),
        detail,
    };
    if depth > MAX_REBUILD_DEPTH {
        return Err(tensor_err(
            "tensor wrappers are nested too deeply".to_owned(),
        ));
    }
    let items = p.as_sequence(args).ok_or_else(|| {
        tensor_err(format!(
            "the arguments {} are not a tuple",
            p.describe(args)
        ))
    })?;
    match (p.get(callable), items) {
        (Object::Global(Global::RebuildTensorV2 | Global::RebuildTensor), [s, o, sz, st, ..]) => {
            rebuild_tensor(p, [*s, *o, *sz, *st], name, source, path, budget)
        }
        (
            Object::Global(Global::RebuildParameter | Global::RebuildParameterWithState),
            [data, ..],
        ) => rebuild_value(p, *data, name, source, path, budget, depth + 1),
        (Object::Global(Global::RebuildFromTypeV2), [func, _new_type, inner, ..]) => {
            rebuild_call(p, *func, *inner, name, source, path, budget, depth + 1)
        }
        _ => Err(tensor_err(format!(
            "the value is built by {} with {} argument(s), which is not a tensor this loader \
             understands (nothing from the file is executed)",
            p.describe(callable),
            items.len()
        ))),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`: copy the view out as a
/// contiguous tensor.
fn rebuild_tensor(
    p: &Pickle,
    [storage, offset, size, stride]: [ObjId; 4],
    name: &str,
    source: &mut StorageSource<'_>,
    path: &str,
    budget: &mut Budget,
) -> Result<Tensor> {
    let tensor_err = |detail: String| CheckpointError::Tensor {
        path: path.to_owned(),
        name: name.to_owned(),
        detail,
    };
    let Object::PersistentId(pid) = p.get(storage) else {
        return Err(tensor_err(format!(
            "its storage is {}, not a storage reference",
            p.describe(storage)
        )));
    };
    let r = parse_storage_ref(p, *pid).map_err(tensor_err)?;
    let dtype = match r.kind {
        StorageKind::Float => DType::F32,
        StorageKind::Double => DType::F64,
        StorageKind::Half => DType::F16,
        StorageKind::BFloat16 => DType::BF16,
        StorageKind::Long => DType::I64,
        StorageKind::Int => DType::I32,
        StorageKind::Short => DType::I16,
        StorageKind::Byte | StorageKind::Bool | StorageKind::Untyped => DType::U8,
        StorageKind::Char | StorageKind::ComplexFloat | StorageKind::ComplexDouble => {
            return Err(CheckpointError::UnsupportedStorage {
                path: path.to_owned(),
                name: name.to_owned(),
                storage: format!("torch.{}", r.kind.class_name()),
            });
        }
    };
    let offset = non_negative(p, offset, "the storage offset").map_err(tensor_err)?;
    let ints = |id: ObjId, what: &str| -> std::result::Result<Vec<u64>, String> {
        p.as_sequence(id)
            .ok_or_else(|| format!("{what} {} is not a tuple", p.describe(id)))?
            .iter()
            .map(|&d| non_negative(p, d, what))
            .collect()
    };
    let size = ints(size, "the size").map_err(tensor_err)?;
    let stride = ints(stride, "the stride").map_err(tensor_err)?;
    if size.len() != stride.len() {
        return Err(tensor_err(format!(
            "size {size:?} and stride {stride:?} differ in length"
        )));
    }
    let element_size = r.kind.element_size();
    let data = source.get(&r, path, name)?;
    let data = match r.view {
        None => data,
        Some((view_offset, view_len)) => view_offset
            .checked_add(view_len)
            .filter(|&end| end <= r.numel)
            .and_then(|end| {
                let start = usize::try_from(view_offset).ok()?.checked_mul(element_size)?;
                let end = usize::try_from(end).ok()?.checked_mul(element_size)?;
                data.get(start..end)
            })
            .ok_or_else(|| {
                tensor_err(format!(
                    "storage view {view_offset}+{view_len} lies outside storage '{}' of {} elements",
                    r.key, r.numel
                ))
            })?,
    };
    let numel = size
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| tensor_err(format!("size {size:?} overflows")))?;
    let nbytes = numel
        .checked_mul(element_size as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| tensor_err(format!("size {size:?} overflows")))?;
    if nbytes > budget.left {
        return Err(CheckpointError::TooLarge {
            path: path.to_owned(),
            budget: budget.total,
        });
    }
    let mut out = gather(data, element_size, offset, &size, &stride).map_err(tensor_err)?;
    budget.left -= nbytes;
    to_native_endian(&mut out, element_size);
    let dims = size
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| tensor_err(format!("size {size:?} overflows")))?;
    Tensor::from_raw_buffer(&out, dtype, &dims, &Device::Cpu).map_err(|source| {
        CheckpointError::Candle {
            path: path.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }
    })
}

/// Copy the strided view `offset`/`size`/`stride` (in elements) of `data` into a contiguous
/// buffer, after checking that every element it touches lies inside `data` and that it has no
/// more elements than the storage (expanded stride-0 views are refused).
fn gather(
    data: &[u8],
    element_size: usize,
    offset: u64,
    size: &[u64],
    stride: &[u64],
) -> std::result::Result<Vec<u8>, String> {
    let storage_numel = (data.len() / element_size.max(1)) as u64;
    let numel = size
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or("the size overflows")?;
    if numel == 0 {
        return if offset <= storage_numel {
            Ok(Vec::new())
        } else {
            Err(format!(
                "storage offset {offset} is past the storage's {storage_numel} elements"
            ))
        };
    }
    let last = size
        .iter()
        .zip(stride)
        .try_fold(offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        })
        .ok_or("the view's extent overflows")?;
    if last >= storage_numel {
        return Err(format!(
            "offset {offset}, size {size:?} and stride {stride:?} reach element {last}, but the \
             storage holds only {storage_numel}"
        ));
    }
    if numel > storage_numel {
        return Err(format!(
            "it has {numel} elements but its storage only {storage_numel} (expanded views are \
             not supported)"
        ));
    }
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| "the view does not fit in memory");
    let nbytes = to_usize(numel)? * element_size;
    let start = to_usize(offset)? * element_size;

    // Row-major strides for a contiguous tensor (dimensions of length 1 may have any stride).
    let mut expected = 1u64;
    let mut contiguous = true;
    for (&d, &s) in size.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            contiguous = false;
            break;
        }
        expected = expected.saturating_mul(d);
    }
    if contiguous {
        return data
            .get(start..start + nbytes)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "the view lies outside its storage".to_owned());
    }

    let mut out = Vec::with_capacity(nbytes);
    let mut index = vec![0u64; size.len()];
    let mut linear = offset;
    for _ in 0..numel {
        let at = to_usize(linear)? * element_size;
        let element = data
            .get(at..at + element_size)
            .ok_or("the view lies outside its storage")?;
        out.extend_from_slice(element);
        // Advance the multi-index, last dimension fastest.
        for ((i, &d), &s) in index.iter_mut().zip(size).zip(stride).rev() {
            // Wrapping: a length-1 dimension may carry any stride; the positions actually
            // visited were all bounds-checked above.
            *i += 1;
            linear = linear.wrapping_add(s);
            if *i < d {
                break;
            }
            linear = linear.wrapping_sub(s.wrapping_mul(d));
            *i = 0;
        }
    }
    Ok(out)
}

/// Storages are little-endian; Candle's buffers are native-endian.
#[cfg(target_endian = "little")]
fn to_native_endian(_bytes: &mut [u8], _element_size: usize) {}

#[cfg(target_endian = "big")]
fn to_native_endian(bytes: &mut [u8], element_size: usize) {
    for chunk in bytes.chunks_exact_mut(element_size.max(1)) {
        chunk.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_transposed_with_offset() {
        // storage [0..8) as u8, view offset 1, size (2, 3), stride (1, 2) -> [[1,3,5],[2,4,6]]
        let data: Vec<u8> = (0..8).collect();
        let out = gather(&data, 1, 1, &[2, 3], &[1, 2]).unwrap();
        assert_eq!(out, vec![1, 3, 5, 2, 4, 6]);
        let out = gather(&data, 1, 2, &[2, 2], &[2, 1]).unwrap();
        assert_eq!(out, vec![2, 3, 4, 5]);
        assert!(gather(&data, 1, 3, &[2, 3], &[1, 2]).is_err());
        assert!(gather(&data, 1, 0, &[4, 4], &[0, 0]).is_err());
        assert!(gather(&data, 1, 0, &[u64::MAX, 2], &[1, 1]).is_err());
        assert_eq!(gather(&data, 1, 8, &[0], &[1]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn detects_formats() {
        assert_eq!(
            detect_format(b"PK\x03\x04rest"),
            Ok(CheckpointFormat::ZipPickle)
        );
        assert_eq!(
            detect_format(b"\x80\x02"),
            Ok(CheckpointFormat::LegacyPickle)
        );
        assert_eq!(
            detect_format(b"\x02\0\0\0\0\0\0\0{}"),
            Ok(CheckpointFormat::Safetensors)
        );
        assert!(detect_format(b"\x09\0\0\0\0\0\0\0{}").is_err());
        assert!(detect_format(b"hello").is_err());
    }
}
