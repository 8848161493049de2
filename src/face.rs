//! Face detection for automatic framing: SeetaFace Detection (Wu et al., "Funnel-structured
//! cascade for multi-view face detection with alignment awareness", Neurocomputing 2017) through
//! the `rustface` crate, with the frontal model that crate ships embedded in the executable
//! (`assets/models`, BSD 2-Clause): no file to find and no download at run time.
//!
//! Frames are searched at a reduced size (longer side [`SEARCH_SIDE`] pixels): a 16:9 frame is
//! searched at 480x270, where a face a tenth of the frame's height (27 px) is above the smallest
//! face searched for ([`MIN_FACE`]). At 320 px the bundled Eileen Collins portrait pasted with a
//! 44-pixel face on a 640x360 room was missed (`tests/framing.rs`). A search took 40-60 ms on one
//! core of the shared test machine; the face thread runs five a second, only with automatic
//! framing on.

use rustface::{Detector, ImageData};

/// The SeetaFace frontal model, as shipped in the `rustface` 0.1.7 crate.
static MODEL: &[u8] = include_bytes!("../assets/models/seeta_fd_frontal_v1.0.bin");

/// Frames are searched with their longer side reduced to this many pixels.
pub const SEARCH_SIDE: u32 = 480;

/// Smallest face searched for, pixels at the search size (the model's window is 40; rustface
/// refuses less than 20; 20 found nothing more than 24 on the test pictures at 320 px).
pub const MIN_FACE: u32 = 24;

/// Score threshold: rustface's example value (the library lists 0.95, 2.8 and 4.5 as typical; 2.0
/// finds turned and dim faces with few false alarms on our test pictures).
const SCORE_THRESHOLD: f64 = 2.0;

/// A face's box in the searched frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// The detector's confidence.
    pub score: f64,
}

impl FaceBox {
    /// The box's centre.
    pub fn centre(&self) -> [f64; 2] {
        [self.x + self.width / 2.0, self.y + self.height / 2.0]
    }
}

/// Why the detector could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the bundled face model could not be read: {0}")]
pub struct FaceError(#[from] std::io::Error);

/// A face detector (not `Send`: make one on the thread that uses it).
pub struct FaceDetector {
    detector: Box<dyn Detector>,
    gray: Vec<u8>,
}

impl FaceDetector {
    /// A detector with the bundled model.
    pub fn new() -> Result<Self, FaceError> {
        let model = rustface::read_model(MODEL)?;
        let mut detector = rustface::create_detector_with_model(model);
        // The settings of rustface's own example: a 0.8 pyramid step and 4-pixel window steps.
        detector.set_min_face_size(MIN_FACE);
        detector.set_score_thresh(SCORE_THRESHOLD);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        Ok(Self {
            detector,
            gray: Vec::new(),
        })
    }

    /// Every face in a packed RGB8 picture of `width` x `height`, in its pixels, largest first.
    pub fn detect_all(&mut self, rgb: &[u8], width: u32, height: u32) -> Vec<FaceBox> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() < w * h * 3 {
            return Vec::new();
        }
        let scale = (SEARCH_SIDE as f64 / width.max(height) as f64).min(1.0);
        let sw = ((width as f64 * scale).round() as u32).max(1);
        let sh = ((height as f64 * scale).round() as u32).max(1);
        if sw.min(sh) < MIN_FACE {
            return Vec::new();
        }
        downscale_gray(rgb, w, h, sw as usize, sh as usize, &mut self.gray);
        let image = ImageData::new(&self.gray, sw, sh);
        let back = 1.0 / scale;
        let mut faces: Vec<FaceBox> = self
            .detector
            .detect(&image)
            .iter()
            .map(|f| {
                let b = f.bbox();
                FaceBox {
                    x: b.x() as f64 * back,
                    y: b.y() as f64 * back,
                    width: b.width() as f64 * back,
                    height: b.height() as f64 * back,
                    score: f.score(),
                }
            })
            .collect();
        faces.sort_by(|a, b| (b.width * b.height).total_cmp(&(a.width * a.height)));
        faces
    }

    /// The face to frame: the largest one (the person nearest the camera).
    pub fn detect(&mut self, rgb: &[u8], width: u32, height: u32) -> Option<FaceBox> {
        self.detect_all(rgb, width, height).into_iter().next()
    }
}

/// Packed RGB8 `w` x `h` -> gray `sw` x `sh` (BT.601 luma), each output pixel the mean of the
/// source pixels its footprint covers (box filter), into `out`.
fn downscale_gray(rgb: &[u8], w: usize, h: usize, sw: usize, sh: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(sw * sh, 0);
    let span = |i: usize, n: usize, s: usize| {
        let a = i * n / s;
        let b = ((i + 1) * n / s).max(a + 1).min(n);
        (a, b)
    };
    for oy in 0..sh {
        let (y0, y1) = span(oy, h, sh);
        for ox in 0..sw {
            let (x0, x1) = span(ox, w, sw);
            let mut sum = 0u32;
            for y in y0..y1 {
                let row = &rgb[(y * w + x0) * 3..(y * w + x1) * 3];
                for p in row.chunks_exact(3) {
                    sum += 77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32;
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out[oy * sw + ox] = (sum / (n * 256).max(1)).min(255) as u8;
        }
    }
}
