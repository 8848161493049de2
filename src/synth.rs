//! Synthetic driving sequences with a known answer, and the accuracy score of an animation against them.
//!
//! A sequence is a real photo (frame 0) followed by copies of it warped by a known motion relative to
//! frame 0, growing linearly from nothing to the full motion. Animating frame 0 itself as the source
//! with such a sequence as the driving video should reproduce the warped frames; [`evaluate`] measures
//! how well it does, as the mean absolute error over the face box in units of 1.0 (a byte value / 255).
//! The classic engine is held to [`TARGET_MAE`] on every moved frame.
//!
//! The ten [`standard_motions`] are the classic engine's tuning set, kept fixed so that figures
//! compare across versions: rotations up to 15 degrees, scaling up to 15 %, shifts up to 20 px (at 256 px,
//! scaled with the size), mild smooth non-rigid wobbles, and two "head in front of a still room" cases.
//!
//! On disk a sequence is a folder of `frame_000000.png`, `frame_000001.png`, ... plus `sequence.json`
//! (a [`SequenceSpec`]), so it can be fed to anything that reads a folder of frames.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The classic engine's accuracy target: at most 0.02 (of 1.0) mean absolute error over the face
/// region, on every moved frame (about 5 levels of 255).
pub const TARGET_MAE: f64 = 0.02;

/// Name of the description file in each sequence folder.
pub const SPEC_FILE: &str = "sequence.json";

/// Everything that can go wrong while writing or scoring sequences.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A picture or folder could not be read or written by the media layer.
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    /// A file or folder could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we tried to do ("create the folder", "read", "write", "list the folder").
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `sequence.json` could not be read or written as a [`SequenceSpec`].
    #[error(
        "{} is not a valid sequence description: {source}; regenerate the sequence or delete the file and pass --face",
        path.display()
    )]
    Json {
        /// The description file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A face box that cannot be used.
    #[error("bad face box: {0}")]
    BadFaceBox(String),
    /// Two things that must agree do not (frame counts, picture sizes).
    #[error("{0}")]
    Mismatch(String),
    /// An argument or a sequence description that makes no sense (no frames, zero size, bad motion).
    #[error("{0}")]
    InvalidArgument(String),
}

// ----------------------------------------------------------------------------------------------------
// Face box

/// The region errors are measured over, as fractions of the frame: `x0 < x1` and `y0 < y1`, all in
/// [0, 1]. Written and parsed as `x0,y0,x1,y1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge.
    pub x1: f64,
    /// Bottom edge.
    pub y1: f64,
}

impl FaceBox {
    /// A checked face box.
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Result<Self, SynthError> {
        let face = Self { x0, y0, x1, y1 };
        face.validate()?;
        Ok(face)
    }

    /// The whole frame.
    pub fn full() -> Self {
        Self {
            x0: 0.0,
            y0: 0.0,
            x1: 1.0,
            y1: 1.0,
        }
    }

    /// Checks the box (a deserialised one is not checked on its own).
    pub fn validate(&self) -> Result<(), SynthError> {
        for (name, v) in [
            ("x0", self.x0),
            ("y0", self.y0),
            ("x1", self.x1),
            ("y1", self.y1),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(SynthError::BadFaceBox(format!(
                    "{name} = {v} is outside [0, 1]: give the box as fractions of the frame, e.g. 0.2,0.1,0.7,0.6"
                )));
            }
        }
        if self.x0 >= self.x1 || self.y0 >= self.y1 {
            return Err(SynthError::BadFaceBox(format!(
                "{self} is empty: it must be x0,y0,x1,y1 with x0 < x1 and y0 < y1"
            )));
        }
        Ok(())
    }

    /// The box in whole pixels of a `width` x `height` frame: columns `x0..x1`, rows `y0..y1` (each
    /// edge rounded to the nearest pixel boundary). An error if that holds no pixel.
    pub fn pixel_rect(&self, width: u32, height: u32) -> Result<[u32; 4], SynthError> {
        self.validate()?;
        let px = |f: f64, n: u32| ((f * f64::from(n)).round() as u32).min(n);
        let rect = [
            px(self.x0, width),
            px(self.y0, height),
            px(self.x1, width),
            px(self.y1, height),
        ];
        if rect[0] >= rect[2] || rect[1] >= rect[3] {
            return Err(SynthError::BadFaceBox(format!(
                "{self} covers no whole pixel of a {width}x{height} frame: use a larger box"
            )));
        }
        Ok(rect)
    }
}

