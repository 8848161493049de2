//! The `classic` engine: FOMM's motion representation without learned weights.
//!
//! Per driving frame D_t:
//! 1. grayscale Gaussian pyramid of D_t ([`pyramid`]);
//! 2. every point detected on the reference frame D1 (Shi-Tomasi corners, [`features`]) is tracked from
//!    D1 straight into D_t by pyramidal Lucas-Kanade with a forward-backward check ([`tracker`]), seeded
//!    by its previous position and the previous motion; points that fail are retried from the new motion
//!    estimate, and when too few survive new corners are detected on D_t and mapped back into D1;
//! 3. around each of K anchors (a grid over D1's points) a local affine map D1 -> D_t is fitted by weighted,
//!    robust least squares ([`affine`]): keypoint = anchor mapped into D_t, Jacobian = its linear part;
//! 4. FOMM's relative motion transfer (`normalize_kp` with adapt_movement_scale, paper Sec. 3.4) moves the
//!    portrait's keypoints by the keypoints' displacement and composes the Jacobians
//!    (`J = J_t J_1^-1 J_s`, with J_1 = J_s = I here since the Jacobians are measured relative to D1);
//! 5. the backward flow D_t -> D1 is fitted to the same tracked points directly: around each anchor's
//!    position in D_t a local map with second-order terms ([`affine::fit_local_quadratics`]), so that the
//!    flow agrees with the points and follows motion that curves between anchors (FOMM's
//!    `z -> kp_s + J^-1 (z - kp_new)` where that fit fails); moved onto the portrait by the same transfer,
//!    the maps are blended into a smooth backward flow that falls back to the identity away from the
//!    anchors ([`flow`]), and the portrait is warped with `grid_sample`, sampling the picture's edge
//!    where the motion reaches outside it (no black borders);
//! 6. the anchors' motion (keypoints, Jacobians, backward maps) is measured in the reference
//!    frame's view of the camera ([`crate::engine::FrameView`]), so that moving the crop does not
//!    move the portrait, and smoothed over time before the transfer when asked
//!    ([`crate::engine::smoothing`], the One Euro filter). Motion files keep it as measured
//!    (before smoothing).

pub mod affine;
mod anchors;
pub mod features;
pub mod flow;
mod idle;
pub mod maps;
mod params;
pub mod pyramid;
mod render;
mod replay;
pub mod tracker;
mod tracking;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::smoothing::{FrameClock, MotionFilter, Smoothing};
use super::{
    Animator, EngineError, EngineId, FrameInfo, FrameView, KeypointView, PortraitCache,
    motion_mismatch,
};
use crate::motion::{
    AnchorMotion, BackwardMap, ClassicFrame, ClassicReference, FrameMotion, MotionEngine,
    MotionSource, ReferenceMotion, TextureCloud,
};
use affine::LocalFitParams;
use features::DetectParams;
use flow::Blend;
use fomm::ops::grid_sample::grid_sample;
use maps::Affine;
use maps::LocalMap;
use pyramid::{GrayImage, MIN_LEVEL_SIDE, Pyramid};
use tracker::{Template, TrackParams, TrackRequest};

pub use params::ClassicParams;

