//! Model keyframes, motion in between: the portrait follows the driving frames at their full rate
//! while a slow engine (FOMM on a CPU) renders only some of them.
//!
//! A keyframe is an engine's output `G_k` for driving frame `D_k`. For every later driving frame
//! `D_t`, until the next keyframe, [`InBetween::render`] shows `G_k` warped by the motion from
//! `D_k` to `D_t`. That motion is measured and moved onto the picture the way the classic engine
//! moves motion: points tracked from `D_k` into `D_t` (pyramidal Lucas-Kanade), local affine maps
//! around anchors (FOMM's keypoints and Jacobians), transferred relative to `D_k` with adapt scale
//! as configured, blended into a dense backward flow and applied with `grid_sample`. In effect a
//! classic engine whose portrait is the keyframe and whose reference frame is the keyframe's
//! driving frame. It costs about one classic-engine frame (5-15 ms at 256x256 on one core) and works
//! whatever engine rendered the keyframe.
//!
//! Why this measurement and not FOMM's own keypoint detector on every frame: the detector is a
//! third of a FOMM step's arithmetic on the small networks (about 1.3 GMAC for vox-256, 30-60 ms on
//! a 2-core CPU), too slow to run at 30 fps beside the model; the tracker needs no network and
//! follows the whole face, not just 10 keypoints.
//!
//! When a new keyframe arrives, the output does not jump to it: for [`BLEND_FRAMES`] frames both
//! keyframes are warped to the current driving frame and cross-faded, so appearance changes that the
//! warp cannot show (mouth, eyes, occlusions) fade in instead of popping.
//!
//! The warp's motion is smoothed as the engines' is ([`crate::engine::smoothing`]): each follower's
//! filter starts at rest on the identity at its keyframe's driving frame, so the in-betweens are as
//! steady as the keyframes. Frames carry their capture time and place in the camera's picture
//! ([`FrameInfo`]); the motion is measured in the keyframe's view, so a moving crop does not move
//! the portrait here either.

use candle_core::Tensor;

use super::classic::{ClassicEngine, ClassicParams};
use super::smoothing::Smoothing;
use super::{EngineError, FrameInfo};

/// Frames over which a new keyframe fades in. At 30 fps, 4 frames (133 ms) hide the switch
/// without trailing visibly behind the model.
pub const BLEND_FRAMES: usize = 4;

/// One keyframe and the warp that follows it.
struct Follower {
    warp: ClassicEngine,
}

impl Follower {
    /// A follower of `key`, rendered for `driving` (captured as `info` says).
    fn new(
        settings: &Settings,
        key: &Tensor,
        driving: &Tensor,
        info: &FrameInfo,
    ) -> Result<Self, EngineError> {
        let mut warp =
            ClassicEngine::new(ClassicParams::default(), (settings.side, settings.side))?;
        warp.set_adapt_scale(settings.adapt_scale);
        warp.set_smoothing(settings.smoothing);
        warp.set_source(key)?;
        // The first frame after calibration is the reference: the keyframe's own driving frame.
        warp.recalibrate();
        warp.animate_with(driving, info)?;
        Ok(Self { warp })
    }
}

/// What every new follower is made with.
#[derive(Debug, Clone, Copy)]
struct Settings {
    side: usize,
    adapt_scale: bool,
    smoothing: Smoothing,
}

/// The in-between renderer: the latest keyframe warped to each driving frame, with a cross-fade
/// from the previous one after a switch.
pub struct InBetween {
    settings: Settings,
    current: Option<Follower>,
    /// The previous keyframe's follower and how many blended frames are left.
    fading: Option<(Follower, usize)>,
}

impl InBetween {
    /// For square frames of `side` pixels; `adapt_scale` as the motion transfer's option. The
    /// motion is not smoothed until [`InBetween::set_smoothing`].
    pub fn new(side: usize, adapt_scale: bool) -> Self {
        Self {
            settings: Settings {
                side,
                adapt_scale,
                smoothing: Smoothing::OFF,
            },
            current: None,
            fading: None,
        }
    }

    /// Whether a keyframe is set.
    pub fn has_keyframe(&self) -> bool {
        self.current.is_some()
    }

    /// Forgets every keyframe (after recalibration or a portrait switch).
    pub fn reset(&mut self) {
        self.current = None;
        self.fading = None;
    }

    /// Changes adapt scale from the next keyframe on.
    pub fn set_adapt_scale(&mut self, on: bool) {
        self.settings.adapt_scale = on;
    }

    /// Changes the smoothing of the motion, at once for the followers running.
    pub fn set_smoothing(&mut self, smoothing: Smoothing) {
        self.settings.smoothing = smoothing;
        for f in self
            .current
            .iter_mut()
            .chain(self.fading.iter_mut().map(|(f, _)| f))
        {
            f.warp.set_smoothing(smoothing);
        }
    }

    /// A new keyframe `key` (1, 3, side, side), rendered for driving frame `driving` (captured
    /// as `info` says). With `blend`, the previous keyframe fades out over the next
    /// [`BLEND_FRAMES`] frames; without, the switch is immediate.
    pub fn set_keyframe(
        &mut self,
        key: &Tensor,
        driving: &Tensor,
        info: &FrameInfo,
        blend: bool,
    ) -> Result<(), EngineError> {
        let next = Follower::new(&self.settings, key, driving, info)?;
        let previous = self.current.replace(next);
        self.fading = match previous {
            Some(p) if blend && BLEND_FRAMES > 0 => Some((p, BLEND_FRAMES)),
            _ => None,
        };
        Ok(())
    }

    /// The output for driving frame `driving` (captured as `info` says): the keyframe warped by
    /// the motion since its driving frame, cross-faded with the previous keyframe right after a
    /// switch.
    pub fn render(&mut self, driving: &Tensor, info: &FrameInfo) -> Result<Tensor, EngineError> {
        let current = self.current.as_mut().ok_or(EngineError::NoSource)?;
        let now = current.warp.animate_with(driving, info)?;
        let Some((old, left)) = self.fading.as_mut() else {
            return Ok(now);
        };
        let before = old.warp.animate_with(driving, info)?;
        // The new keyframe's weight grows 1/(B+1), 2/(B+1), ... over the blended frames.
        let alpha = (BLEND_FRAMES + 1 - *left) as f64 / (BLEND_FRAMES + 1) as f64;
        *left -= 1;
        if *left == 0 {
            self.fading = None;
        }
        Ok(((before * (1.0 - alpha))? + (now * alpha)?)?)
    }
}
