//! The window's panels through egui_kittest: rendered with wgpu (Mesa's software rasteriser on
//! machines without a GPU) and compared with the reference images in tests/snapshots, and driven
//! like a user would (clicks, keys, typing). Update the references after an intended change
//! with `UPDATE_SNAPSHOTS=1 cargo test --test app ui_panels::` and look at them before committing.
//!
//! Tolerance: egui_kittest's default per-pixel threshold (0.6, a weighted squared YIQ distance,
//! which absorbs rasteriser rounding between wgpu backends) and no failing pixels.

use std::collections::BTreeMap;

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use marionette::app::settings::{Settings, SourceSetting};
use marionette::app::ui::{self, Action, Flag, Hidden, Status, Thumb, View};
use marionette::pipeline::stats::StatsSnapshot;

fn sources() -> Vec<(String, SourceSetting)> {
    vec![
        (
            "Integrated Camera (/dev/video0)".into(),
            SourceSetting::Camera("/dev/video0".into()),
        ),
        ("Test pattern".into(), SourceSetting::TestPattern),
        ("Idle motion (no camera)".into(), SourceSetting::Idle),
    ]
}

fn status() -> Status {
    Status {
        engine: "FOMM (vox-256) from vox-cpk.pth.tar, CPU".into(),
        engine_id: marionette::engine::EngineId::Fomm,
        absolute_supported: true,
        source: "test pattern".into(),
        source_error: None,
        vcam: "writing /dev/video10 YUYV 640x480".into(),
        vcam_writing: true,
        stats: Some(StatsSnapshot {
            frames_out: 1234,
            stills_out: 1,
            fps: 29.9,
            framing_ms_p50: 0.5,
            inference_ms_p50: 31.2,
            sink_ms_p50: BTreeMap::from([("vcam".to_string(), 1.3), ("window".to_string(), 0.0)]),
            sink_writes_per_s: BTreeMap::from([("vcam".to_string(), 30.0)]),
            latency_ms_p50: 48.0,
            latency_ms_p95: 61.5,
            dropped_capture: 12,
            dropped_model: 280,
            dropped_sink: BTreeMap::from([("vcam".to_string(), 0)]),
            calibrations: 2,
            notice: None,
            model_fps: 2.4,
            model_ms_p50: 410.0,
            keyframe_latency_ms_p50: 520.0,
            keyframe_latency_ms_p95: 640.0,
            keyframes: 300,
            keyframes_on: true,
            degraded: None,
            remote_keyframes: None,
            remote_motions: None,
            remote_bytes_up_per_frame: None,
            remote_bytes_down_per_frame: None,
            remote_connected: None,
            remote_in_flight: None,
        }),
        window: None,
        notice: None,
    }
}

struct Fixture {
    settings: Settings,
    thumbs: Vec<Thumb>,
    sources: Vec<(String, SourceSetting)>,
    source: SourceSetting,
    vcams: Vec<String>,
    status: Status,
    actions: Vec<Action>,
}

impl Fixture {
    fn new() -> Self {
        let settings = Settings {
            stats: true,
            overlay: true,
            ..Settings::default()
        };
        Self {
            settings,
            thumbs: Vec::new(),
            sources: sources(),
            source: SourceSetting::TestPattern,
            vcams: vec!["/dev/video10".into()],
            status: status(),
            actions: Vec::new(),
        }
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        let view = View {
            settings: &self.settings,
            portraits: &self.thumbs,
            selected: Some(0),
            sources: &self.sources,
            source: &self.source,
            vcam_devices: &self.vcams,
            status: &self.status,
        };
        let a = ui::controls(ui, &view);
        self.actions.extend(a);
    }
}

#[test]
fn control_panel_matches_its_snapshot() {
    let mut h = Harness::builder()
        .with_size((280.0, 820.0))
        .wgpu()
        .build_ui_state(|ui, f: &mut Fixture| f.controls(ui), Fixture::new());
    h.run();
    h.snapshot("controls");
}

#[test]
fn control_panel_with_the_classic_engine_and_no_virtual_camera() {
    let mut f = Fixture::new();
    f.settings.stats = false;
    f.settings.overlay = false;
    f.status.engine = "classic (point tracking, 256 px): no FOMM checkpoint found".into();
    f.status.engine_id = marionette::engine::EngineId::Classic;
    f.status.absolute_supported = false;
    f.status.vcam = "not writing: no virtual camera found (v4l2loopback is not loaded)".into();
    f.status.vcam_writing = false;
    f.source = SourceSetting::Idle;
    let mut h = Harness::builder()
        .with_size((280.0, 700.0))
        .wgpu()
        .build_ui_state(|ui, f: &mut Fixture| f.controls(ui), f);
    h.run();
    h.snapshot("controls-classic");
}

