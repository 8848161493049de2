//! Motion as data: what an engine measured in a driving frame, kept apart from any portrait, so
//! that it can be saved once ([`file`]: the versioned `marionette-motion` JSON-lines format) and
//! replayed onto any portrait later, with no video at hand.
//!
//! The motion is FOMM's representation (paper Sec. 3): keypoints in normalised coordinates
//! ((x, y) in [-1, 1], -1/+1 the centres of the first/last pixel, x along the width) with 2x2
//! local Jacobians, relative to a reference frame D_1 whose own keypoints are kept too, so that
//! the relative transfer (`normalize_kp`, adapt scale) runs at replay exactly as it runs on a
//! video.
//!
//! * FOMM: the keypoint detector's raw output per frame ([`KeypointSet`]).
//! * classic: the anchors' local maps D_1 -> D_t in the engine's pixels, which is what it renders
//!   from ([`ClassicFrame`]), besides the same motion in FOMM's normalised form.

pub mod file;

use candle_core::{DType, Device, Tensor};

use fomm::keypoint_detector::Keypoints;

/// Which engine measured a motion. Motions do not transfer between engines: FOMM's keypoints are
/// the learned detector's, the classic engine's are tracked anchors with their own local maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MotionEngine {
    /// The First Order Motion Model.
    Fomm,
    /// The weight-free classic engine.
    Classic,
}

impl MotionEngine {
    /// The engine's name as `--engine` takes it.
    pub fn name(self) -> &'static str {
        match self {
            MotionEngine::Fomm => "fomm",
            MotionEngine::Classic => "classic",
        }
    }
}

impl std::fmt::Display for MotionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What produced a motion: the engine, its model and the frames it analysed.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSource {
    /// The engine.
    pub engine: MotionEngine,
    /// FOMM: the config's name (e.g. `vox-256`); `None` for the classic engine.
    pub config: Option<String>,
    /// FOMM: the checkpoint's file name, when known. Keypoints are the detector's own: those of
    /// one checkpoint mean nothing to another's generator.
    pub checkpoint: Option<String>,
    /// (height, width) of the frames the engine analysed.
    pub frame_size: (usize, usize),
    /// Keypoints (FOMM) or anchors (classic) per frame; anchors are known only once a reference
    /// frame is set, so 0 means "any".
    pub keypoints: usize,
    /// Whether the keypoints carry Jacobians (FOMM's first-order model; always for classic).
    pub jacobians: bool,
}

/// FOMM keypoints of one frame (batch element 0) as plain numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct KeypointSet {
    /// (x, y) per keypoint, normalised.
    pub points: Vec<[f32; 2]>,
    /// Row-major 2x2 Jacobian per keypoint; `None` for a zero-order model.
    pub jacobians: Option<Vec<[[f32; 2]; 2]>>,
}

impl KeypointSet {
    /// Batch element 0 of `kp`, read back from its device.
    pub fn from_keypoints(kp: &Keypoints) -> candle_core::Result<Self> {
        let points = kp
            .value
            .get(0)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|p| {
                [
                    p.first().copied().unwrap_or(0.0),
                    p.get(1).copied().unwrap_or(0.0),
                ]
            })
            .collect();
        let jacobians = match &kp.jacobian {
            Some(j) => Some(
                j.get(0)?
                    .to_dtype(DType::F32)?
                    .flatten_from(1)?
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|m| {
                        let v = |i: usize| m.get(i).copied().unwrap_or(0.0);
                        [[v(0), v(1)], [v(2), v(3)]]
                    })
                    .collect(),
            ),
            None => None,
        };
        Ok(Self { points, jacobians })
    }

    /// As FOMM's (1, K, 2) and (1, K, 2, 2) f32 tensors on `device`.
    pub fn to_keypoints(&self, device: &Device) -> candle_core::Result<Keypoints> {
        let k = self.points.len();
        let value = Tensor::from_vec(
            self.points.iter().flatten().copied().collect::<Vec<f32>>(),
            (1, k, 2),
            device,
        )?;
        let jacobian = match &self.jacobians {
            Some(j) => Some(Tensor::from_vec(
                j.iter().flatten().flatten().copied().collect::<Vec<f32>>(),
                (1, j.len(), 2, 2),
                device,
            )?),
            None => None,
        };
        Ok(Keypoints { value, jacobian })
    }
}

