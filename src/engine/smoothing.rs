//! Smoothing of the driving motion: an adaptive low-pass filter that removes the jitter sensor
//! noise puts into keypoints while the face is still, and follows the face without visible lag
//! when it moves.
//!
//! The filter is the **One Euro filter** (G. Casiez, N. Roussel, D. Vogel, "1 € Filter: A Simple
//! Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012). Each value is
//! smoothed by an exponential low-pass whose cutoff frequency rises with the signal's speed:
//!
//! * `alpha(fc, Te) = 1 / (1 + tau / Te)`, `tau = 1 / (2 pi fc)`, `Te` the time since the last
//!   sample (the paper's Eq. 3-4: the smoothing factor of a first-order low-pass at cutoff `fc`);
//! * the speed `dx` is the difference of successive samples over `Te`, itself low-passed at a
//!   fixed cutoff `d_cutoff` (the paper: 1 Hz);
//! * the cutoff is `fc = min_cutoff + beta |dx|` (the paper's Eq. 5): `min_cutoff` (Hz) sets how
//!   much jitter is removed at rest (lower: smoother, more lag on slow motion), `beta` (per unit of
//!   speed) how fast the cutoff opens with speed (higher: less lag when moving).
//!
//! The motion of a frame is a set of points (FOMM's keypoints, the classic engine's anchors), each
//! with its position and attached parameters (a Jacobian, a local map). The filter runs on every
//! value; the speed that sets a point's cutoff is the speed of its position plus the speed of its
//! parameters weighted by how far they move pixels (`speed_weights`), so all values of one point
//! share one cutoff and a map is never smoothed apart from its keypoint. Where the paper filters
//! each coordinate on its own, this vector form keeps a point's x and y (and its Jacobian) in step.
//!
//! Timestamps: live, the camera's capture times (a dropped frame is a longer `Te`, handled by the
//! formula); offline, frame index / frame rate.

use std::str::FromStr;

/// The One Euro filter's parameters (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneEuroParams {
    /// Cutoff frequency at rest, Hz.
    pub min_cutoff: f64,
    /// Increase of the cutoff per unit of speed (speed in FOMM's normalised units, [-1, 1]
    /// across the frame, per second), Hz s.
    pub beta: f64,
    /// Cutoff frequency of the speed's own low-pass, Hz (1 Hz in the paper).
    pub d_cutoff: f64,
}

/// How strongly the driving motion is smoothed: 0 (off) to 1 (strongest). The strength sets the
/// One Euro filter's rest cutoff on a log scale, from 8 Hz (barely smoothed) at 0+ through
/// [`DEFAULT_STRENGTH`]'s 1 Hz (the paper's suggested starting point) to 0.125 Hz at 1; `beta`
/// follows from the engine's keypoint jitter and `d_cutoff` is fixed (see [`Smoothing::params`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    strength: f64,
}

/// The default strength: a 1 Hz rest cutoff.
pub const DEFAULT_STRENGTH: f64 = 0.5;

/// `beta` times the engine's keypoint jitter (see [`Smoothing::params`]), Hz per (1 / s).
///
/// Casiez et al. (CHI 2012, Sec. 5, "Tuning") set `beta` per signal: with `min_cutoff` fixed, raise
/// `beta` until the lag on fast motion is acceptable, as long as the filter stays closed at rest.
/// What opens it at rest is the noise's own speed: a keypoint that jitters by `j` normalised units
/// a frame at 30 fps has a speed estimate (after the 1 Hz speed low-pass, which keeps about 0.3 of
/// white noise's spread) of about `0.3 * 30 * j = 9 j` units/s, so `beta = 0.15 / j` adds about
/// 1.4 Hz to the 1 Hz rest cutoff: still a strong low-pass at 30 fps. Real motion is far faster
/// than the noise and opens the filter fully. The figure was chosen on `tests/steady.rs`: the
/// jitter is cut to at most a third for both engines, and the classic engine's error on the
/// `make-sequences` motions rises by under 10 % (README, "Smoothing"). The largest lag of a steady
/// motion is `1 / (2 pi beta)` normalised units: 0.02 px for the classic engine's anchors at 256
/// px, 2 px for FOMM's keypoints, which are a hundred times noisier.
pub const BETA_TIMES_JITTER: f64 = 0.15;

/// The speed low-pass's cutoff, Hz: 1 Hz, the paper's value.
pub const D_CUTOFF: f64 = 1.0;

/// Frame period assumed when an engine is given no frame times.
pub const DEFAULT_FRAME_PERIOD: f64 = 1.0 / 30.0;

impl Default for Smoothing {
    fn default() -> Self {
        Self {
            strength: DEFAULT_STRENGTH,
        }
    }
}

impl Smoothing {
    /// No smoothing.
    pub const OFF: Smoothing = Smoothing { strength: 0.0 };

