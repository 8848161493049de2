//! Motion files: the `marionette-motion` format, version 1 (described in the README, "Motion
//! files"). JSON lines: a header, then `reference` and `frame` lines in time order; a frame's
//! motion is relative to the reference line before it (a live recording has one per
//! calibration).
//!
//! f32 values (FOMM's keypoints and Jacobians) are written so that they parse back bit for bit:
//! the shortest decimal that reads back as the same f32, checked as it is written (the longer,
//! exact decimal of the value otherwise). Reading checks every line's shape and numbers and names
//! the line of the first problem.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{
    AnchorMotion, BackwardMap, ClassicFrame, ClassicReference, FrameMotion, KeypointSet,
    MotionEngine, MotionSource, ReferenceMotion, TextureCloud, normalise_jacobian, normalise_point,
};

/// The `format` of a motion file's header.
pub const FORMAT: &str = "marionette-motion";
/// The format version this marionette writes and reads.
pub const VERSION: u32 = 1;

/// What went wrong reading or writing a motion file.
#[derive(Debug, thiserror::Error)]
pub enum MotionFileError {
    /// The file could not be opened, read or written.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not what the format says.
    #[error("{path} line {line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A motion that cannot be written (it does not fit the header, or holds non-finite numbers).
    #[error("cannot record the motion: {0}")]
    Invalid(String),
}

/// A motion file's first line: what produced the motion.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionHeader {
    /// The engine and model.
    pub source: MotionSource,
    /// The format version of the file.
    pub version: u32,
    /// What wrote it (`marionette 0.1.0`).
    pub generator: String,
    /// The driving video's frame rate; `None` for a live recording, whose frames come at the
    /// model's pace (their times say when).
    pub fps: Option<f64>,
    /// Where the driving frames came from (a file name, `camera /dev/video0`, ...).
    pub driving: Option<String>,
}

impl MotionHeader {
    /// A header for motion from `source`, written by this marionette.
    pub fn new(source: MotionSource, fps: Option<f64>, driving: Option<String>) -> Self {
        Self {
            source,
            version: VERSION,
            generator: format!("marionette {}", env!("CARGO_PKG_VERSION")),
            fps,
            driving,
        }
    }
}

/// What a motion line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordKind {
    /// A new reference frame D_1: the frames after it are relative to it.
    Reference(ReferenceMotion),
    /// A driving frame.
    Frame(FrameMotion),
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The line's number in the file (1-based).
    pub line: usize,
    /// The driving frame's index (in the driving video, or the live loop's frame counter).
    pub frame: u64,
    /// Seconds since the first driving frame.
    pub t: f64,
    /// The motion.
    pub kind: RecordKind,
}

// ---------------------------------------------------------------------------------------------
// The lines as JSON.

/// An f32 written as the shortest decimal that reads back as the same f32.
#[derive(Debug, Clone, Copy, PartialEq)]
struct F32(f32);

impl Serialize for F32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // serde_json writes an f32 as its shortest decimal and reads a number as f64; that f64
        // cast to f32 must be the value again. When (in theory) double rounding breaks that, the
        // value's exact decimal (as f64) is written instead: it reads back exactly.
        let short = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        let back = serde_json::from_str::<f64>(&short).map(|v| v as f32);
        if matches!(back, Ok(v) if v.to_bits() == self.0.to_bits()) {
            s.serialize_f32(self.0)
        } else {
            s.serialize_f64(self.0 as f64)
        }
    }
}

impl<'de> Deserialize<'de> for F32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        let f = v as f32;
        if f.is_finite() {
            Ok(F32(f))
        } else {
            Err(serde::de::Error::custom(format!(
                "{v} is out of the range of the keypoints' 32-bit numbers"
            )))
        }
    }
}

type Point = [F32; 2];
type Matrix = [[F32; 2]; 2];

/// A line's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LineType {
    Header,
    Reference,
    Frame,
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    #[serde(rename = "type")]
    kind: LineType,
    format: String,
    version: u32,
    #[serde(default)]
    generator: String,
    engine: MotionEngine,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    checkpoint: Option<String>,
    /// [height, width].
    frame_size: [usize; 2],
    keypoints: usize,
    jacobians: bool,
    #[serde(default)]
    fps: Option<f64>,
    #[serde(default)]
    driving: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TextureLine {
    centroid: [f64; 2],
    size: f64,
    floor: f32,
}

#[derive(Serialize, Deserialize)]
struct BackLine {
    a: [[f64; 2]; 2],
    b: [f64; 2],
    q: [[f64; 3]; 2],
}

