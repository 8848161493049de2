//! Engines turn driving frames into animated portraits behind one interface, [`Animator`].
//! Every engine takes and returns (1, 3, H, W) float tensors in [0, 1] at its own frame size.
//!
//! * [`fomm`]: the First Order Motion Model (the `fomm` crate) with the portrait cached and the
//!   relative motion transfer (paper Eq. 10-11) as state.
//! * [`classic`]: the weight-free engine: tracked points turned into FOMM's keypoints and
//!   Jacobians.
//! * [`keyframes`]: a slow engine's frames as keyframes, the motion in between from the tracker.
//! * [`select`]: which engine runs (`--engine fomm|classic|auto`), built from a request.
//! * [`smoothing`]: the One Euro filter that smooths the driving motion of every engine.
//! * [`PortraitCache`]: what an engine computes about a portrait, kept by id.
//!
//! A driving frame can come with [`FrameInfo`]: when it was captured (the smoothing's clock) and
//! where it lies in the camera's picture ([`FrameView`]: the crop the model sees moves with the
//! face), so that engines measure motion in the camera's coordinates and a crop change does not
//! move the portrait.

pub mod classic;
pub mod fomm;
pub mod keyframes;
pub mod select;
pub mod smoothing;

use std::collections::HashMap;
use std::time::Duration;

use candle_core::Tensor;

use crate::media::MediaError;
use crate::motion::{FrameMotion, KeypointSet, MotionEngine, MotionSource, ReferenceMotion};
use ::fomm::keypoint_detector::Keypoints;
use ::fomm::model::ModelError;

/// What went wrong in an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The FOMM model failed (or was given an input it cannot take).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The classic engine failed.
    #[error(transparent)]
    Classic(#[from] classic::ClassicError),
    /// An image could not be turned into the engine's input or back.
    #[error(transparent)]
    Media(Box<MediaError>),
    /// A frame was asked for before a portrait was set.
    #[error("no portrait is set: choose a source image first")]
    NoSource,
    /// A recorded motion of another engine, or one that does not fit this engine's model.
    #[error(
        "this motion was captured with the {motion} engine and cannot drive the {engine} engine: {why}"
    )]
    MotionMismatch {
        /// The engine that captured the motion.
        motion: MotionEngine,
        /// This engine's name.
        engine: &'static str,
        /// What to do about it.
        why: String,
    },
    /// The engine cannot do what was asked.
    #[error("the {engine} engine does not support {what}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// What it was asked for.
        what: &'static str,
    },
}

impl From<MediaError> for EngineError {
    fn from(e: MediaError) -> Self {
        EngineError::Media(Box::new(e))
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Model(ModelError::Candle(e))
    }
}

/// Which kind of engine an [`Animator`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EngineId {
    /// The First Order Motion Model.
    Fomm,
    /// The weight-free classic engine.
    Classic,
    /// Anything else (test engines).
    #[default]
    Other,
}

/// The engine as the invisible mark names it.
impl From<EngineId> for crate::watermark::MarkEngine {
    fn from(id: EngineId) -> Self {
        match id {
            EngineId::Fomm => Self::Fomm,
            EngineId::Classic => Self::Classic,
            EngineId::Other => Self::Other,
        }
    }
}

/// Where a driving frame lies in the camera's picture: its normalised coordinates `u` ([-1, 1]
/// across the frame, -1/+1 the centres of the first/last pixel, x along the width) map to camera
/// coordinates `c = scale * u + offset`, per axis (a negative x scale is a mirrored crop). Any
/// fixed camera unit works: only views of the same camera are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameView {
    /// Camera units per normalised unit, (x, y).
    pub scale: [f64; 2],
    /// The frame's centre in camera units, (x, y).
    pub offset: [f64; 2],
}

impl FrameView {
    /// A frame that is the camera's picture (offline, or a fixed crop).
    pub const IDENTITY: FrameView = FrameView {
        scale: [1.0, 1.0],
        offset: [0.0, 0.0],
    };