impl fmt::Display for FaceBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x0, self.y0, self.x1, self.y1)
    }
}

impl FromStr for FaceBox {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [x0, y0, x1, y1] = parts.as_slice() else {
            return Err(SynthError::BadFaceBox(format!(
                "'{s}' has {} comma-separated values; expected four: x0,y0,x1,y1 (fractions of the frame, e.g. 0.2,0.1,0.7,0.6)",
                parts.len()
            )));
        };
        let num = |name: &str, v: &str| {
            v.parse::<f64>().map_err(|_| {
                SynthError::BadFaceBox(format!(
                    "{name} = '{v}' in '{s}' is not a number: give x0,y0,x1,y1 as fractions, e.g. 0.2,0.1,0.7,0.6"
                ))
            })
        };
        Self::new(
            num("x0", x0)?,
            num("y0", y0)?,
            num("x1", x1)?,
            num("y1", y1)?,
        )
    }
}

// ----------------------------------------------------------------------------------------------------
// Known motions

/// A known motion of frame 0: a rotation by `degrees` and a scaling by `scale` about the frame centre,
/// then a shift by `shift` pixels, plus a smooth non-rigid wobble of `wobble` pixels amplitude (in
/// the backward map). With `local > 0` only a Gaussian blob of radius `local` (fraction of the frame)
/// around the centre moves, blending into a still background: a head moving in front of a room.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnownMotion {
    /// Rotation, degrees (positive turns the picture clockwise on screen, y pointing down).
    pub degrees: f64,
    /// Scaling about the centre (1 = none; above 1 enlarges).
    pub scale: f64,
    /// Shift in pixels at the sequence size, (x, y).
    pub shift: [f64; 2],
    /// Amplitude of the smooth non-rigid deformation, pixels.
    pub wobble: f64,
    /// 0: the whole frame moves; otherwise the radius of the moving blob as a fraction of the frame.
    pub local: f64,
}

impl KnownMotion {
    /// No motion at all.
    pub fn identity() -> Self {
        Self {
            degrees: 0.0,
            scale: 1.0,
            shift: [0.0, 0.0],
            wobble: 0.0,
            local: 0.0,
        }
    }

    /// The motion `t` of the way from the identity (t = 0) to `self` (t = 1); `local` is kept.
    pub fn lerp(&self, t: f64) -> Self {
        Self {
            degrees: self.degrees * t,
            scale: 1.0 + (self.scale - 1.0) * t,
            shift: [self.shift[0] * t, self.shift[1] * t],
            wobble: self.wobble * t,
            local: self.local,
        }
    }

    /// Checks that the numbers make a motion (finite, positive scale, non-negative `local`).
    pub fn validate(&self) -> Result<(), SynthError> {
        let all = [
            self.degrees,
            self.scale,
            self.shift[0],
            self.shift[1],
            self.wobble,
            self.local,
        ];
        if all.iter().any(|v| !v.is_finite()) || self.scale <= 0.0 || self.local < 0.0 {
            return Err(SynthError::InvalidArgument(format!(
                "{self:?} is not a usable motion: all numbers must be finite, scale > 0 and local >= 0"
            )));
        }
        Ok(())
    }

    /// Where output pixel (x, y) of the moved `width` x `height` frame comes from in frame 0, in pixel
    /// coordinates (pixel centres at integers).
    ///
    /// z' = R(degrees) * scale * (z - c) + c + shift, inverted: z = R^-1 (z' - c - shift) / scale + c,
    /// c the frame centre. The wobble adds (sin(2 pi 0.8 y / h + 0.3), cos(2 pi 0.9 x / w + 1.1)) times
    /// its amplitude to that; the blob mask is exp(-|z' - c|^2 / (2 r^2)) with r = local * min(w, h).
    /// For square frames this is exactly the map the classic engine was tuned with.
    pub fn backward(&self, width: u32, height: u32, x: f64, y: f64) -> (f64, f64) {
        let (w, h) = (f64::from(width), f64::from(height));
        let (cx, cy) = ((w - 1.0) / 2.0, (h - 1.0) / 2.0);
        let (sin, cos) = self.degrees.to_radians().sin_cos();
        let (u, v) = (x - cx - self.shift[0], y - cy - self.shift[1]);
        let bx = (cos * u + sin * v) / self.scale + cx;
        let by = (-sin * u + cos * v) / self.scale + cy;
        let tau = std::f64::consts::TAU;
        let bx = bx + self.wobble * (tau / h * 0.8 * y + 0.3).sin();
        let by = by + self.wobble * (tau / w * 0.9 * x + 1.1).cos();
        if self.local > 0.0 {
            let r = self.local * w.min(h);
            let m = (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * r * r)).exp();
            (x + m * (bx - x), y + m * (by - y))
        } else {
            (bx, by)
        }
    }
}