#[derive(Serialize, Deserialize)]
struct MapLine {
    at: [f64; 2],
    jacobian: [[f64; 2]; 2],
    #[serde(default)]
    back: Option<BackLine>,
}

/// A `reference` or `frame` line.
#[derive(Serialize, Deserialize)]
struct MotionLine {
    #[serde(rename = "type")]
    kind: LineType,
    frame: u64,
    t: f64,
    keypoints: Vec<Point>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jacobians: Option<Vec<Matrix>>,
    /// Classic reference: the anchors in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchors: Option<Vec<[f64; 2]>>,
    /// Classic reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spacing: Option<f64>,
    /// Classic reference: `null` when the frame has too little texture.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    texture: Option<Option<TextureLine>>,
    /// Classic frame: one map per anchor (`null`: unusable), or `null` for no motion.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    maps: Option<Option<Vec<Option<MapLine>>>>,
    /// Classic frame: points tracked, points tracked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    points: Option<[usize; 2]>,
}

/// A field that may be `null`: absent -> `None`, `null` -> `Some(None)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn point(p: [f32; 2]) -> Point {
    [F32(p[0]), F32(p[1])]
}

fn matrix(m: [[f32; 2]; 2]) -> Matrix {
    [point(m[0]), point(m[1])]
}

fn unpoint(p: &Point) -> [f32; 2] {
    [p[0].0, p[1].0]
}

fn unmatrix(m: &Matrix) -> [[f32; 2]; 2] {
    [unpoint(&m[0]), unpoint(&m[1])]
}

const IDENTITY: [[f32; 2]; 2] = [[1.0, 0.0], [0.0, 1.0]];

// ---------------------------------------------------------------------------------------------
// Writing.

/// Writes a motion file line by line.
pub struct MotionWriter<W: Write> {
    out: W,
    header: MotionHeader,
    path: String,
    /// Anchors of the current classic reference (frames are checked against them).
    anchors: Option<Vec<[f64; 2]>>,
    lines: usize,
}

impl MotionWriter<BufWriter<File>> {
    /// Creates (or replaces) `path` and writes the header.
    pub fn create(path: &Path, header: MotionHeader) -> Result<Self, MotionFileError> {
        let io = |action, source| MotionFileError::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io("create its folder", e))?;
        }
        let file = File::create(path).map_err(|e| io("create it", e))?;
        Self::new(BufWriter::new(file), header, &path.display().to_string())
    }
}

impl<W: Write> MotionWriter<W> {
    /// Writes the header to `out`; `name` names it in errors.
    pub fn new(out: W, header: MotionHeader, name: &str) -> Result<Self, MotionFileError> {
        let mut w = Self {
            out,
            header,
            path: name.to_string(),
            anchors: None,
            lines: 0,
        };
        let s = &w.header.source;
        let line = HeaderLine {
            kind: LineType::Header,
            format: FORMAT.into(),
            version: VERSION,
            generator: w.header.generator.clone(),
            engine: s.engine,
            config: s.config.clone(),
            checkpoint: s.checkpoint.clone(),
            frame_size: [s.frame_size.0, s.frame_size.1],
            keypoints: s.keypoints,
            jacobians: s.jacobians,
            fps: w.header.fps.filter(|f| f.is_finite() && *f > 0.0),
            driving: w.header.driving.clone(),
        };
        w.write_line(&line)?;
        Ok(w)
    }

    /// The header written.
    pub fn header(&self) -> &MotionHeader {
        &self.header
    }

    /// Lines written, header included.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// A new reference frame D_1: driving frame `frame` at `t` seconds.
    pub fn reference(
        &mut self,
        frame: u64,
        t: f64,
        motion: &ReferenceMotion,
    ) -> Result<(), MotionFileError> {
        self.check_engine(motion.engine())?;
        let size = self.header.source.frame_size;
        let line = match motion {
            ReferenceMotion::Fomm(kp) => {
                self.check_keypoints(kp)?;
                fomm_line(LineType::Reference, frame, t, kp)
            }
            ReferenceMotion::Classic(r) => {
                let finite = r.anchors.iter().flatten().all(|v| v.is_finite())
                    && r.spacing.is_finite()
                    && r.spacing > 0.0;
                if !finite {
                    return Err(MotionFileError::Invalid(
                        "the reference frame's anchors are not finite".into(),
                    ));
                }
                self.anchors = Some(r.anchors.clone());
                MotionLine {
                    kind: LineType::Reference,
                    frame,
                    t,
                    keypoints: r
                        .anchors
                        .iter()
                        .map(|a| point(normalise_point(*a, size)))
                        .collect(),
                    jacobians: Some(vec![matrix(IDENTITY); r.anchors.len()]),
                    anchors: Some(r.anchors.clone()),
                    spacing: Some(r.spacing),
                    texture: Some(r.texture.filter(cloud_is_finite).map(|c| TextureLine {
                        centroid: c.centroid,
                        size: c.size,
                        floor: c.floor,
                    })),
                    maps: None,
                    points: None,
                }
            }
        };
        self.write_line(&check_time(line)?)
    }