#[test]
fn gallery_strip_matches_its_snapshot() {
    let (gallery, errors) = marionette::app::gallery::Gallery::load(
        Some(&marionette::assets::BundledAvatars::BuiltIn),
        None,
    );
    assert!(errors.is_empty());
    struct G {
        gallery: marionette::app::gallery::Gallery,
        textures: Vec<egui::TextureHandle>,
        fixture: Fixture,
    }
    let state = G {
        gallery,
        textures: Vec::new(),
        fixture: Fixture::new(),
    };
    let mut h = Harness::builder()
        .with_size((420.0, 130.0))
        .wgpu()
        .build_ui_state(
            |ui, g: &mut G| {
                if g.textures.is_empty() {
                    g.textures = g
                        .gallery
                        .portraits
                        .iter()
                        .map(|p| {
                            let t = &p.thumbnail;
                            ui.ctx().load_texture(
                                p.key.clone(),
                                egui::ColorImage::from_rgb(
                                    [t.width() as usize, t.height() as usize],
                                    t.as_raw(),
                                ),
                                egui::TextureOptions::LINEAR,
                            )
                        })
                        .collect();
                    g.fixture.thumbs = g
                        .gallery
                        .portraits
                        .iter()
                        .zip(&g.textures)
                        .map(|(p, t)| Thumb {
                            name: p.name.clone(),
                            bundled: p.bundled,
                            texture: Some(t.id()),
                        })
                        .collect();
                }
                let f = &g.fixture;
                let view = View {
                    settings: &f.settings,
                    portraits: &f.thumbs,
                    selected: Some(1),
                    sources: &f.sources,
                    source: &f.source,
                    vcam_devices: &f.vcams,
                    status: &f.status,
                };
                let a = ui::gallery(ui, &view);
                g.fixture.actions.extend(a);
            },
            state,
        );
    h.run();
    h.snapshot("gallery");
    // Clicking the first thumbnail picks it; the bundled one selected cannot be removed.
    h.get_by_label("+ Add").click();
    h.run();
    assert_eq!(
        h.state().fixture.actions,
        vec![Action::OpenAddPortrait(None)]
    );
}

#[test]
fn help_overlay_lists_every_hotkey() {
    let mut h = Harness::builder()
        .with_size((620.0, 480.0))
        .wgpu()
        .build_ui(|ui| {
            let mut open = true;
            ui::help(ui.ctx(), &mut open);
        });
    h.run();
    for (keys, _) in ui::HOTKEYS {
        h.get_by_label(keys);
    }
    h.snapshot("help");
}

#[test]
fn clicking_controls_gives_actions() {
    let mut h = Harness::builder()
        .with_size((280.0, 820.0))
        .build_ui_state(|ui, f: &mut Fixture| f.controls(ui), Fixture::new());
    h.run();
    h.get_by_label("Calibrate (C)").click();
    h.run();
    h.get_by_label("Passthrough (P)").click();
    h.run();
    h.get_by_label("Mirror output").click();
    h.run();
    h.get_by_label("Absolute").click();
    h.run();
    assert_eq!(
        h.state().actions,
        vec![
            Action::Recalibrate,
            Action::Toggle(Flag::Passthrough),
            Action::Toggle(Flag::MirrorOutput),
            Action::Toggle(Flag::Relative),
        ]
    );
}

struct Keys {
    text: String,
    actions: Vec<Action>,
}

fn key_harness() -> Harness<'static, Keys> {
    Harness::builder().with_size((300.0, 100.0)).build_ui_state(
        |ui, k: &mut Keys| {
            k.actions.extend(ui::hotkeys(ui.ctx()));
            ui.label("panel");
            ui.add(egui::TextEdit::singleline(&mut k.text).hint_text("name"));
        },
        Keys {
            text: String::new(),
            actions: Vec::new(),
        },
    )
}