/// Why the classic engine refused a call.
#[derive(Debug, thiserror::Error)]
pub enum ClassicError {
    /// A frame was asked for before a portrait was set.
    #[error("no portrait is set: choose a source image first")]
    NoSource,
    /// A portrait or driving frame is not a (1, 3, H, W) tensor of the engine's frame size.
    #[error(
        "classic engine: the {what} must be a (1, 3, {height}, {width}) tensor (the engine's frame size), got {got:?}; resize or crop it first"
    )]
    Shape {
        /// "portrait" or "driving frame".
        what: &'static str,
        /// The engine's frame height.
        height: usize,
        /// The engine's frame width.
        width: usize,
        /// The tensor's shape.
        got: Vec<usize>,
    },
    /// A setting or the frame size is out of range (or a frame's data does not match its shape).
    #[error("classic engine: invalid setting: {0}")]
    InvalidParams(String),
    /// A recorded motion does not fit this engine or portrait.
    #[error("classic engine: a recorded motion {0}")]
    BadMotion(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The motion of the last frame, as FOMM's keypoints: (B = 1, K, 2) positions in [-1, 1] (x along the
/// width, -1/+1 the centres of the first/last pixel) and (1, K, 2, 2) row-major Jacobians, as plain arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Motion {
    /// The anchors in the reference frame D1 (FOMM's kp of D1).
    pub reference: Vec<[f32; 2]>,
    /// The anchors carried into the driving frame (FOMM's kp_driving value).
    pub keypoints: Vec<[f32; 2]>,
    /// Local Jacobians of the D1 -> D_t motion in normalised coordinates (kp_driving jacobian relative
    /// to D1, whose own Jacobians are the identity).
    pub jacobians: Vec<[[f32; 2]; 2]>,
    /// The keypoints rendered on the portrait (FOMM's kp_norm value).
    pub transferred: Vec<[f32; 2]>,
    /// Points tracked in this frame / points being tracked.
    pub tracked_points: usize,
    /// See `tracked_points`.
    pub total_points: usize,
}

impl Motion {
    /// `keypoints` as a (1, K, 2) tensor.
    pub fn keypoints_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let k = self.keypoints.len();
        let data: Vec<f32> = self.keypoints.iter().flatten().copied().collect();
        Tensor::from_vec(data, (1, k, 2), device)
    }

    /// `jacobians` as a (1, K, 2, 2) tensor.
    pub fn jacobians_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let k = self.jacobians.len();
        let data: Vec<f32> = self.jacobians.iter().flatten().flatten().copied().collect();
        Tensor::from_vec(data, (1, k, 2, 2), device)
    }
}

#[derive(Clone)]
struct Source {
    /// (1, 3, H, W) f32 on the CPU, contiguous, NaN-free.
    image: Tensor,
    device: Device,
    /// Its texture, measured the first time adapt scale or the idle motion needs it: an engine
    /// that follows model keyframes gets a new portrait several times a second and, with adapt
    /// scale off, never needs it.
    texture: std::sync::OnceLock<Option<Texture>>,
}

/// An image's Shi-Tomasi response map at the detection level and its noise floor, for the adapt-scale
/// framing.
#[derive(Clone)]
struct Texture {
    map: Vec<f32>,
    width: usize,
    height: usize,
    /// Level-0 pixels per pixel of `map`.
    scale: f64,
    floor: f32,
}

impl Texture {
    fn cloud(&self, floor: f32) -> Option<features::Cloud> {
        features::texture_cloud(&self.map, self.width, self.height, CLOUD_QUALITY, floor).map(|c| {
            features::Cloud {
                centroid: [c.centroid[0] * self.scale, c.centroid[1] * self.scale],
                size: c.size * self.scale,
            }
        })
    }
}

/// Where D1's anchors go on the portrait: `kp_s = portrait + scale (kp_1 - reference)`, and the scale of
/// the motion (FOMM's adapt_movement_scale).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Framing {
    reference: [f64; 2],
    portrait: [f64; 2],
    scale: f64,
}

impl Framing {
    const IDENTITY: Framing = Framing {
        reference: [0.0, 0.0],
        portrait: [0.0, 0.0],
        scale: 1.0,
    };
}

struct RefPoint {
    origin: [f32; 2],
    template: Template,
    /// Where it was tracked in the previous frame, if it was.
    last: Option<[f32; 2]>,
    /// Consecutive frames it has not been tracked.
    lost: u32,
}

/// Determinant of a row-major 2x2 matrix (as [`Affine::det`]).
fn det2(a: &[[f64; 2]; 2]) -> f64 {
    a[0][0] * a[1][1] - a[0][1] * a[1][0]
}