    /// Driving frame `frame` at `t` seconds, relative to the last reference.
    pub fn frame(
        &mut self,
        frame: u64,
        t: f64,
        motion: &FrameMotion,
    ) -> Result<(), MotionFileError> {
        self.check_engine(motion.engine())?;
        let size = self.header.source.frame_size;
        let line = match motion {
            FrameMotion::Fomm(kp) => {
                self.check_keypoints(kp)?;
                fomm_line(LineType::Frame, frame, t, kp)
            }
            FrameMotion::Classic(c) => {
                let anchors = self.anchors.as_deref().ok_or_else(|| {
                    MotionFileError::Invalid("a frame before any reference frame".into())
                })?;
                let mut keypoints = Vec::with_capacity(anchors.len());
                let mut jacobians = Vec::with_capacity(anchors.len());
                let maps = match &c.anchors {
                    None => {
                        keypoints.extend(anchors.iter().map(|a| point(normalise_point(*a, size))));
                        jacobians.resize(anchors.len(), matrix(IDENTITY));
                        None
                    }
                    Some(maps) => {
                        if maps.len() != anchors.len() {
                            return Err(MotionFileError::Invalid(format!(
                                "{} anchor maps for a reference with {} anchors",
                                maps.len(),
                                anchors.len()
                            )));
                        }
                        let mut lines = Vec::with_capacity(maps.len());
                        for (anchor, m) in anchors.iter().zip(maps) {
                            let m = m.filter(|m| m.position.iter().all(|v| v.is_finite()));
                            let (at, jac) = match m {
                                Some(m) => (m.position, finite_or_identity(m.jacobian)),
                                None => (*anchor, [[1.0, 0.0], [0.0, 1.0]]),
                            };
                            keypoints.push(point(normalise_point(at, size)));
                            jacobians.push(matrix(normalise_jacobian(jac, size)));
                            lines.push(m.map(|m| MapLine {
                                at: m.position,
                                jacobian: finite_or_identity(m.jacobian),
                                back: m.backward.filter(back_is_finite).map(|b| BackLine {
                                    a: b.a,
                                    b: b.b,
                                    q: b.q,
                                }),
                            }));
                        }
                        Some(lines)
                    }
                };
                MotionLine {
                    kind: LineType::Frame,
                    frame,
                    t,
                    keypoints,
                    jacobians: Some(jacobians),
                    anchors: None,
                    spacing: None,
                    texture: None,
                    maps: Some(maps),
                    points: Some([c.points.0, c.points.1]),
                }
            }
        };
        self.write_line(&check_time(line)?)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), MotionFileError> {
        self.out.flush().map_err(|e| MotionFileError::Io {
            action: "write it",
            path: self.path.clone(),
            source: e,
        })
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<W, MotionFileError> {
        self.flush()?;
        Ok(self.out)
    }

    fn check_engine(&self, engine: MotionEngine) -> Result<(), MotionFileError> {
        if engine == self.header.source.engine {
            Ok(())
        } else {
            Err(MotionFileError::Invalid(format!(
                "a {engine} motion in a file of {} motion",
                self.header.source.engine
            )))
        }
    }

    fn check_keypoints(&self, kp: &KeypointSet) -> Result<(), MotionFileError> {
        let s = &self.header.source;
        if s.keypoints != 0 && kp.points.len() != s.keypoints {
            return Err(MotionFileError::Invalid(format!(
                "{} keypoints where the header says {}",
                kp.points.len(),
                s.keypoints
            )));
        }
        if kp.jacobians.is_some() != s.jacobians
            || kp
                .jacobians
                .as_ref()
                .is_some_and(|j| j.len() != kp.points.len())
        {
            return Err(MotionFileError::Invalid(
                "the Jacobians do not match the keypoints or the header".into(),
            ));
        }
        let finite = kp.points.iter().flatten().all(|v| v.is_finite())
            && kp
                .jacobians
                .iter()
                .flatten()
                .flatten()
                .flatten()
                .all(|v| v.is_finite());
        if !finite {
            return Err(MotionFileError::Invalid(
                "the keypoints are not finite numbers".into(),
            ));
        }
        Ok(())
    }

    fn write_line<T: Serialize>(&mut self, line: &T) -> Result<(), MotionFileError> {
        let io = |e| MotionFileError::Io {
            action: "write it",
            path: self.path.clone(),
            source: e,
        };
        serde_json::to_writer(&mut self.out, line).map_err(|e| io(std::io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.lines += 1;
        Ok(())
    }
}

fn fomm_line(kind: LineType, frame: u64, t: f64, kp: &KeypointSet) -> MotionLine {
    MotionLine {
        kind,
        frame,
        t,
        keypoints: kp.points.iter().map(|p| point(*p)).collect(),
        jacobians: kp
            .jacobians
            .as_ref()
            .map(|j| j.iter().map(|m| matrix(*m)).collect()),
        anchors: None,
        spacing: None,
        texture: None,
        maps: None,
        points: None,
    }
}

fn check_time(line: MotionLine) -> Result<MotionLine, MotionFileError> {
    if line.t.is_finite() && line.t >= 0.0 {
        Ok(line)
    } else {
        Err(MotionFileError::Invalid(format!(
            "time {} s is not a finite, non-negative number",
            line.t
        )))
    }
}

fn finite_or_identity(a: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    if a.iter().flatten().all(|v| v.is_finite()) {
        a
    } else {
        [[1.0, 0.0], [0.0, 1.0]]
    }
}

fn back_is_finite(b: &BackwardMap) -> bool {
    b.a.iter()
        .flatten()
        .chain(&b.b)
        .chain(b.q.iter().flatten())
        .all(|v| v.is_finite())
}

fn cloud_is_finite(c: &TextureCloud) -> bool {
    c.centroid.iter().all(|v| v.is_finite()) && c.size.is_finite() && c.floor.is_finite()
}

// ---------------------------------------------------------------------------------------------
// Reading.

/// Reads a motion file: the header at once, then its records one by one, each checked.
pub struct MotionReader<R: BufRead> {
    lines: std::io::Lines<R>,
    path: String,
    header: MotionHeader,
    line: usize,
    /// Keypoints (anchors) of the current reference; `None` before the first.
    reference_len: Option<usize>,
    last_t: f64,
}

impl MotionReader<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, MotionFileError> {
        let file = File::open(path).map_err(|e| MotionFileError::Io {
            action: "open it",
            path: path.display().to_string(),
            source: e,
        })?;
        Self::new(BufReader::new(file), &path.display().to_string())
    }
}

impl<R: BufRead> MotionReader<R> {
    /// Reads the header from `input`; `name` names it in errors.
    pub fn new(input: R, name: &str) -> Result<Self, MotionFileError> {
        let mut reader = Self {
            lines: input.lines(),
            path: name.to_string(),
            header: MotionHeader::new(
                MotionSource {
                    engine: MotionEngine::Fomm,
                    config: None,
                    checkpoint: None,
                    frame_size: (0, 0),
                    keypoints: 0,
                    jacobians: false,
                },
                None,
                None,
            ),
            line: 0,
            reference_len: None,
            last_t: 0.0,
        };
        let Some(value) = reader.next_value()? else {
            return Err(reader.error(
                1,
                format!("the file is empty; a motion file starts with a {FORMAT} header line"),
            ));
        };
        reader.header = reader.parse_header(value)?;
        Ok(reader)
    }

    /// The header.
    pub fn header(&self) -> &MotionHeader {
        &self.header
    }

    fn error(&self, line: usize, message: impl Into<String>) -> MotionFileError {
        MotionFileError::Line {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The next non-blank line as JSON, `None` at the end.
    fn next_value(&mut self) -> Result<Option<Value>, MotionFileError> {
        loop {
            let Some(text) = self.lines.next() else {
                return Ok(None);
            };
            self.line += 1;
            let text = text.map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => self.error(self.line, "is not UTF-8 text"),
                _ => MotionFileError::Io {
                    action: "read it",
                    path: self.path.clone(),
                    source: e,
                },
            })?;
            if text.trim().is_empty() {
                continue;
            }
            return serde_json::from_str::<Value>(&text).map(Some).map_err(|e| {
                let what = if e.is_eof() {
                    "is cut short (the file may have been truncated)".to_string()
                } else {
                    format!("is not valid JSON: {}", without_position(&e))
                };
                self.error(self.line, format!("{what} (column {})", e.column()))
            });
        }
    }

    fn parse_header(&self, value: Value) -> Result<MotionHeader, MotionFileError> {
        let line = self.line;
        let format = value.get("format").and_then(Value::as_str);
        if value.get("type").and_then(Value::as_str) != Some("header") || format != Some(FORMAT) {
            return Err(self.error(
                line,
                format!(
                    "not a motion file: the first line must be the header \
                     {{\"type\":\"header\",\"format\":\"{FORMAT}\",...}}"
                ),
            ));
        }
        match value.get("version").and_then(Value::as_u64) {
            Some(v) if v == VERSION as u64 => {}
            Some(v) if v > VERSION as u64 => {
                return Err(self.error(
                    line,
                    format!(
                        "format version {v} is newer than this marionette reads (version \
                         {VERSION}); use a newer marionette"
                    ),
                ));
            }
            other => {
                return Err(self.error(
                    line,
                    format!(
                        "unknown format version {}; this marionette reads version {VERSION}",
                        other.map_or("(missing)".to_string(), |v| v.to_string())
                    ),
                ));
            }
        }
        let h: HeaderLine =
            serde_json::from_value(value).map_err(|e| self.error(line, format!("header: {e}")))?;
        let [height, width] = h.frame_size;
        if !(2..=16384).contains(&height) || !(2..=16384).contains(&width) {
            return Err(self.error(
                line,
                format!("header: frame size {width}x{height} is out of range"),
            ));
        }
        if h.engine == MotionEngine::Fomm && h.keypoints == 0 {
            return Err(self.error(line, "header: a FOMM motion needs keypoints > 0"));
        }
        if h.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
            return Err(self.error(line, "header: fps must be a positive number"));
        }
        Ok(MotionHeader {
            source: MotionSource {
                engine: h.engine,
                config: h.config,
                checkpoint: h.checkpoint,
                frame_size: (height, width),
                keypoints: h.keypoints,
                jacobians: h.jacobians,
            },
            version: h.version,
            generator: h.generator,
            fps: h.fps,
            driving: h.driving,
        })
    }

    /// The next record, checked; `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, MotionFileError> {
        let Some(value) = self.next_value()? else {
            return Ok(None);
        };
        let line = self.line;
        let kind = match value.get("type").and_then(Value::as_str) {
            Some(k @ ("reference" | "frame")) => k.to_string(),
            Some("header") => return Err(self.error(line, "a second header line")),
            Some(other) => {
                return Err(self.error(
                    line,
                    format!("unknown line type {other:?}: expected \"reference\" or \"frame\""),
                ));
            }
            None => {
                return Err(self.error(
                    line,
                    "no \"type\": expected \"reference\" or \"frame\" lines after the header",
                ));
            }
        };
        let m: MotionLine =
            serde_json::from_value(value).map_err(|e| self.error(line, format!("{kind}: {e}")))?;
        if !(m.t.is_finite() && m.t >= 0.0) {
            return Err(self.error(line, format!("time {} is not a non-negative number", m.t)));
        }
        if m.t < self.last_t {
            return Err(self.error(
                line,
                format!(
                    "time {} s is before the previous line's {} s: lines must be in time order",
                    m.t, self.last_t
                ),
            ));
        }
        let record_kind = if kind == "reference" {
            let r = self.reference(&m).map_err(|msg| self.error(line, msg))?;
            self.reference_len = Some(r.len());
            RecordKind::Reference(r)
        } else {
            let expected = self
                .reference_len
                .ok_or_else(|| self.error(line, "a frame before any reference line"))?;
            RecordKind::Frame(
                self.frame(&m, expected)
                    .map_err(|msg| self.error(line, format!("frame {}: {msg}", m.frame)))?,
            )
        };
        self.last_t = m.t;
        Ok(Some(Record {
            line,
            frame: m.frame,
            t: m.t,
            kind: record_kind,
        }))
    }

