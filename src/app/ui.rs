//! The window's panels, hotkeys and dialogs, as egui code over plain data: a [`View`] in,
//! [`Action`]s out. Nothing here touches the pipeline or the GPU, so the panels are tested (and
//! snapshot-compared) on their own.

use std::path::PathBuf;

use egui::{Key, RichText};

use super::gallery::CropBox;
use super::settings::{Settings, SourceSetting};
use crate::pipeline::stats::StatsSnapshot;

/// On/off settings, flipped by a checkbox or a hotkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The alignment overlay: the portrait drawn over the camera pane (O).
    Overlay,
    /// Show the camera pane as a mirror (M).
    MirrorPreview,
    /// Flip what the virtual camera sends.
    MirrorOutput,
    /// The "AI ANIMATED" badge on or off.
    Badge,
    /// Send the camera crop instead of the portrait (P).
    Passthrough,
    /// Relative motion transfer; off means absolute (refused when the engine has only
    /// relative).
    Relative,
    /// Scale the motion to the portrait's face size.
    AdaptScale,
    /// Draw the motion keypoints.
    Keypoints,
    /// The statistics grid (I).
    Stats,
    /// The hotkey help overlay (? or F1).
    Help,
    /// Borderless fullscreen (F11).
    Fullscreen,
    /// Automatic framing on or off.
    AutoFraming,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Take the next camera frame as the reference frame.
    Recalibrate,
    /// Select the portrait at this gallery index (0-based).
    SelectAvatar(usize),
    /// Select the previous portrait, wrapping around.
    PrevAvatar,
    /// Select the next portrait, wrapping around.
    NextAvatar,
    /// Multiply the crop's zoom.
    Zoom(f64),
    /// Set the crop's zoom (the slider offers 1 to 4).
    SetZoom(f64),
    /// Move the crop (fractions of the free room).
    Pan(f64, f64),
    /// Reset the crop to the centred square of the whole short side (zoom 1, no pan).
    ResetCrop,
    /// Flip an on/off setting.
    Toggle(Flag),
    /// Change the overlay's opacity by this much (and show the overlay).
    OverlayOpacity(f32),
    /// Set the overlay's opacity, in [0, 1].
    SetOverlayOpacity(f32),
    /// Switch the driving source.
    SetSource(SourceSetting),
    /// Model keyframes with motion in between: auto, on or off.
    SetKeyframes(crate::pipeline::KeyframeMode),
    /// Smoothing strength, 0 (off) to 1.
    SetSmoothing(f64),
    /// Pick the virtual-camera device: "auto", "none" or a device path.
    SetVcamDevice(String),
    /// Pick the virtual camera's pixel format: "yuyv" or "i420".
    SetVcamFormat(String),
    /// Pick the virtual camera's frame size: "640x480" or "1280x720".
    SetVcamSize(String),
    /// Open the add-portrait dialog (optionally on a file, e.g. one dropped on the window).
    OpenAddPortrait(Option<PathBuf>),
    /// Add a picture to the user's gallery (from the add-portrait dialog).
    AddPortrait {
        /// The picture file.
        path: PathBuf,
        /// The square to cut out of it.
        crop: CropBox,
        /// The portrait's name.
        name: String,
    },
    /// Remove the user's portrait at this gallery index (bundled ones cannot be removed).
    RemovePortrait(usize),
    /// Open the add-weights dialog (optionally on a checkpoint, e.g. one dropped on the window).
    OpenAddWeights(Option<PathBuf>),
    /// Check a FOMM checkpoint, add it to the user's models folder and switch to it.
    AddWeights {
        /// The checkpoint file.
        path: PathBuf,
        /// Store the two networks as safetensors instead of a copy of the file.
        safetensors: bool,
    },
    /// Open the "Render on another machine" dialog.
    OpenRemote,
    /// Render on the server at `server` (`HOST[:PORT]`), paired by `secret`.
    ConnectRemote {
        /// As `serve` printed it.
        server: String,
        /// The pairing secret.
        secret: Hidden,
    },
    /// Render on this machine again.
    RenderHere,
    /// Esc: close an open dialog or the help, else quit.
    Quit,
}