/// A point's tracking request: from where it was last seen, else where `blend` (the last motion)
/// puts it, with that motion's local linear part as the starting warp.
fn track_request<'a>(blend: Option<&Blend>, p: &'a RefPoint) -> TrackRequest<'a> {
    let o = [p.origin[0] as f64, p.origin[1] as f64];
    let (predicted, jacobian) = match blend {
        Some(b) => {
            let q = b.apply(o);
            let a = b.linear_part(o);
            (
                [q[0] as f32, q[1] as f32],
                a.map(|row| row.map(|v| v as f32)),
            )
        }
        None => (p.origin, [[1.0, 0.0], [0.0, 1.0]]),
    };
    TrackRequest {
        template: &p.template,
        origin: p.origin,
        guess: p.last.unwrap_or(predicted),
        jacobian,
    }
}

/// The local affine maps D1 -> D_t around the anchors, and the robustness weight each tracked point
/// ended with (in the order of [`ClassicEngine::correspondences`]).
struct Fits {
    maps: Vec<Affine>,
    robust: Vec<f64>,
}

/// Everything about the reference frame D1.
struct Reference {
    pyramid: Pyramid,
    points: Vec<RefPoint>,
    initial_points: usize,
    anchors: Vec<[f64; 2]>,
    /// Anchor grid spacing, pixels.
    spacing: f64,
    texture: Texture,
    /// The last D1 -> D_t motion, to predict the next frame.
    forward: Option<Blend>,
    frames_since_redetect: u32,
}

/// Retrack every point when a fitted local Jacobian differs from the predicted one by more than this
/// (Frobenius norm; 0.05 is about 3 degrees of rotation or 5% of scale).
const RETRACK_JACOBIAN_CHANGE: f64 = 0.05;
/// At most this many retracking rounds per frame (only a sudden large motion uses more than one).
const RETRACK_ROUNDS: usize = 3;
/// Frames to wait between two re-detections that found nothing to add.
const REDETECT_COOLDOWN: u32 = 10;
/// Shi-Tomasi absolute floor (mean squared gradient, (intensity/pixel)^2 with intensities in [0, 1]) keeps blank frames empty.
const CORNER_MIN_SCORE: f32 = 1e-5;
const CORNER_BLOCK_RADIUS: usize = 2;
/// Corners must have a score of at least this many times the noise variance of the frame (the noise
/// part of a pure-noise window's score is about half the variance with central differences), so that
/// sensor noise on flat backgrounds does not make trackable-looking points.
const CORNER_NOISE_FACTOR: f32 = 4.0;
/// Texture below this (centred gradient tensor, same units) makes a tracking window untrackable.
const WINDOW_MIN_EIGEN: f32 = 1e-6;
/// Corners are detected on the coarsest pyramid level whose shorter side is at least this (pixels): the
/// size the thresholds were tuned at.
const DETECTION_SIDE: usize = 256;
/// Fraction of the best response that counts as texture for the adapt-scale cloud.
const CLOUD_QUALITY: f32 = 0.05;
/// Idle motion moves a 4 x 4 grid of anchors over the head region: the motion is one similarity, so a
/// coarse grid represents it exactly; the grid only sets where the motion fades out.
const IDLE_ANCHOR_GRID: usize = 4;

/// The classic engine: see the module documentation.
pub struct ClassicEngine {
    params: ClassicParams,
    height: usize,
    width: usize,
    track: TrackParams,
    detect: DetectParams,
    reference: Option<Reference>,
    /// A recorded reference frame ([`ClassicEngine::set_reference_motion`]) when replaying motion.
    replay: Option<ClassicReference>,
    calibrate_next: bool,
    framing: Framing,
    motion: Option<Motion>,
    /// The last driving frame's motion (what a motion file records): in the reference frame's
    /// view, before smoothing.
    last_frame: Option<ClassicFrame>,
    /// Smoothing of the anchors' motion (keypoints, Jacobians, backward maps), made anew at each
    /// calibration (its speed weights depend on the anchor spacing).
    smoothing: Smoothing,
    filter: MotionFilter,
    clock: FrameClock,
    /// Where the reference frame lay in the camera's picture: the motion is moved into its
    /// coordinates, so a crop change does not move the portrait.
    reference_view: FrameView,
    /// The portrait in use, and those selected by id before ([`ClassicEngine::select_portrait`]).
    portraits: PortraitCache<Source>,
}