    /// Reads every record.
    pub fn read_all(&mut self) -> Result<Vec<Record>, MotionFileError> {
        let mut out = Vec::new();
        while let Some(r) = self.next_record()? {
            out.push(r);
        }
        Ok(out)
    }

    fn keypoint_set(&self, m: &MotionLine) -> Result<KeypointSet, String> {
        let s = &self.header.source;
        if m.keypoints.len() != s.keypoints {
            return Err(format!(
                "{} keypoints where the header says {}",
                m.keypoints.len(),
                s.keypoints
            ));
        }
        let jacobians = match (&m.jacobians, s.jacobians) {
            (Some(j), true) if j.len() == m.keypoints.len() => {
                Some(j.iter().map(unmatrix).collect())
            }
            (Some(j), true) => {
                return Err(format!(
                    "{} Jacobians for {} keypoints",
                    j.len(),
                    m.keypoints.len()
                ));
            }
            (None, true) => {
                return Err("no \"jacobians\" where the header says jacobians: true".into());
            }
            (Some(_), false) => {
                return Err("\"jacobians\" where the header says jacobians: false".into());
            }
            (None, false) => None,
        };
        Ok(KeypointSet {
            points: m.keypoints.iter().map(unpoint).collect(),
            jacobians,
        })
    }

    fn reference(&self, m: &MotionLine) -> Result<ReferenceMotion, String> {
        match self.header.source.engine {
            MotionEngine::Fomm => {
                let kp = self.keypoint_set(m)?;
                if let Some(j) = &kp.jacobians {
                    // Relative Jacobians use the reference's inverse.
                    for (i, m) in j.iter().enumerate() {
                        let det = m[0][0] as f64 * m[1][1] as f64 - m[0][1] as f64 * m[1][0] as f64;
                        if det == 0.0 || !det.is_finite() {
                            return Err(format!(
                                "reference: the Jacobian of keypoint {i} is singular \
                                 (determinant {det}); relative motion needs its inverse"
                            ));
                        }
                    }
                }
                Ok(ReferenceMotion::Fomm(kp))
            }
            MotionEngine::Classic => {
                let anchors = m
                    .anchors
                    .clone()
                    .ok_or("reference: a classic reference needs \"anchors\"")?;
                if anchors.is_empty() || anchors.iter().flatten().any(|v| !v.is_finite()) {
                    return Err("reference: \"anchors\" must be finite points".into());
                }
                if m.keypoints.len() != anchors.len() {
                    return Err(format!(
                        "reference: {} keypoints for {} anchors",
                        m.keypoints.len(),
                        anchors.len()
                    ));
                }
                let spacing = m
                    .spacing
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or("reference: a classic reference needs a positive \"spacing\"")?;
                let texture = match &m.texture {
                    Some(Some(t)) => {
                        let c = TextureCloud {
                            centroid: t.centroid,
                            size: t.size,
                            floor: t.floor,
                        };
                        if !cloud_is_finite(&c) || c.size <= 0.0 {
                            return Err("reference: \"texture\" must be finite, size > 0".into());
                        }
                        Some(c)
                    }
                    Some(None) => None,
                    None => return Err("reference: a classic reference needs \"texture\"".into()),
                };
                Ok(ReferenceMotion::Classic(ClassicReference {
                    anchors,
                    spacing,
                    texture,
                }))
            }
        }
    }

