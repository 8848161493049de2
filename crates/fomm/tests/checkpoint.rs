//! Checkpoint reader tests: the fixture checkpoints in all three formats must decode to exactly the
//! same tensors, and malformed files (truncated, bit-flipped, crafted) must give errors, not
//! panics, huge allocations or execution.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use candle_core::{DType, Tensor};
use common::fixture;
use fomm::load::checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Raw little-endian bytes of a tensor, for bitwise comparison.
fn raw_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => t
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => t
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U8 => t.to_vec1::<u8>().unwrap(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn assert_same_tensors(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    let ka: Vec<&String> = a.keys().collect();
    let kb: Vec<&String> = b.keys().collect();
    assert_eq!(ka, kb, "key sets differ");
    for (name, ta) in a {
        let tb = &b[name];
        assert_eq!(ta.dtype(), tb.dtype(), "{name}: dtype");
        assert_eq!(ta.dims(), tb.dims(), "{name}: shape");
        assert!(raw_bytes(ta) == raw_bytes(tb), "{name}: values differ");
    }
}

fn load_reference(name: &str) -> BTreeMap<String, Tensor> {
    let map = candle_core::safetensors::load(fixture(name), &candle_core::Device::Cpu).unwrap();
    map.into_iter().collect()
}

#[test]
fn legacy_checkpoint_matches_safetensors() {
    let ckpt = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    assert_eq!(ckpt.format, CheckpointFormat::LegacyPickle);
    let reference = load_reference("tiny.safetensors");
    assert_same_tensors(&ckpt.tensors, &reference);
    // Parameter counts from the fixture README: kp_detector 118080, generator 146439 (the
    // state dicts also hold BatchNorm buffers, so count only float tensors that are not
    // running statistics).
    let count = |prefix: &str| -> usize {
        ckpt.tensors
            .iter()
            .filter(|(k, t)| {
                k.starts_with(prefix)
                    && t.dtype() == DType::F32
                    && !k.ends_with("running_mean")
                    && !k.ends_with("running_var")
                    && !k.ends_with("down.weight")
            })
            .map(|(_, t)| t.elem_count())
            .sum()
    };
    assert_eq!(count("kp_detector."), 118080);
    assert_eq!(count("generator."), 146439);
    let nbt = &ckpt.tensors["kp_detector.predictor.encoder.down_blocks.0.norm.num_batches_tracked"];
    assert_eq!(nbt.dtype(), DType::I64);
    assert_eq!(nbt.dims(), &[] as &[usize]);
}

#[test]
fn zip_checkpoints_match_safetensors() {
    for (ckpt_name, st_name) in [
        ("tiny-zip.pth.tar", "tiny.safetensors"),
        ("tiny2-zip.pth.tar", "tiny2.safetensors"),
    ] {
        let ckpt = Checkpoint::load(&fixture(ckpt_name)).unwrap();
        assert_eq!(ckpt.format, CheckpointFormat::ZipPickle, "{ckpt_name}");
        assert_same_tensors(&ckpt.tensors, &load_reference(st_name));
    }
}

#[test]
fn safetensors_input_and_round_trip() {
    let st = Checkpoint::load(&fixture("tiny2.safetensors")).unwrap();
    assert_eq!(st.format, CheckpointFormat::Safetensors);
    assert_same_tensors(&st.tensors, &load_reference("tiny2.safetensors"));

    let legacy = Checkpoint::load(&fixture("tiny-legacy.pth.tar")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-converted.safetensors");
    legacy.save_safetensors(&out).unwrap();
    let back = Checkpoint::load(&out).unwrap();
    assert_eq!(back.format, CheckpointFormat::Safetensors);
    assert_same_tensors(&back.tensors, &legacy.tensors);
    assert_same_tensors(&back.tensors, &load_reference("tiny.safetensors"));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn format_is_detected_from_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let misnamed = dir.path().join("weights.safetensors");
    std::fs::copy(fixture("tiny2-zip.pth.tar"), &misnamed).unwrap();
    let ckpt = Checkpoint::load(&misnamed).unwrap();
    assert_eq!(ckpt.format, CheckpointFormat::ZipPickle);

    let err = Checkpoint::from_bytes(b"hello world, not a checkpoint", "junk.pth").unwrap_err();
    assert!(
        matches!(err, CheckpointError::UnknownFormat { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("junk.pth"), "{err}");
    let err = Checkpoint::from_bytes(b"", "empty.pth").unwrap_err();
    assert!(matches!(err, CheckpointError::Empty { .. }), "{err}");
    let err = Checkpoint::load(&dir.path().join("missing.pth.tar")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
}

fn truncation_offsets(len: usize) -> Vec<usize> {
    let mut offsets = vec![0, 1, 2, 5, 14, 15, 21, 100, 137, 1000, 5000, 50_000, 95_000];
    offsets.extend([len / 4, len / 2, len * 3 / 4, len - 100, len - 8, len - 1]);
    offsets.retain(|&o| o < len);
    offsets
}

#[test]
fn truncated_legacy_file_is_an_error() {
    let bytes = read_fixture("tiny-legacy.pth.tar");
    for cut in truncation_offsets(bytes.len()) {
        let result = Checkpoint::from_bytes(&bytes[..cut], "tiny-legacy.pth.tar");
        let err = result
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} loaded"));
        let msg = err.to_string();
        assert!(msg.contains("tiny-legacy.pth.tar"), "{msg}");
        if cut > 100_000 {
            // Inside the storage area (the pickles end at byte 95784).
            assert!(
                matches!(err, CheckpointError::Truncated { .. }),
                "cut {cut}: {msg}"
            );
            assert!(msg.contains("truncated"), "{msg}");
        }
    }
}

#[test]
fn truncated_zip_file_is_an_error() {
    for name in ["tiny-zip.pth.tar", "tiny.safetensors"] {
        let bytes = read_fixture(name);
        for cut in truncation_offsets(bytes.len()) {
            let result = Checkpoint::from_bytes(&bytes[..cut], name);
            assert!(result.is_err(), "{name} cut at {cut} loaded");
        }
    }
}

/// xorshift64*: a fixed, seeded sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for (name, seed, pickle_end) in [
        ("tiny-legacy.pth.tar", 0x1234_5678_9abc_def1u64, 95_784usize),
        ("tiny-zip.pth.tar", 0x0fed_cba9_8765_4321, 73_000),
        ("tiny.safetensors", 0x5555_aaaa_5555_aaaa, 25_700),
    ] {
        let original = read_fixture(name);
        let mut rng = Rng(seed);
        let (mut ok, mut errors) = (0, 0);
        for round in 0..150 {
            let mut bytes = original.clone();
            let flips = 1 + rng.below(4);
            for _ in 0..flips {
                // Most flips hit the metadata (pickle / zip headers / JSON), where they matter;
                // the rest anywhere, including the directory at the end of a zip.
                let pos = match round % 3 {
                    0 | 1 => rng.below(pickle_end.min(bytes.len())),
                    _ => rng.below(bytes.len()),
                };
                bytes[pos] ^= 1 << rng.below(8);
            }
            match Checkpoint::from_bytes(&bytes, name) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                }
            }
        }
        eprintln!("{name}: {ok} loaded, {errors} errors");
        assert!(errors > 0, "{name}: no flip was detected");
    }
}