/// How much the anchors move from frame to frame on a still face with sensor noise (Gaussian, sigma
/// 2.5 levels, 1 % exposure flicker), normalised units: 0.000135 (0.017 px at 256 px) measured on
/// the bundled Eileen Collins portrait (`tests/steady.rs` prints it). Each anchor's map is fitted to
/// many tracked points, so it is a hundred times steadier than FOMM's keypoints
/// ([`crate::engine::fomm::KEYPOINT_JITTER`]). It sets the smoothing's `beta`
/// ([`crate::engine::smoothing::BETA_TIMES_JITTER`]).
pub const ANCHOR_JITTER: f64 = 0.000135;

/// Values per anchor in the smoothing filter: keypoint (2), Jacobian (4), the backward map's value
/// at the keypoint (2), its linear part (4) and second-order terms (6).
const ANCHOR_VALUES: usize = 18;

impl ClassicEngine {
    /// An engine for frames of `frame_size` = (height, width); both sides at least 16 pixels.
    pub fn new(params: ClassicParams, frame_size: (usize, usize)) -> Result<Self, ClassicError> {
        params.validate()?;
        let (height, width) = frame_size;
        if height < MIN_LEVEL_SIDE
            || width < MIN_LEVEL_SIDE
            || height.checked_mul(width).is_none_or(|n| n > 1 << 26)
        {
            return Err(ClassicError::InvalidParams(format!(
                "frame size {height}x{width} must be at least {MIN_LEVEL_SIDE}x{MIN_LEVEL_SIDE} and at most 2^26 pixels"
            )));
        }
        let track = TrackParams {
            window_radius: params.window_radius,
            max_iterations: params.max_iterations,
            epsilon: 0.01,
            fb_threshold: params.fb_threshold,
            min_eigen: WINDOW_MIN_EIGEN,
        };
        let detect = DetectParams {
            max_corners: params.max_points,
            quality: params.corner_quality,
            min_score: CORNER_MIN_SCORE,
            margin: params.window_radius + 1,
            block_radius: CORNER_BLOCK_RADIUS,
        };
        Ok(Self {
            params,
            height,
            width,
            track,
            detect,
            reference: None,
            replay: None,
            calibrate_next: true,
            framing: Framing::IDENTITY,
            motion: None,
            last_frame: None,
            portraits: PortraitCache::default(),
            smoothing: Smoothing::OFF,
            filter: MotionFilter::new(Smoothing::OFF, ANCHOR_JITTER, vec![]),
            clock: FrameClock::default(),
            reference_view: FrameView::IDENTITY,
        })
    }

    /// Smoothing of the driving motion (One Euro filter, [`crate::engine::smoothing`]) from the
    /// next frame on. Off by default.
    pub fn set_smoothing(&mut self, smoothing: Smoothing) {
        self.smoothing = smoothing;
        self.filter.set_smoothing(smoothing);
    }

    /// Turns FOMM's adapt scale on or off, from the next frame on.
    pub fn set_adapt_scale(&mut self, on: bool) {
        if self.params.adapt_scale != on {
            self.params.adapt_scale = on;
            self.update_framing();
        }
    }

    /// The settings in use.
    pub fn params(&self) -> &ClassicParams {
        &self.params
    }

    /// (height, width) of the frames it takes and renders.
    pub fn frame_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Sets the portrait, a (1, 3, H, W) tensor in [0, 1] at the engine's frame size, without
    /// caching it.
    pub fn set_source(&mut self, source: &Tensor) -> Result<(), ClassicError> {
        let analysed = self.analyse(source)?;
        self.portraits.set_current(analysed);
        self.update_framing();
        Ok(())
    }

