//! The fuzz targets: what each one runs, its seeds (made from the fixtures), its mutations and its
//! memory bound.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::load::pickle;
use marionette::app::settings::Settings;
use marionette::frame::Size;
use marionette::media::frames::{decode_budget, decode_image, natural_cmp, to_rgb8_like_pillow};
use marionette::media::video::parse_probe_output;
use marionette::output::convert::PixelFormat;

use super::engine::{Rng, Target, dictionary_from, mutate_bytes, mutate_text};

const KIB: usize = 1024;
const MIB: u64 = 1 << 20;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/fomm` beside the repository (or `$MARIONETTE_FIXTURES`).
fn fixtures() -> PathBuf {
    match std::env::var_os("MARIONETTE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => repo().join("../shared/fixtures/fomm"),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", path.display()))
}

/// Every target, in the order the reports list them.
pub fn all() -> Vec<Target> {
    vec![
        checkpoint(),
        pickle_target(),
        config(),
        settings(),
        image(),
        verify(),
        wire(),
        probe(),
        names(),
    ]
}

pub fn by_name(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: legacy pickle, zip and safetensors

/// A pickle writer (protocol 2), enough for PyTorch's checkpoint layouts.
#[derive(Default)]
struct Pk(Vec<u8>);

impl Pk {
    fn new() -> Self {
        Pk(vec![0x80, 2])
    }
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, text: &str) -> &mut Self {
        self.op(b'X')
            .raw(&(text.len() as u32).to_le_bytes())
            .raw(text.as_bytes())
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.op(b'K').op(v as u8)
        } else if i32::try_from(v).is_ok() {
            self.op(b'J').raw(&(v as i32).to_le_bytes())
        } else {
            self.op(0x8a).op(8).raw(&v.to_le_bytes())
        }
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    /// A global, stored in memo slot `slot` the first time and fetched from it afterwards (as
    /// PyTorch's pickles do).
    fn memo_global(&mut self, module: &str, name: &str, slot: u8, memo: &mut Vec<u8>) -> &mut Self {
        if memo.contains(&slot) {
            self.op(b'h').op(slot)
        } else {
            memo.push(slot);
            self.global(module, name).op(b'q').op(slot)
        }
    }
    fn ints(&mut self, values: &[usize]) -> &mut Self {
        self.op(b'(');
        for &v in values {
            self.int(v as i64);
        }
        self.op(b't')
    }
    fn stop(mut self) -> Vec<u8> {
        self.0.push(b'.');
        self.0
    }
}

/// A small state dict taken from a fixture: a few of its smallest tensors (names, shapes, bytes).
struct SmallTensor {
    name: String,
    dims: Vec<usize>,
    dtype: DType,
    bytes: Vec<u8>,
}

fn small_tensors(fixture: &str, per_model: usize) -> Vec<SmallTensor> {
    let path = fixtures().join(fixture);
    let all = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("fuzz seed {}: {e}", path.display()));
    let mut out = Vec::new();
    for model in ["generator.", "kp_detector."] {
        let mut v: Vec<(&String, &Tensor)> =
            all.iter().filter(|(k, _)| k.starts_with(model)).collect();
        v.sort_by_key(|(k, t)| (t.elem_count(), (*k).clone()));
        // The smallest ones and one 4-D weight.
        let mut chosen: Vec<(&String, &Tensor)> = v.iter().take(per_model).copied().collect();
        if let Some(w) = v
            .iter()
            .find(|(_, t)| t.dims().len() == 4 && t.elem_count() <= 1024)
        {
            chosen.push(*w);
        }
        for (name, t) in chosen {
            let t = t.flatten_all().expect("flatten");
            let bytes = match t.dtype() {
                DType::I64 => t
                    .to_vec1::<i64>()
                    .expect("i64")
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                _ => t
                    .to_dtype(DType::F32)
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("f32")
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            let dtype = if t.dtype() == DType::I64 {
                DType::I64
            } else {
                DType::F32
            };
            let dims = all[name].dims().to_vec();
            out.push(SmallTensor {
                name: name.clone(),
                dims,
                dtype,
                bytes,
            });
        }
    }
    out
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn storage_class(dtype: DType) -> &'static str {
    if dtype == DType::I64 {
        "LongStorage"
    } else {
        "FloatStorage"
    }
}

/// The main object: `{'generator': OrderedDict(...), 'kp_detector': OrderedDict(...), 'epoch': 3}`
/// with every tensor a `_rebuild_tensor_v2` call on a persistent storage id; `legacy` adds the
/// legacy format's view element to the id. Tensor `i` uses storage key `i`.
fn main_pickle(tensors: &[SmallTensor], legacy: bool) -> Vec<u8> {
    let mut p = Pk::new();
    let mut memo = Vec::new();
    p.op(b'}').op(b'(');
    for model in ["generator", "kp_detector"] {
        p.s(model);
        p.memo_global("collections", "OrderedDict", 0, &mut memo)
            .op(b')')
            .op(b'R');
        p.op(b'(');
        for (i, t) in tensors.iter().enumerate() {
            let Some(local) = t.name.strip_prefix(&format!("{model}.")) else {
                continue;
            };
            let numel: usize = t.dims.iter().product();
            p.s(local);
            p.memo_global("torch._utils", "_rebuild_tensor_v2", 1, &mut memo);
            p.op(b'(').op(b'(').s("storage");
            let class = storage_class(t.dtype);
            p.memo_global(
                "torch",
                class,
                if t.dtype == DType::I64 { 2 } else { 3 },
                &mut memo,
            );
            p.s(&i.to_string()).s("cpu").int(numel as i64);
            if legacy {
                p.op(b'N');
            }
            p.op(b't').op(b'Q');
            p.int(0).ints(&t.dims).ints(&strides(&t.dims)).op(0x89);
            p.memo_global("collections", "OrderedDict", 0, &mut memo)
                .op(b')')
                .op(b'R');
            p.op(b't').op(b'R');
        }
        p.op(b'u');
    }
    p.s("epoch").int(3);
    p.op(b'u');
    p.stop()
}

fn legacy_checkpoint(tensors: &[SmallTensor]) -> Vec<u8> {
    let mut magic = Pk::new();
    magic
        .op(0x8a)
        .op(10)
        .raw(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    let mut version = Pk::new();
    version.op(b'M').raw(&1001u16.to_le_bytes());
    let mut sys = Pk::new();
    sys.op(b'}').op(b'(').s("protocol_version").int(1001);
    sys.s("little_endian")
        .op(0x88)
        .s("type_sizes")
        .op(b'}')
        .op(b'(');
    sys.s("short")
        .int(2)
        .s("int")
        .int(4)
        .s("long")
        .int(4)
        .op(b'u');
    sys.op(b'u');
    let mut keys = Pk::new();
    keys.op(b']').op(b'(');
    for i in 0..tensors.len() {
        keys.s(&i.to_string());
    }
    keys.op(b'e');
    let mut out = [
        magic.stop(),
        version.stop(),
        sys.stop(),
        main_pickle(tensors, true),
        keys.stop(),
    ]
    .concat();
    for t in tensors {
        let numel: usize = t.dims.iter().product();
        out.extend_from_slice(&(numel as u64).to_le_bytes());
        out.extend_from_slice(&t.bytes);
    }
    out
}

/// A stored (uncompressed) zip archive of the records; `None` when the zip writer refuses them
/// (e.g. two records of the same name).
fn zip_of(records: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        w.start_file(name.as_str(), options).ok()?;
        w.write_all(data).ok()?;
    }
    Some(w.finish().ok()?.into_inner())
}

fn zip_checkpoint(tensors: &[SmallTensor]) -> Vec<u8> {
    let mut records = vec![
        ("archive/data.pkl".to_string(), main_pickle(tensors, false)),
        ("archive/byteorder".to_string(), b"little".to_vec()),
    ];
    for (i, t) in tensors.iter().enumerate() {
        records.push((format!("archive/data/{i}"), t.bytes.clone()));
    }
    records.push(("archive/version".to_string(), b"3\n".to_vec()));
    zip_of(&records).expect("zip seed")
}

fn safetensors_checkpoint(tensors: &[SmallTensor]) -> Vec<u8> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|t| {
            let v = match t.dtype {
                DType::I64 => {
                    let vals: Vec<i64> = t
                        .bytes
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect();
                    Tensor::from_vec(vals, t.dims.as_slice(), &Device::Cpu)
                }
                _ => {
                    let vals: Vec<f32> = t
                        .bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect();
                    Tensor::from_vec(vals, t.dims.as_slice(), &Device::Cpu)
                }
            }
            .expect("seed tensor");
            (t.name.clone(), v)
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("seed.safetensors");
    candle_core::safetensors::save(&map, &path).expect("write safetensors seed");
    read(&path)
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (fixture, n) in [("tiny.safetensors", 4), ("tiny2.safetensors", 2)] {
        let t = small_tensors(fixture, n);
        seeds.push(legacy_checkpoint(&t));
        seeds.push(zip_checkpoint(&t));
        seeds.push(safetensors_checkpoint(&t));
    }
    seeds
}

/// The records of a zip archive (at most 64 of 1 MiB), or `None` when it cannot be read.
fn zip_records(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).ok()?;
    let mut records = Vec::new();
    for i in 0..archive.len().min(64) {
        let mut f = archive.by_index(i).ok()?;
        if f.size() > 1 << 20 {
            return None;
        }
        let mut buf = Vec::new();
        (&mut f).take(1 << 20).read_to_end(&mut buf).ok()?;
        let name = f.name().ok()?.into_owned();
        records.push((name, buf));
    }
    (!records.is_empty()).then_some(records)
}

/// Mutates a checkpoint: a zip's records or a safetensors header as such half of the time
/// (so that the archive's CRCs and the header's length stay right), else its bytes.
fn mutate_checkpoint(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[Vec<u8>]) {
    if data.starts_with(b"PK\x03\x04") && rng.chance(2) {
        let Some(mut records) = zip_records(data) else {
            return mutate_bytes(rng, data, other, dict);
        };
        // Mostly the pickle.
        let i = match records.iter().position(|(n, _)| n.ends_with("data.pkl")) {
            Some(p) if rng.below(4) != 0 => p,
            _ => rng.below(records.len()),
        };
        match rng.below(8) {
            0 => {
                // Rename a record.
                let name = &mut records[i].0;
                let mut bytes = name.clone().into_bytes();
                mutate_bytes(rng, &mut bytes, b"", dict);
                *name = String::from_utf8_lossy(&bytes).into_owned();
            }
            1 if records.len() > 1 => {
                records.remove(i);
            }
            _ => mutate_bytes(rng, &mut records[i].1, other, dict),
        }
        match zip_of(&records) {
            Some(z) => *data = z,
            None => mutate_bytes(rng, data, other, dict),
        }
        return;
    }
    if data.len() > 9 && data[8] == b'{' && rng.chance(2) {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8])) as usize;
        if n <= data.len() - 8 {
            let mut header = data[8..8 + n].to_vec();
            let body = data[8 + n..].to_vec();
            mutate_text(rng, &mut header, b"", dict);
            let mut out = (header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&body);
            *data = out;
            return;
        }
    }
    mutate_bytes(rng, data, other, dict);
}

fn exec_checkpoint(data: &[u8]) -> String {
    match Checkpoint::from_bytes(data, "fuzz.pth.tar") {
        Ok(c) => format!("ok {:?} {}", c.format, c.tensors.len().min(8)),
        Err(e) => e.to_string(),
    }
}

/// A reader may use what the file's bytes can back: tensors at most twice the file (plus 1 MiB,
/// the reader's own rule), a deflated zip record at most 1032 times its compressed size (deflate's
/// limit, which the reader checks), the pickle machine's objects a bounded amount per opcode byte.
fn checkpoint_bound(len: usize) -> u64 {
    4 * MIB + 1100 * len as u64
}

fn checkpoint() -> Target {
    let seeds = checkpoint_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"PK\x03\x04",
            b"PK\x01\x02",
            b"PK\x05\x06",
            b"PK\x06\x06",
            b"PK\x06\x07",
            b"\"dtype\"",
            b"\"shape\"",
            b"\"data_offsets\"",
            b"\"F64\"",
            b"\"BF16\"",
            b"\"__metadata__\"",
            b"ctorch._utils\n_rebuild_parameter\n",
            b"ctorch\nHalfStorage\n",
            b"ctorch\nBoolStorage\n",
            b"ctorch\nComplexFloatStorage\n",
        ],
    );
    Target {
        name: "checkpoint",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 64 * KIB,
        mutate: mutate_checkpoint,
        exec: exec_checkpoint,
        alloc_bound: checkpoint_bound,
        bound_text: "4 MiB + 1100 x input bytes (tensors <= 2 x file + 1 MiB; deflate <= 1032:1)",
    }
}

// ---------------------------------------------------------------------------------------------
// Pickles alone: the fixtures' own PyTorch pickles

/// The main pickle of a legacy checkpoint: the fourth pickle in the file.
fn legacy_main_pickle(bytes: &[u8]) -> Vec<u8> {
    let mut start = 0;
    for _ in 0..3 {
        start = pickle::parse(bytes, start).expect("fixture pickle").end();
    }
    let end = pickle::parse(bytes, start)
        .expect("fixture main pickle")
        .end();
    bytes[start..end].to_vec()
}

fn zip_pickle(bytes: &[u8]) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("fixture zip");
    let name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with("/data.pkl"))
        .expect("data.pkl in the fixture")
        .into_owned();
    let mut f = archive.by_name(&name).expect("data.pkl");
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).expect("read data.pkl");
    buf
}

fn pickle_seeds() -> Vec<Vec<u8>> {
    let legacy = read(&fixtures().join("tiny-legacy.pth.tar"));
    let mut seeds = vec![
        legacy_main_pickle(&legacy),
        zip_pickle(&read(&fixtures().join("tiny2-zip.pth.tar"))),
    ];
    // The small ones too: quicker to mutate.
    let t = small_tensors("tiny.safetensors", 3);
    seeds.push(main_pickle(&t, true));
    seeds.push(main_pickle(&t, false));
    seeds
}

fn exec_pickle(data: &[u8]) -> String {
    match pickle::parse(data, 0) {
        Ok(p) => {
            use pickle::Object as O;
            let kind = match p.get(p.root()) {
                O::None | O::Bool(_) | O::Int(_) | O::BigInt(_) | O::Float(_) => "scalar",
                O::Str(_) | O::Bytes(_) => "text",
                O::Tuple(_) | O::List(_) | O::Set(_) => "sequence",
                O::Dict(_) => "dict",
                O::Global(_) => "global",
                O::Call { .. } => "call",
                O::PersistentId(_) => "persistent",
            };
            format!("ok {kind}")
        }
        Err(e) => e.to_string(),
    }
}

fn pickle_target() -> Target {
    let seeds = pickle_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"(",
            b")",
            b".",
            b"0",
            b"1",
            b"2",
            b"F",
            b"I",
            b"J",
            b"K",
            b"L",
            b"M",
            b"N",
            b"P",
            b"Q",
            b"R",
            b"S",
            b"T",
            b"U",
            b"V",
            b"X",
            b"a",
            b"b",
            b"c",
            b"d",
            b"e",
            b"g",
            b"h",
            b"i",
            b"j",
            b"l",
            b"o",
            b"p",
            b"q",
            b"r",
            b"s",
            b"t",
            b"u",
            b"}",
            b"]",
            b"\x80\x02",
            b"\x80\x05",
            b"\x81",
            b"\x82",
            b"\x83",
            b"\x84",
            b"\x85",
            b"\x86",
            b"\x87",
            b"\x88",
            b"\x89",
            b"\x8a",
            b"\x8b",
            b"\x8c",
            b"\x8d",
            b"\x8e",
            b"\x8f",
            b"\x90",
            b"\x91",
            b"\x92",
            b"\x93",
            b"\x94",
            b"\x95",
            b"\x96",
            b"\x97",
            b"\x98",
        ],
    );
    Target {
        name: "pickle",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 160 * KIB,
        mutate: mutate_bytes,
        exec: exec_pickle,
        alloc_bound: |len| 4 * MIB + 160 * len as u64,
        bound_text: "4 MiB + 160 x input bytes (objects per opcode byte)",
    }
}

// ---------------------------------------------------------------------------------------------
// YAML configs

fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        read(&fixtures().join("tiny.yaml")),
        read(&fixtures().join("tiny2.yaml")),
    ];
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo().join("crates/fomm/configs"))
        .expect("crates/fomm/configs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    seeds.extend(names.iter().map(|p| read(p)));
    seeds
}

fn exec_config(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    match FommConfig::from_yaml_str(text, "fuzz.yaml") {
        Ok(c) => {
            // What the loader promises to the model builder.
            let (h, w) = c.frame_size;
            assert!(h > 0 && w > 0, "accepted frame size {h}x{w}");
            assert!(c.model.kp_detector_params.temperature > 0.0);
            format!(
                "ok {} {}",
                c.model.generator_params.dense_motion_params.is_some(),
                c.model.common_params.estimate_jacobian
            )
        }
        Err(e) => e.to_string(),
    }
}

fn text_bound(len: usize) -> u64 {
    4 * MIB + 256 * len as u64
}

fn config() -> Target {
    let seeds = config_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"&a ",
            b"*a",
            b"<<: *a",
            b"!!binary ",
            b"!!str ",
            b"!!float ",
            b"!!int ",
            b"!!map",
            b"!!seq",
            b"? ",
            b"- ",
            b"{",
            b"}",
            b"[",
            b"]",
            b"|",
            b">",
            b"---",
            b"...",
            b"%YAML 1.1",
            b"%TAG ! tag:x,2000:",
            b"\t",
            b"#",
            b"\"\\u0000\"",
            b"\"\\x00\"",
            b"'\\'",
            b"~",
            b"null",
        ],
    );
    Target {
        name: "config",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 32 * KIB,
        mutate: mutate_text,
        exec: exec_config,
        alloc_bound: text_bound,
        bound_text: "4 MiB + 256 x input bytes",
    }
}

// ---------------------------------------------------------------------------------------------
// Settings TOML

fn settings_seeds() -> Vec<Vec<u8>> {
    let mut s = Settings::default();
    let mut seeds = vec![
        toml::to_string_pretty(&s)
            .expect("default settings")
            .into_bytes(),
    ];
    s.avatar = Some("bundled:grace-hopper".into());
    s.source = Some(marionette::app::settings::SourceSetting::Camera(
        "/dev/video0".into(),
    ));
    s.adapt_scale = Some(true);
    s.crop.zoom = 1.7;
    s.crop.pan_x = -0.3;
    s.vcam.format = "i420".into();
    s.vcam.size = "1280x720".into();
    seeds.push(toml::to_string_pretty(&s).expect("settings").into_bytes());
    s.source = Some(marionette::app::settings::SourceSetting::Idle);
    seeds.push(toml::to_string(&s).expect("settings").into_bytes());
    seeds.push(b"overlay = true\n[crop]\nzoom = 2.0\n".to_vec());
    seeds.push(b"source = \"test-pattern\"\n[vcam]\ndevice = \"none\"\n".to_vec());
    seeds
}

fn exec_settings(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    match Settings::from_toml(text, Path::new("settings.toml")) {
        Ok(s) => {
            // What the window relies on.
            assert!(
                (0.0..=1.0).contains(&s.overlay_opacity),
                "opacity {}",
                s.overlay_opacity
            );
            let c = s.crop;
            assert!(
                c.zoom.is_finite() && c.pan_x.is_finite() && c.pan_y.is_finite(),
                "crop {c:?}"
            );
            let size = s.vcam.size.parse::<Size>().is_ok();
            let format = s.vcam.format.parse::<PixelFormat>().is_ok();
            // Saving what was loaded works and loads back the same.
            let again = toml::to_string_pretty(&s).expect("settings serialise");
            let back = Settings::from_toml(&again, Path::new("again.toml"))
                .unwrap_or_else(|e| panic!("saved settings do not load back: {e}\n{again}"));
            assert_eq!(back, s, "settings change on a save and load");
            format!("ok {size} {format} {:?}", s.source.is_some())
        }
        Err(e) => e.to_string(),
    }
}

fn settings() -> Target {
    let seeds = settings_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"[[crop]]",
            b"[vcam]",
            b"[crop]",
            b"[source]",
            b"camera = ",
            b"\"\"\"",
            b"'''",
            b"inf",
            b"-inf",
            b"nan",
            b"+nan",
            b"1979-05-27T07:32:00Z",
            b"1979-05-27",
            b"07:32:00",
            b"{ }",
            b"[ ]",
            b"\\u0000",
            b"\\U0010FFFF",
            b"a.b.c = 1",
            b"\"a\" = 1",
            b"0x_1",
        ],
    );
    Target {
        name: "settings",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 16 * KIB,
        mutate: mutate_text,
        exec: exec_settings,
        alloc_bound: text_bound,
        bound_text: "4 MiB + 256 x input bytes",
    }
}

// ---------------------------------------------------------------------------------------------
// Pictures: portraits and driving folders

fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode seed picture");
    out.into_inner()
}

fn jpeg(rgb: &image::RgbImage, progressive: bool, grey: bool) -> Vec<u8> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (space, data): (mozjpeg::ColorSpace, Vec<u8>) = if grey {
        let g = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
        (mozjpeg::ColorSpace::JCS_GRAYSCALE, g.into_raw())
    } else {
        (mozjpeg::ColorSpace::JCS_RGB, rgb.as_raw().clone())
    };
    let mut c = mozjpeg::Compress::new(space);
    if progressive {
        c.set_progressive_mode();
    } else {
        c.set_fastest_defaults();
    }
    c.set_size(w, h);
    c.set_quality(80.0);
    let mut started = c.start_compress(Vec::new()).expect("jpeg start");
    started.write_scanlines(&data).expect("jpeg scanlines");
    started.finish().expect("jpeg finish")
}

fn image_seeds() -> Vec<Vec<u8>> {
    let src = marionette::media::frames::load_rgb(&fixtures().join("tiny2-input-source.png"))
        .expect("fixture portrait");
    let small = image::imageops::resize(&src, 16, 12, image::imageops::FilterType::Triangle);
    let odd = image::imageops::resize(&src, 9, 7, image::imageops::FilterType::Triangle);
    let rgb = image::DynamicImage::ImageRgb8(small.clone());
    let mut seeds = vec![
        encode(&rgb, image::ImageFormat::Png),
        encode(
            &image::DynamicImage::ImageRgba8(rgb.to_rgba8()),
            image::ImageFormat::Png,
        ),
        encode(
            &image::DynamicImage::ImageLuma8(rgb.to_luma8()),
            image::ImageFormat::Png,
        ),
        encode(
            &image::DynamicImage::ImageRgb16(rgb.to_rgb16()),
            image::ImageFormat::Png,
        ),
        encode(
            &image::DynamicImage::ImageLumaA8(rgb.to_luma_alpha8()),
            image::ImageFormat::Png,
        ),
        encode(&rgb, image::ImageFormat::Bmp),
        encode(&rgb, image::ImageFormat::Tiff),
        encode(
            &image::DynamicImage::ImageRgba8(rgb.to_rgba8()),
            image::ImageFormat::WebP,
        ),
        encode(
            &image::DynamicImage::ImageRgb8(odd.clone()),
            image::ImageFormat::Png,
        ),
        jpeg(&small, false, false),
        jpeg(&small, true, false),
        jpeg(&small, false, true),
        jpeg(&odd, true, false),
    ];
    // The decoder tests' JPEGs (CMYK, restart markers, 4:2:2, damaged data) that are small.
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/data/jpeg"))
        .expect("tests/data/jpeg")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    seeds.extend(
        names
            .iter()
            .map(|p| read(p))
            .filter(|b| b.len() <= 16 * KIB),
    );
    seeds
}

/// Recomputes the CRC of every chunk of a PNG whose chunk lengths still add up.
fn fix_png_crcs(data: &mut [u8]) {
    let mut pos = 8;
    while pos + 12 <= data.len() {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let Some(end) = (pos + 8).checked_add(len) else {
            return;
        };
        if end + 4 > data.len() {
            return;
        }
        let crc = crc32(&data[pos + 4..end]);
        data[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end + 4;
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn mutate_image(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[Vec<u8>]) {
    mutate_bytes(rng, data, other, dict);
    if data.starts_with(b"\x89PNG\r\n\x1a\n") && !rng.chance(4) {
        fix_png_crcs(data);
    }
}

fn exec_image(data: &[u8]) -> String {
    match decode_image(data, Path::new("fuzz-picture")) {
        Ok(img) => {
            let color = img.color();
            let (w, h) = (img.width(), img.height());
            let rgb = to_rgb8_like_pillow(img);
            assert_eq!((rgb.width(), rgb.height()), (w, h));
            format!("ok {color:?}")
        }
        Err(e) => e.to_string(),
    }
}

fn image() -> Target {
    let seeds = image_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"IHDR",
            b"IDAT",
            b"IEND",
            b"PLTE",
            b"tRNS",
            b"acTL",
            b"fcTL",
            b"iCCP",
            b"eXIf",
            b"\xff\xd8\xff",
            b"\xff\xc0",
            b"\xff\xc2",
            b"\xff\xc4",
            b"\xff\xda",
            b"\xff\xdb",
            b"\xff\xdd",
            b"\xff\xd9",
            b"\xff\xee",
            b"Adobe",
            b"RIFF",
            b"WEBP",
            b"VP8L",
            b"VP8 ",
            b"VP8X",
            b"ALPH",
            b"II*\0",
            b"MM\0*",
            b"BM",
        ],
    );
    Target {
        name: "image",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 32 * KIB,
        mutate: mutate_image,
        exec: exec_image,
        alloc_bound: |len| 2 * decode_budget(len) + 4 * MIB,
        bound_text: "twice the decoded size a file may declare (max(32 MiB, 2048 x file bytes), \
                     at most 1 GiB: decoders keep working buffers) + 4 MiB",
    }
}

/// `marionette verify` on a still: decode, then the mark's detector over the picture.
fn exec_verify(data: &[u8]) -> String {
    match decode_image(data, Path::new("fuzz-picture")) {
        Ok(img) => {
            let rgb = to_rgb8_like_pillow(img);
            let mut d = marionette::watermark::Detector::default();
            d.add_rgb(rgb.as_raw(), rgb.width(), rgb.height());
            let v = d.verdict();
            assert!((0.0..=1.0).contains(&v.p_false), "{v:?}");
            format!("ok marked={}", v.marked)
        }
        Err(e) => e.to_string(),
    }
}

fn verify() -> Target {
    Target {
        name: "verify",
        exec: exec_verify,
        alloc_bound: |len| 4 * decode_budget(len) + 4 * MIB,
        bound_text: "four times the decoded size a file may declare (the detector's summed-area \
                     table holds 8 bytes a pixel) + 4 MiB",
        ..image()
    }
}

// ---------------------------------------------------------------------------------------------
// The remote-rendering protocol: a byte stream from a peer

/// A stream with one message of each kind, framed as a peer sends them.
fn wire_seeds() -> Vec<Vec<u8>> {
    use marionette::motion::KeypointSet;
    use marionette::remote::wire::{Codec, CodecSet, Message, VERSIONS, frame};
    let kp = KeypointSet {
        points: (0..10).map(|i| [i as f32 * 0.2 - 1.0, 0.5]).collect(),
        jacobians: Some(vec![[[1.0, 0.0], [0.0, 1.0]]; 10]),
    };
    let messages = [
        Message::Hello {
            versions: VERSIONS,
            codecs: CodecSet::of(&[Codec::Raw, Codec::H264]),
        },
        Message::Welcome {
            version: 1,
            side: 256,
            keypoints: 10,
            jacobians: true,
            codec: Codec::H264,
        },
        Message::Refused {
            reason: "full".into(),
        },
        Message::Portrait {
            id: 3,
            side: 16,
            rgb: (0..16 * 16 * 3).map(|i| i as u8).collect(),
        },
        Message::Reference {
            keypoints: kp.clone(),
        },
        Message::Motion {
            seq: 9,
            keypoints: kp,
        },
        Message::Frame {
            seq: 9,
            codec: Codec::H264,
            data: vec![0, 0, 0, 1, 0x65, 0x88, 0x84],
        },
    ];
    let stream = |ms: &[Message]| -> Vec<u8> {
        ms.iter()
            .flat_map(|m| {
                let mut body = Vec::new();
                m.encode(&mut body).expect("a seed message");
                frame(&body).expect("a seed frame")
            })
            .collect()
    };
    let mut seeds = vec![stream(&messages)];
    seeds.extend(messages.chunks(1).map(stream));
    seeds
}

/// The server's and the client's reading of a stream: whole bodies cut out, each decoded; a
/// decoded message encodes back to the same bytes.
fn exec_wire(data: &[u8]) -> String {
    use marionette::remote::wire::{Framer, Message};
    let mut framer = Framer::default();
    framer.push(data);
    let mut n = 0;
    loop {
        match framer.next_body() {
            Ok(Some(body)) => match Message::decode(&body) {
                Ok(m) => {
                    let mut again = Vec::new();
                    m.encode(&mut again).expect("a decoded message encodes");
                    assert_eq!(again, body, "{m:?} encodes to other bytes");
                    n += 1;
                }
                Err(e) => return e.to_string(),
            },
            Ok(None) if n > 0 && framer.pending() == 0 => return format!("ok {n} messages"),
            Ok(None) => return format!("cut short after {n} messages"),
            Err(e) => return e.to_string(),
        }
    }
}

fn wire() -> Target {
    Target {
        name: "wire",
        seeds: wire_seeds(),
        refused_seeds: 0,
        dict: vec![
            b"MRNT".to_vec(),
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0, 0x80, 0xc0, 0x7f],
        ],
        max_len: 64 * 1024,
        mutate: mutate_bytes,
        exec: exec_wire,
        alloc_bound: |len| 4 * len as u64 + 64 * 1024,
        bound_text: "four times the input (the framer's buffer, a body, its message and the \
                     message encoded again) + 64 KiB",
    }
}

// ---------------------------------------------------------------------------------------------
// ffprobe output

fn probe_seeds() -> Vec<Vec<u8>> {
    let dir = repo().join("tests/fuzz/seeds/probe");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    names.iter().map(|p| read(p)).collect()
}

fn exec_probe(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    match parse_probe_output(&text, Path::new("fuzz.mp4")) {
        Ok(info) => {
            assert!(info.width > 0 && info.height > 0);
            assert!(info.fps.is_finite() && info.fps > 0.0, "fps {}", info.fps);
            assert!([0, 90, 180, 270].contains(&info.rotation));
            // The reader reserves this before ffmpeg sends anything.
            let buf: Vec<u8> = Vec::with_capacity(info.initial_frame_buffer());
            drop(buf);
            format!(
                "ok {} {} {}",
                info.frame_bytes().is_some(),
                info.has_audio,
                info.rotation
            )
        }
        Err(e) => e.to_string(),
    }
}

fn probe() -> Target {
    let seeds = probe_seeds();
    let dict = dictionary_from(
        &seeds,
        &[
            b"[STREAM]\n",
            b"[/STREAM]\n",
            b"[SIDE_DATA]\n",
            b"[/SIDE_DATA]\n",
            b"TAG:rotate=",
            b"rotation=",
            b"codec_type=video\n",
            b"codec_type=audio\n",
            b"width=",
            b"height=",
            b"nb_frames=",
            b"avg_frame_rate=",
            b"r_frame_rate=",
            b"=",
            b"\r\n",
            b"N/A",
        ],
    );
    Target {
        name: "probe",
        seeds,
        // e-m4a.txt: ffprobe's output for an audio-only file, which is no driving video.
        refused_seeds: 1,
        dict,
        max_len: 16 * KIB,
        mutate: mutate_text,
        exec: exec_probe,
        alloc_bound: |len| 64 * MIB + 64 * len as u64,
        bound_text: "64 MiB (a frame buffer reserved before any data) + 64 x input bytes",
    }
}

// ---------------------------------------------------------------------------------------------
// Names of driving frames: natural order must be a total order (sorting panics otherwise)

fn exec_names(data: &[u8]) -> String {
    use std::cmp::Ordering;
    let text = String::from_utf8_lossy(data);
    let mut names: Vec<&str> = text.split('\n').take(24).collect();
    for a in &names {
        assert_eq!(natural_cmp(a, a), Ordering::Equal, "{a:?}");
        for b in &names {
            let ab = natural_cmp(a, b);
            assert_eq!(ab, natural_cmp(b, a).reverse(), "{a:?} {b:?}");
            for c in &names {
                if ab != Ordering::Greater && natural_cmp(b, c) != Ordering::Greater {
                    assert_ne!(natural_cmp(a, c), Ordering::Greater, "{a:?} {b:?} {c:?}");
                }
            }
        }
    }
    names.sort_by(|a, b| natural_cmp(a, b).then_with(|| a.cmp(b)));
    format!("ok {}", names.len().min(4))
}

fn names() -> Target {
    let seeds: Vec<Vec<u8>> = vec![
        b"frame_000001.png\nframe_000010.png\nframe_000002.png".to_vec(),
        b"1.png\n01.png\n001.png\n10.png\n2.png\na.png".to_vec(),
        b"x99\nx123456789012345678901234567890\nx0099\nx099a\nx99b".to_vec(),
        "\u{e9}t\u{e9} 2.jpg\n\u{e9}t\u{e9} 10.jpg\n\u{e9}t\u{e9}02.jpg"
            .as_bytes()
            .to_vec(),
    ];
    let dict = dictionary_from(
        &seeds,
        &[b"0", b"00", b"9", b".", b"-", b"\xc3\xa9", b"\xef\xbc\x91"],
    );
    Target {
        name: "names",
        seeds,
        refused_seeds: 0,
        dict,
        max_len: 512,
        mutate: mutate_text,
        exec: exec_names,
        alloc_bound: |len| MIB + 64 * len as u64,
        bound_text: "1 MiB + 64 x input bytes",
    }
}
