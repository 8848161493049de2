//! The window: winit events, egui through egui-wgpu's painter (which also recreates a lost
//! surface and reconfigures an outdated one), the video panes, and the live pipeline behind
//! them. The UI thread never waits on the engine: frames arrive through latest-wins channels and
//! the panes are redrawn at the display's rate from the last ones uploaded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::window::{Fullscreen, Window, WindowId};

use super::add_dialog::AddDialog;
use super::gallery::Gallery;
use super::remote_dialog::RemoteDialog;
use super::settings::{Settings, SourceSetting};
use super::ui::{self, Action, Flag, Status, Thumb, View};
use super::video::{PaneCallback, PaneId, PaneParams, VideoRenderer};
use super::weights_dialog::{Outcome, WeightsDialog, is_checkpoint};
use crate::assets::BundledAvatars;
use crate::channel::{LatestReceiver, latest};
use crate::engine::select::{EngineKind, EngineRequest, load_engine};
use crate::engine::smoothing::Smoothing;
use crate::engine::{Animator, EngineId};
use crate::frame::Frame;
use crate::output::FrameSink;
use crate::output::switch::{ChannelSink, SwitchHandle, SwitchableSink};
use crate::pipeline::framing::{Crop, FramingMode};
use crate::pipeline::{Control, EngineHandoff, FramingReport, Pipeline, PipelineOptions};

/// Why the window could not be opened or run.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// No event loop: no desktop session (X11 or Wayland) to connect to.
    #[error(
        "cannot open a window: marionette needs a desktop session (X11 or Wayland; DISPLAY or \
         WAYLAND_DISPLAY set), and {0}. Without one, `marionette run` works headless"
    )]
    EventLoop(String),
    /// The window system refused to create the window.
    #[error("the window system refused to create the window: {0}")]
    Os(String),
    /// No graphics adapter or surface for wgpu.
    #[error(
        "no graphics adapter for the window. Install Mesa's drivers (Debian/Ubuntu: \
         mesa-vulkan-drivers libgl1-mesa-dri) or your GPU's driver; WGPU_BACKEND=gl or vulkan \
         picks one"
    )]
    Gpu(#[from] egui_wgpu::WgpuError),
    /// Neither the bundled nor the user's folder holds a portrait; the string names the user's
    /// folder.
    #[error(
        "no portraits: the bundled avatars ({0}) and the user's folder ({1}) hold none that can be \
         read. Add an image to the user's folder"
    )]
    NoPortraits(String, String),
    /// The live pipeline did not start.
    #[error("starting the live loop: {0}")]
    Pipeline(Box<crate::pipeline::PipelineError>),
}

/// What the window starts with (the command line's choices; None: the saved settings).
pub struct WindowOptions {
    /// The engine the pipeline runs.
    pub engine: Box<dyn Animator + Send>,
    /// One line about the engine ("FOMM (vox-256) from ..., CPU, f32 (auto)").
    pub engine_status: String,
    /// The driving source (else the saved one).
    pub source: Option<SourceSetting>,
    /// The virtual camera: auto, none or a device path (else the saved one).
    pub vcam: Option<String>,
    /// The settings file.
    pub settings_path: PathBuf,
    /// The bundled portraits (see [`crate::assets::BundledAvatars::find`]).
    pub bundled: BundledAvatars,
    /// The user's portraits' folder.
    pub user_dir: Option<PathBuf>,
    /// Frame rate of idle motion and of the virtual camera.
    pub fps: f64,
    /// Model keyframes (else the saved choice).
    pub keyframes: Option<crate::pipeline::KeyframeMode>,
    /// Smoothing of the driving motion (else the saved choice).
    pub smoothing: Option<crate::engine::smoothing::Smoothing>,
    /// How the model's crop is placed (else the saved choice).
    pub framing: Option<FramingMode>,
    /// How a FOMM engine is built when weights are added in the window (device, precision).
    pub request: EngineRequest,
}

struct Gfx {
    window: Arc<Window>,
    state: egui_winit::State,
    painter: egui_wgpu::winit::Painter,
}

struct App {
    ctx: egui::Context,
    gfx: Option<Gfx>,
    fatal: Option<WindowError>,
    quit: bool,
    user: UserState,
    link: Link,
    devices: Devices,
    screen: Screen,
    pacing: Pacing,
}

/// What the user chose (saved between runs).
struct UserState {
    settings: Settings,
    settings_path: PathBuf,
    /// The settings as last saved.
    saved: Settings,
    /// When the settings first differed from the saved ones (saved half a second later).
    dirty_since: Option<Instant>,
    gallery: Gallery,
    /// The portrait shown (gallery index).
    selected: usize,
    /// The driving source in use.
    source: SourceSetting,
    /// The virtual-camera device asked for (the command line's, else the saved one).
    vcam_device: String,
}

/// The live pipeline and what it reports.
struct Link {
    /// Taken (stopped and joined) when the window closes.
    pipeline: Option<Pipeline>,
    control: Sender<Control>,
    /// Every camera frame (the camera pane runs at the camera's rate).
    preview_rx: LatestReceiver<Frame>,
    /// Every output frame (the output pane).
    output_rx: LatestReceiver<Frame>,
    vcam: SwitchHandle,
    status: Status,
    /// When the status was last refreshed.
    status_at: Instant,
    /// Frame rate of idle motion and of the virtual camera.
    fps: f64,
    /// How a FOMM engine is built for weights added in the window.
    request: EngineRequest,
    /// Weights being checked and loaded on their own thread.
    adding: Option<Receiver<Result<Switched, String>>>,
    /// An engine for rendering on another machine (with its server) or here, being loaded.
    remote_switch: Option<Receiver<Result<RemoteSwitched, String>>>,
    /// The live loop's notice as last read: the status follows its changes only, so that a
    /// notice the window cleared (an engine switched) is not brought back by a snapshot taken
    /// before the loop heard of the switch.
    stats_notice: Option<String>,
}

/// An engine built from weights added in the window.
struct Switched {
    engine: Box<dyn Animator + Send>,
    /// The engine line.
    status: String,
    /// What was added, said in the dialog.
    said: String,
}

/// An engine for the remote dialog, and the server it renders on (`None`: here).
type RemoteSwitched = (Switched, Option<String>);

/// The devices found, rescanned every few seconds.
struct Devices {
    /// Driving sources to pick from: label and setting.
    sources: Vec<(String, SourceSetting)>,
    /// Virtual-camera outputs.
    vcams: Vec<String>,
    checked: Instant,
}