    /// Selects portrait `id`, analysing `source` only the first time this id is seen.
    pub fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), ClassicError> {
        if !self.portraits.contains(id) {
            let analysed = self.analyse(source)?;
            self.portraits.insert(id, analysed);
        }
        self.portraits.select(id, || Err(ClassicError::NoSource))?;
        self.update_framing();
        Ok(())
    }

    /// What the engine keeps about a portrait: its pixels (its texture is measured when needed,
    /// [`ClassicEngine::texture_of`]).
    fn analyse(&self, source: &Tensor) -> Result<Source, ClassicError> {
        let data = self.frame_data("portrait", source)?;
        let data: Vec<f32> = data
            .into_iter()
            .map(|v| if v.is_finite() { v } else { 0.0 })
            .collect();
        let image = Tensor::from_vec(data, (1, 3, self.height, self.width), &Device::Cpu)?;
        Ok(Source {
            image,
            device: source.device().clone(),
            texture: std::sync::OnceLock::new(),
        })
    }

    /// The texture statistics of `source`, measured on first use; `None` where its pixels cannot
    /// be read back (they were checked when it was analysed).
    fn texture_of<'a>(&self, source: &'a Source) -> Option<&'a Texture> {
        source
            .texture
            .get_or_init(|| {
                let data = source.image.flatten_all().and_then(|t| t.to_vec1::<f32>());
                let gray = GrayImage::from_planar_rgb(&data.ok()?, self.width, self.height)?;
                let pyramid = Pyramid::build(gray, self.detection_level() + 1);
                Some(self.detect(&pyramid, &[]).1)
            })
            .as_ref()
    }

    /// The pyramid level corners are detected on: the coarsest whose shorter side is still at least
    /// [`DETECTION_SIDE`], so that large frames (smoother per pixel, same camera noise) are judged at the
    /// scale the defaults were tuned at, for a quarter of the cost per level.
    fn detection_level(&self) -> usize {
        let mut level = 0;
        let mut side = self.height.min(self.width);
        while side / 2 >= DETECTION_SIDE && level + 1 < self.params.pyramid_levels {
            side /= 2;
            level += 1;
        }
        level
    }

    /// Corners of `pyramid` (level-0 pixels) at the detection level, at least half a grid cell from the
    /// points in `exclude`, and that level's texture.
    fn detect(&self, pyramid: &Pyramid, exclude: &[[f32; 2]]) -> (Vec<features::Corner>, Texture) {
        let level = self.detection_level().min(pyramid.len().saturating_sub(1));
        let img = pyramid.levels().get(level).unwrap_or(pyramid.base());
        let scale = (1u32 << level) as f32;
        let map = features::min_eigen_map(img, CORNER_BLOCK_RADIUS);
        let params = self.detect_params(img);
        let exclude: Vec<[f32; 2]> = exclude
            .iter()
            .map(|p| [p[0] / scale, p[1] / scale])
            .collect();
        let corners = features::detect_corners(&map, img.width(), img.height(), &params, &exclude)
            .into_iter()
            .map(|c| features::Corner {
                x: c.x * scale,
                y: c.y * scale,
                score: c.score,
            })
            .collect();
        let texture = Texture {
            map,
            width: img.width(),
            height: img.height(),
            scale: scale as f64,
            floor: params.min_score,
        };
        (corners, texture)
    }

    /// FOMM's adapt_movement_scale for a weight-free engine: the portrait and D1 are compared by the
    /// centroid and spread of their texture (Shi-Tomasi response above a common threshold: the larger of
    /// the two images' noise floors, so that a noisy webcam frame and a clean portrait count alike).
    fn update_framing(&mut self) {
        self.framing = Framing::IDENTITY;
        if !self.params.adapt_scale {
            return;
        }
        let Some(source_texture) = self.portraits.current().and_then(|s| self.texture_of(s)) else {
            return;
        };
        let (s, r) = if let Some(reference) = &self.reference {
            let floor = source_texture.floor.max(reference.texture.floor);
            (source_texture.cloud(floor), reference.texture.cloud(floor))
        } else if let Some(TextureCloud {
            centroid,
            size,
            floor,
        }) = self.replay.as_ref().and_then(|r| r.texture)
        {
            // A recorded reference keeps its cloud above its own noise floor: the same as live
            // unless the portrait is the noisier of the two.
            let floor = source_texture.floor.max(floor);
            (
                source_texture.cloud(floor),
                Some(features::Cloud { centroid, size }),
            )
        } else {
            return;
        };
        if let (Some(s), Some(r)) = (s, r) {
            let scale = s.size / r.size;
            // A portrait's face is not 4x larger or smaller than the user's in a sensible setup.
            if scale.is_finite() && (0.25..=4.0).contains(&scale) {
                self.framing = Framing {
                    reference: r.centroid,
                    portrait: s.centroid,
                    scale,
                };
            }
        }
    }

    /// The next driving frame becomes the reference frame D1.
    pub fn recalibrate(&mut self) {
        self.reference = None;
        self.replay = None;
        self.calibrate_next = true;
        self.motion = None;
        self.last_frame = None;
        self.filter.reset();
    }

    /// Whether a reference frame is set. A frame without enough texture to track (a blank frame) does
    /// not calibrate; the next one is tried.
    pub fn is_calibrated(&self) -> bool {
        self.reference.is_some() || self.replay.is_some()
    }

    /// The last frame's motion (anchors, keypoints, Jacobians), for overlays.
    pub fn motion(&self) -> Option<&Motion> {
        self.motion.as_ref()
    }

    /// The portrait moved as `driving` (1, 3, H, W) moved relative to the reference frame. The first frame
    /// after creation or [`ClassicEngine::recalibrate`] becomes the reference and returns the portrait as is.
    /// Frames are taken as 1/30 s apart and as the camera's whole picture
    /// ([`ClassicEngine::animate_with`]).
    pub fn animate(&mut self, driving: &Tensor) -> Result<Tensor, ClassicError> {
        self.animate_with(driving, &FrameInfo::default())
    }

    /// As [`ClassicEngine::animate`] for a frame captured at `info.time` (the smoothing's clock)
    /// that shows `info.view` of the camera's picture: the motion is measured in the reference
    /// frame's view, so moving the crop does not move the portrait, then smoothed.
    pub fn animate_with(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
    ) -> Result<Tensor, ClassicError> {
        if self.portraits.current().is_none() {
            return Err(ClassicError::NoSource);
        }
        let t = self.clock.tick(info.time);
        match self.capture_view(driving, &info.view)? {
            None => {
                self.motion = None;
                self.output(None)
            }
            Some(frame) => {
                let frame = self.smooth(frame, t);
                self.render_recorded(&frame)
            }
        }
    }

    /// The motion of `driving` (1, 3, H, W) relative to the reference frame, without rendering
    /// (no portrait needed): the first frame after creation or [`ClassicEngine::recalibrate`]
    /// becomes the reference (its motion is none). `None` while no frame had texture enough to
    /// be the reference.
    pub fn capture(&mut self, driving: &Tensor) -> Result<Option<ClassicFrame>, ClassicError> {
        self.capture_view(driving, &FrameView::IDENTITY)
    }

    /// As [`ClassicEngine::capture`] for a frame that shows `view` of the camera's picture: the
    /// motion is moved into the reference frame's view.
    pub fn capture_view(
        &mut self,
        driving: &Tensor,
        view: &FrameView,
    ) -> Result<Option<ClassicFrame>, ClassicError> {
        let data = self.frame_data("driving frame", driving)?;
        let gray = GrayImage::from_planar_rgb(&data, self.width, self.height).ok_or_else(|| {
            ClassicError::InvalidParams("driving frame data does not match its shape".into())
        })?;
        let pyramid = Pyramid::build(gray, self.params.pyramid_levels);
        self.replay = None;
        if self.reference.is_none() || self.calibrate_next {
            self.reference = self.calibrate(pyramid);
            self.calibrate_next = false;
            self.reference_view = *view;
            self.update_framing();
            self.last_frame = self.reference.as_ref().map(|r| ClassicFrame {
                anchors: None,
                points: (r.points.len(), r.points.len()),
            });
            return Ok(self.last_frame.clone());
        }
        let Some(mut reference) = self.reference.take() else {
            return Ok(None);
        };
        let fits = self.step(&mut reference, &pyramid);
        let mut frame = self.frame_motion(&reference, fits.as_ref());
        self.reference = Some(reference);
        self.to_reference_view(&mut frame, view);
        self.last_frame = Some(frame.clone());
        Ok(Some(frame))
    }
}