/// The ten target motions the classic engine is measured on, with pixel amounts given at 256 px and
/// scaled by `size / 256`. Kept exactly as in the engine's tuning runs so figures stay comparable.
pub fn standard_motions(size: u32) -> Vec<(&'static str, KnownMotion)> {
    let px = f64::from(size) / 256.0;
    let m = |degrees: f64, scale: f64, shift: [f64; 2], wobble: f64, local: f64| KnownMotion {
        degrees,
        scale,
        shift: [shift[0] * px, shift[1] * px],
        wobble: wobble * px,
        local,
    };
    vec![
        ("rot +15", m(15.0, 1.0, [0.0, 0.0], 0.0, 0.0)),
        ("rot -15", m(-15.0, 1.0, [0.0, 0.0], 0.0, 0.0)),
        ("scale 1.15", m(0.0, 1.15, [0.0, 0.0], 0.0, 0.0)),
        ("scale 0.85", m(0.0, 0.85, [0.0, 0.0], 0.0, 0.0)),
        ("shift 20,-20", m(0.0, 1.0, [20.0, -20.0], 0.0, 0.0)),
        ("combo", m(-12.0, 1.1, [15.0, 10.0], 2.0, 0.0)),
        ("combo2", m(15.0, 0.87, [-20.0, 20.0], 3.0, 0.0)),
        ("wobble", m(0.0, 1.0, [0.0, 0.0], 4.0, 0.0)),
        ("local head", m(10.0, 1.05, [10.0, 5.0], 0.0, 0.25)),
        ("local head2", m(-15.0, 0.9, [-15.0, 10.0], 0.0, 0.3)),
    ]
}

/// A folder-name form of a motion name: lower case letters and digits, `+` -> `p`, `-` -> `m`,
/// `.` -> `_`, anything else separates words with `-` ("rot +15" -> "rot-p15", "scale 1.15" ->
/// "scale-1_15", "shift 20,-20" -> "shift-20-m20").
pub fn motion_slug(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in name.chars() {
        let mapped = match c {
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            '+' => Some('p'),
            '-' => Some('m'),
            '.' => Some('_'),
            _ => None,
        };
        match mapped {
            Some(c) => {
                if gap && !out.is_empty() {
                    out.push('-');
                }
                gap = false;
                out.push(c);
            }
            None => gap = true,
        }
    }
    out
}

/// A file stem as a folder-name part: letters, digits, `-` and `_` kept, anything else becomes `-`.
fn stem_slug(stem: &str) -> String {
    let s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "photo".to_owned() } else { s }
}

// ----------------------------------------------------------------------------------------------------
// Warping

/// Bilinear backward warp: output pixel (x, y) takes `img` at `backward(x, y)`, zero (black) outside
/// the picture, as `grid_sample` with zero padding does; values rounded to bytes. Rows are shared out
/// over the available cores.
pub fn warp(img: &RgbImage, backward: impl Fn(f64, f64) -> (f64, f64) + Sync) -> RgbImage {
    let (w, h) = img.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let mut out = vec![0u8; wu * hu * 3];
    if wu == 0 || hu == 0 {
        return RgbImage::new(w, h);
    }
    let src = img.as_raw();
    out.par_chunks_mut(wu * 3)
        .enumerate()
        .for_each(|(y, line)| {
            for (x, px) in line.chunks_mut(3).enumerate() {
                let (sx, sy) = backward(x as f64, y as f64);
                sample_bilinear(src, wu, hu, sx, sy, px);
            }
        });
    // The buffer has exactly w * h * 3 bytes, so this cannot fail; black is the harmless fallback.
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Bilinear sample of a packed RGB buffer at (sx, sy), zero outside; writes the rounded bytes to `px`.
fn sample_bilinear(src: &[u8], w: usize, h: usize, sx: f64, sy: f64, px: &mut [u8]) {
    let mut acc = [0f64; 3];
    if sx.is_finite() && sy.is_finite() {
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        for (dx, dy, wgt) in [
            (0.0, 0.0, (1.0 - fx) * (1.0 - fy)),
            (1.0, 0.0, fx * (1.0 - fy)),
            (0.0, 1.0, (1.0 - fx) * fy),
            (1.0, 1.0, fx * fy),
        ] {
            let (xi, yi) = (x0 + dx, y0 + dy);
            if wgt == 0.0 || xi < 0.0 || yi < 0.0 || xi >= w as f64 || yi >= h as f64 {
                continue;
            }
            let i = (yi as usize * w + xi as usize) * 3;
            if let Some(p) = src.get(i..i + 3) {
                for (a, &v) in acc.iter_mut().zip(p) {
                    *a += wgt * f64::from(v);
                }
            }
        }
    }
    for (o, a) in px.iter_mut().zip(acc) {
        *o = a.round().clamp(0.0, 255.0) as u8;
    }
}

// ----------------------------------------------------------------------------------------------------
// Sequences on disk

/// What a sequence folder holds, saved as `sequence.json` in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceSpec {
    /// The sequence's name (also its folder name when written by [`generate`]).
    pub name: String,
    /// Frame width and height, pixels.
    pub size: u32,
    /// Number of moved frames after frame 0; frame i shows `motion.lerp(i / frames)`.
    pub frames: usize,
    /// Where errors are measured.
    pub face: FaceBox,
    /// The full motion, reached on the last frame.
    pub motion: KnownMotion,
    /// File name of the photo frame 0 was made from.
    pub photo: String,
}