/// What is on screen.
#[derive(Default)]
struct Screen {
    thumbs: Vec<Thumb>,
    thumb_textures: Vec<egui::TextureHandle>,
    camera_size: Option<(u32, u32)>,
    /// Frames received and not yet uploaded to the GPU.
    pending_camera: Option<Frame>,
    pending_output: Option<Frame>,
    /// The alignment overlay (the selected portrait) must be uploaded again.
    overlay_dirty: bool,
    add_dialog: AddDialog,
    weights_dialog: WeightsDialog,
    remote_dialog: RemoteDialog,
    show_help: bool,
    fullscreen: bool,
    /// The panes' rectangles, logged when they change.
    layout: Option<[egui::Rect; 2]>,
    first_output_logged: bool,
}

/// When to redraw, and how fast redraws have been.
struct Pacing {
    /// The display's refresh interval.
    frame_interval: Duration,
    /// Earliest next redraw (the display's rate caps redraws).
    next_redraw: Instant,
    /// When egui asked to be redrawn (animations, hover effects, stats ticking).
    repaint_at: Instant,
    /// Redraws and the time spent in them since `frames_since`.
    frames: u32,
    frame_work: Duration,
    frames_since: Instant,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            frame_interval: Duration::from_secs_f64(1.0 / 60.0),
            next_redraw: Instant::now(),
            repaint_at: Instant::now(),
            frames: 0,
            frame_work: Duration::ZERO,
            frames_since: Instant::now(),
        }
    }
}

/// Cameras (capture devices that are not virtual cameras) and the virtual-camera outputs.
fn scan_devices() -> (Vec<(String, SourceSetting)>, Vec<String>) {
    let devices = crate::devices::list_devices();
    let mut sources: Vec<(String, SourceSetting)> = devices
        .iter()
        .filter(|d| d.is_webcam())
        .map(|d| {
            let path = d.path.display().to_string();
            (format!("{} ({path})", d.card), SourceSetting::Camera(path))
        })
        .collect();
    sources.push(("Test pattern".into(), SourceSetting::TestPattern));
    sources.push(("Idle motion (no camera)".into(), SourceSetting::Idle));
    let vcams = devices
        .iter()
        .filter(|d| d.is_virtual_camera())
        .map(|d| d.path.display().to_string())
        .collect();
    (sources, vcams)
}

fn source_name(s: &SourceSetting) -> String {
    match s {
        SourceSetting::Camera(p) => format!("camera {p}"),
        SourceSetting::TestPattern => "test pattern".into(),
        SourceSetting::Idle => "idle motion".into(),
        SourceSetting::File(p) => format!("file {p}"),
    }
}

/// Connects to the desktop session; done before anything slow (loading a model), so that a
/// missing display is reported at once.
pub fn event_loop() -> Result<EventLoop<()>, WindowError> {
    EventLoop::new().map_err(|e| WindowError::EventLoop(window_system_text(&e)))
}

/// The engine for `target` (a server's address and secret: FOMM rendered there, here while
/// it is away) or for this machine (`None`), with the engine line and what the dialog says.
fn remote_engine(
    request: &EngineRequest,
    target: Option<(String, crate::remote::channel::Secret)>,
) -> Result<RemoteSwitched, String> {
    let loaded = load_engine(request).map_err(|e| error_text(&e))?;
    let Some((addr, secret)) = target else {
        let switched = Switched {
            engine: loaded.engine,
            status: loaded.status,
            said: "rendering on this machine".into(),
        };
        return Ok((switched, None));
    };
    if loaded.engine.id() != EngineId::Fomm {
        return Err(
            "rendering on another machine needs the FOMM weights here too (the \
                    keypoint detector runs on this machine): add them first (Ctrl+O)"
                .into(),
        );
    }
    let tools = crate::media::video::FfmpegTools::from_env();
    let h264 = crate::remote::codec::can_decode(&tools).then_some(tools);
    let engine = crate::remote::animator::RemoteAnimator::new(loaded.engine, &addr, secret, h264);
    let switched = Switched {
        engine: Box::new(engine),
        status: format!("{} - rendered on {addr} while it answers", loaded.status),
        said: format!("connecting to {addr}; this machine renders until it answers"),
    };
    Ok((switched, Some(addr)))
}

/// What the window system said, without the source location winit's errors carry ("os error
/// at <file in winit's sources>:<line>: ..."), which means nothing to a user.
/// An error and its causes on one line, each said once.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

fn window_system_text(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let said = match text.split_once("os error at ") {
        Some((before, rest)) => {
            // Skip "<file>:<line>: ".
            let after = rest
                .split_once(": ")
                .map(|(loc, msg)| if loc.contains(':') { msg } else { rest })
                .unwrap_or(rest);
            format!("{before}{after}")
        }
        None => text,
    };
    said.trim().trim_end_matches('.').to_string()
}

/// Opens the window and runs until it is closed. The pipeline is shut down and the settings
/// saved before this returns.
pub fn run(event_loop: EventLoop<()>, options: WindowOptions) -> Result<(), WindowError> {
    let mut app = App::new(options)?;
    let result = event_loop.run_app(&mut app);
    app.shutdown();
    if let Some(e) = app.fatal.take() {
        return Err(e);
    }
    result.map_err(|e| WindowError::EventLoop(window_system_text(&e)))
}

/// The settings file's contents, or the defaults when it is damaged (kept aside, so saving the
/// new settings loses nothing).
fn load_settings(path: &std::path::Path) -> Settings {
    match Settings::load(path) {
        Ok(s) => s,
        Err(e) => {
            let aside = path.with_extension("toml.broken");
            match std::fs::rename(path, &aside) {
                Ok(()) => eprintln!(
                    "{e}; kept as {}, starting from the default settings",
                    aside.display()
                ),
                Err(_) => eprintln!("{e}; starting from the default settings"),
            }
            Settings::default()
        }
    }
}

/// The source: the command line's, else the saved one if it is still there, else the first
/// webcam, else idle motion (with a notice saying why).
fn choose_source(
    given: Option<&SourceSetting>,
    saved: Option<&SourceSetting>,
    sources: &[(String, SourceSetting)],
) -> (SourceSetting, Option<String>) {
    match (given, saved) {
        (Some(s), _) => (s.clone(), None),
        (None, Some(s)) if sources.iter().any(|(_, v)| v == s) => (s.clone(), None),
        (None, saved) => {
            let first = sources
                .iter()
                .find(|(_, v)| matches!(v, SourceSetting::Camera(_)))
                .map(|(_, v)| v.clone());
            match first {
                Some(c) => (c, None),
                None => {
                    let why = match saved {
                        Some(SourceSetting::Camera(p)) => format!("camera {p} is not there"),
                        _ => "no webcam found".into(),
                    };
                    let notice = format!(
                        "{why}: the portrait moves by itself (idle motion). Pick the test \
                         pattern to see it follow a moving face"
                    );
                    (SourceSetting::Idle, Some(notice))
                }
            }
        }
    }
}

