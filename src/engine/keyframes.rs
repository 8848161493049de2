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
//! When a new keyframe arrives, the output does not jump to it: for a few frames both keyframes are
//! warped to the current driving frame and cross-faded, so appearance changes that the warp cannot
//! show (mouth, eyes, occlusions) fade in instead of popping. The fade lasts [`BLEND_FRAMES`] frames
//! at most and half the frames since the previous keyframe at most: a fast engine (a server sending
//! ten keyframes a second) changes little from one keyframe to the next, and a fade as long as the
//! interval would warp two keyframes for every frame, twice the work, and always show a mix of two.
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

/// Frames over which a new keyframe fades in at most. At 30 fps, 4 frames (133 ms) hide the switch
/// without trailing visibly behind the model.
pub const BLEND_FRAMES: usize = 4;

/// A keyframe fading out: its follower, the frames of the fade left and the fade's length.
struct Fade {
    follower: Follower,
    left: usize,
    length: usize,
}

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
    /// The previous keyframe, while it fades out.
    fading: Option<Fade>,
    /// Frames rendered since the current keyframe was set.
    since_keyframe: usize,
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
            since_keyframe: 0,
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
        self.since_keyframe = 0;
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
            .chain(self.fading.iter_mut().map(|f| &mut f.follower))
        {
            f.warp.set_smoothing(smoothing);
        }
    }

    /// A new keyframe `key` (1, 3, side, side), rendered for driving frame `driving` (captured
    /// as `info` says). With `blend`, the previous keyframe fades out over the next frames
    /// ([`BLEND_FRAMES`] at most, half the frames it was shown for at most); without, the switch
    /// is immediate.
    pub fn set_keyframe(
        &mut self,
        key: &Tensor,
        driving: &Tensor,
        info: &FrameInfo,
        blend: bool,
    ) -> Result<(), EngineError> {
        let next = Follower::new(&self.settings, key, driving, info)?;
        let previous = self.current.replace(next);
        let length = BLEND_FRAMES.min(self.since_keyframe / 2);
        self.since_keyframe = 0;
        self.fading = match previous {
            Some(follower) if blend && length > 0 => Some(Fade {
                follower,
                left: length,
                length,
            }),
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
        self.since_keyframe += 1;
        let Some(fade) = self.fading.as_mut() else {
            return Ok(now);
        };
        let before = fade.follower.warp.animate_with(driving, info)?;
        // The new keyframe's weight grows 1/(L+1), 2/(L+1), ... over a fade of L frames.
        let alpha = (fade.length + 1 - fade.left) as f64 / (fade.length + 1) as f64;
        fade.left -= 1;
        if fade.left == 0 {
            self.fading = None;
        }
        Ok(((before * (1.0 - alpha))? + (now * alpha)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const SIDE: usize = 128;

    /// A still driving frame with texture to track: sums of sinusoids, a little different per
    /// channel.
    fn driving() -> Tensor {
        let data: Vec<f32> = (0..3 * SIDE * SIDE)
            .map(|i| {
                let (c, p) = (i / (SIDE * SIDE), i % (SIDE * SIDE));
                let (x, y) = ((p % SIDE) as f32, (p / SIDE) as f32);
                0.5 + 0.2 * (0.31 * x + 0.17 * y + c as f32).sin()
                    + 0.15 * (0.11 * x - 0.29 * y).cos()
            })
            .collect();
        Tensor::from_vec(data, (1, 3, SIDE, SIDE), &Device::Cpu).unwrap()
    }

    fn flat(v: f32) -> Tensor {
        Tensor::full(v, (1, 3, SIDE, SIDE), &Device::Cpu).unwrap()
    }

    /// The mean of the frame's centre (the warp of a flat keyframe is flat away from the borders).
    fn centre_mean(t: &Tensor) -> f32 {
        let q = SIDE / 4;
        t.narrow(2, q, 2 * q)
            .and_then(|t| t.narrow(3, q, 2 * q))
            .and_then(|t| t.mean_all())
            .and_then(|t| t.to_scalar::<f32>())
            .unwrap()
    }

    /// Renders `n` frames of the still driving frame, returning their centre means.
    fn render(ib: &mut InBetween, d: &Tensor, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| centre_mean(&ib.render(d, &FrameInfo::at(0.0)).unwrap()))
            .collect()
    }

    /// The weights of the new keyframe in frames whose mean is `means`, with keyframes of 0.2
    /// before and 0.8 after.
    fn weights(means: &[f32]) -> Vec<f32> {
        means.iter().map(|m| (m - 0.2) / 0.6).collect()
    }

    fn close(got: &[f32], want: &[f32]) -> bool {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.01)
    }

    #[test]
    fn a_keyframe_after_a_long_one_fades_in_over_blend_frames() {
        let d = driving();
        let mut ib = InBetween::new(SIDE, false);
        ib.set_keyframe(&flat(0.2), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        let first = render(&mut ib, &d, 10);
        assert!(close(&weights(&first), &[0.0; 10]), "{first:?}");
        ib.set_keyframe(&flat(0.8), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        let got = weights(&render(&mut ib, &d, BLEND_FRAMES + 2));
        let step = 1.0 / (BLEND_FRAMES + 1) as f32;
        let mut want: Vec<f32> = (1..=BLEND_FRAMES).map(|k| k as f32 * step).collect();
        want.extend([1.0, 1.0]);
        assert!(close(&got, &want), "weights {got:?}, want {want:?}");
    }

    #[test]
    fn keyframes_close_together_fade_over_half_their_interval() {
        let d = driving();
        let mut ib = InBetween::new(SIDE, false);
        ib.set_keyframe(&flat(0.2), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        render(&mut ib, &d, 3);
        ib.set_keyframe(&flat(0.8), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        // Shown for 3 frames: a fade of 1 frame, half way.
        let got = weights(&render(&mut ib, &d, 3));
        assert!(close(&got, &[0.5, 1.0, 1.0]), "weights {got:?}");
        // One frame after the last keyframe: no fade at all.
        ib.set_keyframe(&flat(0.2), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        render(&mut ib, &d, 1);
        ib.set_keyframe(&flat(0.8), &d, &FrameInfo::at(0.0), true)
            .unwrap();
        let got = weights(&render(&mut ib, &d, 2));
        assert!(close(&got, &[1.0, 1.0]), "weights {got:?}");
    }

    #[test]
    fn without_blend_the_switch_is_immediate() {
        let d = driving();
        let mut ib = InBetween::new(SIDE, false);
        ib.set_keyframe(&flat(0.2), &d, &FrameInfo::at(0.0), false)
            .unwrap();
        render(&mut ib, &d, 10);
        ib.set_keyframe(&flat(0.8), &d, &FrameInfo::at(0.0), false)
            .unwrap();
        let got = weights(&render(&mut ib, &d, 2));
        assert!(close(&got, &[1.0, 1.0]), "weights {got:?}");
    }
}