/// A gallery entry as the panels show it.
#[derive(Debug, Clone)]
pub struct Thumb {
    /// The portrait's name.
    pub name: String,
    /// Whether it ships with the program (and cannot be removed).
    pub bundled: bool,
    /// Its thumbnail, once uploaded (a "?" button until then).
    pub texture: Option<egui::TextureId>,
}

/// What the status lines say.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// "fomm (vox-256) from models/vox-cpk.pth.tar, CPU".
    pub engine: String,
    /// Which engine runs (adapt scale defaults to on for FOMM, off for the classic engine).
    pub engine_id: crate::engine::EngineId,
    /// The engine can do absolute motion transfer (FOMM can, the classic engine cannot).
    pub absolute_supported: bool,
    /// The driving source now ("test pattern", "/dev/video0", "idle motion").
    pub source: String,
    /// Why the driving source failed, if it did.
    pub source_error: Option<String>,
    /// "writing YUYV 640x480 to /dev/video10", or why not.
    pub vcam: String,
    /// Whether a frame went to the virtual camera within the last second (the line is drawn green).
    pub vcam_writing: bool,
    /// The pipeline's latest statistics.
    pub stats: Option<StatsSnapshot>,
    /// The window's own drawing: frames per second and milliseconds of work per frame.
    pub window: Option<(f64, f64)>,
    /// A warning to show under the engine line (a failed action, a stopped engine, ...).
    pub notice: Option<String>,
}

/// Everything the panels draw from.
pub struct View<'a> {
    /// The settings the controls show.
    pub settings: &'a Settings,
    /// The gallery, in order.
    pub portraits: &'a [Thumb],
    /// Index of the selected portrait.
    pub selected: Option<usize>,
    /// Driving sources to pick from: label and setting.
    pub sources: &'a [(String, SourceSetting)],
    /// The source in use.
    pub source: &'a SourceSetting,
    /// Virtual-camera devices found (paths).
    pub vcam_devices: &'a [String],
    /// The status lines.
    pub status: &'a Status,
}