/// The weight-free engine behind the same interface.
impl Animator for ClassicEngine {
    fn name(&self) -> &'static str {
        "classic"
    }
    fn id(&self) -> EngineId {
        EngineId::Classic
    }
    fn frame_size(&self) -> (usize, usize) {
        ClassicEngine::frame_size(self)
    }
    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError> {
        Ok(ClassicEngine::select_portrait(self, id, source)?)
    }
    fn recalibrate(&mut self) {
        ClassicEngine::recalibrate(self)
    }
    fn is_calibrated(&self) -> bool {
        ClassicEngine::is_calibrated(self)
    }
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError> {
        Ok(ClassicEngine::animate(self, driving)?)
    }
    fn animate_with(&mut self, driving: &Tensor, info: &FrameInfo) -> Result<Tensor, EngineError> {
        Ok(ClassicEngine::animate_with(self, driving, info)?)
    }
    fn set_smoothing(&mut self, smoothing: Smoothing) {
        ClassicEngine::set_smoothing(self, smoothing)
    }
    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError> {
        Ok(ClassicEngine::animate_idle(self, t)?)
    }
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        if !relative {
            return Err(EngineError::Unsupported {
                engine: "classic",
                what: "absolute motion transfer (it has no learned keypoints to place as they are)",
            });
        }
        self.set_adapt_scale(adapt_scale);
        Ok(())
    }
    fn keypoint_view(&self) -> Option<KeypointView> {
        self.motion().map(|m| KeypointView {
            driving: m.keypoints.clone(),
            portrait: m.transferred.clone(),
        })
    }
    fn motion_source(&self) -> Option<MotionSource> {
        Some(MotionSource {
            engine: MotionEngine::Classic,
            config: None,
            checkpoint: None,
            frame_size: (self.height, self.width),
            keypoints: 0,
            jacobians: true,
        })
    }
    fn capture(&mut self, driving: &Tensor) -> Result<Option<FrameMotion>, EngineError> {
        Ok(ClassicEngine::capture(self, driving)?.map(FrameMotion::Classic))
    }
    fn last_motion(&self) -> Option<FrameMotion> {
        self.last_frame.clone().map(FrameMotion::Classic)
    }
    fn reference_motion(&self) -> Option<ReferenceMotion> {
        ClassicEngine::reference_motion(self).map(ReferenceMotion::Classic)
    }
    fn set_reference_motion(&mut self, reference: &ReferenceMotion) -> Result<(), EngineError> {
        match reference {
            ReferenceMotion::Classic(r) => {
                Ok(ClassicEngine::set_reference_motion(self, r.clone())?)
            }
            other => Err(motion_mismatch(other.engine(), self.name())),
        }
    }
    fn animate_motion(&mut self, motion: &FrameMotion) -> Result<Tensor, EngineError> {
        match motion {
            FrameMotion::Classic(f) => Ok(ClassicEngine::animate_motion(self, f)?),
            other => Err(motion_mismatch(other.engine(), self.name())),
        }
    }
}