#[test]
fn zip_without_a_storage_record_names_it() {
    let bytes = read_fixture("tiny-zip.pth.tar");
    let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut dropped = 0;
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).unwrap();
        // Storage 0 is the first generator tensor (dense_motion_network...conv.weight).
        if file.name().unwrap() == "tiny-zip.pth/data/0" {
            dropped += 1;
            continue;
        }
        writer.raw_copy_file(file).unwrap();
    }
    assert_eq!(dropped, 1);
    let rewritten = writer.finish().unwrap().into_inner();
    let err = Checkpoint::from_bytes(&rewritten, "rewritten.pth.tar").unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingRecord { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tiny-zip.pth/data/0"), "{err}");
}

#[test]
fn zip_with_a_wrong_sized_record_is_an_error() {
    let bytes = read_fixture("tiny2-zip.pth.tar");
    let mut archive = zip::ZipArchive::new(Cursor::new(&bytes)).unwrap();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..archive.len() {
        let file = archive.by_index_raw(i).unwrap();
        if file.name().unwrap() == "tiny2-zip.pth/data/0" {
            // Deflated (exercises the deflate path) and 4 bytes short.
            let short = vec![0u8; file.size() as usize - 4];
            writer.start_file("tiny2-zip.pth/data/0", options).unwrap();
            writer.write_all(&short).unwrap();
            continue;
        }
        writer.raw_copy_file(file).unwrap();
    }
    let rewritten = writer.finish().unwrap().into_inner();
    let err = Checkpoint::from_bytes(&rewritten, "short.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Record { .. }), "{err}");
    assert!(err.to_string().contains("data/0"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Crafted legacy files

/// A tiny pickle writer (protocol 2 opcodes).
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        P(vec![0x80, 2])
    }
    fn op(mut self, byte: u8) -> Self {
        self.0.push(byte);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn mark(self) -> Self {
        self.op(b'(')
    }
    fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
    fn s(self, text: &str) -> Self {
        let len = (text.len() as u32).to_le_bytes();
        self.op(b'X').raw(&len).raw(text.as_bytes())
    }
    fn int(self, v: u32) -> Self {
        let b = v.to_le_bytes();
        self.op(b'J').raw(&b)
    }
    fn long(self, v: u64) -> Self {
        self.op(0x8a).op(8).raw(&v.to_le_bytes())
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    fn tuple(self) -> Self {
        self.op(b't')
    }
    fn reduce(self) -> Self {
        self.op(b'R')
    }
    fn ordered_dict(self) -> Self {
        self.global("collections", "OrderedDict").op(b')').reduce()
    }
    fn ints(self, values: &[u32]) -> Self {
        values.iter().fold(self.mark(), |p, &v| p.int(v)).tuple()
    }
    /// `_rebuild_tensor_v2(('storage', class, key, location, numel, None), offset, size,
    /// stride, False, OrderedDict())`
    #[allow(clippy::too_many_arguments)]
    fn tensor(
        self,
        module: &str,
        class: &str,
        key: &str,
        location: &str,
        numel: u64,
        offset: u32,
        size: &[u32],
        stride: &[u32],
    ) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .mark()
            .mark()
            .s("storage")
            .global(module, class)
            .s(key)
            .s(location)
            .long(numel)
            .op(b'N')
            .tuple()
            .op(b'Q')
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(0x89)
            .ordered_dict()
            .tuple()
            .reduce()
    }
}

/// The four header pickles of the legacy format.
fn legacy_header() -> Vec<u8> {
    let magic = P::new()
        .op(0x8a)
        .op(10)
        .raw(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
        .stop();
    let version = P::new().op(b'M').raw(&1001u16.to_le_bytes()).stop();
    let sys_info = P::new()
        .op(b'}')
        .mark()
        .s("little_endian")
        .op(0x88)
        .op(b'u')
        .stop();
    [magic, version, sys_info].concat()
}

/// A storage key list pickle.
fn key_list(keys: &[&str]) -> Vec<u8> {
    keys.iter()
        .fold(P::new().op(b']').mark(), |p, k| p.s(k))
        .op(b'e')
        .stop()
}

fn storage(numel: u64, data: &[u8]) -> Vec<u8> {
    [numel.to_le_bytes().as_slice(), data].concat()
}

/// A well-formed crafted checkpoint: a transposed CUDA float tensor with an offset, a parameter
/// wrapper, a long scalar, and an optimizer entry built by `os.system` (never called).
fn crafted_legacy(optimizer: P) -> Vec<u8> {
    let main = P::new()
        .op(b'}')
        .mark()
        .s("generator")
        .ordered_dict()
        .mark()
        .s("w")
        // storage "1": 7 floats 0..7; view offset 1, size (2, 3), stride (1, 2)
        .tensor(
            "torch.cuda",
            "FloatStorage",
            "1",
            "cuda:0",
            7,
            1,
            &[2, 3],
            &[1, 2],
        )
        .s("bn.num_batches_tracked")
        .tensor("torch", "LongStorage", "2", "cpu", 1, 0, &[], &[])
        .op(b'u')
        .s("kp_detector")
        .ordered_dict()
        .mark()
        .s("p")
        .global("torch._utils", "_rebuild_parameter")
        .mark()
        .tensor("torch", "FloatStorage", "1", "cpu", 7, 0, &[7], &[1])
        .op(0x88)
        .ordered_dict()
        .tuple()
        .reduce()
        .op(b'u')
        .s("optimizer_generator");
    let main = optimizer
        .0
        .iter()
        .skip(2)
        .fold(main, |p, &b| p.op(b))
        .op(b'u')
        .stop();
    let floats: Vec<u8> = (0..7).flat_map(|i| (i as f32).to_le_bytes()).collect();
    [
        legacy_header(),
        main,
        key_list(&["1", "2"]),
        storage(7, &floats),
        storage(1, &12345i64.to_le_bytes()),
    ]
    .concat()
}

fn os_system_call(marker: &std::path::Path) -> P {
    P::new()
        .global("os", "system")
        .mark()
        .s(&format!("touch {}", marker.display()))
        .tuple()
        .reduce()
}

#[test]
fn crafted_legacy_file_loads_views_and_never_calls_globals() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let bytes = crafted_legacy(os_system_call(&marker));
    let ckpt = Checkpoint::from_bytes(&bytes, "crafted.pth.tar").unwrap();
    assert_eq!(ckpt.format, CheckpointFormat::LegacyPickle);
    let w = &ckpt.tensors["generator.w"];
    assert_eq!(w.dims(), &[2, 3]);
    assert_eq!(
        w.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]
    );
    let nbt = &ckpt.tensors["generator.bn.num_batches_tracked"];
    assert_eq!(nbt.to_scalar::<i64>().unwrap(), 12345);
    let p = &ckpt.tensors["kp_detector.p"];
    assert_eq!(
        p.to_vec1::<f32>().unwrap(),
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(ckpt.tensors.len(), 3);
    assert!(!marker.exists(), "os.system ran");
}

#[test]
fn non_whitelisted_global_in_a_model_is_an_error_and_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let call = os_system_call(&marker);
    let main = P::new()
        .op(b'}')
        .mark()
        .s("generator")
        .raw(&call.0[2..])
        .s("kp_detector")
        .ordered_dict()
        .op(b'u')
        .stop();
    let bytes = [legacy_header(), main, key_list(&[])].concat();
    let err = Checkpoint::from_bytes(&bytes, "evil.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Structure { .. }), "{err}");
    assert!(err.to_string().contains("os.system"), "{err}");
    assert!(!marker.exists(), "os.system ran");

    // The same call as a tensor value inside a state dict.
    let call = os_system_call(&marker);
    let main = P::new()
        .op(b'}')
        .mark()
        .s("generator")
        .ordered_dict()
        .mark()
        .s("w")
        .raw(&call.0[2..])
        .op(b'u')
        .s("kp_detector")
        .ordered_dict()
        .op(b'u')
        .stop();
    let bytes = [legacy_header(), main, key_list(&[])].concat();
    let err = Checkpoint::from_bytes(&bytes, "evil.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Tensor { .. }), "{err}");
    assert!(err.to_string().contains("os.system"), "{err}");
    assert!(!marker.exists(), "os.system ran");
}

#[test]
fn unsupported_and_unknown_opcodes_are_named() {
    // EXT1 (0x82) inside the optimizer entry.
    let bytes = crafted_legacy(P::new().op(0x82).op(1));
    let err = Checkpoint::from_bytes(&bytes, "ext.pth.tar").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Pickle { .. }), "{msg}");
    assert!(msg.contains("EXT1") && msg.contains("0x82"), "{msg}");
    assert!(msg.contains("offset"), "{msg}");

    // 0xff is no opcode at all.
    let bytes = crafted_legacy(P::new().op(0xff));
    let err = Checkpoint::from_bytes(&bytes, "junk.pth.tar").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("0xff") && msg.contains("not a pickle opcode"),
        "{msg}"
    );
}

#[test]
fn absurd_storage_sizes_are_refused_before_allocating() {
    let floats: Vec<u8> = (0..7).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let main_with = |numel: u64| {
        P::new()
            .op(b'}')
            .mark()
            .s("generator")
            .ordered_dict()
            .mark()
            .s("w")
            .tensor("torch", "FloatStorage", "1", "cpu", numel, 0, &[7], &[1])
            .op(b'u')
            .s("kp_detector")
            .ordered_dict()
            .op(b'u')
            .stop()
    };
    // 2^60 elements (2^62 bytes), consistent between the pickle and the framing.
    let huge = 1u64 << 60;
    let bytes = [
        legacy_header(),
        main_with(huge),
        key_list(&["1"]),
        storage(huge, &floats),
    ]
    .concat();
    let err = Checkpoint::from_bytes(&bytes, "huge.pth.tar").unwrap_err();
    assert!(
        matches!(err, CheckpointError::StorageTooLarge { numel, .. } if numel == huge),
        "{err}"
    );

    // 2^62 elements: numel * 4 overflows u64.
    let huger = 1u64 << 62;
    let bytes = [
        legacy_header(),
        main_with(huger),
        key_list(&["1"]),
        storage(huger, &floats),
    ]
    .concat();
    let err = Checkpoint::from_bytes(&bytes, "huger.pth.tar").unwrap_err();
    assert!(
        matches!(err, CheckpointError::StorageTooLarge { .. }),
        "{err}"
    );

    // 50 elements claimed (less than the file), 7 present: truncated, 43 * 4 bytes missing.
    let bytes = [
        legacy_header(),
        main_with(50),
        key_list(&["1"]),
        storage(50, &floats),
    ]
    .concat();
    assert!(bytes.len() > 200);
    let err = Checkpoint::from_bytes(&bytes, "short.pth.tar").unwrap_err();
    assert!(
        matches!(err, CheckpointError::Truncated { missing, .. } if missing == 172),
        "{err}"
    );
    assert!(err.to_string().contains("storage '1'"), "{err}");

    // Framing says 7, the pickle says 8: inconsistent.
    let bytes = [
        legacy_header(),
        main_with(8),
        key_list(&["1"]),
        storage(7, &floats),
    ]
    .concat();
    let err = Checkpoint::from_bytes(&bytes, "mismatch.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Structure { .. }), "{err}");

    // A view reaching past its storage.
    let main = P::new()
        .op(b'}')
        .mark()
        .s("generator")
        .ordered_dict()
        .mark()
        .s("w")
        .tensor("torch", "FloatStorage", "1", "cpu", 7, 2, &[2, 3], &[3, 1])
        .op(b'u')
        .s("kp_detector")
        .ordered_dict()
        .op(b'u')
        .stop();
    let bytes = [legacy_header(), main, key_list(&["1"]), storage(7, &floats)].concat();
    let err = Checkpoint::from_bytes(&bytes, "view.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Tensor { .. }), "{err}");
    assert!(err.to_string().contains("element 7"), "{err}");
}

#[test]
fn huge_string_lengths_and_deep_nesting_are_errors() {
    // BINUNICODE claiming 4 GiB.
    let main = P::new()
        .op(b'X')
        .raw(&u32::MAX.to_le_bytes())
        .raw(b"abc")
        .stop();
    let bytes = [legacy_header(), main].concat();
    let err = Checkpoint::from_bytes(&bytes, "str.pth.tar").unwrap_err();
    assert!(err.to_string().contains("string bytes"), "{err}");

    // BINBYTES8 claiming 2^63.
    let main = P::new().op(0x8e).raw(&(1u64 << 63).to_le_bytes()).stop();
    let bytes = [legacy_header(), main].concat();
    assert!(Checkpoint::from_bytes(&bytes, "bytes.pth.tar").is_err());

    // 100k nested MARKs.
    let main = P::new().raw(&vec![b'('; 100_000]).stop();
    let bytes = [legacy_header(), main].concat();
    let err = Checkpoint::from_bytes(&bytes, "deep.pth.tar").unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");
}

#[test]
fn memo_references_are_shared_not_copied() {
    // "Billion laughs": 30 levels, each a list of 64 references to the previous level. Copying
    // on every memo fetch would need 64^30 values; sharing needs about 2000.
    let mut p = P::new().op(b']').op(b'q').op(0);
    for level in 1..=30u8 {
        p = p.op(b']').mark();
        for _ in 0..64 {
            p = p.op(b'h').op(level - 1);
        }
        p = p.op(b'e').op(b'q').op(level);
    }
    let bytes = [legacy_header(), p.stop(), key_list(&[])].concat();
    let start = std::time::Instant::now();
    let err = Checkpoint::from_bytes(&bytes, "laughs.pth.tar").unwrap_err();
    assert!(matches!(err, CheckpointError::Structure { .. }), "{err}");
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn plain_pickle_is_not_a_legacy_checkpoint() {
    let bytes = P::new().op(b'}').stop();
    let err = Checkpoint::from_bytes(&bytes, "plain.pkl").unwrap_err();
    assert!(
        matches!(err, CheckpointError::NotLegacyCheckpoint { .. }),
        "{err}"
    );
}

#[test]
fn missing_model_entry_is_named() {
    let main = P::new()
        .op(b'}')
        .mark()
        .s("generator")
        .ordered_dict()
        .s("epoch")
        .int(3)
        .op(b'u')
        .stop();
    let bytes = [legacy_header(), main, key_list(&[])].concat();
    let err = Checkpoint::from_bytes(&bytes, "partial.pth.tar").unwrap_err();
    // generator is checked first and is empty.
    assert!(matches!(err, CheckpointError::Structure { .. }), "{err}");

    let main = P::new().op(b'}').mark().s("epoch").int(3).op(b'u').stop();
    let bytes = [legacy_header(), main, key_list(&[])].concat();
    let err = Checkpoint::from_bytes(&bytes, "partial.pth.tar").unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::MissingModel {
                name: "generator",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("\"epoch\""), "{err}");
}