impl SequenceSpec {
    fn validate(&self) -> Result<(), SynthError> {
        if self.size == 0 || self.frames == 0 {
            return Err(SynthError::InvalidArgument(format!(
                "sequence '{}' has size {} and {} moved frames: both must be at least 1",
                self.name, self.size, self.frames
            )));
        }
        self.face.validate()?;
        self.motion.validate()
    }
}

/// File name of frame `index` in a sequence folder.
pub fn frame_file_name(index: usize) -> String {
    format!("frame_{index:06}.png")
}

/// Writes one sequence into `dir` (created if needed): `frame_000000.png` is `photo` (which must be
/// `spec.size` square), frame i of 1..=frames is `photo` warped by `spec.motion.lerp(i / frames)`, plus
/// `sequence.json`.
pub fn write_sequence(photo: &RgbImage, spec: &SequenceSpec, dir: &Path) -> Result<(), SynthError> {
    spec.validate()?;
    if photo.dimensions() != (spec.size, spec.size) {
        return Err(SynthError::Mismatch(format!(
            "the photo for sequence '{}' is {}x{} but the sequence is {}x{}: crop and resize it first (see square_photo)",
            spec.name,
            photo.width(),
            photo.height(),
            spec.size,
            spec.size
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| SynthError::Io {
        action: "create the folder",
        path: dir.to_path_buf(),
        source: e,
    })?;
    save_png(photo, &dir.join(frame_file_name(0)))?;
    for i in 1..=spec.frames {
        let motion = spec.motion.lerp(i as f64 / spec.frames as f64);
        let frame = warp(photo, |x, y| motion.backward(spec.size, spec.size, x, y));
        save_png(&frame, &dir.join(frame_file_name(i)))?;
    }
    let path = dir.join(SPEC_FILE);
    let json = serde_json::to_string_pretty(spec).map_err(|e| SynthError::Json {
        path: path.clone(),
        source: e,
    })?;
    std::fs::write(&path, json + "\n").map_err(|e| SynthError::Io {
        action: "write",
        path,
        source: e,
    })
}

/// `img` cropped to its centred largest square and resized to `size` x `size` (triangle filter; left
/// as is when it already has that size). An empty `img` gives a black square.
pub fn square_photo(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    if side == 0 || size == 0 {
        return RgbImage::new(size, size);
    }
    let square =
        image::imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    if square.dimensions() == (size, size) {
        square
    } else {
        image::imageops::resize(&square, size, size, image::imageops::FilterType::Triangle)
    }
}

/// Reads the photo at `photo_path`, makes it a `size` square ([`square_photo`]) and writes one
/// sequence of `frames` moved frames per [`standard_motions`] entry under `out_dir`, in folders named
/// `<photo stem>-<motion slug>` (e.g. `eileen-collins-rot-p15`). Returns the folders, in the order of
/// [`standard_motions`]. `face` is where the photo's face is once squared.
pub fn generate(
    photo_path: &Path,
    out_dir: &Path,
    size: u32,
    face: FaceBox,
    frames: usize,
) -> Result<Vec<PathBuf>, SynthError> {
    if size == 0 {
        return Err(SynthError::InvalidArgument(
            "the sequence size is 0: give a size in pixels, e.g. 256".to_owned(),
        ));
    }
    let photo = load_rgb(photo_path)?;
    let photo = square_photo(&photo, size);
    let name = photo_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "photo".to_owned());
    generate_from(&photo, &name, out_dir, face, frames)
}

/// As [`generate`], from a photo already square at the wanted size (e.g. cropped by hand around the
/// face); `photo_name` is the file name recorded in each `sequence.json` and gives the folder prefix.
pub fn generate_from(
    photo: &RgbImage,
    photo_name: &str,
    out_dir: &Path,
    face: FaceBox,
    frames: usize,
) -> Result<Vec<PathBuf>, SynthError> {
    let size = photo.width();
    if size == 0 || photo.height() != size {
        return Err(SynthError::InvalidArgument(format!(
            "the photo '{photo_name}' is {}x{}: sequences need a non-empty square picture (see square_photo)",
            photo.width(),
            photo.height()
        )));
    }
    let stem = Path::new(photo_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = stem_slug(&stem);
    let mut dirs = Vec::new();
    for (motion_name, motion) in standard_motions(size) {
        let name = format!("{prefix}-{}", motion_slug(motion_name));
        let dir = out_dir.join(&name);
        let spec = SequenceSpec {
            name,
            size,
            frames,
            face,
            motion,
            photo: photo_name.to_owned(),
        };
        write_sequence(photo, &spec, &dir)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// The `sequence.json` of a sequence folder, or `None` when the folder has none.
pub fn read_spec(dir: &Path) -> Result<Option<SequenceSpec>, SynthError> {
    let path = dir.join(SPEC_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SynthError::Io {
                action: "read",
                path,
                source: e,
            });
        }
    };
    let spec: SequenceSpec =
        serde_json::from_str(&text).map_err(|e| SynthError::Json { path, source: e })?;
    spec.validate()?;
    Ok(Some(spec))
}

// ----------------------------------------------------------------------------------------------------
// Scoring

/// Mean absolute difference of `a` and `b` over the face box, all three channels, in units of 1.0
/// (byte difference / 255). The two pictures must have the same size.
pub fn face_mae(a: &RgbImage, b: &RgbImage, face: &FaceBox) -> Result<f64, SynthError> {
    if a.dimensions() != b.dimensions() {
        return Err(SynthError::Mismatch(format!(
            "cannot compare a {}x{} picture with a {}x{} one: they must have the same size",
            a.width(),
            a.height(),
            b.width(),
            b.height()
        )));
    }
    let [x0, y0, x1, y1] = face.pixel_rect(a.width(), a.height())?;
    let (w, (x0, x1)) = (a.width() as usize, (x0 as usize, x1 as usize));
    let (ra, rb) = (a.as_raw(), b.as_raw());
    let mut sum = 0u64;
    for y in y0 as usize..y1 as usize {
        let span = (y * w + x0) * 3..(y * w + x1) * 3;
        if let (Some(la), Some(lb)) = (ra.get(span.clone()), rb.get(span)) {
            sum += la
                .iter()
                .zip(lb)
                .map(|(&p, &q)| u64::from(p.abs_diff(q)))
                .sum::<u64>();
        }
    }
    let count = (x1 - x0) * (y1 - y0) as usize * 3;
    Ok(sum as f64 / (count as f64 * 255.0))
}

/// How well one produced folder reproduces one sequence. All errors are [`face_mae`] values over the
/// moved frames 1.. (frame 0 is the calibration frame: there the output is the source itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceScore {
    /// The sequence's name (from `sequence.json`, else the folder name).
    pub name: String,
    /// Number of frames scored (all but frame 0).
    pub frames: usize,
    /// Mean over the scored frames.
    pub mean_mae: f64,
    /// Worst scored frame.
    pub max_mae: f64,
    /// The last frame (the full motion).
    pub last_mae: f64,
    /// Mean error of frame 0 itself against the expected frames: what doing nothing would score,
    /// i.e. how much there was to reproduce.
    pub unmoved_mae: f64,
}

impl SequenceScore {
    /// Whether every scored frame is within [`TARGET_MAE`].
    pub fn passes(&self) -> bool {
        self.max_mae <= TARGET_MAE
    }
}

impl fmt::Display for SequenceScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} frames, MAE mean {:.4} max {:.4} last {:.4} (unmoved {:.4}) {}",
            self.name,
            self.frames,
            self.mean_mae,
            self.max_mae,
            self.last_mae,
            self.unmoved_mae,
            if self.passes() { "ok" } else { "ABOVE TARGET" }
        )
    }
}