/// Text kept out of logs: its `Debug` says only that it is hidden (actions are logged).
#[derive(Clone, PartialEq)]
pub struct Hidden(pub String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// The hotkeys, for the help overlay and the README.
pub const HOTKEYS: &[(&str, &str)] = &[
    (
        "C or X",
        "recalibrate: the next camera frame becomes the reference pose",
    ),
    ("1 - 9", "pick portrait 1 to 9"),
    ("A / D", "previous / next portrait"),
    ("F", "automatic framing: the crop follows your face"),
    ("W / S", "zoom the camera crop in / out (manual framing)"),
    ("Arrow keys", "move the camera crop (manual framing)"),
    ("R", "reset the crop"),
    (
        "O",
        "alignment overlay (the portrait over your camera; optional)",
    ),
    ("[ / ]", "overlay opacity down / up"),
    ("M", "mirror the camera preview"),
    ("P", "passthrough: send the camera instead of the portrait"),
    ("I", "statistics"),
    ("F11", "fullscreen"),
    (
        "Ctrl+O",
        "add FOMM weights (or drop a checkpoint on the window)",
    ),
    (
        "Ctrl+R",
        "render on another machine (one running marionette serve)",
    ),
    ("? or F1", "this help"),
    ("Esc", "close this help or a dialog; quit"),
];

/// The hotkeys pressed this frame, taken out of egui's input so widgets do not also act on
/// them. Keys work wherever the pointer is, except while a text field has the keyboard.
pub fn hotkeys(ctx: &egui::Context) -> Vec<Action> {
    if ctx.text_edit_focused() {
        return Vec::new();
    }
    let mut actions = Vec::new();
    ctx.input_mut(|i| {
        let mut keep = Vec::with_capacity(i.events.len());
        for event in i.events.drain(..) {
            let egui::Event::Key {
                key,
                pressed: true,
                repeat,
                modifiers,
                ..
            } = &event
            else {
                keep.push(event);
                continue;
            };
            if modifiers.ctrl && *key == Key::O && !repeat {
                actions.push(Action::OpenAddWeights(None));
                continue;
            }
            if modifiers.ctrl && *key == Key::R && !repeat {
                actions.push(Action::OpenRemote);
                continue;
            }
            // Other Ctrl/Alt combinations belong to widgets (copy, paste, ...).
            if modifiers.ctrl || modifiers.alt || modifiers.command {
                keep.push(event);
                continue;
            }
            let action = match key {
                Key::C | Key::X if !repeat => Some(Action::Recalibrate),
                Key::A => Some(Action::PrevAvatar),
                Key::D => Some(Action::NextAvatar),
                Key::W => Some(Action::Zoom(1.1)),
                Key::S => Some(Action::Zoom(1.0 / 1.1)),
                Key::ArrowLeft => Some(Action::Pan(-0.1, 0.0)),
                Key::ArrowRight => Some(Action::Pan(0.1, 0.0)),
                Key::ArrowUp => Some(Action::Pan(0.0, -0.1)),
                Key::ArrowDown => Some(Action::Pan(0.0, 0.1)),
                Key::R if !repeat => Some(Action::ResetCrop),
                Key::F if !repeat => Some(Action::Toggle(Flag::AutoFraming)),
                Key::O if !repeat => Some(Action::Toggle(Flag::Overlay)),
                Key::OpenBracket => Some(Action::OverlayOpacity(-0.1)),
                Key::CloseBracket => Some(Action::OverlayOpacity(0.1)),
                Key::M if !repeat => Some(Action::Toggle(Flag::MirrorPreview)),
                Key::P if !repeat => Some(Action::Toggle(Flag::Passthrough)),
                Key::I if !repeat => Some(Action::Toggle(Flag::Stats)),
                Key::F11 if !repeat => Some(Action::Toggle(Flag::Fullscreen)),
                Key::Questionmark | Key::F1 if !repeat => Some(Action::Toggle(Flag::Help)),
                Key::Escape if !repeat => Some(Action::Quit),
                k if !repeat => digit(*k).map(|n| Action::SelectAvatar(n - 1)),
                _ => None,
            };
            match action {
                Some(a) => actions.push(a),
                None => keep.push(event),
            }
        }
        i.events = keep;
    });
    actions
}

fn digit(k: Key) -> Option<usize> {
    Some(match k {
        Key::Num1 => 1,
        Key::Num2 => 2,
        Key::Num3 => 3,
        Key::Num4 => 4,
        Key::Num5 => 5,
        Key::Num6 => 6,
        Key::Num7 => 7,
        Key::Num8 => 8,
        Key::Num9 => 9,
        _ => return None,
    })
}

fn flag(ui: &mut egui::Ui, on: bool, text: &str, hint: &str, f: Flag, out: &mut Vec<Action>) {
    let mut v = on;
    if ui.checkbox(&mut v, text).on_hover_text(hint).changed() {
        out.push(Action::Toggle(f));
    }
}

fn source_label(view: &View<'_>, s: &SourceSetting) -> String {
    view.sources
        .iter()
        .find(|(_, v)| v == s)
        .map(|(l, _)| l.clone())
        .unwrap_or_else(|| match s {
            SourceSetting::Camera(p) => p.clone(),
            SourceSetting::TestPattern => "Test pattern".into(),
            SourceSetting::Idle => "Idle motion".into(),
            SourceSetting::File(p) => p.clone(),
        })
}

/// The control panel: source, calibration, motion, view, virtual camera, engine, stats.
pub fn controls(ui: &mut egui::Ui, view: &View<'_>) -> Vec<Action> {
    let mut out = Vec::new();
    let sections: [fn(&mut egui::Ui, &View<'_>, &mut Vec<Action>); 5] = [
        source_section,
        motion_section,
        view_section,
        vcam_section,
        engine_section,
    ];
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            ui.separator();
        }
        section(ui, view, &mut out);
    }
    out
}

/// The driving source and the calibrate button.
fn source_section(ui: &mut egui::Ui, view: &View<'_>, out: &mut Vec<Action>) {
    ui.heading("Source");
    let current = source_label(view, view.source);
    egui::ComboBox::new("source", "input")
        .width(190.0)
        .selected_text(current)
        .show_ui(ui, |ui| {
            for (label, setting) in view.sources {
                if ui
                    .selectable_label(setting == view.source, label.as_str())
                    .clicked()
                    && setting != view.source
                {
                    out.push(Action::SetSource(setting.clone()));
                }
            }
        });
    if let Some(e) = &view.status.source_error {
        ui.colored_label(ui.visuals().warn_fg_color, e);
    }
    ui.add_space(4.0);
    if ui
        .button(RichText::new("Calibrate (C)").strong())
        .on_hover_text("Look straight at the camera with a neutral face, then press C")
        .clicked()
    {
        out.push(Action::Recalibrate);
    }
}