    /// The map from this view's normalised coordinates into `reference`'s: `u_ref = k u + d`,
    /// returned as `(k, d)` per axis. `None` when either view is degenerate.
    pub fn into_view(&self, reference: &FrameView) -> Option<([f64; 2], [f64; 2])> {
        let mut k = [0.0; 2];
        let mut d = [0.0; 2];
        for i in 0..2 {
            let r = reference.scale[i];
            if r == 0.0 || !r.is_finite() || !self.scale[i].is_finite() || self.scale[i] == 0.0 {
                return None;
            }
            k[i] = self.scale[i] / r;
            d[i] = (self.offset[i] - reference.offset[i]) / r;
        }
        (k.iter().chain(&d).all(|v| v.is_finite())).then_some((k, d))
    }

    /// Whether this is the identity map into `reference` (to within rounding).
    pub fn same_as(&self, reference: &FrameView) -> bool {
        self.into_view(reference).is_none_or(|(k, d)| {
            (k[0] - 1.0).abs() < 1e-9
                && (k[1] - 1.0).abs() < 1e-9
                && d[0].abs() < 1e-9
                && d[1].abs() < 1e-9
        })
    }
}

impl Default for FrameView {
    fn default() -> Self {
        Self::IDENTITY
    }
}

/// What an engine is told about a driving frame besides its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameInfo {
    /// When it was captured, seconds from any fixed origin (live: the camera's capture time;
    /// offline: frame index / frame rate). `None`: one frame period after the last.
    pub time: Option<f64>,
    /// Where it lies in the camera's picture.
    pub view: FrameView,
}

impl FrameInfo {
    /// A frame at `time` seconds, the camera's whole picture.
    pub fn at(time: f64) -> Self {
        Self {
            time: Some(time),
            view: FrameView::IDENTITY,
        }
    }
}

/// Keypoints of the last animated frame in FOMM's normalised coordinates ((x, y) in [-1, 1],
/// -1/+1 the centres of the first/last pixel): where they are in the driving frame, and where they
/// were moved to on the portrait. For the keypoint overlay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeypointView {
    /// Keypoints in the driving frame.
    pub driving: Vec<[f32; 2]>,
    /// Keypoints moved onto the portrait.
    pub portrait: Vec<[f32; 2]>,
}

/// What an engine rendering on another machine has done, for the live loop's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteStats {
    /// Connected to the server now.
    pub connected: bool,
    /// Frames the server rendered that were used.
    pub frames: u64,
    /// Motions sent.
    pub motions: u64,
    /// Bytes sent in all (the messages, without the encryption's few bytes a record).
    pub bytes_up: u64,
    /// Of those, the motions' bytes (the portrait and the reference go once).
    pub motion_bytes_up: u64,
    /// Bytes received in all.
    pub bytes_down: u64,
    /// Motions on their way (sent, their frames not come) when the last frame came: above zero
    /// when the next motions go before the last frame is back.
    pub in_flight: usize,
}

/// What [`Animator::submit`] did with a driving frame.
pub enum Submitted {
    /// Rendered at once: the frame.
    Rendered(Tensor),
    /// On its way (rendered elsewhere): [`Animator::finished`] hands it over under its tag.
    Sent,
}

/// A frame finished for an earlier [`Animator::submit`].
pub struct Finished {
    /// The tag it was submitted with.
    pub tag: u64,
    /// The rendered frame.
    pub frame: Tensor,
}