/// Scores the frames in `produced_dir` against the sequence in `expected_dir`, pairing the pictures of
/// both folders in name order. Both must hold the same number of pictures (frame 0 included) of the
/// same size. The face box is `face`, else the one in the sequence's `sequence.json`.
pub fn evaluate(
    expected_dir: &Path,
    produced_dir: &Path,
    face: Option<FaceBox>,
) -> Result<SequenceScore, SynthError> {
    let expected = list_image_files(expected_dir)?;
    let produced = list_image_files(produced_dir)?;
    let spec = read_spec(expected_dir)?;
    if expected.len() < 2 {
        return Err(SynthError::Mismatch(format!(
            "{} holds {} picture(s): a sequence needs frame 0 and at least one moved frame",
            expected_dir.display(),
            expected.len()
        )));
    }
    if let Some(spec) = &spec
        && spec.frames + 1 != expected.len()
    {
        return Err(SynthError::Mismatch(format!(
            "{} holds {} pictures but its {SPEC_FILE} describes {} (frame 0 and {} moved): regenerate the sequence",
            expected_dir.display(),
            expected.len(),
            spec.frames + 1,
            spec.frames
        )));
    }
    if expected.len() != produced.len() {
        return Err(SynthError::Mismatch(format!(
            "{} holds {} pictures but {} holds {}: animate the whole sequence, frame 0 included, into an empty folder",
            expected_dir.display(),
            expected.len(),
            produced_dir.display(),
            produced.len()
        )));
    }
    let face = match (face, &spec) {
        (Some(face), _) => face,
        (None, Some(spec)) => spec.face,
        (None, None) => {
            return Err(SynthError::BadFaceBox(format!(
                "{} has no {SPEC_FILE} to take the face box from: pass --face x0,y0,x1,y1 (fractions of the frame)",
                expected_dir.display()
            )));
        }
    };
    face.validate()?;
    let name = match &spec {
        Some(spec) => spec.name.clone(),
        None => expected_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| expected_dir.display().to_string()),
    };

    let frame0 = load_rgb(&expected[0])?;
    let (mut sum, mut max, mut last, mut unmoved) = (0f64, 0f64, 0f64, 0f64);
    for (exp_path, prod_path) in expected.iter().zip(&produced).skip(1) {
        let exp = load_rgb(exp_path)?;
        if exp.dimensions() != frame0.dimensions() {
            return Err(SynthError::Mismatch(format!(
                "{} is {}x{} but frame 0 ({}) is {}x{}: all frames of a sequence must have one size",
                exp_path.display(),
                exp.width(),
                exp.height(),
                expected[0].display(),
                frame0.width(),
                frame0.height()
            )));
        }
        let prod = load_rgb(prod_path)?;
        if prod.dimensions() != exp.dimensions() {
            return Err(SynthError::Mismatch(format!(
                "the produced frame {} is {}x{} but the expected {} is {}x{}: animate at the sequence's size",
                prod_path.display(),
                prod.width(),
                prod.height(),
                exp_path.display(),
                exp.width(),
                exp.height()
            )));
        }
        let mae = face_mae(&prod, &exp, &face)?;
        sum += mae;
        max = max.max(mae);
        last = mae;
        unmoved += face_mae(&frame0, &exp, &face)?;
    }
    let frames = expected.len() - 1;
    Ok(SequenceScore {
        name,
        frames,
        mean_mae: sum / frames as f64,
        max_mae: max,
        last_mae: last,
        unmoved_mae: unmoved / frames as f64,
    })
}

// ----------------------------------------------------------------------------------------------------
// Files

fn load_rgb(path: &Path) -> Result<RgbImage, SynthError> {
    Ok(crate::media::frames::load_rgb(path)?)
}

/// Writes a synthetic frame, saying it is one ([`crate::provenance`]).
fn save_png(img: &RgbImage, path: &Path) -> Result<(), SynthError> {
    let provenance = crate::provenance::Provenance::for_engine("make-sequences known-motion warp");
    crate::media::frames::write_png(
        path,
        img,
        &crate::media::frames::PngText::provenance(&provenance),
    )?;
    Ok(())
}

/// The pictures of `dir` in natural name order (the same listing `animate` reads driving folders with).
fn list_image_files(dir: &Path) -> Result<Vec<PathBuf>, SynthError> {
    Ok(crate::media::frames::list_image_files(dir)?)
}