/// The portraits (bundled and the user's) and the one the settings name, else the first.
fn open_gallery(
    o: &WindowOptions,
    settings: &Settings,
) -> Result<(Gallery, usize, super::gallery::Portrait), WindowError> {
    let (gallery, errors) = Gallery::load(Some(&o.bundled), o.user_dir.as_deref());
    for e in errors {
        eprintln!("portrait skipped: {e}");
    }
    let selected = settings
        .avatar
        .as_deref()
        .and_then(|k| gallery.index_of(k))
        .unwrap_or(0);
    let portrait = gallery.get(selected).cloned().ok_or_else(|| {
        WindowError::NoPortraits(
            o.bundled.to_string(),
            o.user_dir
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the user's avatar folder".into()),
        )
    })?;
    Ok((gallery, selected, portrait))
}

impl App {
    fn new(o: WindowOptions) -> Result<Self, WindowError> {
        let mut settings = load_settings(&o.settings_path);
        let (gallery, selected, portrait) = open_gallery(&o, &settings)?;
        settings.avatar = Some(portrait.key.clone());
        let (sources, vcams) = scan_devices();
        let (source, notice) = choose_source(o.source.as_ref(), settings.source.as_ref(), &sources);
        if let Some(n) = &notice {
            eprintln!("{n}");
        }
        eprintln!("source: {}", source_name(&source));
        let vcam_device = o
            .vcam
            .clone()
            .unwrap_or_else(|| settings.vcam.device.clone());
        let (engine_id, absolute_supported) = (o.engine.id(), o.engine.supports_absolute());
        let (preview_tx, preview_rx) = latest::<Frame>();
        let (output_tx, output_rx) = latest::<Frame>();
        let (switch, vcam) = SwitchableSink::new("vcam");
        let sinks: Vec<Box<dyn FrameSink>> = vec![
            Box::new(ChannelSink::new("window", output_tx)),
            Box::new(switch),
        ];
        let options = PipelineOptions {
            portrait: (portrait.id, (*portrait.image).clone()),
            crop: settings.crop.to_crop(),
            passthrough: settings.passthrough,
            fps: o.fps,
            reopen: true,
            mirror_output: settings.mirror_output,
            badge: settings.badge,
            watermark: true,
            preview: Some(preview_tx),
            keyframes: o.keyframes.unwrap_or(settings.keyframes),
            smoothing: o
                .smoothing
                .unwrap_or_else(|| Smoothing::new(settings.smoothing)),
            framing: o.framing.unwrap_or(settings.framing),
            transfer: fomm::motion_transfer::TransferOptions {
                relative: settings.relative || !absolute_supported,
                adapt_scale: settings.adapt_scale.unwrap_or(engine_id == EngineId::Fomm),
                ..Default::default()
            },
            record_motion: None,
        };
        let pipeline = Pipeline::start(None, o.engine, sinks, options)
            .map_err(|e| WindowError::Pipeline(Box::new(e)))?;
        let control = pipeline.control();
        let _ = control.send(Control::ReportKeypoints(settings.keypoints));
        if !matches!(source, SourceSetting::Idle) {
            pipeline.set_source(super::source_factory(&source, (*portrait.image).clone()));
        }
        let status = Status {
            engine: o.engine_status,
            engine_id,
            absolute_supported,
            source: source_name(&source),
            notice,
            ..Status::default()
        };
        let mut app = Self {
            ctx: egui::Context::default(),
            gfx: None,
            fatal: None,
            quit: false,
            user: UserState {
                saved: settings.clone(),
                settings,
                settings_path: o.settings_path,
                dirty_since: None,
                gallery,
                selected,
                source,
                vcam_device,
            },
            link: Link {
                pipeline: Some(pipeline),
                control,
                preview_rx,
                output_rx,
                vcam,
                status,
                status_at: Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now),
                fps: o.fps,
                request: o.request,
                adding: None,
                remote_switch: None,
                stats_notice: None,
            },
            devices: Devices {
                sources,
                vcams,
                checked: Instant::now(),
            },
            screen: Screen {
                overlay_dirty: true,
                ..Screen::default()
            },
            pacing: Pacing::default(),
        };
        app.open_vcam();
        app.refresh_thumbs();
        Ok(app)
    }

    fn refresh_thumbs(&mut self) {
        self.screen.thumb_textures = self
            .user
            .gallery
            .portraits
            .iter()
            .map(|p| {
                let t = &p.thumbnail;
                let img = egui::ColorImage::from_rgb(
                    [t.width() as usize, t.height() as usize],
                    t.as_raw(),
                );
                self.ctx.load_texture(
                    format!("thumb:{}", p.key),
                    img,
                    egui::TextureOptions::LINEAR,
                )
            })
            .collect();
        self.screen.thumbs = self
            .user
            .gallery
            .portraits
            .iter()
            .zip(&self.screen.thumb_textures)
            .map(|(p, t)| Thumb {
                name: p.name.clone(),
                bundled: p.bundled,
                texture: Some(t.id()),
            })
            .collect();
    }

    /// Points the virtual-camera output at the chosen device (or closes it).
    fn open_vcam(&mut self) {
        let choice: crate::devices::VcamChoice = self
            .user
            .vcam_device
            .parse()
            .unwrap_or(crate::devices::VcamChoice::Auto);
        let path = match choice.resolve(&crate::devices::list_devices()) {
            Ok(Some(path)) => path,
            Ok(None) => {
                self.link.vcam.set(None, "");
                return;
            }
            Err(why) => {
                self.link.vcam.set(None, "");
                self.link.vcam.report(why);
                return;
            }
        };
        let size: Result<crate::frame::Size, String> = self
            .user
            .settings
            .vcam
            .size
            .parse()
            .map_err(|e| format!("{e}"));
        let format: Result<crate::output::convert::PixelFormat, String> =
            self.user.settings.vcam.format.parse();
        let opened = size.and_then(|size| {
            crate::output::v4l2::V4l2Sink::open(&path, size, format?, self.link.fps.round() as u32)
                .map_err(|e| e.to_string())
        });
        match opened {
            Ok(sink) => {
                let label = format!(
                    "{} {} {}",
                    path.display(),
                    self.user.settings.vcam.format.to_uppercase(),
                    self.user.settings.vcam.size
                );
                eprintln!("virtual camera: {label}");
                self.link.vcam.set(Some(Box::new(sink)), label);
            }
            Err(e) => {
                self.link.vcam.set(None, "");
                self.link.vcam.report(e);
            }
        }
    }

    /// Adapt scale as set, else the engine's default (on for FOMM, off for the classic engine).
    fn adapt_scale(&self) -> bool {
        self.user
            .settings
            .adapt_scale
            .unwrap_or(self.link.status.engine_id == EngineId::Fomm)
    }

    fn select(&mut self, index: usize) {
        let Some(p) = self.user.gallery.get(index) else {
            return;
        };
        self.user.selected = index;
        self.user.settings.avatar = Some(p.key.clone());
        let _ = self.link.control.send(Control::SetPortrait {
            id: p.id,
            image: p.image.clone(),
        });
        self.screen.overlay_dirty = true;
        tracing::info!("portrait: {}", p.name);
    }

    /// Changes the crop (clamped into range), stores it and sends it to the pipeline. Moving the
    /// crop by hand turns automatic framing off.
    fn change_crop(&mut self, change: impl FnOnce(&mut Crop)) {
        if self.user.settings.framing == FramingMode::Auto {
            self.user.settings.framing = FramingMode::Manual;
            let _ = self
                .link
                .control
                .send(Control::Framing(FramingMode::Manual));
            self.link.status.notice =
                Some("automatic framing is off while you place the crop (F turns it on)".into());
        }
        let mut c = self.user.settings.crop.to_crop();
        change(&mut c);
        let c = c.clamped();
        self.user.settings.crop = super::settings::CropSetting::from_crop(&c);
        let _ = self.link.control.send(Control::SetCrop(c));
    }

    fn apply(&mut self, action: Action, event_loop: &ActiveEventLoop) {
        tracing::info!("action: {action:?}");
        let s = &mut self.user.settings;
        match action {
            Action::Recalibrate => {
                let _ = self.link.control.send(Control::Recalibrate);
            }
            Action::SelectAvatar(i) => self.select(i),
            Action::PrevAvatar | Action::NextAvatar => {
                let n = self.user.gallery.len();
                if n > 0 {
                    let step = if action == Action::NextAvatar {
                        1
                    } else {
                        n - 1
                    };
                    self.select((self.user.selected + step) % n);
                }
            }
            Action::Zoom(f) => self.change_crop(|c| c.zoom *= f),
            Action::SetZoom(z) => self.change_crop(|c| c.zoom = z),
            Action::Pan(dx, dy) => {
                // Arrows move the crop as the pane shows it: mirrored, left is the image's right.
                let dx = if s.mirror_preview { -dx } else { dx };
                self.change_crop(|c| {
                    c.pan_x += dx;
                    c.pan_y += dy;
                });
            }
            Action::ResetCrop => self.change_crop(|c| *c = Crop::default()),
            Action::Toggle(flag) => self.toggle(flag),
            Action::OverlayOpacity(d) => {
                s.overlay_opacity = (s.overlay_opacity + d).clamp(0.0, 1.0);
                s.overlay = true;
            }
            Action::SetOverlayOpacity(v) => s.overlay_opacity = v.clamp(0.0, 1.0),
            Action::SetSource(src) => {
                s.source = Some(src.clone());
                let face = self
                    .user
                    .gallery
                    .get(self.user.selected)
                    .map(|p| (*p.image).clone())
                    .unwrap_or_default();
                if let Some(p) = &self.link.pipeline {
                    p.set_source(super::source_factory(&src, face));
                }
                self.link.status.source = source_name(&src);
                self.link.status.notice = None;
                self.user.source = src;
            }
            Action::SetKeyframes(m) => {
                s.keyframes = m;
                let _ = self.link.control.send(Control::Keyframes(m));
            }
            Action::SetSmoothing(v) => {
                let smoothing = Smoothing::new(v);
                s.smoothing = smoothing.strength();
                let _ = self.link.control.send(Control::Smoothing(smoothing));
            }
            Action::SetVcamDevice(d) => {
                s.vcam.device = d.clone();
                self.user.vcam_device = d;
                self.open_vcam();
            }
            Action::SetVcamFormat(f) => {
                s.vcam.format = f;
                self.open_vcam();
            }
            Action::SetVcamSize(z) => {
                s.vcam.size = z;
                self.open_vcam();
            }
            Action::OpenAddPortrait(file) => self.screen.add_dialog.open(&self.ctx, file),
            Action::AddPortrait { path, crop, name } => self.add_portrait(&path, crop, &name),
            Action::RemovePortrait(i) => self.remove_portrait(i),
            // Esc closes an open dialog first; the window quits on an Esc with none open.
            Action::OpenAddWeights(file) => self.screen.weights_dialog.open(file),
            Action::AddWeights { path, safetensors } => self.add_weights(path, safetensors),
            Action::OpenRemote => self.screen.remote_dialog.open(),
            Action::ConnectRemote { server, secret } => {
                self.switch_remote(Some((server, secret.0)))
            }
            Action::RenderHere => self.switch_remote(None),
            Action::Quit if self.screen.add_dialog.open => self.screen.add_dialog.open = false,
            Action::Quit if self.screen.weights_dialog.open => {
                self.screen.weights_dialog.open = false
            }
            Action::Quit if self.screen.remote_dialog.open => {
                self.screen.remote_dialog.open = false
            }
            Action::Quit if self.screen.show_help => self.screen.show_help = false,
            Action::Quit => {
                self.quit = true;
                event_loop.exit();
            }
        }
        if self.user.settings != self.user.saved && self.user.dirty_since.is_none() {
            self.user.dirty_since = Some(Instant::now());
        }
    }

    /// Flips one of the on/off settings and tells the pipeline where it applies.
    fn toggle(&mut self, flag: Flag) {
        let s = &mut self.user.settings;
        match flag {
            Flag::Overlay => s.overlay = !s.overlay,
            Flag::MirrorPreview => s.mirror_preview = !s.mirror_preview,
            Flag::MirrorOutput => {
                s.mirror_output = !s.mirror_output;
                let _ = self
                    .link
                    .control
                    .send(Control::MirrorOutput(s.mirror_output));
            }
            Flag::Badge => {
                s.badge = !s.badge;
                let _ = self.link.control.send(Control::Badge(s.badge));
            }
            Flag::Passthrough => {
                s.passthrough = !s.passthrough;
                let _ = self.link.control.send(Control::Passthrough(s.passthrough));
            }
            Flag::Relative | Flag::AdaptScale => {
                let fomm = self.link.status.engine_id == EngineId::Fomm;
                let adapt = s.adapt_scale.unwrap_or(fomm);
                if flag == Flag::Relative {
                    if s.relative && !self.link.status.absolute_supported {
                        return;
                    }
                    s.relative = !s.relative;
                } else {
                    s.adapt_scale = Some(!adapt);
                }
                let _ = self.link.control.send(Control::Transfer {
                    relative: s.relative,
                    adapt_scale: s.adapt_scale.unwrap_or(fomm),
                });
            }
            Flag::Keypoints => {
                s.keypoints = !s.keypoints;
                let _ = self
                    .link
                    .control
                    .send(Control::ReportKeypoints(s.keypoints));
            }
            Flag::Stats => s.stats = !s.stats,
            Flag::AutoFraming => {
                s.framing = match s.framing {
                    FramingMode::Auto => FramingMode::Manual,
                    FramingMode::Manual => FramingMode::Auto,
                };
                let _ = self.link.control.send(Control::Framing(s.framing));
            }
            Flag::Help => self.screen.show_help = !self.screen.show_help,
            Flag::Fullscreen => {
                self.screen.fullscreen = !self.screen.fullscreen;
                if let Some(g) = &self.gfx {
                    g.window.set_fullscreen(
                        self.screen
                            .fullscreen
                            .then_some(Fullscreen::Borderless(None)),
                    );
                }
            }
        }
    }

    /// Adds a picture to the user's gallery (cropped to `crop`) and selects it.
    fn add_portrait(&mut self, path: &std::path::Path, crop: super::gallery::CropBox, name: &str) {
        let added = crate::media::frames::load_rgb(path)
            .map_err(super::gallery::GalleryError::from)
            .and_then(|img| self.user.gallery.add(&img, crop, name));
        match added {
            Ok(i) => {
                self.refresh_thumbs();
                self.select(i);
                self.link.status.notice = None;
            }
            Err(e) => self.link.status.notice = Some(format!("adding a portrait: {e}")),
        }
    }

    /// Removes one of the user's portraits and selects a neighbour.
    fn remove_portrait(&mut self, i: usize) {
        match self.user.gallery.remove(i) {
            Ok(p) => {
                tracing::info!("removed portrait {}", p.name);
                self.refresh_thumbs();
                if self.user.selected >= i && self.user.selected > 0 {
                    self.select(self.user.selected - 1);
                } else {
                    self.select(
                        self.user
                            .selected
                            .min(self.user.gallery.len().saturating_sub(1)),
                    );
                }
            }
            Err(e) => self.link.status.notice = Some(e.to_string()),
        }
    }

    fn save_settings(&mut self) {
        if self.user.settings == self.user.saved {
            return;
        }
        match self.user.settings.save(&self.user.settings_path) {
            Ok(()) => self.user.saved = self.user.settings.clone(),
            Err(e) => self.link.status.notice = Some(e.to_string()),
        }
        self.user.dirty_since = None;
    }

    /// Checks `path` and adds it to the user's models folder, then builds the FOMM engine from it,
    /// on a thread of its own (a published checkpoint takes seconds to read); the engine switches
    /// when it is done ([`Self::take_switch`]). A file that does not load changes nothing.
    fn add_weights(&mut self, path: PathBuf, safetensors: bool) {
        if self.link.adding.is_some() {
            return;
        }
        let Some(into) = crate::models::add_folder() else {
            self.screen.weights_dialog.outcome = Some(Outcome::Refused(
                "no home folder to keep the weights in: set HOME or MARIONETTE_MODEL_DIR".into(),
            ));
            return;
        };
        let store = if safetensors {
            crate::models::Store::Safetensors
        } else {
            crate::models::Store::Copy
        };
        let request = self.link.request.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("add-weights".into())
            .spawn(move || {
                let result = (|| -> Result<Switched, String> {
                    let added = crate::models::add(&path, None, store, &into)
                        .map_err(|e| error_text(&e))?;
                    let loaded = load_engine(&EngineRequest {
                        kind: EngineKind::Fomm,
                        checkpoint: Some(added.path.clone()),
                        config: Some(added.config.clone()),
                        random_weights: false,
                        ..request
                    })
                    .map_err(|e| error_text(&e))?;
                    Ok(Switched {
                        engine: loaded.engine,
                        status: loaded.status,
                        said: format!(
                            "added {} ({}); the engine is now FOMM",
                            added.path.display(),
                            added.config
                        ),
                    })
                })();
                let _ = tx.send(result);
            });
        match spawned {
            Ok(_) => {
                self.link.adding = Some(rx);
                self.screen.weights_dialog.outcome = Some(Outcome::Working(
                    "checking and loading the weights...".into(),
                ));
            }
            Err(e) => {
                self.screen.weights_dialog.outcome =
                    Some(Outcome::Refused(format!("could not start a thread: {e}")))
            }
        }
    }

    /// Switches the engine when weights added in the window have loaded.
    fn take_switch(&mut self) {
        let Some(rx) = &self.link.adding else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err("the thread adding the weights stopped".into())
            }
        };
        self.link.adding = None;
        match result {
            Ok(s) => {
                let said = s.said.clone();
                self.apply_switch(s);
                let dialog = &mut self.screen.weights_dialog;
                dialog.outcome = Some(Outcome::Done(said));
                dialog.refresh_installed();
            }
            Err(e) => {
                tracing::warn!("weights refused: {e}");
                self.screen.weights_dialog.outcome = Some(Outcome::Refused(e));
            }
        }
    }

    /// Hands a loaded engine to the live loop and updates the status and the motion transfer.
    fn apply_switch(&mut self, s: Switched) {
        let id = s.engine.id();
        let absolute = s.engine.supports_absolute();
        let _ = self
            .link
            .control
            .send(Control::SetEngine(EngineHandoff::new(s.engine)));
        tracing::info!("engine switched: {}", s.status);
        let status = &mut self.link.status;
        status.engine = s.status;
        status.engine_id = id;
        status.absolute_supported = absolute;
        status.notice = None;
        let settings = &self.user.settings;
        let _ = self.link.control.send(Control::Transfer {
            relative: settings.relative || !absolute,
            adapt_scale: settings.adapt_scale.unwrap_or(id == EngineId::Fomm),
        });
    }

    /// Switches to rendering on a server (`target`: its address and pairing secret) or back on
    /// this machine (`None`), on a thread of its own: the FOMM engine is loaded again either way
    /// (rendering remotely keeps one here for the keypoints and for when the server is away).
    fn switch_remote(&mut self, target: Option<(String, String)>) {
        if self.link.remote_switch.is_some() {
            return;
        }
        let dialog = &mut self.screen.remote_dialog;
        let target = match target {
            None => None,
            Some((server, secret)) => match crate::remote::channel::Secret::parse(&secret) {
                Ok(secret) => Some((crate::remote::client::with_default_port(&server), secret)),
                Err(e) => {
                    dialog.outcome = Some(Outcome::Refused(format!("the pairing secret: {e}")));
                    return;
                }
            },
        };
        let request = EngineRequest {
            kind: EngineKind::Fomm,
            ..self.link.request.clone()
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("remote-switch".into())
            .spawn(move || {
                let _ = tx.send(remote_engine(&request, target));
            });
        match spawned {
            Ok(_) => {
                self.link.remote_switch = Some(rx);
                dialog.outcome = Some(Outcome::Working("loading the engine...".into()));
            }
            Err(e) => {
                dialog.outcome = Some(Outcome::Refused(format!("could not start a thread: {e}")))
            }
        }
    }

    /// Switches the engine when [`Self::switch_remote`]'s engine has loaded.
    fn take_remote_switch(&mut self) {
        let Some(rx) = &self.link.remote_switch else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err("the thread loading the engine stopped".into())
            }
        };
        self.link.remote_switch = None;
        match result {
            Ok((s, server)) => {
                let said = s.said.clone();
                self.apply_switch(s);
                let dialog = &mut self.screen.remote_dialog;
                dialog.rendering_on = server;
                dialog.outcome = Some(Outcome::Done(said));
            }
            Err(e) => {
                tracing::warn!("remote rendering refused: {e}");
                self.screen.remote_dialog.outcome = Some(Outcome::Refused(e));
            }
        }
    }

    /// Refreshes the status lines and stats, five times a second (not at every redraw).
    fn update_status(&mut self) {
        self.take_switch();
        self.take_remote_switch();
        if self.link.status_at.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.link.status_at = Instant::now();
        if let Some(p) = &self.link.pipeline {
            let snap = p.stats();
            let notice = snap.as_ref().and_then(|s| s.notice.clone());
            if notice != self.link.stats_notice {
                let status = &mut self.link.status;
                match &notice {
                    Some(n) => status.notice = Some(n.clone()),
                    None if status.notice == self.link.stats_notice => status.notice = None,
                    None => {}
                }
                self.link.stats_notice = notice;
            }
            let dialog = &mut self.screen.remote_dialog;
            dialog.connected = snap.as_ref().and_then(|s| s.remote_connected);
            // Once the server answers, "connecting" is no longer news.
            if dialog.connected == Some(true) && matches!(dialog.outcome, Some(Outcome::Done(_))) {
                dialog.outcome = None;
            }
            self.link.status.stats = snap;
            self.link.status.source_error = p.source_error();
            if !p.is_running() {
                self.link.status.notice =
                    Some("the engine stopped: see the terminal for why; restart marionette".into());
            }
        }
        let v = self.link.vcam.status();
        self.link.status.vcam_writing = v.is_writing();
        self.link.status.vcam = match (&v.device, &v.error) {
            (Some(d), _) if v.is_writing() => format!("writing {d}"),
            (Some(d), _) => format!("opened {d}, waiting for frames"),
            (None, Some(e)) => format!("not writing: {e}"),
            (None, None) => "off".into(),
        };
        if self.devices.checked.elapsed() > Duration::from_secs(3) {
            let (sources, vcams) = scan_devices();
            self.devices.sources = sources;
            self.devices.vcams = vcams;
            self.devices.checked = Instant::now();
        }
    }

    /// The panes: the camera crop (with the overlay) and the output, side by side, square.
    fn panes(&mut self, ui: &mut egui::Ui) {
        let avail = ui.available_rect_before_wrap();
        let label_h = 22.0;
        let gap = 12.0;
        let side = ((avail.width() - gap) / 2.0)
            .min(avail.height() - label_h)
            .max(16.0);
        let left = avail.center().x - side - gap / 2.0;
        let top = avail.min.y + label_h;
        let cam = egui::Rect::from_min_size(egui::pos2(left, top), egui::vec2(side, side));
        let out =
            egui::Rect::from_min_size(egui::pos2(left + side + gap, top), egui::vec2(side, side));
        let s = &self.user.settings;
        let live = self.link.pipeline.as_ref().is_some_and(|p| p.is_live());
        // The crop the model sees now (automatic framing moves it), else the one set here.
        let report = self.link.pipeline.as_ref().and_then(|p| p.framing());
        let crop = report.map_or_else(|| s.crop.to_crop(), |r| r.crop);
        let uv = match self.screen.camera_size {
            Some((w, h)) => {
                let (x, y, side) = crop.square(crate::frame::Size::new(w, h));
                [
                    (x / w as f64) as f32,
                    (y / h as f64) as f32,
                    ((x + side) / w as f64) as f32,
                    ((y + side) / h as f64) as f32,
                ]
            }
            None => [0.0, 0.0, 1.0, 1.0],
        };
        let painter = ui.painter();
        let text = ui.visuals().text_color();
        painter.text(
            egui::pos2(cam.min.x, avail.min.y + 2.0),
            egui::Align2::LEFT_TOP,
            if live {
                "Camera (what the model sees)"
            } else {
                "Camera: none (idle motion)"
            },
            egui::FontId::proportional(15.0),
            text,
        );
        painter.text(
            egui::pos2(out.min.x, avail.min.y + 2.0),
            egui::Align2::LEFT_TOP,
            "Output (the virtual camera)",
            egui::FontId::proportional(15.0),
            text,
        );
        painter.add(egui_wgpu::Callback::new_paint_callback(
            cam,
            PaneCallback {
                pane: PaneId::Camera,
                params: PaneParams {
                    crop: uv,
                    mirror: s.mirror_preview,
                    overlay_opacity: if s.overlay { s.overlay_opacity } else { 0.0 },
                    visible: live,
                },
            },
        ));
        painter.add(egui_wgpu::Callback::new_paint_callback(
            out,
            PaneCallback {
                pane: PaneId::Output,
                params: PaneParams {
                    crop: [0.0, 0.0, 1.0, 1.0],
                    mirror: false,
                    overlay_opacity: 0.0,
                    visible: true,
                },
            },
        ));
        self.marks(painter, [cam, out], crop, report, live);
        if !live {
            painter.text(
                cam.center(),
                egui::Align2::CENTER_CENTER,
                "no camera\npick one under Source",
                egui::FontId::proportional(16.0),
                egui::Color32::GRAY,
            );
        }
        ui.allocate_rect(avail, egui::Sense::hover());
        let ppp = ui.ctx().pixels_per_point();
        if self.screen.layout != Some([cam, out]) {
            self.screen.layout = Some([cam, out]);
            let px = |r: egui::Rect| {
                format!(
                    "{} {} {} {}",
                    (r.min.x * ppp).round(),
                    (r.min.y * ppp).round(),
                    (r.width() * ppp).round(),
                    (r.height() * ppp).round()
                )
            };
            tracing::info!("layout: camera {}; output {}", px(cam), px(out));
        }
    }

    /// What is drawn over the panes: the keypoints (when asked for) and the face automatic
    /// framing follows, each where it lies in its pane.
    fn marks(
        &self,
        painter: &egui::Painter,
        [cam, out]: [egui::Rect; 2],
        crop: Crop,
        report: Option<FramingReport>,
        live: bool,
    ) {
        let s = &self.user.settings;
        if s.keypoints
            && let Some(kp) = self.link.pipeline.as_ref().and_then(|p| p.keypoints())
        {
            let at = |r: egui::Rect, p: [f32; 2], mirror: bool| {
                let x = (p[0] + 1.0) / 2.0;
                let x = if mirror { 1.0 - x } else { x };
                r.min + egui::vec2(x, (p[1] + 1.0) / 2.0) * r.width()
            };
            for p in &kp.driving {
                painter.circle_filled(at(cam, *p, s.mirror_preview), 3.5, egui::Color32::GREEN);
            }
            for p in &kp.portrait {
                painter.circle_filled(at(out, *p, s.mirror_output), 3.5, egui::Color32::GOLD);
            }
        }
        // The face automatic framing follows, drawn where it is in the crop.
        if let (Some(r), Some((w, h)), true) = (report, self.screen.camera_size, live)
            && r.mode == FramingMode::Auto
            && let Some(face) = r.face
        {
            let (x, y, side) = crop.square(crate::frame::Size::new(w, h));
            let to_pane = |px: f64, py: f64| {
                let u = ((px - x) / side) as f32;
                let u = if s.mirror_preview { 1.0 - u } else { u };
                cam.min + egui::vec2(u, ((py - y) / side) as f32) * cam.width()
            };
            let a = to_pane(face.x, face.y);
            let b = to_pane(face.x + face.width, face.y + face.height);
            let rect = egui::Rect::from_two_pos(a, b).intersect(cam);
            if rect.is_positive() {
                painter.rect_stroke(
                    rect,
                    2.0,
                    egui::Stroke::new(2.0, egui::Color32::from_rgb(80, 200, 255)),
                    egui::StrokeKind::Middle,
                );
            }
        }
    }

    fn draw(&mut self, root: &mut egui::Ui) -> Vec<Action> {
        let mut actions = ui::hotkeys(root.ctx());
        let calibrated = self
            .link
            .status
            .stats
            .as_ref()
            .is_some_and(|s| s.calibrations > 0);
        egui::Panel::top("top").show(root, |ui| {
            ui.horizontal(|ui| {
                ui.heading("marionette");
                ui.separator();
                ui.label(format!("source: {}", self.link.status.source));
                ui.separator();
                let live = self.link.pipeline.as_ref().is_some_and(|p| p.is_live());
                if self.user.settings.passthrough {
                    ui.colored_label(ui.visuals().warn_fg_color, "passthrough");
                } else if !live {
                    ui.label("the portrait moves by itself");
                } else if calibrated {
                    ui.label("calibrated (C to recalibrate)");
                } else {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        "not calibrated: look at the camera, press C",
                    );
                }
                if let Some(s) = &self.link.status.stats {
                    ui.separator();
                    ui.label(format!("{:.1} fps", s.fps));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("? Help").clicked() {
                        actions.push(Action::Toggle(Flag::Help));
                    }
                });
            });
            if let Some(n) = &self.link.status.notice {
                ui.colored_label(ui.visuals().warn_fg_color, n);
            }
        });
        // The combo shows the device in use (the command line's --vcam may differ from the saved
        // choice).
        let mut shown = self.user.settings.clone();
        shown.vcam.device = self.user.vcam_device.clone();
        shown.adapt_scale = Some(self.adapt_scale());
        let view = View {
            settings: &shown,
            portraits: &self.screen.thumbs,
            selected: Some(self.user.selected),
            sources: &self.devices.sources,
            source: &self.user.source,
            vcam_devices: &self.devices.vcams,
            status: &self.link.status,
        };
        egui::Panel::bottom("gallery").show(root, |ui| {
            actions.extend(ui::gallery(ui, &view));
        });
        egui::Panel::left("controls")
            .resizable(false)
            .exact_size(270.0)
            .show(root, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    actions.extend(ui::controls(ui, &view));
                });
            });
        egui::CentralPanel::default().show(root, |ui| self.panes(ui));
        let mut help = self.screen.show_help;
        ui::help(root.ctx(), &mut help);
        if help != self.screen.show_help {
            actions.push(Action::Toggle(Flag::Help));
        }
        if let Some(a) = self.screen.add_dialog.show(root.ctx()) {
            actions.push(a);
        }
        if let Some(a) = self.screen.weights_dialog.show(root.ctx()) {
            actions.push(a);
        }
        if let Some(a) = self.screen.remote_dialog.show(root.ctx()) {
            actions.push(a);
        }
        actions
    }

    fn redraw(&mut self, event_loop: &ActiveEventLoop) {
        let started = Instant::now();
        self.draw_frame(event_loop);
        self.pacing.frames += 1;
        self.pacing.frame_work += started.elapsed();
        let span = self.pacing.frames_since.elapsed();
        if span >= Duration::from_secs(5) {
            let fps = f64::from(self.pacing.frames) / span.as_secs_f64();
            let ms =
                self.pacing.frame_work.as_secs_f64() * 1e3 / f64::from(self.pacing.frames.max(1));
            self.link.status.window = Some((fps, ms));
            tracing::info!("window: {fps:.1} fps, {ms:.2} ms of work per frame");
            self.pacing.frames = 0;
            self.pacing.frame_work = Duration::ZERO;
            self.pacing.frames_since = Instant::now();
        }
    }

    fn draw_frame(&mut self, event_loop: &ActiveEventLoop) {
        self.update_status();
        let Some(gfx) = self.gfx.as_mut() else {
            return;
        };
        // New frames to the GPU.
        if let Some(rs) = gfx.painter.render_state() {
            let mut renderer = rs.renderer.write();
            if let Some(video) = renderer.callback_resources.get_mut::<VideoRenderer>() {
                if let Some(f) = self.screen.pending_camera.take() {
                    self.screen.camera_size = Some((f.size.width, f.size.height));
                    video.upload_frame(
                        &rs.device,
                        &rs.queue,
                        PaneId::Camera,
                        (f.size.width, f.size.height),
                        &f.rgb,
                    );
                }
                if let Some(f) = self.screen.pending_output.take() {
                    if !self.screen.first_output_logged {
                        self.screen.first_output_logged = true;
                        tracing::info!("first output frame shown");
                    }
                    video.upload_frame(
                        &rs.device,
                        &rs.queue,
                        PaneId::Output,
                        (f.size.width, f.size.height),
                        &f.rgb,
                    );
                }
                if self.screen.overlay_dirty
                    && let Some(p) = self.user.gallery.get(self.user.selected)
                {
                    video.upload_overlay(
                        &rs.device,
                        &rs.queue,
                        (p.image.width(), p.image.height()),
                        p.image.as_raw(),
                    );
                    self.screen.overlay_dirty = false;
                }
            }
        }
        let Some(gfx) = self.gfx.as_mut() else {
            return;
        };
        let raw = gfx.state.take_egui_input(&gfx.window);
        let ctx = self.ctx.clone();
        let mut actions = Vec::new();
        let output = ctx.run_ui(raw, |ui| actions = self.draw(ui));
        // The panes change with every frame that arrives; the rest only when egui says so (and at
        // least twice a second, for the stats).
        let delay = output
            .viewport_output
            .get(&egui::ViewportId::ROOT)
            .map_or(Duration::ZERO, |v| v.repaint_delay)
            .min(Duration::from_millis(500));
        self.pacing.repaint_at = Instant::now() + delay;
        let Some(gfx) = self.gfx.as_mut() else {
            return;
        };
        gfx.state
            .handle_platform_output(&gfx.window, output.platform_output);
        let clipped = ctx.tessellate(output.shapes, output.pixels_per_point);
        let mut textures = output.textures_delta;
        gfx.painter.paint_and_update_textures(
            egui::ViewportId::ROOT,
            output.pixels_per_point,
            [0.1, 0.1, 0.1, 1.0],
            &clipped,
            &mut textures,
            Vec::new(),
            &gfx.window,
        );
        for a in actions {
            self.apply(a, event_loop);
        }
        if self
            .user
            .dirty_since
            .is_some_and(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.save_settings();
        }
    }

    fn shutdown(&mut self) {
        self.save_settings();
        if let Some(p) = self.link.pipeline.take() {
            for e in p.join() {
                match e.result {
                    Ok(()) => tracing::info!("{} stopped", e.thread),
                    Err(err) => eprintln!("{} stopped: {err}", e.thread),
                }
            }
        }
        // The surface before the window.
        self.gfx = None;
    }

    fn create_window(&mut self, event_loop: &ActiveEventLoop) -> Result<(), WindowError> {
        // The Wayland app id and the X11 WM_CLASS (one setting in winit), matching the desktop
        // entry (marionette.desktop) so the desktop shows its icon for the window.
        use winit::platform::wayland::WindowAttributesExtWayland;
        let attrs = Window::default_attributes()
            .with_name("marionette", "marionette")
            .with_title("marionette")
            .with_inner_size(winit::dpi::LogicalSize::new(1280.0, 760.0))
            .with_min_inner_size(winit::dpi::LogicalSize::new(720.0, 480.0));
        let window = Arc::new(
            event_loop
                .create_window(attrs)
                .map_err(|e| WindowError::Os(window_system_text(&e)))?,
        );
        let config = egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::from_display_handle(
                event_loop.owned_display_handle(),
            ),
            ..Default::default()
        };
        let mut painter = pollster::block_on(egui_wgpu::winit::Painter::new(
            self.ctx.clone(),
            config,
            false,
            egui_wgpu::RendererOptions {
                msaa_samples: 1,
                ..Default::default()
            },
        ));
        pollster::block_on(painter.set_window(egui::ViewportId::ROOT, Some(window.clone())))?;
        if let Some(rs) = painter.render_state() {
            let info = rs.adapter.get_info();
            eprintln!("window: {} ({:?})", info.name, info.backend);
            let video = VideoRenderer::new(&rs.device, rs.target_format);
            rs.renderer.write().callback_resources.insert(video);
        }
        let state = egui_winit::State::new(
            self.ctx.clone(),
            egui::ViewportId::ROOT,
            event_loop,
            Some(window.scale_factor() as f32),
            window.theme(),
            painter.max_texture_side(),
        );
        if let Some(mhz) = window
            .current_monitor()
            .and_then(|m| m.refresh_rate_millihertz())
            .filter(|&m| m >= 20_000)
        {
            self.pacing.frame_interval = Duration::from_secs_f64(1000.0 / f64::from(mhz));
        }
        self.screen.overlay_dirty = true;
        self.gfx = Some(Gfx {
            window,
            state,
            painter,
        });
        Ok(())
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.gfx.is_some() {
            return;
        }
        if let Err(e) = self.create_window(event_loop) {
            self.fatal = Some(e);
            event_loop.exit();
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        let Some(gfx) = self.gfx.as_mut() else {
            return;
        };
        let response = gfx.state.on_window_event(&gfx.window, &event);
        match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                self.quit = true;
                event_loop.exit();
            }
            WindowEvent::Resized(size) => {
                if let (Some(w), Some(h)) = (
                    std::num::NonZeroU32::new(size.width),
                    std::num::NonZeroU32::new(size.height),
                ) {
                    gfx.painter.on_window_resized(egui::ViewportId::ROOT, w, h);
                }
                gfx.window.request_redraw();
            }
            WindowEvent::DroppedFile(path) if is_checkpoint(&path) => {
                self.screen.weights_dialog.open(Some(path));
                gfx.window.request_redraw();
            }
            WindowEvent::DroppedFile(path) => {
                self.screen.add_dialog.open(&self.ctx, Some(path));
                gfx.window.request_redraw();
            }
            WindowEvent::RedrawRequested => self.redraw(event_loop),
            _ => {
                if response.repaint {
                    gfx.window.request_redraw();
                }
            }
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        if self.quit {
            event_loop.exit();
            return;
        }
        if let Ok(f) = self.link.preview_rx.try_recv() {
            self.screen.pending_camera = Some(f);
        }
        if let Ok(f) = self.link.output_rx.try_recv() {
            self.screen.pending_output = Some(f);
        }
        // Redrawn when a frame arrived or egui wants it, at most at the display's rate: the
        // panes follow the camera and the engine as fast as the display can show them, and an
        // unchanged window costs nothing (it matters with software rendering).
        let now = Instant::now();
        let due = self.screen.pending_camera.is_some()
            || self.screen.pending_output.is_some()
            || now >= self.pacing.repaint_at;
        if due && now >= self.pacing.next_redraw {
            if let Some(g) = &self.gfx {
                g.window.request_redraw();
            }
            self.pacing.next_redraw = now + self.pacing.frame_interval;
        }
        // Frames arrive through channels, not events: look again after one display interval.
        event_loop.set_control_flow(ControlFlow::WaitUntil(
            self.pacing
                .next_redraw
                .max(now + self.pacing.frame_interval / 2),
        ));
    }
}