/// The classic engine's reference frame D_1, as its motions need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicReference {
    /// The anchors in D_1, in the engine's pixels (x, y).
    pub anchors: Vec<[f64; 2]>,
    /// The anchor grid's spacing, pixels (it sets how far each local map reaches).
    pub spacing: f64,
    /// D_1's texture cloud, for adapt scale; `None` when D_1 has too little texture.
    pub texture: Option<TextureCloud>,
}

/// Where an image's texture is and how spread out (the classic engine's adapt scale compares the
/// portrait's with the reference frame's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextureCloud {
    /// Weighted centroid, pixels.
    pub centroid: [f64; 2],
    /// Spread (fourth root of the covariance determinant), pixels.
    pub size: f64,
    /// The image's noise floor the cloud was measured above.
    pub floor: f32,
}

/// The classic engine's motion of one driving frame relative to D_1.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicFrame {
    /// One entry per anchor of the reference (an entry is `None` when its fit is unusable);
    /// `None` when too few points were tracked (or on the reference frame itself): the portrait
    /// is shown as it is.
    pub anchors: Option<Vec<Option<AnchorMotion>>>,
    /// Points tracked in this frame / points being tracked (for statistics only).
    pub points: (usize, usize),
}

/// One anchor's motion: its local affine map D_1 -> D_t and, when the fit succeeded, the backward
/// map D_t -> D_1 fitted around its position in D_t (what the flow is made of).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorMotion {
    /// The anchor carried into D_t, pixels.
    pub position: [f64; 2],
    /// The linear part of the map D_1 -> D_t at the anchor (pixels; row-major).
    pub jacobian: [[f64; 2]; 2],
    /// The backward map around `position`.
    pub backward: Option<BackwardMap>,
}

/// `z -> a z + b + q m(z - centre)` with `m(d) = (dx^2, dx dy, dy^2)`: a map D_t -> D_1 in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackwardMap {
    /// Linear part, row-major.
    pub a: [[f64; 2]; 2],
    /// Translation.
    pub b: [f64; 2],
    /// Second-order terms.
    pub q: [[f64; 3]; 2],
}

/// A reference frame's motion.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceMotion {
    /// FOMM: the reference frame's keypoints.
    Fomm(KeypointSet),
    /// Classic: the reference frame's anchors.
    Classic(ClassicReference),
}

impl ReferenceMotion {
    /// The engine it belongs to.
    pub fn engine(&self) -> MotionEngine {
        match self {
            ReferenceMotion::Fomm(_) => MotionEngine::Fomm,
            ReferenceMotion::Classic(_) => MotionEngine::Classic,
        }
    }

    /// Number of keypoints (anchors).
    pub fn len(&self) -> usize {
        match self {
            ReferenceMotion::Fomm(k) => k.points.len(),
            ReferenceMotion::Classic(c) => c.anchors.len(),
        }
    }

    /// Whether it has no keypoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A driving frame's motion.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameMotion {
    /// FOMM: the frame's keypoints, as detected (before any transfer).
    Fomm(KeypointSet),
    /// Classic: the anchors' maps relative to the reference.
    Classic(ClassicFrame),
}

impl FrameMotion {
    /// The engine it belongs to.
    pub fn engine(&self) -> MotionEngine {
        match self {
            FrameMotion::Fomm(_) => MotionEngine::Fomm,
            FrameMotion::Classic(_) => MotionEngine::Classic,
        }
    }
}

/// Pixel position -> FOMM's normalised coordinates for a frame of (height, width).
pub fn normalise_point(p: [f64; 2], frame_size: (usize, usize)) -> [f32; 2] {
    let (h, w) = frame_size;
    [
        (2.0 * p[0] / (w.max(2) - 1) as f64 - 1.0) as f32,
        (2.0 * p[1] / (h.max(2) - 1) as f64 - 1.0) as f32,
    ]
}

/// A pixel-space Jacobian in normalised coordinates: D A D^-1 with D = diag(2/(W-1), 2/(H-1)).
pub fn normalise_jacobian(a: [[f64; 2]; 2], frame_size: (usize, usize)) -> [[f32; 2]; 2] {
    let (h, w) = frame_size;
    let ratio = (h.max(2) - 1) as f64 / (w.max(2) - 1) as f64;
    [
        [a[0][0] as f32, (a[0][1] * ratio) as f32],
        [(a[1][0] / ratio) as f32, a[1][1] as f32],
    ]
}
