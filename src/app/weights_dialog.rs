//! The "Add FOMM weights" dialog: pick a checkpoint (browse, type a path, or drop the file on the
//! window) and add it; the window checks it, copies it (or converts it to safetensors) into the
//! user's models folder and switches the engine to FOMM without a restart. It also says where the
//! authors publish the checkpoints and lists what is installed. In-window, like the add-portrait
//! dialog, so it works the same on every desktop and under Xvfb.

use std::path::{Path, PathBuf};

use super::ui::Action;
use crate::models;

/// File names a checkpoint may have (PyTorch's two formats, safetensors).
const CHECKPOINT_ENDINGS: &[&str] = &[".pth.tar", ".pth", ".pt", ".tar", ".ckpt", ".safetensors"];

/// Whether `path`'s name looks like a checkpoint (a dropped file is routed by it).
pub fn is_checkpoint(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    CHECKPOINT_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// What the dialog says under its path line.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Being checked and loaded.
    Working(String),
    /// Added and running.
    Done(String),
    /// Refused: why (nothing was changed).
    Refused(String),
}

/// The dialog's state.
pub struct WeightsDialog {
    /// Whether the dialog is shown.
    pub open: bool,
    path_text: String,
    dir: PathBuf,
    entries: Vec<(String, PathBuf, bool)>,
    /// Store the two networks as safetensors instead of a copy of the file.
    safetensors: bool,
    /// What is installed, one line per checkpoint (listed when the dialog opens).
    installed: Vec<String>,
    /// The last add's outcome.
    pub outcome: Option<Outcome>,
    /// The path field takes the keyboard at the next draw.
    focus: bool,
}

impl Default for WeightsDialog {
    fn default() -> Self {
        Self {
            open: false,
            path_text: String::new(),
            dir: dirs::download_dir()
                .or_else(dirs::home_dir)
                .unwrap_or_else(|| PathBuf::from("/")),
            entries: Vec::new(),
            safetensors: false,
            installed: Vec::new(),
            outcome: None,
            focus: false,
        }
    }
}

impl WeightsDialog {
    /// Opens the dialog, on `file` if given (a dropped checkpoint), else browsing the last folder.
    pub fn open(&mut self, file: Option<PathBuf>) {
        self.open = true;
        self.focus = true;
        if !matches!(self.outcome, Some(Outcome::Working(_))) {
            self.outcome = None;
        }
        self.refresh_installed();
        match file {
            Some(f) if f.is_dir() => self.browse(f),
            Some(f) => {
                if let Some(parent) = f.parent() {
                    self.browse(parent.to_path_buf());
                }
                self.path_text = f.display().to_string();
            }
            None => {
                let d = self.dir.clone();
                self.browse(d);
            }
        }
    }

    /// Lists the checkpoints installed, with their config and whether they load.
    pub fn refresh_installed(&mut self) {
        self.installed = models::list(&models::folders())
            .into_iter()
            .flat_map(|(folder, files)| {
                files.into_iter().map(move |c| {
                    let name = c
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let state = match &c.problem {
                        None => "loads".to_string(),
                        Some(p) => format!("does not load: {p}"),
                    };
                    format!(
                        "{name} ({}, {:.0} MB) in {}: {state}",
                        c.config,
                        c.bytes as f64 / 1e6,
                        folder.path.display()
                    )
                })
            })
            .collect();
    }

    fn browse(&mut self, dir: PathBuf) {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            self.outcome = Some(Outcome::Refused(format!(
                "{}: not a folder that can be read",
                dir.display()
            )));
            return;
        };
        let mut entries = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                entries.push((format!("{name}/"), p, true));
            } else if is_checkpoint(&p) {
                entries.push((name, p, false));
            }
        }
        entries.sort_by(|a, b| {
            b.2.cmp(&a.2)
                .then_with(|| crate::media::frames::natural_cmp(&a.0, &b.0))
        });
        self.path_text = dir.display().to_string();
        self.dir = dir;
        self.entries = entries;
    }

    /// Draws the dialog; returns the add action when the user confirms a file.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Action> {
        if !self.open {
            return None;
        }
        let mut open = true;
        let mut go: Option<PathBuf> = None;
        let mut add = false;
        let working = matches!(self.outcome, Some(Outcome::Working(_)));
        egui::Window::new("Add FOMM weights")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.label(models::WHERE_TO_GET);
                ui.separator();
                ui.horizontal(|ui| {
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut self.path_text)
                            .desired_width(480.0)
                            .hint_text("a checkpoint file (.pth.tar, .safetensors) or a folder"),
                    );
                    if std::mem::take(&mut self.focus) {
                        edit.request_focus();
                    }
                    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if enter {
                        go = Some(PathBuf::from(self.path_text.trim()));
                    }
                });
                egui::ScrollArea::vertical()
                    .max_height(160.0)
                    .id_salt("checkpoint-files")
                    .show(ui, |ui| {
                        if let Some(parent) = self.dir.parent()
                            && ui.selectable_label(false, "../").clicked()
                        {
                            go = Some(parent.to_path_buf());
                        }
                        for (name, path, _) in &self.entries {
                            let current = Path::new(self.path_text.trim()) == path;
                            if ui.selectable_label(current, name.as_str()).clicked() {
                                if path.is_dir() {
                                    go = Some(path.clone());
                                } else {
                                    self.path_text = path.display().to_string();
                                }
                            }
                        }
                    });
                ui.checkbox(
                    &mut self.safetensors,
                    "Store as safetensors (the two networks only, about a third of the size)",
                );
                ui.horizontal(|ui| {
                    let ready = !working && Path::new(self.path_text.trim()).is_file();
                    if ui.add_enabled(ready, egui::Button::new("Add")).clicked() {
                        add = true;
                    }
                    if working {
                        ui.spinner();
                    }
                });
                match &self.outcome {
                    Some(Outcome::Working(m)) | Some(Outcome::Done(m)) => {
                        ui.label(m);
                    }
                    Some(Outcome::Refused(m)) => {
                        ui.colored_label(ui.visuals().error_fg_color, m);
                    }
                    None => {}
                }
                ui.separator();
                ui.label("Installed:");
                if self.installed.is_empty() {
                    ui.label("nothing yet");
                }
                for line in &self.installed {
                    ui.label(line);
                }
            });
        if !open {
            self.open = false;
        }
        if let Some(p) = go {
            if p.is_dir() {
                self.browse(p);
            } else {
                // A file path confirmed with Enter is added at once.
                self.path_text = p.display().to_string();
                add = !working;
            }
        }
        add.then(|| Action::AddWeights {
            path: PathBuf::from(self.path_text.trim()),
            safetensors: self.safetensors,
        })
    }
}