/// Relative or absolute motion, adapt scale, passthrough.
fn motion_section(ui: &mut egui::Ui, view: &View<'_>, out: &mut Vec<Action>) {
    let s = view.settings;
    ui.heading("Motion");
    ui.horizontal(|ui| {
        if ui.radio(s.relative, "Relative").clicked() && !s.relative {
            out.push(Action::Toggle(Flag::Relative));
        }
        let abs = ui.add_enabled(
            view.status.absolute_supported,
            egui::RadioButton::new(!s.relative, "Absolute"),
        );
        let abs = if view.status.absolute_supported {
            abs.on_hover_text("The portrait takes your keypoints as they are")
        } else {
            abs.on_disabled_hover_text("Needs the FOMM engine")
        };
        if abs.clicked() && s.relative {
            out.push(Action::Toggle(Flag::Relative));
        }
    });
    flag(
        ui,
        s.adapt_scale.unwrap_or(true),
        "Adapt scale",
        "Scale your motion to the portrait's face size",
        Flag::AdaptScale,
        out,
    );
    let mut smoothing = s.smoothing;
    let slider = egui::Slider::new(&mut smoothing, 0.0..=1.0)
        .text("smoothing")
        .custom_formatter(|v, _| {
            if v <= 0.0 {
                "off".into()
            } else {
                format!("{v:.2}")
            }
        });
    if ui
        .add(slider)
        .on_hover_text(
            "Steadies the portrait when you sit still (sensor noise moves the keypoints) \
             without slowing it when you move; 0 turns it off",
        )
        .changed()
    {
        out.push(Action::SetSmoothing(smoothing));
    }
    flag(
        ui,
        s.passthrough,
        "Passthrough (P)",
        "Send the camera crop instead of the portrait",
        Flag::Passthrough,
        out,
    );
    use crate::pipeline::KeyframeMode;
    egui::ComboBox::new("keyframes", "keyframes")
        .width(70.0)
        .selected_text(match s.keyframes {
            KeyframeMode::Auto => "auto",
            KeyframeMode::On => "on",
            KeyframeMode::Off => "off",
        })
        .show_ui(ui, |ui| {
            for (mode, label) in [
                (KeyframeMode::Auto, "auto"),
                (KeyframeMode::On, "on"),
                (KeyframeMode::Off, "off"),
            ] {
                if ui.selectable_label(s.keyframes == mode, label).clicked() && s.keyframes != mode
                {
                    out.push(Action::SetKeyframes(mode));
                }
            }
        })
        .response
        .on_hover_text(
            "Model keyframes, motion in between: the portrait follows the camera at its full \
             rate while the model refreshes it as fast as it can (auto: when the model is \
             slower than the camera)",
        );
}

/// Mirroring, the alignment overlay, keypoints, zoom.
fn view_section(ui: &mut egui::Ui, view: &View<'_>, out: &mut Vec<Action>) {
    let s = view.settings;
    ui.heading("View");
    flag(
        ui,
        s.mirror_preview,
        "Mirror preview (M)",
        "Show the camera pane as a mirror",
        Flag::MirrorPreview,
        out,
    );
    flag(
        ui,
        s.mirror_output,
        "Mirror output",
        "Flip what the virtual camera sends",
        Flag::MirrorOutput,
        out,
    );
    flag(
        ui,
        s.framing == crate::pipeline::framing::FramingMode::Auto,
        "Automatic framing (F)",
        "Find your face and keep the crop around it (the box shows where it is); off: zoom and \
         move the crop yourself",
        Flag::AutoFraming,
        out,
    );
    flag(
        ui,
        s.badge,
        "AI badge",
        "An \"AI ANIMATED\" label in a corner of what the virtual camera sends, so that \
         viewers know the portrait is animated",
        Flag::Badge,
        out,
    );
    flag(
        ui,
        s.overlay,
        "Alignment overlay (O)",
        "The portrait over your camera, to line your face up with it (optional with \
         automatic framing)",
        Flag::Overlay,
        out,
    );
    let mut opacity = s.overlay_opacity;
    if ui
        .add_enabled(
            s.overlay,
            egui::Slider::new(&mut opacity, 0.0..=1.0).text("opacity"),
        )
        .changed()
    {
        out.push(Action::SetOverlayOpacity(opacity));
    }
    flag(
        ui,
        s.keypoints,
        "Keypoints",
        "Draw the motion keypoints",
        Flag::Keypoints,
        out,
    );
    let mut zoom = s.crop.zoom;
    ui.horizontal(|ui| {
        if ui
            .add(
                egui::Slider::new(&mut zoom, 1.0..=crate::pipeline::framing::MAX_ZOOM).text("zoom"),
            )
            .on_hover_text("Zooming or moving the crop switches to manual framing")
            .changed()
        {
            out.push(Action::SetZoom(zoom));
        }
        if ui.button("Reset (R)").clicked() {
            out.push(Action::ResetCrop);
        }
    });
}

