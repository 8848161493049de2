//! A small, non-executing reader for Python pickle streams, as written by `torch.save`.
//!
//! A pickle is a program for a little stack machine: each opcode byte pushes a value, builds a
//! container from values above a MARK, stores or fetches a value in the "memo" (a table of
//! back-references), or names a Python callable ("global") and applies it to an argument tuple
//! (REDUCE / NEWOBJ / BUILD). Python's own unpickler imports and *calls* those globals, which is
//! why loading an untrusted pickle can run arbitrary code. This reader never imports or calls
//! anything:
//!
//! * A global is only looked up in a short list of names that PyTorch checkpoints use
//!   ([`Global`]); every other name becomes [`Global::Other`], an inert label.
//! * Applying a callable to arguments records an inert [`Object::Call`] (callable + arguments),
//!   which the checkpoint reader may later *interpret* (e.g. `_rebuild_tensor_v2`). The only
//!   callables given a meaning here are the dict constructors (`collections.OrderedDict`,
//!   `dict`, `collections.defaultdict`), which produce an [`Object::Dict`] so that state dicts can be
//!   filled by SETITEMS.
//! * BUILD (`__setstate__`) data is validated for stack shape and then dropped: nothing a FOMM
//!   checkpoint needs lives in object state (the `_metadata` attribute of a state dict is ignored).
//!
//! Values live in an arena ([`Pickle`]) and refer to each other by [`ObjId`], so a memo fetch
//! (BINGET) shares a value instead of copying it. Every opcode creates at most one arena entry
//! and every stack push is caused by one opcode, so memory use is linear in the pickle's length
//! (no "billion laughs" blow-up), and every length field is checked against the bytes that are
//! actually left before anything is allocated. MARKs may nest at most [`MAX_MARK_DEPTH`] deep.
//!
//! Supported: all opcodes of protocols 0-5 except the extension registry (EXT1/EXT2/EXT4) and
//! out-of-band buffers (NEXT_BUFFER), which PyTorch never writes; those, and bytes that are no
//! opcode at all, give an error naming the opcode and its offset. Protocol-0 text opcodes are
//! decoded simply: STRING keeps its quoted body undecoded when it contains escapes, and an
//! INT/LONG that does not fit in 64 bits is an error.

use std::collections::HashMap;

/// Deepest MARK nesting accepted (a state dict needs fewer than 10 levels).
pub const MAX_MARK_DEPTH: usize = 4096;

/// Depth limit for [`Pickle::describe`] (values may be cyclic through the memo).
const DESCRIBE_DEPTH: usize = 3;

/// Handle of a value in a [`Pickle`] arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjId(usize);

/// Element type of a PyTorch storage class (`torch.FloatStorage`, `torch.cuda.LongStorage`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// `DoubleStorage`: float64.
    Double,
    /// `FloatStorage`: float32.
    Float,
    /// `HalfStorage`: float16.
    Half,
    /// `BFloat16Storage`: bfloat16.
    BFloat16,
    /// `LongStorage`: int64.
    Long,
    /// `IntStorage`: int32.
    Int,
    /// `ShortStorage`: int16.
    Short,
    /// `CharStorage`: int8.
    Char,
    /// `ByteStorage`: uint8.
    Byte,
    /// `BoolStorage`: one byte per bool.
    Bool,
    /// `ComplexFloatStorage`: two float32.
    ComplexFloat,
    /// `ComplexDoubleStorage`: two float64.
    ComplexDouble,
    /// `torch.UntypedStorage`: raw bytes.
    Untyped,
}

impl StorageKind {
    /// The storage kind for a class name such as `FloatStorage`.
    pub fn from_class_name(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::Double,
            "FloatStorage" => Self::Float,
            "HalfStorage" => Self::Half,
            "BFloat16Storage" => Self::BFloat16,
            "LongStorage" => Self::Long,
            "IntStorage" => Self::Int,
            "ShortStorage" => Self::Short,
            "CharStorage" => Self::Char,
            "ByteStorage" => Self::Byte,
            "BoolStorage" => Self::Bool,
            "ComplexFloatStorage" => Self::ComplexFloat,
            "ComplexDoubleStorage" => Self::ComplexDouble,
            "UntypedStorage" => Self::Untyped,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn element_size(self) -> usize {
        match self {
            Self::Char | Self::Byte | Self::Bool | Self::Untyped => 1,
            Self::Half | Self::BFloat16 | Self::Short => 2,
            Self::Float | Self::Int => 4,
            Self::Double | Self::Long | Self::ComplexFloat => 8,
            Self::ComplexDouble => 16,
        }
    }

    /// PyTorch's class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Double => "DoubleStorage",
            Self::Float => "FloatStorage",
            Self::Half => "HalfStorage",
            Self::BFloat16 => "BFloat16Storage",
            Self::Long => "LongStorage",
            Self::Int => "IntStorage",
            Self::Short => "ShortStorage",
            Self::Char => "CharStorage",
            Self::Byte => "ByteStorage",
            Self::Bool => "BoolStorage",
            Self::ComplexFloat => "ComplexFloatStorage",
            Self::ComplexDouble => "ComplexDoubleStorage",
            Self::Untyped => "UntypedStorage",
        }
    }
}