#[test]
fn every_hotkey_maps_to_its_action() {
    let mut h = key_harness();
    h.run();
    let cases = [
        (Key::C, Action::Recalibrate),
        (Key::X, Action::Recalibrate),
        (Key::Num1, Action::SelectAvatar(0)),
        (Key::Num9, Action::SelectAvatar(8)),
        (Key::A, Action::PrevAvatar),
        (Key::D, Action::NextAvatar),
        (Key::W, Action::Zoom(1.1)),
        (Key::S, Action::Zoom(1.0 / 1.1)),
        (Key::ArrowLeft, Action::Pan(-0.1, 0.0)),
        (Key::ArrowDown, Action::Pan(0.0, 0.1)),
        (Key::R, Action::ResetCrop),
        (Key::O, Action::Toggle(Flag::Overlay)),
        (Key::OpenBracket, Action::OverlayOpacity(-0.1)),
        (Key::CloseBracket, Action::OverlayOpacity(0.1)),
        (Key::M, Action::Toggle(Flag::MirrorPreview)),
        (Key::P, Action::Toggle(Flag::Passthrough)),
        (Key::I, Action::Toggle(Flag::Stats)),
        (Key::F11, Action::Toggle(Flag::Fullscreen)),
        (Key::F1, Action::Toggle(Flag::Help)),
        (Key::Questionmark, Action::Toggle(Flag::Help)),
        (Key::Escape, Action::Quit),
    ];
    for (key, want) in cases {
        h.state_mut().actions.clear();
        h.key_press(key);
        h.run();
        assert_eq!(h.state().actions, vec![want], "{key:?}");
    }
    for (key, want) in [
        (Key::O, Action::OpenAddWeights(None)),
        (Key::R, Action::OpenRemote),
    ] {
        h.state_mut().actions.clear();
        h.key_press_modifiers(egui::Modifiers::CTRL, key);
        h.run();
        assert_eq!(h.state().actions, vec![want], "Ctrl+{key:?}");
    }
}

#[test]
fn keys_type_into_a_text_field_instead_of_acting() {
    let mut h = key_harness();
    h.run();
    let field = || egui::accesskit::Role::TextInput;
    h.get_by_role(field()).focus();
    h.run();
    h.get_by_role(field()).type_text("cx");
    h.key_press(Key::C);
    h.run();
    assert_eq!(h.state().text, "cx");
    assert!(h.state().actions.is_empty(), "{:?}", h.state().actions);
}

struct RemoteState {
    dialog: marionette::app::remote_dialog::RemoteDialog,
    actions: Vec<Action>,
}

#[test]
fn the_remote_dialog_connects_with_a_server_and_a_secret() {
    let mut dialog = marionette::app::remote_dialog::RemoteDialog::default();
    dialog.open();
    let mut h = Harness::builder().with_size((720.0, 420.0)).build_ui_state(
        |ui, s: &mut RemoteState| {
            if let Some(a) = s.dialog.show(ui.ctx()) {
                s.actions.push(a);
            }
        },
        RemoteState {
            dialog,
            actions: Vec::new(),
        },
    );
    h.run();
    // Nothing to connect to yet: the button does nothing, and there is nothing to go back from.
    h.get_by_label("Connect").click();
    h.run();
    assert!(h.state().actions.is_empty(), "{:?}", h.state().actions);
    assert!(h.query_by_label("Render here").is_none());
    // The server's field, then the secret's (a password field: its text is not shown).
    for (role, text) in [
        (egui::accesskit::Role::TextInput, "studio.local"),
        (
            egui::accesskit::Role::PasswordInput,
            "00112233445566778899aabbccddeeff",
        ),
    ] {
        h.get_by_role(role).focus();
        h.run();
        h.get_by_role(role).type_text(text);
        h.run();
    }
    h.get_by_label("Connect").click();
    h.run();
    assert_eq!(
        h.state().actions,
        vec![Action::ConnectRemote {
            server: "studio.local".into(),
            secret: Hidden("00112233445566778899aabbccddeeff".into()),
        }]
    );
    // Actions are logged: the secret is not in what they print.
    let printed = format!("{:?}", h.state().actions);
    assert!(!printed.contains("0011"), "{printed}");
    // Enter in the secret field connects as the button does.
    h.state_mut().actions.clear();
    h.get_by_role(egui::accesskit::Role::PasswordInput).focus();
    h.run();
    h.key_press(Key::Enter);
    h.run();
    assert_eq!(
        h.state().actions,
        vec![Action::ConnectRemote {
            server: "studio.local".into(),
            secret: Hidden("00112233445566778899aabbccddeeff".into()),
        }]
    );
    // Once rendering there, it offers the way back.
    h.state_mut().dialog.rendering_on = Some("studio.local:47764".into());
    h.run();
    h.get_by_label("Render here").click();
    h.run();
    assert_eq!(h.state().actions.last(), Some(&Action::RenderHere));
}
