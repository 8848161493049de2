//! Live statistics: per-stage times, frame rate, dropped frames and capture-to-output latency
//! percentiles over a rolling window.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

const WINDOW: usize = 300;

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

fn percentile(q: &VecDeque<f64>, p: f64) -> f64 {
    if q.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = q.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The live loop's running statistics (rolling windows of the last 300 samples, and counters).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    inference_ms: VecDeque<f64>,
    sink_ms: BTreeMap<String, VecDeque<f64>>,
    /// When each sink last wrote (new frames and repeats), over the window.
    sink_writes: BTreeMap<String, VecDeque<Instant>>,
    latency_ms: VecDeque<f64>,
    output_times: VecDeque<Instant>,
    framing_ms: VecDeque<f64>,
    /// Driving frames (or idle poses) turned into output frames.
    pub frames_out: u64,
    /// Still frames (the portrait marked as not calibrated) sent while waiting for the first
    /// driving frame; not in `frames_out`.
    pub stills_out: u64,
    /// Camera frames replaced in the capture queue before the engine took them.
    pub dropped_capture: u64,
    /// Frames replaced in the model's queue before the model took them (the model is slower than
    /// the camera: with keyframes on they still become outputs, as in-betweens).
    pub dropped_model: u64,
    /// Frames replaced in each sink's queue before the sink took them (a slow sink).
    pub dropped_sink: BTreeMap<String, u64>,
    /// Times a reference frame was taken (the first frame, then after each recalibration).
    pub calibrations: u64,
    /// The last problem that did not stop the run (e.g. an option the engine refused).
    pub notice: Option<String>,
    /// Frames the model rendered, and how long each took.
    pub keyframes: u64,
    model_ms: VecDeque<f64>,
    /// Capture of a keyframe's driving frame to the keyframe being available.
    keyframe_latency_ms: VecDeque<f64>,
    keyframe_times: VecDeque<Instant>,
    /// Whether output frames are in-betweens made from keyframes (else the model's frames).
    pub keyframes_on: bool,
    /// What the live loop does less of because the machine cannot keep up, and why.
    pub degraded: Option<String>,
    /// Rendering on another machine, when the engine does.
    pub remote: Option<crate::engine::RemoteStats>,
}

/// A summary for printing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSnapshot {
    /// Driving frames (or idle poses) turned into output frames.
    pub frames_out: u64,
    /// Still frames sent while waiting for the first driving frame; not in `frames_out`.
    pub stills_out: u64,
    /// Output frames per second over the last 300.
    pub fps: f64,
    /// Crop and resize of the camera frame to the model's input.
    pub framing_ms_p50: f64,
    /// The engine's step (or the idle pose's rendering).
    pub inference_ms_p50: f64,
    /// Median write time per sink, by sink name (new frames; repeats are copies).
    pub sink_ms_p50: BTreeMap<String, f64>,
    /// Frames each sink wrote per second, new frames and repeats, over its last 300 writes.
    pub sink_writes_per_s: BTreeMap<String, f64>,
    /// Median capture-to-output latency of live frames.
    pub latency_ms_p50: f64,
    /// 95th percentile of the same.
    pub latency_ms_p95: f64,
    /// Camera frames replaced in the capture queue before the engine took them.
    pub dropped_capture: u64,
    /// Frames replaced in the model's queues (jobs and results) before they were taken.
    pub dropped_model: u64,
    /// Frames replaced in each sink's queue before the sink took them, by sink name.
    pub dropped_sink: BTreeMap<String, u64>,
    /// Times a reference frame was taken.
    pub calibrations: u64,
    /// The last problem that did not stop the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Frames the model rendered per second (equal to `fps` without keyframes).
    pub model_fps: f64,
    /// The model's time per frame.
    pub model_ms_p50: f64,
    /// Capture of a keyframe's driving frame to the keyframe being ready (the model's latency).
    pub keyframe_latency_ms_p50: f64,
    /// 95th percentile of the same.
    pub keyframe_latency_ms_p95: f64,
    /// Keyframes rendered so far.
    pub keyframes: u64,
    /// Whether outputs are in-betweens (model keyframes, motion in between).
    pub keyframes_on: bool,
    /// What the live loop does less of because the machine cannot keep up, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Keyframes the server rendered (`run --remote`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_keyframes: Option<u64>,
    /// Motions sent to the server (one per driving frame it may render; it renders the newest it
    /// has, so with several on their way some are skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_motions: Option<u64>,
    /// Bytes sent to the server per motion (the portrait, sent once, left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_bytes_up_per_frame: Option<f64>,
    /// Bytes received from the server per frame it rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_bytes_down_per_frame: Option<f64>,
    /// Whether the server is connected now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_connected: Option<bool>,
    /// Motions on their way to or from the server when its last frame came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_in_flight: Option<usize>,
}