    fn frame(&self, m: &MotionLine, anchors: usize) -> Result<FrameMotion, String> {
        match self.header.source.engine {
            MotionEngine::Fomm => Ok(FrameMotion::Fomm(self.keypoint_set(m)?)),
            MotionEngine::Classic => {
                if m.keypoints.len() != anchors {
                    return Err(format!(
                        "{} keypoints for a reference with {anchors} anchors",
                        m.keypoints.len()
                    ));
                }
                let maps = match &m.maps {
                    None => return Err("a classic frame needs \"maps\"".into()),
                    Some(None) => None,
                    Some(Some(maps)) => {
                        if maps.len() != anchors {
                            return Err(format!(
                                "{} maps for a reference with {anchors} anchors",
                                maps.len()
                            ));
                        }
                        let mut out = Vec::with_capacity(maps.len());
                        for (i, map) in maps.iter().enumerate() {
                            out.push(match map {
                                None => None,
                                Some(l) => {
                                    let motion = AnchorMotion {
                                        position: l.at,
                                        jacobian: l.jacobian,
                                        backward: l.back.as_ref().map(|b| BackwardMap {
                                            a: b.a,
                                            b: b.b,
                                            q: b.q,
                                        }),
                                    };
                                    let finite = motion
                                        .position
                                        .iter()
                                        .chain(motion.jacobian.iter().flatten())
                                        .all(|v| v.is_finite())
                                        && motion.backward.as_ref().is_none_or(back_is_finite);
                                    if !finite {
                                        return Err(format!("map {i} is not finite"));
                                    }
                                    Some(motion)
                                }
                            });
                        }
                        Some(out)
                    }
                };
                let points = m.points.unwrap_or([0, 0]);
                Ok(FrameMotion::Classic(ClassicFrame {
                    anchors: maps,
                    points: (points[0], points[1]),
                }))
            }
        }
    }
}