    /// A strength in [0, 1] (clamped; not a number: off).
    pub fn new(strength: f64) -> Self {
        Self {
            strength: if strength.is_finite() {
                strength.clamp(0.0, 1.0)
            } else {
                0.0
            },
        }
    }

    /// The strength, 0..=1.
    pub fn strength(&self) -> f64 {
        self.strength
    }

    /// Whether it smooths at all.
    pub fn is_on(&self) -> bool {
        self.strength > 0.0
    }

    /// The filter's parameters for keypoints that jitter by `jitter` normalised units a frame on a
    /// still face with sensor noise (the engine's own figure, e.g.
    /// [`crate::engine::fomm::KEYPOINT_JITTER`]): `beta = BETA_TIMES_JITTER / jitter`. `None`
    /// when off.
    pub fn params(&self, jitter: f64) -> Option<OneEuroParams> {
        self.is_on().then(|| OneEuroParams {
            // 8 Hz * 64^-strength: 8 Hz, 1 Hz at 0.5, 0.125 Hz at 1.
            min_cutoff: 8.0 * 64f64.powf(-self.strength),
            beta: BETA_TIMES_JITTER / jitter.max(1e-9),
            d_cutoff: D_CUTOFF,
        })
    }
}

/// A `--smoothing` value that is not `off`, `on` or a number in [0, 1].
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not a smoothing strength: expected off, on, or a number from 0 (off) to 1")]
pub struct ParseSmoothingError(String);

impl FromStr for Smoothing {
    type Err = ParseSmoothingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Smoothing::OFF),
            "on" | "default" => Ok(Smoothing::default()),
            v => match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(Smoothing::new(x)),
                _ => Err(ParseSmoothingError(s.to_string())),
            },
        }
    }
}

impl std::fmt::Display for Smoothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_on() {
            write!(f, "{}", self.strength)
        } else {
            f.write_str("off")
        }
    }
}

/// `alpha(fc, Te)`: the smoothing factor of a first-order low-pass at cutoff `fc` Hz for a
/// sample `te` seconds after the last (Casiez et al. 2012, Eq. 3-4).
fn alpha(cutoff: f64, te: f64) -> f64 {
    let tau = 1.0 / (std::f64::consts::TAU * cutoff.max(1e-6));
    1.0 / (1.0 + tau / te)
}

#[derive(Debug, Clone)]
struct State {
    t: f64,
    x: Vec<f64>,
    dx: Vec<f64>,
}

/// The One Euro filter over a frame's motion: `points` groups of `per_point` values each, the
/// first two a position in normalised units, the rest parameters whose speed counts with their
/// weight in [`MotionFilter::new`]'s `speed_weights`.
#[derive(Debug, Clone)]
pub struct MotionFilter {
    params: Option<OneEuroParams>,
    jitter: f64,
    speed_weights: Vec<f64>,
    state: Option<State>,
}

impl MotionFilter {
    /// A filter for points of `speed_weights.len()` values each, whose positions jitter by
    /// `jitter` normalised units a frame at rest (sets `beta`, [`Smoothing::params`]);
    /// `speed_weights[i]` is how much a unit change of value `i` moves the picture, in normalised
    /// units (1 for a position; the reach of a Jacobian; 0 for values that should not open the
    /// filter).
    pub fn new(smoothing: Smoothing, jitter: f64, speed_weights: Vec<f64>) -> Self {
        Self {
            params: smoothing.params(jitter),
            jitter,
            speed_weights,
            state: None,
        }
    }

    /// Changes the strength from the next sample on (the filter's state is kept).
    pub fn set_smoothing(&mut self, smoothing: Smoothing) {
        self.params = smoothing.params(self.jitter);
        if self.params.is_none() {
            self.state = None;
        }
    }

    /// Whether it smooths at all.
    pub fn is_on(&self) -> bool {
        self.params.is_some()
    }

    /// The last output (`None` before the first sample, after a reset, or when off).
    pub fn last(&self) -> Option<&[f64]> {
        self.state.as_ref().map(|s| s.x.as_slice())
    }

    /// Forgets the past: the next sample passes as it is.
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// Starts from `x` at rest at time `t` (the reference frame's motion, the identity): the next
    /// sample is smoothed against it.
    pub fn seed(&mut self, t: f64, x: &[f64]) {
        if self.params.is_some() {
            self.state = Some(State {
                t,
                x: x.to_vec(),
                dx: vec![0.0; x.len()],
            });
        }
    }