/// One interface for every way of animating a portrait.
pub trait Animator {
    /// Short name for messages ("fomm", "classic").
    fn name(&self) -> &'static str;
    /// Which engine this is.
    fn id(&self) -> EngineId {
        EngineId::Other
    }
    /// (height, width) of the frames it takes and renders.
    fn frame_size(&self) -> (usize, usize);
    /// Selects portrait `id`, computing its cached state from `source` only the first time:
    /// switching back to a portrait seen before costs no re-encoding.
    fn select_portrait(&mut self, id: u64, source: &Tensor) -> Result<(), EngineError>;
    /// The next driving frame becomes the reference frame D_1.
    fn recalibrate(&mut self);
    /// Whether a reference frame is set.
    fn is_calibrated(&self) -> bool;
    /// The portrait moved as `driving` moved relative to the reference frame.
    fn animate(&mut self, driving: &Tensor) -> Result<Tensor, EngineError>;
    /// As [`Animator::animate`], with the frame's capture time and place in the camera's picture
    /// (engines that neither smooth nor compensate crop changes ignore them).
    fn animate_with(&mut self, driving: &Tensor, info: &FrameInfo) -> Result<Tensor, EngineError> {
        let _ = info;
        self.animate(driving)
    }
    /// The keypoints [`Animator::animate_with`] would render `driving` with (detected, moved into
    /// the reference frame's view, smoothed), without rendering; with `true` when this frame
    /// became the reference (the first after a recalibration). `None` for an engine without
    /// keypoints. For rendering elsewhere: [`Animator::animate_motion`] renders them here.
    fn driving_keypoints(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
    ) -> Result<Option<(KeypointSet, bool)>, EngineError> {
        let _ = (driving, info);
        Ok(None)
    }
    /// Smoothing of the driving motion from the next frame on ([`smoothing`]).
    fn set_smoothing(&mut self, smoothing: smoothing::Smoothing) {
        let _ = smoothing;
    }
    /// The portrait in the idle-motion pose at `t` seconds (no driving frame).
    fn animate_idle(&mut self, t: f64) -> Result<Tensor, EngineError>;
    /// Makes `driving` the reference frame without rendering it.
    fn calibrate_on(&mut self, driving: &Tensor) -> Result<(), EngineError> {
        self.recalibrate();
        self.animate(driving).map(drop)
    }
    /// The engine's keypoints of a driving frame, when it has a detector (FOMM); used to find
    /// the driving frame that best matches the portrait.
    fn detect(&self, driving: &Tensor) -> Result<Option<Keypoints>, EngineError> {
        let _ = driving;
        Ok(None)
    }
    /// The portrait's keypoints, when the engine has a detector.
    fn portrait_keypoints(&self) -> Option<&Keypoints> {
        None
    }
    /// Relative or absolute motion transfer and adapt scale (FOMM's demo options). Engines with
    /// relative motion only refuse `relative = false`.
    fn set_transfer(&mut self, relative: bool, adapt_scale: bool) -> Result<(), EngineError> {
        let _ = adapt_scale;
        if relative {
            Ok(())
        } else {
            Err(EngineError::Unsupported {
                engine: self.name(),
                what: "absolute motion transfer",
            })
        }
    }
    /// Whether [`Animator::set_transfer`] takes absolute motion transfer.
    fn supports_absolute(&self) -> bool {
        false
    }
    /// The keypoints of the last animated frame, when the engine has any.
    fn keypoint_view(&self) -> Option<KeypointView> {
        None
    }
    /// What an engine that renders on another machine has done (`None` for the others).
    fn remote_stats(&self) -> Option<RemoteStats> {
        None
    }
    /// What the engine has newly said for the user (a server found, lost, or refusing), once:
    /// taken by the call. The live loop shows it where it shows its own notices.
    fn take_notice(&self) -> Option<String> {
        None
    }

    // Several frames in flight: an engine that renders elsewhere (a server) takes the next driving
    // frame before the last one's frame is back, so its frames come at the renderer's rate
    // whatever the round trip. Engines that render here render at once.

    /// Starts rendering `driving` (as [`Animator::animate_with`]); `tag` names it when it
    /// comes back from [`Animator::finished`]. Frames may be skipped: when a frame comes, the ones
    /// submitted before it that have not come never will.
    fn submit(
        &mut self,
        driving: &Tensor,
        info: &FrameInfo,
        tag: u64,
    ) -> Result<Submitted, EngineError> {
        let _ = tag;
        self.animate_with(driving, info).map(Submitted::Rendered)
    }
    /// Whether [`Animator::submit`] is worth calling now while frames are in flight (an engine
    /// paces its submissions to the rate its frames come back, so no work is wasted here on
    /// frames the renderer would skip).
    fn wants_more(&self) -> bool {
        true
    }
    /// The next frame of those [`Submitted::Sent`], waiting up to `wait` for
    /// it; `None` when none came.
    fn finished(&mut self, wait: Duration) -> Result<Option<Finished>, EngineError> {
        let _ = wait;
        Ok(None)
    }
    /// A new engine of the same kind sharing this one's model (its weight tensors are shared;
    /// kernel caches derived from them are copied), with its own portrait cache and no reference
    /// frame: one per client of a rendering server.
    /// `None` where the engine cannot be shared that way.
    fn fresh(&self) -> Option<Box<dyn Animator + Send>> {
        None
    }