impl<R: BufRead> Iterator for MotionReader<R> {
    type Item = Result<Record, MotionFileError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// serde_json's message without its " at line L column C" (the reader names the line itself).
fn without_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fomm_source(k: usize) -> MotionSource {
        MotionSource {
            engine: MotionEngine::Fomm,
            config: Some("tiny".into()),
            checkpoint: None,
            frame_size: (64, 64),
            keypoints: k,
            jacobians: true,
        }
    }

    fn kp(values: &[f32]) -> KeypointSet {
        KeypointSet {
            points: values.chunks(2).map(|c| [c[0], c[1]]).collect(),
            jacobians: Some(
                values
                    .chunks(2)
                    .map(|c| [[1.0 + c[0], c[1]], [-c[1], 1.0 - c[0] * 0.5]])
                    .collect(),
            ),
        }
    }

    #[test]
    fn f32_values_round_trip_bit_for_bit() {
        // Awkward values: subnormals, extremes, values whose shortest decimal is long.
        let mut values = vec![
            0.1f32,
            -0.0,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            -f32::MAX,
            1.0 / 3.0,
            0.99999994,
            16777217.0,
            3.4028235e38,
        ];
        // And a deterministic spread of arbitrary bit patterns.
        let mut x: u32 = 0x1234_5678;
        while values.len() < 4000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
        }
        let k = values.len() / 2;
        let set = kp(&values[..2 * k]);
        let mut out = Vec::new();
        {
            let mut w = MotionWriter::new(
                &mut out,
                MotionHeader::new(fomm_source(k), Some(25.0), None),
                "mem",
            )
            .unwrap();
            w.reference(0, 0.0, &ReferenceMotion::Fomm(set.clone()))
                .unwrap();
            w.frame(0, 0.0, &FrameMotion::Fomm(set.clone())).unwrap();
            w.finish().unwrap();
        }
        let mut r = MotionReader::new(out.as_slice(), "mem").unwrap();
        let records = r.read_all().unwrap();
        assert_eq!(records.len(), 2);
        let RecordKind::Frame(FrameMotion::Fomm(back)) = &records[1].kind else {
            panic!("not a frame")
        };
        for (a, b) in set
            .points
            .iter()
            .flatten()
            .zip(back.points.iter().flatten())
        {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
        }
        let (ja, jb) = (set.jacobians.unwrap(), back.jacobians.clone().unwrap());
        for (a, b) in ja
            .iter()
            .flatten()
            .flatten()
            .zip(jb.iter().flatten().flatten())
        {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
        }
    }

    fn written() -> String {
        let mut out = Vec::new();
        let mut w = MotionWriter::new(
            &mut out,
            MotionHeader::new(fomm_source(2), Some(25.0), None),
            "mem",
        )
        .unwrap();
        w.reference(0, 0.0, &ReferenceMotion::Fomm(kp(&[0.1, 0.2, -0.3, 0.4])))
            .unwrap();
        for i in 0..3 {
            let d = i as f32 * 0.01;
            w.frame(
                i,
                i as f64 / 25.0,
                &FrameMotion::Fomm(kp(&[0.1 + d, 0.2, -0.3, 0.4 - d])),
            )
            .unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    fn read_err(text: &str) -> String {
        let result = MotionReader::new(text.as_bytes(), "m.jsonl").and_then(|mut r| r.read_all());
        match result {
            Ok(_) => panic!("read without error:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn edit_line(text: &str, n: usize, f: impl Fn(&str) -> String) -> String {
        text.lines()
            .enumerate()
            .map(|(i, l)| if i + 1 == n { f(l) } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn damaged_files_name_the_line() {
        let good = written();
        assert_eq!(
            MotionReader::new(good.as_bytes(), "m")
                .unwrap()
                .read_all()
                .unwrap()
                .len(),
            4
        );
        // Cut short (a truncated file).
        let cut = &good[..good.len() - 20];
        let e = read_err(cut);
        assert!(
            e.contains("m.jsonl line 5") && e.contains("cut short"),
            "{e}"
        );
        // A keypoint with three numbers.
        let e = read_err(&edit_line(&good, 3, |l| {
            l.replacen("\"keypoints\":[[", "\"keypoints\":[[7,", 1)
        }));
        assert!(e.contains("line 3") && e.contains("length"), "{e}");
        // A keypoint missing.
        let e = read_err(&edit_line(&good, 4, |l| {
            l.replacen("\"keypoints\":[[0.11,0.2],", "\"keypoints\":[", 1)
        }));
        assert!(
            e.contains("line 4") && e.contains("1 keypoints where the header says 2"),
            "{e}"
        );
        // A word for a number.
        let e = read_err(&edit_line(&good, 4, |l| l.replacen("0.11", "\"x\"", 1)));
        assert!(e.contains("line 4") && e.contains("invalid type"), "{e}");
        // Out of f32 range.
        let e = read_err(&edit_line(&good, 4, |l| l.replacen("0.11", "1e39", 1)));
        assert!(e.contains("line 4") && e.contains("range"), "{e}");
        // Lines out of order.
        let lines: Vec<&str> = good.lines().collect();
        let swapped = [lines[0], lines[1], lines[3], lines[2], lines[4]].join("\n");
        let e = read_err(&swapped);
        assert!(e.contains("line 4") && e.contains("time order"), "{e}");
        // A frame before the reference.
        let e = read_err(&[lines[0], lines[2]].join("\n"));
        assert!(
            e.contains("line 2") && e.contains("before any reference"),
            "{e}"
        );
    }

    #[test]
    fn damaged_headers_and_records_are_named() {
        let good = written();
        // Not JSON.
        let e = read_err(&edit_line(&good, 2, |l| l.replacen('{', "{{", 1)));
        assert!(e.contains("line 2") && e.contains("not valid JSON"), "{e}");
        // Not a motion file / a newer version / an empty file.
        let e = read_err("hello\n");
        assert!(e.contains("line 1"), "{e}");
        let e = read_err(&edit_line(&good, 1, |l| {
            l.replacen("\"version\":1", "\"version\":2", 1)
        }));
        assert!(e.contains("line 1") && e.contains("newer"), "{e}");
        let e = read_err("");
        assert!(e.contains("empty"), "{e}");
        // A singular reference Jacobian.
        let e = read_err(&edit_line(&good, 2, |l| {
            let start = l.find("\"jacobians\"").unwrap();
            format!(
                "{}\"jacobians\":[[[0,0],[0,0]],[[1,0],[0,1]]]}}",
                &l[..start]
            )
        }));
        assert!(e.contains("line 2") && e.contains("singular"), "{e}");
    }

    #[test]
    fn writer_refuses_what_it_cannot_write() {
        let mut out = Vec::new();
        let mut w = MotionWriter::new(
            &mut out,
            MotionHeader::new(fomm_source(2), None, None),
            "mem",
        )
        .unwrap();
        let nan = kp(&[f32::NAN, 0.0, 0.0, 0.0]);
        assert!(w.reference(0, 0.0, &ReferenceMotion::Fomm(nan)).is_err());
        let three = kp(&[0.0; 6]);
        assert!(w.frame(0, 0.0, &FrameMotion::Fomm(three)).is_err());
        let classic = FrameMotion::Classic(ClassicFrame {
            anchors: None,
            points: (0, 0),
        });
        assert!(w.frame(0, 0.0, &classic).is_err());
    }

    #[test]
    fn classic_motion_round_trips() {
        let source = MotionSource {
            engine: MotionEngine::Classic,
            config: None,
            checkpoint: None,
            frame_size: (48, 64),
            keypoints: 0,
            jacobians: true,
        };
        let reference = ClassicReference {
            anchors: vec![[10.5, 12.25], [30.0, 20.0]],
            spacing: 7.5,
            texture: Some(TextureCloud {
                centroid: [31.1, 22.7],
                size: 9.25,
                floor: 1e-5,
            }),
        };
        let frame = ClassicFrame {
            anchors: Some(vec![
                Some(AnchorMotion {
                    position: [11.0 + 1.0 / 3.0, 12.5],
                    jacobian: [[1.01, 0.02], [-0.02, 0.99]],
                    backward: Some(BackwardMap {
                        a: [[0.99, -0.02], [0.02, 1.01]],
                        b: [-0.3, 0.1 / 7.0],
                        q: [[1e-4, 0.0, -2e-4], [0.0, 3e-5, 0.0]],
                    }),
                }),
                None,
            ]),
            points: (40, 42),
        };
        let mut out = Vec::new();
        let mut w = MotionWriter::new(
            &mut out,
            MotionHeader::new(source, None, Some("camera".into())),
            "m",
        )
        .unwrap();
        w.reference(3, 0.5, &ReferenceMotion::Classic(reference.clone()))
            .unwrap();
        w.frame(4, 0.55, &FrameMotion::Classic(frame.clone()))
            .unwrap();
        let still = ClassicFrame {
            anchors: None,
            points: (2, 42),
        };
        w.frame(5, 0.6, &FrameMotion::Classic(still.clone()))
            .unwrap();
        w.finish().unwrap();
        let mut r = MotionReader::new(out.as_slice(), "m").unwrap();
        assert_eq!(r.header().fps, None);
        assert_eq!(r.header().driving.as_deref(), Some("camera"));
        let records = r.read_all().unwrap();
        assert_eq!(
            records.iter().map(|r| r.kind.clone()).collect::<Vec<_>>(),
            vec![
                RecordKind::Reference(ReferenceMotion::Classic(reference)),
                RecordKind::Frame(FrameMotion::Classic(frame)),
                RecordKind::Frame(FrameMotion::Classic(still)),
            ]
        );
    }
}