/// The virtual camera: device, format, size and what it is doing.
fn vcam_section(ui: &mut egui::Ui, view: &View<'_>, out: &mut Vec<Action>) {
    let s = view.settings;
    ui.heading("Virtual camera");
    egui::ComboBox::new("vcam", "device")
        .width(180.0)
        .selected_text(s.vcam.device.as_str())
        .show_ui(ui, |ui| {
            let mut choices: Vec<String> = vec!["auto".into(), "none".into()];
            choices.extend(view.vcam_devices.iter().cloned());
            for c in choices {
                if ui
                    .selectable_label(s.vcam.device == c, c.as_str())
                    .clicked()
                    && s.vcam.device != c
                {
                    out.push(Action::SetVcamDevice(c));
                }
            }
        });
    ui.horizontal(|ui| {
        egui::ComboBox::new("vcam-format", "format")
            .width(70.0)
            .selected_text(s.vcam.format.to_uppercase())
            .show_ui(ui, |ui| {
                for f in ["yuyv", "i420"] {
                    if ui
                        .selectable_label(s.vcam.format == f, f.to_uppercase())
                        .clicked()
                        && s.vcam.format != f
                    {
                        out.push(Action::SetVcamFormat(f.into()));
                    }
                }
            });
        egui::ComboBox::new("vcam-size", "size")
            .width(85.0)
            .selected_text(s.vcam.size.as_str())
            .show_ui(ui, |ui| {
                for z in ["640x480", "1280x720"] {
                    if ui.selectable_label(s.vcam.size == z, z).clicked() && s.vcam.size != z {
                        out.push(Action::SetVcamSize(z.into()));
                    }
                }
            });
    });
    let colour = if view.status.vcam_writing {
        egui::Color32::from_rgb(90, 190, 90)
    } else {
        ui.visuals().warn_fg_color
    };
    ui.colored_label(colour, &view.status.vcam);
}

/// The engine line, notices and the statistics.
fn engine_section(ui: &mut egui::Ui, view: &View<'_>, out: &mut Vec<Action>) {
    let s = view.settings;
    ui.heading("Engine");
    ui.label(&view.status.engine);
    if let Some(n) = &view.status.notice {
        ui.colored_label(ui.visuals().warn_fg_color, n);
    }
    if ui
        .button("Add FOMM weights...")
        .on_hover_text("A published FOMM checkpoint: checked, kept in your models folder, used at once (Ctrl+O)")
        .clicked()
    {
        out.push(Action::OpenAddWeights(None));
    }
    if ui
        .button("Render on another machine...")
        .on_hover_text("A faster machine running `marionette serve` renders the portrait (Ctrl+R)")
        .clicked()
    {
        out.push(Action::OpenRemote);
    }
    // Said whether or not the statistics are open: the portrait moves less often than it could.
    if let Some(d) = view.status.stats.as_ref().and_then(|s| s.degraded.as_ref()) {
        ui.colored_label(ui.visuals().warn_fg_color, d);
    }
    flag(
        ui,
        s.stats,
        "Statistics (I)",
        "Frame rate, stage times, latency, dropped frames",
        Flag::Stats,
        out,
    );
    if s.stats {
        stats(ui, view.status.stats.as_ref());
        if let Some((fps, ms)) = view.status.window {
            ui.label(format!("window: {fps:.0} fps, {ms:.1} ms per frame"));
        }
    }
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} ms")
    } else {
        "-".into()
    }
}