impl Stats {
    /// A still frame went out.
    pub fn record_still(&mut self) {
        self.stills_out += 1;
    }

    /// The crop and resize of one driving frame.
    pub fn record_framing(&mut self, took: Duration) {
        push(&mut self.framing_ms, took.as_secs_f64() * 1e3);
    }

    /// Frames dropped so far in `sink`'s queue.
    pub fn record_sink_drops(&mut self, sink: &str, dropped: u64) {
        if let Some(d) = self.dropped_sink.get_mut(sink) {
            *d = dropped;
        } else {
            self.dropped_sink.insert(sink.to_string(), dropped);
        }
    }

    /// One driving frame turned into an output frame.
    pub fn record_inference(&mut self, took: Duration) {
        push(&mut self.inference_ms, took.as_secs_f64() * 1e3);
        self.frames_out += 1;
        if self.output_times.len() == WINDOW {
            self.output_times.pop_front();
        }
        self.output_times.push_back(Instant::now());
    }

    /// The model rendered a frame in `took`, `latency` after its driving frame was captured.
    pub fn record_keyframe(&mut self, took: Duration, latency: Duration) {
        self.keyframes += 1;
        push(&mut self.model_ms, took.as_secs_f64() * 1e3);
        push(&mut self.keyframe_latency_ms, latency.as_secs_f64() * 1e3);
        if self.keyframe_times.len() == WINDOW {
            self.keyframe_times.pop_front();
        }
        self.keyframe_times.push_back(Instant::now());
    }

    /// A sink wrote a new frame. `latency`: capture-to-output time for a live frame (None for
    /// still frames).
    pub fn record_sink(&mut self, sink: &str, took: Duration, latency: Option<Duration>) {
        push(
            self.sink_ms.entry(sink.to_string()).or_default(),
            took.as_secs_f64() * 1e3,
        );
        if let Some(l) = latency {
            push(&mut self.latency_ms, l.as_secs_f64() * 1e3);
        }
        self.record_sink_write(sink);
    }

    /// A sink wrote its last frame again.
    pub fn record_sink_repeat(&mut self, sink: &str) {
        self.record_sink_write(sink);
    }

    fn record_sink_write(&mut self, sink: &str) {
        let times = self.sink_writes.entry(sink.to_string()).or_default();
        if times.len() == WINDOW {
            times.pop_front();
        }
        times.push_back(Instant::now());
    }

    /// The current figures (NaN for a time with no samples yet; fps 0 before two frames).
    pub fn snapshot(&self) -> StatsSnapshot {
        let rate = |times: &VecDeque<Instant>| match (times.front(), times.back()) {
            (Some(a), Some(b)) if times.len() > 1 => {
                (times.len() - 1) as f64 / b.duration_since(*a).as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        };
        let fps = rate(&self.output_times);
        StatsSnapshot {
            frames_out: self.frames_out,
            stills_out: self.stills_out,
            fps,
            framing_ms_p50: percentile(&self.framing_ms, 0.5),
            inference_ms_p50: percentile(&self.inference_ms, 0.5),
            sink_ms_p50: self
                .sink_ms
                .iter()
                .map(|(k, v)| (k.clone(), percentile(v, 0.5)))
                .collect(),
            sink_writes_per_s: self
                .sink_writes
                .iter()
                .map(|(k, v)| (k.clone(), rate(v)))
                .collect(),
            latency_ms_p50: percentile(&self.latency_ms, 0.5),
            latency_ms_p95: percentile(&self.latency_ms, 0.95),
            dropped_capture: self.dropped_capture,
            dropped_model: self.dropped_model,
            dropped_sink: self.dropped_sink.clone(),
            calibrations: self.calibrations,
            notice: self.notice.clone(),
            model_fps: rate(&self.keyframe_times),
            model_ms_p50: percentile(&self.model_ms, 0.5),
            keyframe_latency_ms_p50: percentile(&self.keyframe_latency_ms, 0.5),
            keyframe_latency_ms_p95: percentile(&self.keyframe_latency_ms, 0.95),
            keyframes: self.keyframes,
            keyframes_on: self.keyframes_on,
            degraded: self.degraded.clone(),
            remote_keyframes: self.remote.map(|r| r.frames),
            remote_motions: self.remote.map(|r| r.motions),
            remote_bytes_up_per_frame: self
                .remote
                .map(|r| r.motion_bytes_up as f64 / r.motions.max(1) as f64),
            remote_bytes_down_per_frame: self
                .remote
                .map(|r| r.bytes_down as f64 / r.frames.max(1) as f64),
            remote_connected: self.remote.map(|r| r.connected),
            remote_in_flight: self.remote.map(|r| r.in_flight),
        }
    }
}