/// A global named by GLOBAL / STACK_GLOBAL / INST. Only the listed names are recognised;
/// nothing is ever imported or called.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `builtins.dict` / `__builtin__.dict`
    Dict,
    /// `collections.defaultdict`
    DefaultDict,
    /// `torch._utils._rebuild_tensor` (torch < 0.4)
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`
    RebuildParameterWithState,
    /// `torch._tensor._rebuild_from_type_v2`
    RebuildFromTypeV2,
    /// `torch.<Kind>Storage` (`cuda: false`) or `torch.cuda.<Kind>Storage` (`cuda: true`).
    Storage {
        /// The element type.
        kind: StorageKind,
        /// Whether the class is the `torch.cuda` one.
        cuda: bool,
    },
    /// Anything else: an inert label.
    Other {
        /// The module, as written in the pickle.
        module: String,
        /// The name within the module.
        name: String,
    },
}

impl Global {
    /// Map a `module`, `name` pair onto the whitelist.
    pub fn resolve(module: &str, name: &str) -> Self {
        match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("builtins" | "__builtin__", "dict") => Self::Dict,
            ("collections", "defaultdict") => Self::DefaultDict,
            ("torch._utils", "_rebuild_tensor") => Self::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Self::RebuildFromTypeV2,
            ("torch" | "torch.cuda", _) => match StorageKind::from_class_name(name) {
                Some(kind) => Self::Storage {
                    kind,
                    cuda: module == "torch.cuda",
                },
                None => Self::other(module, name),
            },
            _ => Self::other(module, name),
        }
    }

    fn other(module: &str, name: &str) -> Self {
        Self::Other {
            module: module.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `module.name` as written in the pickle.
    pub fn qualified_name(&self) -> String {
        let fixed = match self {
            Self::OrderedDict => "collections.OrderedDict",
            Self::Dict => "builtins.dict",
            Self::DefaultDict => "collections.defaultdict",
            Self::RebuildTensor => "torch._utils._rebuild_tensor",
            Self::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2",
            Self::RebuildParameter => "torch._utils._rebuild_parameter",
            Self::RebuildParameterWithState => "torch._utils._rebuild_parameter_with_state",
            Self::RebuildFromTypeV2 => "torch._tensor._rebuild_from_type_v2",
            Self::Storage { kind, cuda } => {
                let module = if *cuda { "torch.cuda" } else { "torch" };
                return format!("{module}.{}", kind.class_name());
            }
            Self::Other { module, name } => return format!("{module}.{name}"),
        };
        fixed.to_owned()
    }

    fn is_dict_constructor(&self) -> bool {
        matches!(self, Self::OrderedDict | Self::Dict | Self::DefaultDict)
    }
}

/// A value produced by the pickle machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// Python `None` (also what an unknown [`ObjId`] resolves to).
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer that does not fit in `i64`: minimal little-endian two's complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string (protocol-0 STRING bodies with escapes are kept undecoded).
    Str(String),
    /// A bytes or bytearray value, or a protocol-0/1 string that is not valid UTF-8.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<ObjId>),
    /// A list.
    List(Vec<ObjId>),
    /// Insertion-ordered key/value pairs (a later duplicate key wins on lookup).
    Dict(Vec<(ObjId, ObjId)>),
    /// A set or frozenset, in insertion order.
    Set(Vec<ObjId>),
    /// A named global (never imported).
    Global(Global),
    /// `callable(*args)` recorded, never executed (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ).
    Call {
        /// The callable (usually an [`Object::Global`]).
        callable: ObjId,
        /// The argument tuple.
        args: ObjId,
    },
    /// A persistent reference (PERSID / BINPERSID) to data outside the pickle.
    PersistentId(ObjId),
}

/// Why a pickle could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The data ends before a length-prefixed value, a fixed-size argument or a text line does.
    #[error(
        "data ends at byte {end} while reading {what} at offset {offset} \
         (needs {needed} bytes, {available} left)"
    )]
    UnexpectedEof {
        /// What was being read.
        what: &'static str,
        /// Where reading started.
        offset: usize,
        /// Bytes needed.
        needed: u64,
        /// Bytes left from `offset`.
        available: usize,
        /// The length of the data.
        end: usize,
    },
    /// A byte where an opcode is expected is none.
    #[error("byte 0x{opcode:02x} at offset {offset} is not a pickle opcode")]
    UnknownOpcode {
        /// The byte.
        opcode: u8,
        /// Its offset.
        offset: usize,
    },
    /// A real opcode this reader does not implement (EXT1/EXT2/EXT4, NEXT_BUFFER, ...).
    #[error("pickle opcode {name} (0x{opcode:02x}) at offset {offset} is not supported: {reason}")]
    UnsupportedOpcode {
        /// The opcode's name.
        name: &'static str,
        /// The opcode byte.
        opcode: u8,
        /// Its offset.
        offset: usize,
        /// Why it is not supported.
        reason: &'static str,
    },
    /// PROTO names a protocol above 5.
    #[error("pickle protocol {version} (offset {offset}) is not supported (only 0 to 5 exist)")]
    UnsupportedProtocol {
        /// The protocol number.
        version: u8,
        /// The PROTO opcode's offset.
        offset: usize,
    },
    /// An opcode needs more values than there are above the innermost MARK.
    #[error(
        "opcode {name} at offset {offset} needs {needed} value(s) on the stack \
         but only {available} are there"
    )]
    StackUnderflow {
        /// The opcode's name.
        name: &'static str,
        /// Its offset.
        offset: usize,
        /// Values it pops.
        needed: usize,
        /// Values there were.
        available: usize,
    },
    /// An opcode that works up to a MARK found none open.
    #[error("opcode {name} at offset {offset} needs a MARK but none is open")]
    MissingMark {
        /// The opcode's name.
        name: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// A memo fetch names a slot that no PUT / MEMOIZE filled.
    #[error("opcode {name} at offset {offset} fetches memo slot {index}, which was never stored")]
    MemoMissing {
        /// The opcode's name.
        name: &'static str,
        /// Its offset.
        offset: usize,
        /// The memo slot.
        index: u64,
    },
    /// More than [`MAX_MARK_DEPTH`] MARKs are open.
    #[error("MARKs are nested more than {limit} deep at offset {offset}")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
        /// The offset of the MARK that went over it.
        offset: usize,
    },
    /// An opcode's argument or operands are malformed (bad text, negative length, wrong target
    /// type, odd key/value count, ...).
    #[error("opcode {name} at offset {offset}: {detail}")]
    Invalid {
        /// The opcode's name.
        name: &'static str,
        /// Its offset.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

/// A decoded pickle: an arena of values and the value STOP returned.
#[derive(Debug, Clone)]
pub struct Pickle {
    objects: Vec<Object>,
    root: ObjId,
    end: usize,
}

static NONE_OBJECT: Object = Object::None;

impl Pickle {
    /// The value the pickle evaluates to.
    pub fn root(&self) -> ObjId {
        self.root
    }

    /// Offset just after the STOP opcode (where a following pickle or data starts).
    pub fn end(&self) -> usize {
        self.end
    }

    /// The value behind `id` (`Object::None` for an id from another pickle).
    pub fn get(&self, id: ObjId) -> &Object {
        self.objects.get(id.0).unwrap_or(&NONE_OBJECT)
    }

    /// Every value in the arena, in creation order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.iter()
    }

    /// The text of a string value.
    pub fn as_str(&self, id: ObjId) -> Option<&str> {
        match self.get(id) {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of an `i64` integer or a bool (as 0 / 1).
    pub fn as_int(&self, id: ObjId) -> Option<i64> {
        match self.get(id) {
            Object::Int(v) => Some(*v),
            Object::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn as_sequence(&self, id: ObjId) -> Option<&[ObjId]> {
        match self.get(id) {
            Object::Tuple(items) | Object::List(items) => Some(items),
            _ => None,
        }
    }

    /// Value for the string key `key` in a dict (the last one if repeated).
    pub fn dict_get(&self, dict: ObjId, key: &str) -> Option<ObjId> {
        match self.get(dict) {
            Object::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| self.as_str(*k) == Some(key))
                .map(|(_, v)| *v),
            _ => None,
        }
    }

    /// A short human-readable description for error messages.
    pub fn describe(&self, id: ObjId) -> String {
        let mut out = String::new();
        self.describe_into(id, DESCRIBE_DEPTH, &mut out);
        out
    }

    fn describe_into(&self, id: ObjId, depth: usize, out: &mut String) {
        const MAX_ITEMS: usize = 4;
        let seq = |this: &Self, items: &[ObjId], open: &str, close: &str, out: &mut String| {
            out.push_str(open);
            for (i, item) in items.iter().take(MAX_ITEMS).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                this.describe_into(*item, depth.saturating_sub(1), out);
            }
            if items.len() > MAX_ITEMS {
                out.push_str(", ...");
            }
            out.push_str(close);
        };
        if depth == 0 {
            out.push_str("...");
            return;
        }
        match self.get(id) {
            Object::None => out.push_str("None"),
            Object::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Object::Int(v) => out.push_str(&v.to_string()),
            Object::BigInt(b) => out.push_str(&format!("<{}-byte integer>", b.len())),
            Object::Float(v) => out.push_str(&v.to_string()),
            Object::Str(s) => {
                let short: String = s.chars().take(60).collect();
                out.push_str(&format!("{short:?}"));
            }
            Object::Bytes(b) => out.push_str(&format!("<{} bytes>", b.len())),
            Object::Tuple(items) => seq(self, items, "(", ")", out),
            Object::List(items) => seq(self, items, "[", "]", out),
            Object::Set(items) => seq(self, items, "{", "}", out),
            Object::Dict(items) => out.push_str(&format!("<dict with {} entries>", items.len())),
            Object::Global(g) => out.push_str(&g.qualified_name()),
            Object::Call { callable, .. } => {
                out.push_str("<object made by ");
                self.describe_into(*callable, depth.saturating_sub(1), out);
                out.push('>');
            }
            Object::PersistentId(pid) => {
                out.push_str("<persistent id ");
                self.describe_into(*pid, depth.saturating_sub(1), out);
                out.push('>');
            }
        }
    }
}

/// Decode the pickle that starts at `data[start]`. Offsets in errors are offsets into `data`.
pub fn parse(data: &[u8], start: usize) -> Result<Pickle, PickleError> {
    let mut vm = Machine {
        data,
        pos: start,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    Ok(Pickle {
        objects: vm.objects,
        root,
        end: vm.pos,
    })
}

/// Name of an opcode byte, `None` if it is no opcode.
pub fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    objects: Vec<Object>,
    stack: Vec<ObjId>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, ObjId>,
}

/// The opcode being executed, for error messages.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    offset: usize,
}

impl Op {
    fn invalid(self, detail: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            name: self.name,
            offset: self.offset,
            detail: detail.into(),
        }
    }
}

impl<'a> Machine<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn eof(&self, what: &'static str, needed: u64) -> PickleError {
        PickleError::UnexpectedEof {
            what,
            offset: self.pos,
            needed,
            available: self.remaining(),
            end: self.data.len(),
        }
    }

    /// Take `n` bytes, checking the length against what is left *before* touching anything.
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], PickleError> {
        let len = usize::try_from(n)
            .ok()
            .filter(|&len| len <= self.remaining())
            .ok_or_else(|| self.eof(what, n))?;
        let end = self.pos + len;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.eof(what, n))?;
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take_array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take_array(what)?))
    }

    /// A signed 32-bit length; negative is invalid.
    fn i32_len(&mut self, op: Op, what: &'static str) -> Result<u64, PickleError> {
        let v = i32::from_le_bytes(self.take_array(what)?);
        u64::try_from(v).map_err(|_| op.invalid(format!("negative length {v}")))
    }

    /// A text line up to (not including) `\n`.
    fn line(&mut self, what: &'static str) -> Result<&'a [u8], PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.eof(what, rest.len() as u64 + 1))?;
        let line = self.take(len as u64, what)?;
        self.pos += 1; // the newline, known to be there
        Ok(line)
    }

    fn text_line(&mut self, op: Op, what: &'static str) -> Result<&'a str, PickleError> {
        let line = self.line(what)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        std::str::from_utf8(line).map_err(|_| op.invalid(format!("{what} is not valid UTF-8")))
    }

    fn alloc(&mut self, obj: Object) -> ObjId {
        let id = ObjId(self.objects.len());
        self.objects.push(obj);
        id
    }

    fn push(&mut self, obj: Object) {
        let id = self.alloc(obj);
        self.stack.push(id);
    }

    /// Number of values above the innermost MARK.
    fn available(&self) -> usize {
        let fence = self.marks.last().copied().unwrap_or(0);
        self.stack.len().saturating_sub(fence)
    }

    fn pop_n(&mut self, op: Op, n: usize) -> Result<Vec<ObjId>, PickleError> {
        let available = self.available();
        if available < n {
            return Err(PickleError::StackUnderflow {
                name: op.name,
                offset: op.offset,
                needed: n,
                available,
            });
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop(&mut self, op: Op) -> Result<ObjId, PickleError> {
        let mut items = self.pop_n(op, 1)?;
        items.pop().ok_or(PickleError::StackUnderflow {
            name: op.name,
            offset: op.offset,
            needed: 1,
            available: 0,
        })
    }

    fn top(&self, op: Op) -> Result<ObjId, PickleError> {
        match (self.available(), self.stack.last()) {
            (1.., Some(id)) => Ok(*id),
            _ => Err(PickleError::StackUnderflow {
                name: op.name,
                offset: op.offset,
                needed: 1,
                available: 0,
            }),
        }
    }

    /// Pop everything above the innermost MARK, and the MARK.
    fn pop_mark(&mut self, op: Op) -> Result<Vec<ObjId>, PickleError> {
        let mark = self.marks.pop().ok_or(PickleError::MissingMark {
            name: op.name,
            offset: op.offset,
        })?;
        if mark > self.stack.len() {
            return Err(op.invalid("the stack shrank below an open MARK"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&mut self, op: Op, index: u64) -> Result<(), PickleError> {
        let id = *self.memo.get(&index).ok_or(PickleError::MemoMissing {
            name: op.name,
            offset: op.offset,
            index,
        })?;
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, op: Op, index: u64) -> Result<(), PickleError> {
        let top = self.top(op)?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn pairs(op: Op, items: Vec<ObjId>) -> Result<Vec<(ObjId, ObjId)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(op.invalid(format!(
                "{} values cannot form key/value pairs",
                items.len()
            )));
        }
        let mut it = items.into_iter();
        let mut out = Vec::with_capacity(it.len() / 2);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn set_items(&mut self, op: Op, pairs: Vec<(ObjId, ObjId)>) -> Result<(), PickleError> {
        let target = self.top(op)?;
        match self.objects.get_mut(target.0) {
            Some(Object::Dict(items)) => {
                items.extend(pairs);
                Ok(())
            }
            // An opaque object (a dict subclass we do not model): accept and drop the items.
            Some(Object::Call { .. }) => Ok(()),
            _ => Err(op.invalid("the target is not a dict")),
        }
    }

    fn append_items(&mut self, op: Op, values: Vec<ObjId>) -> Result<(), PickleError> {
        let target = self.top(op)?;
        match self.objects.get_mut(target.0) {
            Some(Object::List(items)) => {
                items.extend(values);
                Ok(())
            }
            Some(Object::Call { .. }) => Ok(()),
            _ => Err(op.invalid("the target is not a list")),
        }
    }

    /// The dict-constructor whitelist: `OrderedDict()`, `OrderedDict([(k, v), ...])`,
    /// `dict()`, `defaultdict(factory)`. Anything else is recorded, not run.
    fn call(&mut self, callable: ObjId, args: ObjId) {
        let dict = match (self.objects.get(callable.0), self.objects.get(args.0)) {
            (Some(Object::Global(g)), Some(Object::Tuple(a))) if g.is_dict_constructor() => {
                match (g, a.as_slice()) {
                    (_, []) | (Global::DefaultDict, [_]) => Some(Vec::new()),
                    (Global::OrderedDict | Global::Dict, [items]) => self.pairs_of(*items),
                    _ => None,
                }
            }
            _ => None,
        };
        match dict {
            Some(items) => self.push(Object::Dict(items)),
            None => self.push(Object::Call { callable, args }),
        }
    }

    /// A sequence of 2-sequences as dict items.
    fn pairs_of(&self, id: ObjId) -> Option<Vec<(ObjId, ObjId)>> {
        let items = match self.objects.get(id.0) {
            Some(Object::List(items) | Object::Tuple(items)) => items,
            _ => return None,
        };
        items
            .iter()
            .map(|item| match self.objects.get(item.0) {
                Some(Object::Tuple(kv) | Object::List(kv)) => match kv.as_slice() {
                    [k, v] => Some((*k, *v)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn new_object(&mut self, cls: ObjId, args: ObjId) {
        let is_dict = matches!(
            self.objects.get(cls.0),
            Some(Object::Global(g)) if g.is_dict_constructor()
        );
        if is_dict {
            // cls.__new__(cls, ...) of a dict type is an empty dict.
            self.push(Object::Dict(Vec::new()));
        } else {
            self.push(Object::Call {
                callable: cls,
                args,
            });
        }
    }

    fn string_object(bytes: &[u8]) -> Object {
        match std::str::from_utf8(bytes) {
            Ok(s) => Object::Str(s.to_owned()),
            Err(_) => Object::Bytes(bytes.to_vec()),
        }
    }

    fn unicode(op: Op, bytes: &[u8]) -> Result<Object, PickleError> {
        std::str::from_utf8(bytes)
            .map(|s| Object::Str(s.to_owned()))
            .map_err(|e| op.invalid(format!("string is not valid UTF-8 ({e})")))
    }

    fn global(&mut self, module: &str, name: &str) -> ObjId {
        self.alloc(Object::Global(Global::resolve(module, name)))
    }

    fn run(&mut self) -> Result<ObjId, PickleError> {
        loop {
            let offset = self.pos;
            let opcode = self.u8("an opcode")?;
            let name = opcode_name(opcode).ok_or(PickleError::UnknownOpcode { opcode, offset })?;
            let op = Op { name, offset };
            if opcode == b'.' {
                return self.pop(op);
            }
            let handled = self.stack_op(opcode, op)?
                || self.number_op(opcode, op)?
                || self.text_op(opcode, op)?
                || self.container_op(opcode, op)?
                || self.memo_op(opcode, op)?
                || self.object_op(opcode, op)?;
            if !handled {
                return Err(PickleError::UnknownOpcode { opcode, offset });
            }
        }
    }

    /// Marks, stack manipulation, protocol and framing opcodes, and the ones PyTorch never writes. Returns whether `opcode` is one of them.
    fn stack_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        let (name, offset) = (op.name, op.offset);
        match opcode {
            b'(' => {
                if self.marks.len() >= MAX_MARK_DEPTH {
                    return Err(PickleError::TooDeep {
                        limit: MAX_MARK_DEPTH,
                        offset,
                    });
                }
                self.marks.push(self.stack.len());
            }
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop(op)?;
                }
            }
            b'1' => {
                self.pop_mark(op)?;
            }
            b'2' => {
                let top = self.top(op)?;
                self.stack.push(top);
            }
            0x80 => {
                let version = self.u8("the protocol number")?;
                if version > 5 {
                    return Err(PickleError::UnsupportedProtocol { version, offset });
                }
            }
            0x95 => {
                // FRAME: a length hint; only check that the frame fits in the data.
                let len = self.u64("a frame length")?;
                if len > self.remaining() as u64 {
                    return Err(self.eof("a frame", len));
                }
            }
            0x98 => {
                self.top(op)?;
            }
            0x82..=0x84 => {
                return Err(PickleError::UnsupportedOpcode {
                    name,
                    opcode,
                    offset,
                    reason: "the copyreg extension registry is never used by PyTorch",
                });
            }
            0x97 => {
                return Err(PickleError::UnsupportedOpcode {
                    name,
                    opcode,
                    offset,
                    reason: "out-of-band buffers are never used by PyTorch",
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// None, booleans, integers and floats. Returns whether `opcode` is one of them.
    fn number_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        match opcode {
            b'N' => self.push(Object::None),
            0x88 => self.push(Object::Bool(true)),
            0x89 => self.push(Object::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.take_array("a 4-byte integer")?);
                self.push(Object::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8("a 1-byte integer")?;
                self.push(Object::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.take_array("a 2-byte integer")?);
                self.push(Object::Int(i64::from(v)));
            }
            0x8a => {
                let n = self.u8("a LONG1 length")?;
                let bytes = self.take(u64::from(n), "LONG1 integer bytes")?;
                self.push(decode_long(bytes));
            }
            0x8b => {
                let n = self.i32_len(op, "a LONG4 length")?;
                let bytes = self.take(n, "LONG4 integer bytes")?;
                self.push(decode_long(bytes));
            }
            b'I' => {
                let text = self.text_line(op, "an INT literal")?;
                let obj = match text.trim() {
                    "00" => Object::Bool(false),
                    "01" => Object::Bool(true),
                    t => Object::Int(
                        t.parse()
                            .map_err(|_| op.invalid(format!("{t:?} is not a 64-bit integer")))?,
                    ),
                };
                self.push(obj);
            }
            b'L' => {
                let text = self.text_line(op, "a LONG literal")?;
                let t = text.trim();
                let t = t.strip_suffix('L').unwrap_or(t);
                let v = t
                    .parse()
                    .map_err(|_| op.invalid(format!("{t:?} is not a 64-bit integer")))?;
                self.push(Object::Int(v));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take_array("an 8-byte float")?);
                self.push(Object::Float(v));
            }
            b'F' => {
                let text = self.text_line(op, "a FLOAT literal")?;
                let v = text
                    .trim()
                    .parse()
                    .map_err(|_| op.invalid(format!("{text:?} is not a float")))?;
                self.push(Object::Float(v));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Strings and bytes. Returns whether `opcode` is one of them.
    fn text_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        match opcode {
            b'X' => {
                let n = self.u32("a string length")?;
                let bytes = self.take(u64::from(n), "string bytes")?;
                let obj = Self::unicode(op, bytes)?;
                self.push(obj);
            }
            0x8c => {
                let n = self.u8("a string length")?;
                let bytes = self.take(u64::from(n), "string bytes")?;
                let obj = Self::unicode(op, bytes)?;
                self.push(obj);
            }
            0x8d => {
                let n = self.u64("a string length")?;
                let bytes = self.take(n, "string bytes")?;
                let obj = Self::unicode(op, bytes)?;
                self.push(obj);
            }
            b'V' => {
                let line = self.line("a UNICODE literal")?;
                self.push(Object::Str(decode_raw_unicode_escape(line)));
            }
            b'T' => {
                let n = self.i32_len(op, "a string length")?;
                let bytes = self.take(n, "string bytes")?;
                self.push(Self::string_object(bytes));
            }
            b'U' => {
                let n = self.u8("a string length")?;
                let bytes = self.take(u64::from(n), "string bytes")?;
                self.push(Self::string_object(bytes));
            }
            b'S' => {
                let line = self.line("a STRING literal")?;
                let body = match line {
                    [b'\'', body @ .., b'\''] | [b'"', body @ .., b'"'] => body,
                    _ => return Err(op.invalid("string literal is not quoted")),
                };
                self.push(Self::string_object(body));
            }
            b'B' => {
                let n = self.u32("a bytes length")?;
                let bytes = self.take(u64::from(n), "bytes")?;
                self.push(Object::Bytes(bytes.to_vec()));
            }
            b'C' => {
                let n = self.u8("a bytes length")?;
                let bytes = self.take(u64::from(n), "bytes")?;
                self.push(Object::Bytes(bytes.to_vec()));
            }
            0x8e | 0x96 => {
                let n = self.u64("a bytes length")?;
                let bytes = self.take(n, "bytes")?;
                self.push(Object::Bytes(bytes.to_vec()));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Tuples, lists, dicts and sets, and adding to them. Returns whether `opcode` is one of them.
    fn container_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        match opcode {
            b')' => self.push(Object::Tuple(Vec::new())),
            b']' => self.push(Object::List(Vec::new())),
            b'}' => self.push(Object::Dict(Vec::new())),
            0x8f => self.push(Object::Set(Vec::new())),
            b't' => {
                let items = self.pop_mark(op)?;
                self.push(Object::Tuple(items));
            }
            0x85..=0x87 => {
                let items = self.pop_n(op, usize::from(opcode - 0x84))?;
                self.push(Object::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark(op)?;
                self.push(Object::List(items));
            }
            b'd' => {
                let items = self.pop_mark(op)?;
                let pairs = Self::pairs(op, items)?;
                self.push(Object::Dict(pairs));
            }
            0x91 => {
                let items = self.pop_mark(op)?;
                self.push(Object::Set(items));
            }
            b'a' => {
                let value = self.pop(op)?;
                self.append_items(op, vec![value])?;
            }
            b'e' => {
                let values = self.pop_mark(op)?;
                self.append_items(op, values)?;
            }
            b's' => {
                let kv = self.pop_n(op, 2)?;
                let pairs = Self::pairs(op, kv)?;
                self.set_items(op, pairs)?;
            }
            b'u' => {
                let items = self.pop_mark(op)?;
                let pairs = Self::pairs(op, items)?;
                self.set_items(op, pairs)?;
            }
            0x90 => {
                let values = self.pop_mark(op)?;
                let target = self.top(op)?;
                match self.objects.get_mut(target.0) {
                    Some(Object::Set(items)) => items.extend(values),
                    Some(Object::Call { .. }) => {}
                    _ => return Err(op.invalid("the target is not a set")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo: storing and fetching objects by index. Returns whether `opcode` is one of them.
    fn memo_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        match opcode {
            b'g' => {
                let text = self.text_line(op, "a memo index")?;
                let index = text
                    .trim()
                    .parse()
                    .map_err(|_| op.invalid(format!("{text:?} is not a memo index")))?;
                self.memo_get(op, index)?;
            }
            b'h' => {
                let index = self.u8("a memo index")?;
                self.memo_get(op, u64::from(index))?;
            }
            b'j' => {
                let index = self.u32("a memo index")?;
                self.memo_get(op, u64::from(index))?;
            }
            b'p' => {
                let text = self.text_line(op, "a memo index")?;
                let index = text
                    .trim()
                    .parse()
                    .map_err(|_| op.invalid(format!("{text:?} is not a memo index")))?;
                self.memo_put(op, index)?;
            }
            b'q' => {
                let index = self.u8("a memo index")?;
                self.memo_put(op, u64::from(index))?;
            }
            b'r' => {
                let index = self.u32("a memo index")?;
                self.memo_put(op, u64::from(index))?;
            }
            0x94 => {
                let index = self.memo.len() as u64;
                self.memo_put(op, index)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Globals, calls, object construction and persistent ids (the tensors' storages). Returns whether `opcode` is one of them.
    fn object_op(&mut self, opcode: u8, op: Op) -> Result<bool, PickleError> {
        match opcode {
            b'c' => {
                let module = self.text_line(op, "a module name")?;
                let name = self.text_line(op, "a global name")?;
                let id = self.global(module, name);
                self.stack.push(id);
            }
            0x93 => {
                let parts = self.pop_n(op, 2)?;
                let (module, name) = match parts.as_slice() {
                    [m, n] => match (self.objects.get(m.0), self.objects.get(n.0)) {
                        (Some(Object::Str(m)), Some(Object::Str(n))) => (m.clone(), n.clone()),
                        _ => return Err(op.invalid("module and name must be strings")),
                    },
                    _ => return Err(op.invalid("module and name must be strings")),
                };
                let id = self.global(&module, &name);
                self.stack.push(id);
            }
            b'R' => {
                let args = self.pop(op)?;
                let callable = self.pop(op)?;
                self.call(callable, args);
            }
            0x81 => {
                let args = self.pop(op)?;
                let cls = self.pop(op)?;
                self.new_object(cls, args);
            }
            0x92 => {
                let _kwargs = self.pop(op)?;
                let args = self.pop(op)?;
                let cls = self.pop(op)?;
                self.new_object(cls, args);
            }
            b'i' => {
                let module = self.text_line(op, "a module name")?.to_owned();
                let name = self.text_line(op, "a class name")?.to_owned();
                let items = self.pop_mark(op)?;
                let cls = self.global(&module, &name);
                let args = self.alloc(Object::Tuple(items));
                self.call(cls, args);
            }
            b'o' => {
                let mut items = self.pop_mark(op)?.into_iter();
                let cls = items
                    .next()
                    .ok_or_else(|| op.invalid("no class above the MARK"))?;
                let args = self.alloc(Object::Tuple(items.collect()));
                self.call(cls, args);
            }
            b'b' => {
                // BUILD: state is validated for stack shape and dropped (see module doc).
                let _state = self.pop(op)?;
                self.top(op)?;
            }
            b'P' => {
                let line = self.line("a persistent id")?;
                let pid = self.alloc(Self::string_object(line));
                self.push(Object::PersistentId(pid));
            }
            b'Q' => {
                let pid = self.pop(op)?;
                self.push(Object::PersistentId(pid));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// LONG1/LONG4 payload: little-endian two's complement, minimal length.
fn decode_long(bytes: &[u8]) -> Object {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let pad = if negative { 0xff } else { 0x00 };
    // Drop redundant sign-extension bytes so that equal values compare equal.
    let mut len = bytes.len();
    while len > 1 {
        let (Some(&last), Some(&prev)) = (bytes.get(len - 1), bytes.get(len - 2)) else {
            break;
        };
        if last == pad && (prev & 0x80 != 0) == negative {
            len -= 1;
        } else {
            break;
        }
    }
    let bytes = bytes.get(..len).unwrap_or(bytes);
    if bytes.len() <= 8 {
        let mut buf = [pad; 8];
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = *src;
        }
        Object::Int(i64::from_le_bytes(buf))
    } else {
        Object::BigInt(bytes.to_vec())
    }
}

/// Python's `raw-unicode-escape`: `\uXXXX` / `\UXXXXXXXX` escapes, every other byte is Latin-1.
fn decode_raw_unicode_escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            let digits = match bytes.get(i + 1) {
                Some(b'u') => 4,
                Some(b'U') => 8,
                _ => 0,
            };
            let decoded = (digits > 0)
                .then(|| bytes.get(i + 2..i + 2 + digits))
                .flatten()
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .and_then(char::from_u32);
            if let Some(c) = decoded {
                out.push(c);
                i += 2 + digits;
                continue;
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_decoding_is_minimal_and_signed() {
        assert_eq!(decode_long(&[]), Object::Int(0));
        assert_eq!(decode_long(&[0xff]), Object::Int(-1));
        assert_eq!(decode_long(&[0x80, 0x00]), Object::Int(128));
        assert_eq!(decode_long(&[0x00, 0x80]), Object::Int(-32768));
        assert_eq!(decode_long(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Object::Int(1));
        assert_eq!(
            decode_long(&[0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Object::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }

    #[test]
    fn raw_unicode_escape() {
        assert_eq!(decode_raw_unicode_escape(b"a\\u00e9b\\x"), "a\u{e9}b\\x");
        assert_eq!(decode_raw_unicode_escape(b"\\U0001F600"), "\u{1F600}");
    }

    #[test]
    fn protocol2_dict_with_memo() {
        // {'a': [1, 1]} with the list element fetched from the memo.
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00a](K\x01q\x01h\x01eu.";
        let p = parse(data, 0).unwrap();
        let list = p.dict_get(p.root(), "a").unwrap();
        let items = p.as_sequence(list).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        assert_eq!(p.as_int(items[0]), Some(1));
        assert_eq!(p.end(), data.len());
    }

    #[test]
    fn stack_underflow_below_mark_is_an_error() {
        let err = parse(b"\x80\x02K\x01(0.", 0);
        // POP directly after MARK pops the mark (CPython semantics); then STOP returns 1.
        assert!(err.is_ok());
        let err = parse(b"\x80\x02(R.", 0).unwrap_err();
        assert!(matches!(err, PickleError::StackUnderflow { .. }), "{err}");
    }
}