/// The statistics grid.
pub fn stats(ui: &mut egui::Ui, snap: Option<&StatsSnapshot>) {
    let Some(s) = snap else {
        ui.label("no frames yet");
        return;
    };
    egui::Grid::new("stats").num_columns(2).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.monospace(v);
            ui.end_row();
        };
        row("fps", format!("{:.1}", s.fps));
        if s.keyframes_on {
            row("model fps", format!("{:.1}", s.model_fps));
        }
        row("frames", format!("{}", s.frames_out));
        row("framing", ms(s.framing_ms_p50));
        if s.keyframes_on {
            row("in-between", ms(s.inference_ms_p50));
            row("model", ms(s.model_ms_p50));
            let kl = if s.keyframe_latency_ms_p50.is_finite() {
                format!(
                    "{:.0} / {:.0} ms",
                    s.keyframe_latency_ms_p50, s.keyframe_latency_ms_p95
                )
            } else {
                "-".into()
            };
            row("keyframe latency", kl);
        } else {
            row("engine", ms(s.inference_ms_p50));
        }
        for (name, v) in &s.sink_ms_p50 {
            let writes = s.sink_writes_per_s.get(name).copied().unwrap_or(0.0);
            row(name, format!("{} ({writes:.0} writes/s)", ms(*v)));
        }
        let latency = if s.latency_ms_p50.is_finite() {
            format!("{:.0} / {:.0} ms", s.latency_ms_p50, s.latency_ms_p95)
        } else {
            "-".into()
        };
        row("latency p50/p95", latency);
        row("dropped (camera)", format!("{}", s.dropped_capture));
        row("skipped (model)", format!("{}", s.dropped_model));
        let sinks: u64 = s.dropped_sink.values().sum();
        row("dropped (outputs)", format!("{sinks}"));
        row("calibrations", format!("{}", s.calibrations));
    });
}

/// The gallery strip: numbered thumbnails, add and remove.
pub fn gallery(ui: &mut egui::Ui, view: &View<'_>) -> Vec<Action> {
    let mut out = Vec::new();
    egui::ScrollArea::horizontal().show(ui, |ui| {
        ui.horizontal(|ui| {
            for (i, p) in view.portraits.iter().enumerate() {
                let selected = view.selected == Some(i);
                ui.vertical(|ui| {
                    let size = egui::vec2(72.0, 72.0);
                    let resp = match p.texture {
                        Some(t) => ui.add(
                            egui::Button::image(egui::Image::from_texture((t, size)))
                                .selected(selected),
                        ),
                        None => ui.add_sized(size, egui::Button::new("?").selected(selected)),
                    };
                    if resp.on_hover_text(&p.name).clicked() && !selected {
                        out.push(Action::SelectAvatar(i));
                    }
                    let label = if i < 9 {
                        format!("{} {}", i + 1, p.name)
                    } else {
                        p.name.clone()
                    };
                    ui.add(egui::Label::new(RichText::new(label).small()).truncate());
                });
            }
            ui.vertical(|ui| {
                if ui
                    .add_sized([72.0, 34.0], egui::Button::new("+ Add"))
                    .on_hover_text("Add a portrait from a file (or drop one on the window)")
                    .clicked()
                {
                    out.push(Action::OpenAddPortrait(None));
                }
                let removable = view
                    .selected
                    .and_then(|i| view.portraits.get(i).map(|p| (i, p)))
                    .filter(|(_, p)| !p.bundled);
                let r = ui.add_enabled(
                    removable.is_some(),
                    egui::Button::new("Remove").min_size(egui::vec2(72.0, 34.0)),
                );
                if r.on_disabled_hover_text("Bundled portraits cannot be removed")
                    .clicked()
                    && let Some((i, _)) = removable
                {
                    out.push(Action::RemovePortrait(i));
                }
            });
        });
    });
    out
}

/// The help overlay: every hotkey.
pub fn help(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Hotkeys")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
        .show(ctx, |ui| {
            egui::Grid::new("hotkeys")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    for (k, what) in HOTKEYS {
                        ui.label(RichText::new(*k).monospace().strong());
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            ui.label("Keys work wherever the pointer is, except while typing in a text field.");
        });
}