    /// Filters the sample `x` taken at `t` seconds in place. A sample of another length than the
    /// last one (the motion changed shape) or a time that does not advance restarts or keeps the
    /// filter as it must: a new shape passes as it is; a repeated time gives the last output.
    pub fn filter(&mut self, t: f64, x: &mut [f64]) {
        let Some(p) = self.params else {
            return;
        };
        let per_point = self.speed_weights.len().max(1);
        let usable = x.iter().all(|v| v.is_finite()) && t.is_finite();
        let state = match self.state.as_mut() {
            Some(s) if usable && s.x.len() == x.len() => s,
            _ => {
                self.state = usable.then(|| State {
                    t,
                    x: x.to_vec(),
                    dx: vec![0.0; x.len()],
                });
                return;
            }
        };
        let te = t - state.t;
        if te.is_nan() || te <= 0.0 {
            // Not later than the last sample: nothing new to smooth with.
            x.copy_from_slice(&state.x);
            return;
        }
        let a_d = alpha(p.d_cutoff, te);
        for (dx, (&xi, &prev)) in state.dx.iter_mut().zip(x.iter().zip(&state.x)) {
            *dx += a_d * ((xi - prev) / te - *dx);
        }
        for ((xs, prev), dx) in x
            .chunks_mut(per_point)
            .zip(state.x.chunks_mut(per_point))
            .zip(state.dx.chunks(per_point))
        {
            let speed = dx
                .iter()
                .zip(&self.speed_weights)
                .map(|(d, w)| (d * w).powi(2))
                .sum::<f64>()
                .sqrt();
            let a = alpha(p.min_cutoff + p.beta * speed, te);
            for (xi, pi) in xs.iter_mut().zip(prev.iter_mut()) {
                *pi += a * (*xi - *pi);
                *xi = *pi;
            }
        }
        state.t = t;
    }
}

/// A frame clock for engines that are given no frame times: each frame
/// [`DEFAULT_FRAME_PERIOD`] after the last.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameClock {
    last: Option<f64>,
}

impl FrameClock {
    /// The time of this frame: `given`, else the last time plus one default frame period.
    pub fn tick(&mut self, given: Option<f64>) -> f64 {
        let t = match given {
            Some(t) if t.is_finite() => t,
            _ => self.last.map_or(0.0, |l| l + DEFAULT_FRAME_PERIOD),
        };
        self.last = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic noise source (xorshift), roughly uniform in [-1, 1].
    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 20001) as f64 / 10000.0 - 1.0
    }

    #[test]
    fn still_noise_is_removed_and_a_ramp_is_followed() {
        let jitter = 1e-3;
        let mut f = MotionFilter::new(Smoothing::default(), jitter, vec![1.0, 1.0]);
        let mut seed = 0x9e3779b97f4a7c15u64;
        let (mut raw_change, mut out_change, mut last_raw, mut last_out) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..300 {
            let t = i as f64 / 30.0;
            let v = jitter * noise(&mut seed);
            let mut x = [v, 0.0];
            f.filter(t, &mut x);
            if i > 0 {
                raw_change += (v - last_raw).abs();
                out_change += (x[0] - last_out).abs();
            }
            (last_raw, last_out) = (v, x[0]);
        }
        assert!(
            out_change < raw_change / 5.0,
            "{out_change} vs {raw_change}"
        );
        // A steady motion of 0.2 units/s (25 px/s at 256 px): the lag is at most 1/(2 pi beta).
        let beta = BETA_TIMES_JITTER / jitter;
        let mut worst: f64 = 0.0;
        for i in 300..360 {
            let t = i as f64 / 30.0;
            let v = 0.2 * (t - 10.0);
            let mut x = [v, 0.0];
            f.filter(t, &mut x);
            if i > 310 {
                worst = worst.max((x[0] - v).abs());
            }
        }
        assert!(worst < 1.5 / (std::f64::consts::TAU * beta), "lag {worst}");
    }

    #[test]
    fn off_passes_and_shape_changes_restart() {
        let mut off = MotionFilter::new(Smoothing::OFF, 1e-3, vec![1.0, 1.0]);
        let mut x = [0.3, -0.2];
        off.filter(0.0, &mut x);
        off.filter(1.0, &mut x);
        assert_eq!(x, [0.3, -0.2]);
        let mut f = MotionFilter::new(Smoothing::new(1.0), 1e-3, vec![1.0, 1.0]);
        f.filter(0.0, &mut [0.0, 0.0]);
        let mut y = [1.0, 1.0, 1.0, 1.0];
        f.filter(0.1, &mut y);
        assert_eq!(y, [1.0; 4]);
        // A time that does not advance repeats the last output.
        let mut z = [5.0; 4];
        f.filter(0.1, &mut z);
        assert_eq!(z, [1.0; 4]);
    }

    #[test]
    fn parses_strengths() {
        assert_eq!("off".parse::<Smoothing>().unwrap(), Smoothing::OFF);
        assert_eq!("on".parse::<Smoothing>().unwrap(), Smoothing::default());
        assert_eq!("0.25".parse::<Smoothing>().unwrap().strength(), 0.25);
        assert!("2".parse::<Smoothing>().is_err());
        assert!("x".parse::<Smoothing>().is_err());
        let p = Smoothing::default().params(1e-3).unwrap();
        assert!((p.min_cutoff - 1.0).abs() < 1e-12);
    }
}
