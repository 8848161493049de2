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
pub mod features;
pub mod flow;
pub mod maps;
mod params;
pub mod pyramid;
pub mod tracker;

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
    texture: Option<Texture>,
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

    /// What the engine keeps about a portrait: its pixels and texture statistics.
    fn analyse(&self, source: &Tensor) -> Result<Source, ClassicError> {
        let data = self.frame_data("portrait", source)?;
        let data: Vec<f32> = data
            .into_iter()
            .map(|v| if v.is_finite() { v } else { 0.0 })
            .collect();
        let texture = GrayImage::from_planar_rgb(&data, self.width, self.height).map(|g| {
            let pyramid = Pyramid::build(g, self.detection_level() + 1);
            self.detect(&pyramid, &[]).1
        });
        let image = Tensor::from_vec(data, (1, 3, self.height, self.width), &Device::Cpu)?;
        Ok(Source {
            image,
            device: source.device().clone(),
            texture,
        })
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
        let Some(source_texture) = self.portraits.current().and_then(|s| s.texture.as_ref()) else {
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

    /// The reference anchors and their spacing (live or recorded reference).
    fn reference_anchors(&self) -> Option<(Vec<[f64; 2]>, f64)> {
        match (&self.reference, &self.replay) {
            (Some(r), _) => Some((r.anchors.clone(), r.spacing)),
            (None, Some(r)) => Some((r.anchors.clone(), r.spacing)),
            (None, None) => None,
        }
    }

    /// A new smoothing filter for the reference's anchors, at rest on the identity motion at `t`.
    fn restart_filter(&mut self, anchors: &[[f64; 2]], spacing: f64, t: f64) {
        // A Jacobian change dJ moves the picture one anchor spacing away by spacing * dJ pixels:
        // its weight in the filter's speed, in normalised units.
        let reach = spacing * 2.0 / (self.width.max(self.height) - 1).max(1) as f64;
        let mut weights = vec![0.0; ANCHOR_VALUES];
        weights[0] = 1.0;
        weights[1] = 1.0;
        weights[2..6].iter_mut().for_each(|w| *w = reach);
        self.filter = MotionFilter::new(self.smoothing, ANCHOR_JITTER, weights);
        let mut rows = Vec::with_capacity(anchors.len() * ANCHOR_VALUES);
        for &a in anchors {
            rows.extend(self.anchor_rows(a, &Self::identity_anchor(a)));
        }
        self.filter.seed(t, &rows);
    }

    /// The motion of an anchor that did not move.
    fn identity_anchor(anchor: [f64; 2]) -> AnchorMotion {
        AnchorMotion {
            position: anchor,
            jacobian: [[1.0, 0.0], [0.0, 1.0]],
            backward: Some(BackwardMap {
                a: [[1.0, 0.0], [0.0, 1.0]],
                b: [0.0, 0.0],
                q: [[0.0; 3]; 2],
            }),
        }
    }

    /// `frame`'s motion smoothed over time (the One Euro filter on every anchor's values, at
    /// time `t`). A frame without motion (the reference frame, or the motion lost) restarts the
    /// filter at rest on the identity it shows. Smoothed, every anchor has a backward map (where
    /// none was fitted, FOMM's `kp_1 + J^-1 (z - kp_t)`, which the blend would use anyway); an
    /// anchor lost in this frame stays lost, and the filter holds its last value.
    fn smooth(&mut self, frame: ClassicFrame, t: f64) -> ClassicFrame {
        let Some((anchors, spacing)) = self.reference_anchors() else {
            return frame;
        };
        let Some(maps) = &frame.anchors else {
            self.restart_filter(&anchors, spacing, t);
            return frame;
        };
        if !self.filter.is_on() || maps.len() != anchors.len() {
            return frame;
        }
        let previous = self.filter.last().map(<[f64]>::to_vec);
        let mut rows = Vec::with_capacity(anchors.len() * ANCHOR_VALUES);
        for (i, (&anchor, m)) in anchors.iter().zip(maps).enumerate() {
            let held = previous
                .as_ref()
                .and_then(|p| p.get(i * ANCHOR_VALUES..(i + 1) * ANCHOR_VALUES));
            match (m, held) {
                (Some(m), _) => rows.extend(self.anchor_rows(anchor, m)),
                (None, Some(held)) => rows.extend_from_slice(held),
                (None, None) => {
                    rows.extend(self.anchor_rows(anchor, &Self::identity_anchor(anchor)))
                }
            }
        }
        self.filter.filter(t, &mut rows);
        let anchors = maps
            .iter()
            .zip(rows.chunks_exact(ANCHOR_VALUES))
            .map(|(m, r)| m.as_ref().map(|_| self.anchor_from_row(r)))
            .collect();
        ClassicFrame {
            anchors: Some(anchors),
            points: frame.points,
        }
    }

    /// Pixels -> normalised units (align_corners = true), in f64.
    fn to_unit(&self, p: [f64; 2]) -> [f64; 2] {
        [
            2.0 * p[0] / (self.width - 1) as f64 - 1.0,
            2.0 * p[1] / (self.height - 1) as f64 - 1.0,
        ]
    }

    /// Normalised units -> pixels.
    fn to_pixels(&self, u: [f64; 2]) -> [f64; 2] {
        [
            (u[0] + 1.0) * (self.width - 1) as f64 / 2.0,
            (u[1] + 1.0) * (self.height - 1) as f64 / 2.0,
        ]
    }

    /// An anchor's motion as the smoothing filter's row ([`ANCHOR_VALUES`] values; positions in
    /// normalised units). Without a fitted backward map, FOMM's `kp_1 + J^-1 (z - kp_t)`.
    fn anchor_rows(&self, anchor: [f64; 2], m: &AnchorMotion) -> [f64; ANCHOR_VALUES] {
        let p = m.position;
        let (a, value, q) = match m.backward {
            Some(b) => (
                b.a,
                [
                    b.a[0][0] * p[0] + b.a[0][1] * p[1] + b.b[0],
                    b.a[1][0] * p[0] + b.a[1][1] * p[1] + b.b[1],
                ],
                b.q,
            ),
            None => {
                let inv = match maps::invert2(m.jacobian) {
                    Some(inv) if det2(&m.jacobian) > 0.0 => inv,
                    _ => [[1.0, 0.0], [0.0, 1.0]],
                };
                (inv, anchor, [[0.0; 3]; 2])
            }
        };
        let kp = self.to_unit(p);
        let value = self.to_unit(value);
        let j = m.jacobian;
        [
            kp[0], kp[1], j[0][0], j[0][1], j[1][0], j[1][1], value[0], value[1], a[0][0], a[0][1],
            a[1][0], a[1][1], q[0][0], q[0][1], q[0][2], q[1][0], q[1][1], q[1][2],
        ]
    }

    /// [`ClassicEngine::anchor_rows`] back into a motion.
    fn anchor_from_row(&self, r: &[f64]) -> AnchorMotion {
        let position = self.to_pixels([r[0], r[1]]);
        let value = self.to_pixels([r[6], r[7]]);
        let a = [[r[8], r[9]], [r[10], r[11]]];
        AnchorMotion {
            position,
            jacobian: [[r[2], r[3]], [r[4], r[5]]],
            backward: Some(BackwardMap {
                a,
                b: [
                    value[0] - (a[0][0] * position[0] + a[0][1] * position[1]),
                    value[1] - (a[1][0] * position[0] + a[1][1] * position[1]),
                ],
                q: [[r[12], r[13], r[14]], [r[15], r[16], r[17]]],
            }),
        }
    }

    /// A frame's motion seen through `view` moved into the reference frame's view: with `T` the
    /// map from this frame's pixels into the reference frame's (`T(p) = k p + c` per axis), the
    /// forward maps become `T o F` and the backward maps `M o T^-1`.
    fn to_reference_view(&self, frame: &mut ClassicFrame, view: &FrameView) {
        if view.same_as(&self.reference_view) {
            return;
        }
        let Some((k, d)) = view.into_view(&self.reference_view) else {
            return;
        };
        let Some(anchors) = frame.anchors.as_mut() else {
            return;
        };
        // u = 2 p / (n - 1) - 1 per axis, so T(p) = k p + (n - 1) / 2 (1 - k + d).
        let n = [(self.width - 1) as f64, (self.height - 1) as f64];
        let c = [
            n[0] / 2.0 * (1.0 - k[0] + d[0]),
            n[1] / 2.0 * (1.0 - k[1] + d[1]),
        ];
        let t = |p: [f64; 2]| [k[0] * p[0] + c[0], k[1] * p[1] + c[1]];
        for m in anchors.iter_mut().flatten() {
            let old = m.position;
            m.position = t(old);
            for (r, row) in m.jacobian.iter_mut().enumerate() {
                row.iter_mut().for_each(|v| *v *= k[r]);
            }
            if let Some(b) = m.backward.as_mut() {
                // M(z) = a z + b + q m(z - position): its value at the position stays, z scales.
                let value = [
                    b.a[0][0] * old[0] + b.a[0][1] * old[1] + b.b[0],
                    b.a[1][0] * old[0] + b.a[1][1] * old[1] + b.b[1],
                ];
                for row in b.a.iter_mut() {
                    row[0] /= k[0];
                    row[1] /= k[1];
                }
                for row in b.q.iter_mut() {
                    row[0] /= k[0] * k[0];
                    row[1] /= k[0] * k[1];
                    row[2] /= k[1] * k[1];
                }
                let (a, p) = (b.a, m.position);
                b.b = [
                    value[0] - (a[0][0] * p[0] + a[0][1] * p[1]),
                    value[1] - (a[1][0] * p[0] + a[1][1] * p[1]),
                ];
            }
        }
    }

    /// The reference frame in the form motion files keep, once one is set.
    pub fn reference_motion(&self) -> Option<ClassicReference> {
        if let Some(r) = &self.reference {
            let t = &r.texture;
            return Some(ClassicReference {
                anchors: r.anchors.clone(),
                spacing: r.spacing,
                texture: t.cloud(t.floor).map(|c| TextureCloud {
                    centroid: c.centroid,
                    size: c.size,
                    floor: t.floor,
                }),
            });
        }
        self.replay.clone()
    }

    /// Makes a recorded reference frame the reference: [`ClassicEngine::animate_motion`] renders
    /// motions relative to it.
    pub fn set_reference_motion(
        &mut self,
        reference: ClassicReference,
    ) -> Result<(), ClassicError> {
        let (w, h) = (self.width as f64, self.height as f64);
        let inside = reference.anchors.iter().all(|a| {
            a[0].is_finite() && a[1].is_finite() && a[0].abs() <= 4.0 * w && a[1].abs() <= 4.0 * h
        });
        if reference.anchors.is_empty()
            || !inside
            || reference.spacing.is_nan()
            || reference.spacing <= 0.0
        {
            return Err(ClassicError::BadMotion(
                "reference has no anchors, or anchors far outside the frame".into(),
            ));
        }
        self.recalibrate();
        self.calibrate_next = false;
        self.reference_view = FrameView::IDENTITY;
        self.replay = Some(reference);
        self.update_framing();
        Ok(())
    }

    /// The portrait moved by a recorded motion relative to the reference set with
    /// [`ClassicEngine::set_reference_motion`] (or the live reference), with adapt scale as set.
    pub fn animate_motion(&mut self, frame: &ClassicFrame) -> Result<Tensor, ClassicError> {
        if self.portraits.current().is_none() {
            return Err(ClassicError::NoSource);
        }
        if !self.is_calibrated() {
            return Err(ClassicError::BadMotion(
                "came before any reference frame".into(),
            ));
        }
        self.render_recorded(frame)
    }

    /// Renders `frame` relative to the reference in use (live or recorded).
    fn render_recorded(&mut self, frame: &ClassicFrame) -> Result<Tensor, ClassicError> {
        let (anchors, spacing) = match (&self.reference, &self.replay) {
            (Some(r), _) => (&r.anchors, r.spacing),
            (None, Some(r)) => (&r.anchors, r.spacing),
            (None, None) => return self.output(None),
        };
        if frame
            .anchors
            .as_ref()
            .is_some_and(|m| m.len() != anchors.len())
        {
            return Err(ClassicError::BadMotion(format!(
                "has {} anchor maps for a reference with {} anchors",
                frame.anchors.as_ref().map_or(0, Vec::len),
                anchors.len()
            )));
        }
        let (blend, motion) = self.blend(anchors, spacing, frame);
        self.motion = Some(motion);
        self.output(blend.as_ref())
    }

    /// The frame's data as (3, H, W) f32 on the CPU, after checking its shape.
    fn frame_data(&self, what: &'static str, t: &Tensor) -> Result<Vec<f32>, ClassicError> {
        if t.dims() != [1, 3, self.height, self.width] {
            return Err(ClassicError::Shape {
                what,
                height: self.height,
                width: self.width,
                got: t.dims().to_vec(),
            });
        }
        Ok(t.to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// D1's points, templates and anchors; `None` when it has too little texture to track.
    fn calibrate(&self, pyramid: Pyramid) -> Option<Reference> {
        let (corners, texture) = self.detect(&pyramid, &[]);
        let points: Vec<RefPoint> = corners
            .par_iter()
            .filter_map(|c| {
                let origin = [c.x, c.y];
                Template::new(&pyramid, origin, &self.track).map(|template| RefPoint {
                    origin,
                    template,
                    last: Some(origin),
                    lost: 0,
                })
            })
            .collect();
        if points.len() < self.params.min_points {
            return None;
        }
        let origins: Vec<[f64; 2]> = points
            .iter()
            .map(|p| [p.origin[0] as f64, p.origin[1] as f64])
            .collect();
        let (anchors, spacing) = affine::anchor_grid(
            &origins,
            self.params.anchor_rows,
            self.params.anchor_cols,
            4.0,
        )?;
        Some(Reference {
            initial_points: points.len(),
            points,
            pyramid,
            anchors,
            spacing,
            texture,
            forward: None,
            frames_since_redetect: 0,
        })
    }

    /// Corner detection thresholds for `img`, with the absolute floor raised above its noise.
    fn detect_params(&self, img: &GrayImage) -> DetectParams {
        let sigma = features::noise_sigma(img);
        DetectParams {
            min_score: self
                .detect
                .min_score
                .max(CORNER_NOISE_FACTOR * sigma * sigma),
            ..self.detect
        }
    }

    fn fit_params(&self, reference: &Reference) -> LocalFitParams {
        LocalFitParams {
            sigma: reference.spacing * self.params.fit_sigma,
            blend_sigma: reference.spacing * self.params.blend_sigma,
            ridge: self.params.ridge,
            robust_iterations: self.params.robust_iterations,
            refine_iterations: self.params.refine_iterations,
            min_residual_scale: 0.25,
        }
    }

    /// Tracks D1's points into `frame` and fits the local affine maps (one per anchor); `None` when too
    /// few points were tracked.
    fn step(&self, reference: &mut Reference, frame: &Pyramid) -> Option<Fits> {
        // 1. Every point, from its last position (or the last motion's prediction).
        let requests: Vec<TrackRequest<'_>> = reference
            .points
            .iter()
            .map(|p| track_request(reference.forward.as_ref(), p))
            .collect();
        let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
        drop(requests);
        for (p, r) in reference.points.iter_mut().zip(&results) {
            p.last = r.map(|t| t.position);
            p.lost = if r.is_some() {
                0
            } else {
                p.lost.saturating_add(1)
            };
        }
        let mut fits = self.fit(reference);

        // 2. Retry from the motion just estimated: the lost points, or all of them when the local
        //    Jacobians moved far from the prediction the windows were pre-warped with (a sudden turn);
        //    after a sudden turn, again while the estimate keeps moving.
        let mut prior = reference.forward.clone();
        for round in 0..RETRACK_ROUNDS {
            let Some(Fits { maps: f, .. }) = &fits else {
                break;
            };
            let blend = Blend::new(
                reference
                    .anchors
                    .iter()
                    .copied()
                    .zip(f.iter().copied())
                    .collect(),
                reference.spacing * self.params.blend_sigma,
                0.0,
            );
            let jumped = reference.anchors.iter().zip(f).any(|(anchor, fit)| {
                let predicted = prior
                    .as_ref()
                    .map_or([[1.0, 0.0], [0.0, 1.0]], |b| b.linear_part(*anchor));
                let d2: f64 = predicted
                    .iter()
                    .flatten()
                    .zip(fit.a.iter().flatten())
                    .map(|(p, q)| (p - q).powi(2))
                    .sum();
                d2 > RETRACK_JACOBIAN_CHANGE * RETRACK_JACOBIAN_CHANGE
            });
            if round > 0 && !jumped {
                break;
            }
            let retry: Vec<usize> = (0..reference.points.len())
                .filter(|&i| {
                    reference
                        .points
                        .get(i)
                        .is_some_and(|p| jumped || p.last.is_none())
                })
                .collect();
            if retry.is_empty() {
                break;
            }
            let requests: Vec<TrackRequest<'_>> = retry
                .iter()
                .filter_map(|&i| reference.points.get(i))
                .map(|p| track_request(Some(&blend), p))
                .collect();
            let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
            drop(requests);
            let mut found = 0;
            for (&i, r) in retry.iter().zip(&results) {
                // A point tracked before keeps that result if the retry fails.
                if let (Some(p), Some(t)) = (reference.points.get_mut(i), r) {
                    p.last = Some(t.position);
                    p.lost = 0;
                    found += 1;
                }
            }
            if found > 0 {
                fits = self.fit(reference).or(fits);
            }
            prior = Some(blend);
        }

        // 3. Too few left: detect new corners on this frame and map them back into D1.
        let tracked = reference.points.iter().filter(|p| p.last.is_some()).count();
        reference.frames_since_redetect = reference.frames_since_redetect.saturating_add(1);
        if (tracked as f32) < self.params.redetect_below * reference.initial_points as f32
            && reference.frames_since_redetect >= REDETECT_COOLDOWN
            && let Some(f) = &fits
        {
            reference.frames_since_redetect = 0;
            if self.redetect(reference, frame, &f.maps) > 0 {
                fits = self.fit(reference).or(fits);
            }
        }

        reference.forward = fits.as_ref().map(|f| {
            Blend::new(
                reference
                    .anchors
                    .iter()
                    .copied()
                    .zip(f.maps.iter().copied())
                    .collect(),
                reference.spacing * self.params.blend_sigma,
                0.0,
            )
        });
        fits
    }

    /// The local affine fits over the points tracked in this frame.
    fn fit(&self, reference: &Reference) -> Option<Fits> {
        let (src, dst) = Self::correspondences(reference);
        if src.len() < self.params.min_points {
            return None;
        }
        affine::fit_local_affines(&src, &dst, &reference.anchors, &self.fit_params(reference))
            .map(|(maps, robust)| Fits { maps, robust })
    }

    /// The tracked points' positions in D1 and in this frame, in the order of [`Fits::robust`].
    fn correspondences(reference: &Reference) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
        reference
            .points
            .iter()
            .filter_map(|p| {
                let q = p.last?;
                Some((
                    [p.origin[0] as f64, p.origin[1] as f64],
                    [q[0] as f64, q[1] as f64],
                ))
            })
            .unzip()
    }

    /// The backward maps D_t -> D1 around the anchors' positions in D_t, fitted to the same tracked
    /// points with the forward fit's robustness weights (see [`affine::fit_local_quadratics`]).
    /// Fitting the motion the flow needs directly, rather than inverting the forward maps, makes the
    /// rendered flow agree with the tracked points, and the second-order terms follow motion that curves
    /// between anchors (a head turning in front of a still background). `None` when the fit fails.
    fn fit_backward(&self, reference: &Reference, fits: &Fits) -> Option<Vec<LocalMap>> {
        let (src, dst) = Self::correspondences(reference);
        if src.len() != fits.robust.len() {
            return None;
        }
        let centres: Vec<[f64; 2]> = reference
            .anchors
            .iter()
            .zip(&fits.maps)
            .map(|(a, f)| f.apply(*a))
            .collect();
        // The outliers were found by the forward fit: no robust rounds of its own.
        let params = LocalFitParams {
            robust_iterations: 0,
            ..self.fit_params(reference)
        };
        affine::fit_local_quadratics(
            &dst,
            &src,
            &centres,
            &params,
            self.params.quadratic_ridge,
            Some(&fits.robust),
        )
        .map(|(maps, _)| maps)
    }

    /// Detects corners on `frame` away from the tracked points, maps them into D1 through the inverse of
    /// the current motion, and adds those that track back and forth. Returns how many were added.
    fn redetect(&self, reference: &mut Reference, frame: &Pyramid, fits: &[Affine]) -> usize {
        let tracked: Vec<[f32; 2]> = reference.points.iter().filter_map(|p| p.last).collect();
        let room = self.params.max_points.saturating_sub(tracked.len());
        if room == 0 {
            return 0;
        }
        let (corners, _) = self.detect(frame, &tracked);
        // Inverse motion D_t -> D1: each local map inverted, centred on the anchor's position in D_t.
        let inverse = Blend::new(
            reference
                .anchors
                .iter()
                .zip(fits)
                .filter_map(|(a, f)| Some((f.apply(*a), f.inverse()?)))
                .collect(),
            reference.spacing * self.params.blend_sigma,
            0.0,
        );
        let (w, h) = (self.width as f32, self.height as f32);
        let candidates: Vec<([f32; 2], [f32; 2], Template)> = corners
            .par_iter()
            .take(room)
            .filter_map(|c| {
                let o = inverse.apply([c.x as f64, c.y as f64]);
                let origin = [o[0] as f32, o[1] as f32];
                if !(origin[0] >= 0.0
                    && origin[0] <= w - 1.0
                    && origin[1] >= 0.0
                    && origin[1] <= h - 1.0)
                {
                    return None;
                }
                let t = Template::new(&reference.pyramid, origin, &self.track)?;
                Some((origin, [c.x, c.y], t))
            })
            .collect();
        let forward = Blend::new(
            reference
                .anchors
                .iter()
                .copied()
                .zip(fits.iter().copied())
                .collect(),
            reference.spacing * self.params.blend_sigma,
            0.0,
        );
        let requests: Vec<TrackRequest<'_>> = candidates
            .iter()
            .map(|(origin, at, template)| {
                let a = forward.linear_part([origin[0] as f64, origin[1] as f64]);
                TrackRequest {
                    template,
                    origin: *origin,
                    guess: *at,
                    jacobian: a.map(|row| row.map(|v| v as f32)),
                }
            })
            .collect();
        let results = tracker::track(&reference.pyramid, frame, &requests, &self.track);
        drop(requests);
        let new: Vec<RefPoint> = candidates
            .into_iter()
            .zip(results)
            .filter_map(|((origin, _, template), r)| {
                r.map(|t| RefPoint {
                    origin,
                    template,
                    last: Some(t.position),
                    lost: 0,
                })
            })
            .collect();
        let added = new.len();
        // Make room by dropping the points lost the longest.
        let excess = (reference.points.len() + added).saturating_sub(self.params.max_points);
        if excess > 0 {
            let mut order: Vec<usize> = (0..reference.points.len()).collect();
            order
                .sort_by_key(|&i| std::cmp::Reverse(reference.points.get(i).map_or(0, |p| p.lost)));
            let mut drop_flags = vec![false; reference.points.len()];
            for &i in order.iter().take(excess) {
                if reference.points.get(i).is_some_and(|p| p.lost > 0)
                    && let Some(f) = drop_flags.get_mut(i)
                {
                    *f = true;
                }
            }
            let mut flags = drop_flags.into_iter();
            reference.points.retain(|_| !flags.next().unwrap_or(false));
        }
        reference.points.extend(new);
        added
    }

    /// The portrait in the idle-motion pose at `t` seconds ([`crate::idle`]), with no driving
    /// frame: a grid of anchors over the portrait's textured region (the face, for a portrait) moves as
    /// FOMM keypoints with Jacobians would (each anchor moved by the pose about the region's centre, its
    /// Jacobian the pose's linear part), and the blended flow fades to the identity beyond it, so the head
    /// moves in front of a still background.
    pub fn animate_idle(&mut self, t: f64) -> Result<Tensor, ClassicError> {
        let source = self.portraits.current().ok_or(ClassicError::NoSource)?;
        let (w, h) = (self.width as f64, self.height as f64);
        let side = w.min(h);
        // The head region: the portrait's texture cloud (centroid, spread), its half-extent two spreads,
        // kept between 20% and 30% of the frame; the frame's central 60% when the portrait is blank.
        let (centre, half) = source
            .texture
            .as_ref()
            .and_then(|t| t.cloud(t.floor))
            .map(|c| (c.centroid, (2.0 * c.size).clamp(0.2 * side, 0.3 * side)))
            .unwrap_or(([(w - 1.0) / 2.0, (h - 1.0) / 2.0], 0.3 * side));
        const GRID: usize = IDLE_ANCHOR_GRID;
        let spacing = 2.0 * half / (GRID - 1) as f64;
        let anchors: Vec<[f64; 2]> = (0..GRID * GRID)
            .map(|i| {
                [
                    centre[0] - half + (i % GRID) as f64 * spacing,
                    centre[1] - half + (i / GRID) as f64 * spacing,
                ]
            })
            .collect();
        // The pose is defined in FOMM's normalised coordinates ([-1, 1] across the frame).
        let to_norm = |p: &[f64; 2]| [2.0 * p[0] / (w - 1.0) - 1.0, 2.0 * p[1] / (h - 1.0) - 1.0];
        let to_px = |p: &[f64; 2]| {
            [
                (p[0] + 1.0) * (w - 1.0) / 2.0,
                (p[1] + 1.0) * (h - 1.0) / 2.0,
            ]
        };
        let norm: Vec<[f64; 2]> = anchors.iter().map(to_norm).collect();
        let identity = vec![[[1.0, 0.0], [0.0, 1.0]]; norm.len()];
        let pose = crate::idle::pose_at(t);
        let (moved, jacobians) = pose.apply(to_norm(&centre), &norm, &identity);
        // A normalised Jacobian in pixels: D^-1 A D with D = diag(2/(W-1), 2/(H-1)).
        let ratio = (h - 1.0) / (w - 1.0);
        let mut locals = Vec::with_capacity(anchors.len());
        let mut motion = Motion {
            reference: Vec::with_capacity(anchors.len()),
            keypoints: Vec::with_capacity(anchors.len()),
            jacobians: Vec::with_capacity(anchors.len()),
            transferred: Vec::with_capacity(anchors.len()),
            tracked_points: 0,
            total_points: 0,
        };
        for ((kp_s, m), j) in anchors.iter().zip(&moved).zip(&jacobians) {
            let kp_new = to_px(m);
            let a = [[j[0][0], j[0][1] / ratio], [j[1][0] * ratio, j[1][1]]];
            let Some(inv) = maps::invert2(a) else {
                continue;
            };
            let map = Affine {
                a: inv,
                b: [
                    kp_s[0] - (inv[0][0] * kp_new[0] + inv[0][1] * kp_new[1]),
                    kp_s[1] - (inv[1][0] * kp_new[0] + inv[1][1] * kp_new[1]),
                ],
            };
            locals.push((kp_new, map));
            motion.reference.push(self.normalise(*kp_s));
            motion.keypoints.push(self.normalise(kp_new));
            motion.jacobians.push(self.normalise_jacobian(a));
            motion.transferred.push(self.normalise(kp_new));
        }
        let blend = Blend::new(
            locals,
            spacing * self.params.blend_sigma,
            self.params.falloff,
        );
        self.motion = Some(motion);
        self.last_frame = None;
        self.output(Some(&blend))
    }

    /// The tracked motion in the form motion files keep: per anchor its map D1 -> D_t and the
    /// backward map fitted around its position in D_t.
    fn frame_motion(&self, reference: &Reference, fits: Option<&Fits>) -> ClassicFrame {
        let points = (
            reference.points.iter().filter(|p| p.last.is_some()).count(),
            reference.points.len(),
        );
        let Some(fits) = fits else {
            return ClassicFrame {
                anchors: None,
                points,
            };
        };
        let backward = self.fit_backward(reference, fits);
        let anchors = reference
            .anchors
            .iter()
            .zip(&fits.maps)
            .enumerate()
            .map(|(i, (anchor, fit))| {
                let position = fit.apply(*anchor);
                if !(position[0].is_finite() && position[1].is_finite()) {
                    // Such a map would be dropped from the blend.
                    return None;
                }
                let back = backward
                    .as_ref()
                    .and_then(|b| b.get(i))
                    .filter(|m| m.affine.det() > 0.0);
                if back.is_some_and(|m| !m.is_finite()) {
                    // The blend drops a non-finite map, and the anchor with it.
                    return None;
                }
                let back = back.map(|m| BackwardMap {
                    a: m.affine.a,
                    b: m.affine.b,
                    q: m.q,
                });
                let jacobian = if fit.a.iter().flatten().all(|v| v.is_finite()) {
                    fit.a
                } else {
                    [[1.0, 0.0], [0.0, 1.0]]
                };
                Some(AnchorMotion {
                    position,
                    jacobian,
                    backward: back,
                })
            })
            .collect();
        ClassicFrame {
            anchors: Some(anchors),
            points,
        }
    }

    /// The backward flow of a frame's motion moved onto the portrait (`None`: the identity), and
    /// the motion as FOMM keypoints.
    fn blend(
        &self,
        anchors: &[[f64; 2]],
        spacing: f64,
        frame: &ClassicFrame,
    ) -> (Option<Blend>, Motion) {
        let (tracked_points, total_points) = frame.points;
        let Some(maps) = &frame.anchors else {
            let kp: Vec<[f32; 2]> = anchors.iter().map(|a| self.normalise(*a)).collect();
            let motion = Motion {
                reference: kp.clone(),
                keypoints: kp.clone(),
                jacobians: vec![[[1.0, 0.0], [0.0, 1.0]]; kp.len()],
                transferred: kp,
                tracked_points,
                total_points,
            };
            return (None, motion);
        };
        let Framing {
            reference: c1,
            portrait: cs,
            scale,
        } = self.framing;
        let mut locals = Vec::with_capacity(maps.len());
        let mut motion = Motion {
            reference: Vec::with_capacity(maps.len()),
            keypoints: Vec::with_capacity(maps.len()),
            jacobians: Vec::with_capacity(maps.len()),
            transferred: Vec::with_capacity(maps.len()),
            tracked_points,
            total_points,
        };
        for (anchor, m) in anchors.iter().zip(maps) {
            let Some(m) = m else {
                continue;
            };
            let kp_t = m.position;
            // Without a usable Jacobian the anchor moves rigidly.
            let (a, inv) = match maps::invert2(m.jacobian) {
                Some(inv) if det2(&m.jacobian) > 0.0 => (m.jacobian, inv),
                _ => ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]),
            };
            // normalize_kp: kp_new = kp_s + scale (kp_t - kp_1); kp_s is the anchor placed on the portrait.
            let kp_s = [
                cs[0] + scale * (anchor[0] - c1[0]),
                cs[1] + scale * (anchor[1] - c1[1]),
            ];
            let kp_new = [
                kp_s[0] + scale * (kp_t[0] - anchor[0]),
                kp_s[1] + scale * (kp_t[1] - anchor[1]),
            ];
            // Backward map of the output pixel z into the portrait: the fitted backward map M moved
            // onto the portrait, z -> P(M(P^-1 z)) with P(x) = cs + scale (x - c1) (its second-order
            // terms scale by 1 / scale), or FOMM's kp_s + J^-1 (z - kp_new) where there is none.
            let map = match m.backward {
                Some(BackwardMap { a: ma, b: mb, q }) if det2(&ma) > 0.0 => {
                    let t = [
                        cs[0] + scale * (ma[0][0] * c1[0] + ma[0][1] * c1[1] + mb[0] - c1[0]),
                        cs[1] + scale * (ma[1][0] * c1[0] + ma[1][1] * c1[1] + mb[1] - c1[1]),
                    ];
                    LocalMap {
                        centre: kp_new,
                        affine: Affine {
                            a: ma,
                            b: [
                                t[0] - (ma[0][0] * cs[0] + ma[0][1] * cs[1]),
                                t[1] - (ma[1][0] * cs[0] + ma[1][1] * cs[1]),
                            ],
                        },
                        q: q.map(|row| row.map(|v| v / scale)),
                    }
                }
                _ => LocalMap::affine(
                    kp_new,
                    Affine {
                        a: inv,
                        b: [
                            kp_s[0] - (inv[0][0] * kp_new[0] + inv[0][1] * kp_new[1]),
                            kp_s[1] - (inv[1][0] * kp_new[0] + inv[1][1] * kp_new[1]),
                        ],
                    },
                ),
            };
            locals.push(map);
            motion.reference.push(self.normalise(*anchor));
            motion.keypoints.push(self.normalise(kp_t));
            motion.jacobians.push(self.normalise_jacobian(a));
            motion.transferred.push(self.normalise(kp_new));
        }
        let blend = Blend::from_maps(
            locals,
            scale * spacing * self.params.blend_sigma,
            self.params.falloff,
        );
        (Some(blend), motion)
    }

    /// The portrait warped by `blend` (`None`: the portrait itself), on the portrait's device.
    fn output(&self, blend: Option<&Blend>) -> Result<Tensor, ClassicError> {
        let source = self.portraits.current().ok_or(ClassicError::NoSource)?;
        let out = match blend {
            None => source.image.clone(),
            Some(blend) => {
                let size = (self.height, self.width);
                let mut grid = flow::sampling_grid(blend, size, size, self.params.flow_stride);
                // Border padding: where the motion samples outside the picture, the picture's edge
                // pixel is used (PyTorch's padding_mode="border": with align_corners = true, -1 and
                // 1 are the edge pixels' centres), never the zeros FOMM's grid_sample pads with,
                // which show as black bands along the edges when the face sways or zooms out.
                grid.iter_mut().for_each(|g| *g = g.clamp(-1.0, 1.0));
                let grid = Tensor::from_vec(grid, (1, self.height, self.width, 2), &Device::Cpu)?;
                grid_sample(&source.image, &grid, true)?
            }
        };
        Ok(out.to_device(&source.device)?)
    }

    /// Pixel position -> [-1, 1] (align_corners = true).
    fn normalise(&self, p: [f64; 2]) -> [f32; 2] {
        crate::motion::normalise_point(p, (self.height, self.width))
    }

    /// A pixel-space Jacobian in normalised coordinates: D A D^-1 with D = diag(2/(W-1), 2/(H-1)).
    fn normalise_jacobian(&self, a: [[f64; 2]; 2]) -> [[f32; 2]; 2] {
        crate::motion::normalise_jacobian(a, (self.height, self.width))
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
