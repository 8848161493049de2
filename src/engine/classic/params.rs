//! The classic engine's settings, their documented defaults and their validation.

use super::ClassicError;

/// Settings of the classic engine. The defaults were tuned on 256x256 and 512x512 face crops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassicParams {
    /// Anchors (FOMM's keypoints) on a `rows x cols` grid over the reference frame's tracked points.
    /// Default 6 x 6 = 36: on the evaluation sequences (`marionette evaluate`) 5 x 5 and coarser were
    /// too coarse for a head moving in front of a still background, 7 x 7 and finer left too few points
    /// per anchor on noisy frames.
    pub anchor_rows: usize,
    /// See `anchor_rows`.
    pub anchor_cols: usize,
    /// Points tracked at most (one per grid cell of the frame). Default 300.
    pub max_points: usize,
    /// Shi-Tomasi quality level: a corner's score must be at least this fraction of the frame's best
    /// (OpenCV's `qualityLevel`). Default 0.01, OpenCV's documented typical value.
    pub corner_quality: f32,
    /// Pyramid levels (fewer if the frame is small). Default 4: handles motions of ~40 px at 256 px.
    pub pyramid_levels: usize,
    /// Tracking window half-size; windows are (2r+1)^2. Default 5 (11x11).
    pub window_radius: usize,
    /// Lucas-Kanade iterations per level at most. Default 10.
    pub max_iterations: usize,
    /// Forward-backward error above which a track is dropped, pixels. Default 1.0.
    pub fb_threshold: f32,
    /// Fewer tracked points than this means the motion is unknown: the portrait is shown unmoved.
    /// Default 8.
    pub min_points: usize,
    /// Re-detect corners when fewer than this fraction of the calibration's points are tracked. Default 0.5.
    pub redetect_below: f32,
    /// Gaussian radius of the neighbourhood each anchor's affine map is fitted on, in anchor spacings.
    /// Default 0.8.
    pub fit_sigma: f64,
    /// Gaussian radius of each anchor's weight when the maps are blended into the flow, in anchor
    /// spacings. Default 0.7 (0.5 and below leave gaps between anchors that make the flow unstable).
    pub blend_sigma: f64,
    /// Ridge of each local fit towards the global one (see [`super::affine::LocalFitParams::ridge`]). Default 0.01.
    pub ridge: f64,
    /// Robust reweighting rounds of the fits. Default 2.
    pub robust_iterations: usize,
    /// Rounds of refitting the fits' residuals, which restores motion that curves within an anchor's
    /// neighbourhood (see [`super::affine::fit_local_affines`]). Default 3.
    pub refine_iterations: usize,
    /// Ridge of the local maps' second-order terms towards zero, relative like `ridge` (see
    /// [`super::affine::fit_local_quadratics`]). Default 0.05.
    pub quadratic_ridge: f64,
    /// Summed anchor weight below which the flow fades to the identity (see [`super::flow::Blend`]). Default 0.2:
    /// the portrait is still from about 1.5 anchor spacings beyond the outermost anchors.
    pub falloff: f64,
    /// FOMM's `adapt_movement_scale`: scale the motion (and place the keypoints) by the ratio of the
    /// portrait's to the reference frame's texture extent (see `update_framing`). Default false, unlike
    /// FOMM: without a face detector the texture extent is a weak proxy for the face's (a cluttered room or
    /// camera noise changes it); in the evaluation it doubled the worst face MAE on driving frames with
    /// noise of 0.01 (0.008 -> 0.016) even though portrait and D1 were the same photo. Off, the portrait
    /// and the webcam crop are assumed to frame the face alike.
    pub adapt_scale: bool,
    /// The flow is evaluated exactly every `flow_stride` pixels and interpolated in between. Default 4.
    pub flow_stride: usize,
}

impl Default for ClassicParams {
    fn default() -> Self {
        Self {
            anchor_rows: 6,
            anchor_cols: 6,
            max_points: 300,
            corner_quality: 0.01,
            pyramid_levels: 4,
            window_radius: 5,
            max_iterations: 10,
            fb_threshold: 1.0,
            min_points: 8,
            redetect_below: 0.5,
            fit_sigma: 0.8,
            blend_sigma: 0.7,
            ridge: 0.01,
            robust_iterations: 2,
            refine_iterations: 3,
            quadratic_ridge: 0.05,
            falloff: 0.2,
            adapt_scale: false,
            flow_stride: 4,
        }
    }
}

impl ClassicParams {
    pub(super) fn validate(&self) -> Result<(), ClassicError> {
        let bad = |msg: &str| Err(ClassicError::InvalidParams(msg.to_string()));
        if self.anchor_rows == 0
            || self.anchor_cols == 0
            || self
                .anchor_rows
                .checked_mul(self.anchor_cols)
                .is_none_or(|k| k > 256)
        {
            return bad("anchor_rows and anchor_cols must be at least 1, with at most 256 anchors");
        }
        if self.min_points < 3 || self.max_points < self.min_points || self.max_points > 10_000 {
            return bad("need 3 <= min_points <= max_points <= 10000");
        }
        if !(self.corner_quality.is_finite() && (0.0..1.0).contains(&self.corner_quality)) {
            return bad("corner_quality must be a fraction in [0, 1)");
        }
        if !(1..=8).contains(&self.pyramid_levels) {
            return bad("pyramid_levels must be 1 to 8");
        }
        if !(1..=15).contains(&self.window_radius) {
            return bad("window_radius must be 1 to 15");
        }
        if self.max_iterations == 0 || self.max_iterations > 100 {
            return bad("max_iterations must be 1 to 100");
        }
        if !(self.fb_threshold.is_finite() && self.fb_threshold > 0.0) {
            return bad("fb_threshold must be a positive number of pixels");
        }
        if !(0.0..=1.0).contains(&self.redetect_below) {
            return bad("redetect_below must be a fraction in [0, 1]");
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.fit_sigma) || !positive(self.blend_sigma) {
            return bad("fit_sigma and blend_sigma must be positive");
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return bad("ridge must be zero or positive");
        }
        if !(self.quadratic_ridge.is_finite() && self.quadratic_ridge >= 0.0) {
            return bad("quadratic_ridge must be zero or positive");
        }
        if self.robust_iterations > 10 || self.refine_iterations > 10 {
            return bad("robust_iterations and refine_iterations must be at most 10");
        }
        if !(self.falloff.is_finite() && self.falloff >= 0.0) {
            return bad("falloff must be zero or positive");
        }
        if !(1..=64).contains(&self.flow_stride) {
            return bad("flow_stride must be 1 to 64");
        }
        Ok(())
    }
}