    // Motion as data ([`crate::motion`]): captured once, replayed onto any portrait.

    /// What a motion file records about this engine (engine, model, frame size); `None` when the
    /// engine's motion cannot be recorded.
    fn motion_source(&self) -> Option<MotionSource> {
        None
    }
    /// The motion of `driving` relative to the reference frame, without rendering (no portrait
    /// needed); `driving` becomes the reference frame first when none is set. `None` when it
    /// could not be measured (a classic reference frame with too little texture).
    fn capture(&mut self, driving: &Tensor) -> Result<Option<FrameMotion>, EngineError> {
        let _ = driving;
        Err(EngineError::Unsupported {
            engine: self.name(),
            what: "capturing motion",
        })
    }
    /// The motion of the last frame animated from a driving frame ([`Animator::animate`]).
    fn last_motion(&self) -> Option<FrameMotion> {
        None
    }
    /// The reference frame's motion, once a reference is set.
    fn reference_motion(&self) -> Option<ReferenceMotion> {
        None
    }
    /// Makes a recorded reference frame the reference D_1 (the motions replayed next are relative
    /// to it).
    fn set_reference_motion(&mut self, reference: &ReferenceMotion) -> Result<(), EngineError> {
        Err(EngineError::MotionMismatch {
            motion: reference.engine(),
            engine: self.name(),
            why: "this engine does not replay recorded motion".into(),
        })
    }
    /// The portrait moved by a recorded motion, relative to the reference set with
    /// [`Animator::set_reference_motion`], with the engine's motion transfer (relative motion,
    /// adapt scale) as for a driving frame.
    fn animate_motion(&mut self, motion: &FrameMotion) -> Result<Tensor, EngineError> {
        Err(EngineError::MotionMismatch {
            motion: motion.engine(),
            engine: self.name(),
            why: "this engine does not replay recorded motion".into(),
        })
    }
}

/// The error for a motion of `motion`'s engine given to the `engine` engine.
pub fn motion_mismatch(motion: MotionEngine, engine: &'static str) -> EngineError {
    EngineError::MotionMismatch {
        motion,
        engine,
        why: format!(
            "motions do not transfer between engines; animate it with --engine {motion}{}",
            match motion {
                MotionEngine::Fomm => " and the checkpoint it was captured with",
                MotionEngine::Classic => "",
            }
        ),
    }
}

/// What an engine computes about each portrait, kept by id so that switching back costs
/// nothing, plus the portrait in use.
#[derive(Debug, Clone)]
pub struct PortraitCache<S> {
    by_id: HashMap<u64, S>,
    current: Option<S>,
}

impl<S> Default for PortraitCache<S> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            current: None,
        }
    }
}

impl<S: Clone> PortraitCache<S> {
    /// The portrait in use.
    pub fn current(&self) -> Option<&S> {
        self.current.as_ref()
    }

    /// Makes portrait `id` current, computing it with `make` only if it is not cached yet.
    pub fn select<E>(&mut self, id: u64, make: impl FnOnce() -> Result<S, E>) -> Result<&S, E> {
        let state = match self.by_id.get(&id) {
            Some(s) => s.clone(),
            None => {
                let s = make()?;
                self.by_id.insert(id, s.clone());
                s
            }
        };
        Ok(self.current.insert(state))
    }

    /// Whether portrait `id` is cached.
    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Portrait `id`'s cached state.
    pub fn get(&self, id: u64) -> Option<&S> {
        self.by_id.get(&id)
    }

    /// Makes `state` current without caching it (a portrait with no id).
    pub fn set_current(&mut self, state: S) {
        self.current = Some(state);
    }

    /// Caches portrait `id` without making it current.
    pub fn insert(&mut self, id: u64, state: S) {
        self.by_id.insert(id, state);
    }
}
