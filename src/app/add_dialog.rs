//! The add-portrait dialog: pick an image (browse, type a path, or drop a file on the window),
//! frame a square around the face (drag the box, scroll or slide to resize), name it, add it.
//! An in-window dialog rather than the desktop's: it works the same on every desktop and under
//! Xvfb, and needs no portal or toolkit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::gallery::CropBox;
use super::ui::Action;

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];
/// The crop editor's size on screen.
const EDITOR: f32 = 320.0;

struct Loaded {
    path: PathBuf,
    image: Arc<RgbImage>,
    texture: egui::TextureHandle,
}

/// The dialog's state: the folder being browsed, the picture loaded, the crop and the name.
pub struct AddDialog {
    /// Whether the dialog is shown.
    pub open: bool,
    path_text: String,
    dir: PathBuf,
    entries: Vec<(String, PathBuf, bool)>,
    loaded: Option<Loaded>,
    crop: CropBox,
    name: String,
    error: Option<String>,
}

impl Default for AddDialog {
    fn default() -> Self {
        Self {
            open: false,
            path_text: String::new(),
            dir: dirs::picture_dir()
                .or_else(dirs::home_dir)
                .unwrap_or_else(|| PathBuf::from("/")),
            entries: Vec::new(),
            loaded: None,
            crop: CropBox {
                x: 0.0,
                y: 0.0,
                side: 1.0,
            },
            name: String::new(),
            error: None,
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl AddDialog {
    /// Opens the dialog, on `file` if given (a dropped file), else browsing the last folder.
    pub fn open(&mut self, ctx: &egui::Context, file: Option<PathBuf>) {
        self.open = true;
        self.error = None;
        match file {
            Some(f) if f.is_dir() => self.browse(f),
            Some(f) => {
                if let Some(parent) = f.parent() {
                    self.browse(parent.to_path_buf());
                }
                self.load(ctx, &f);
            }
            None => {
                let d = self.dir.clone();
                self.browse(d);
            }
        }
    }

    fn browse(&mut self, dir: PathBuf) {
        let mut entries = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let p = e.path();
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    if p.is_dir() {
                        entries.push((format!("{name}/"), p, true));
                    } else if is_image(&p) {
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
            Err(e) => self.error = Some(format!("{}: {e}", dir.display())),
        }
    }

    fn load(&mut self, ctx: &egui::Context, path: &Path) {
        match crate::media::frames::load_rgb(path) {
            Ok(img) => {
                let (w, h) = img.dimensions();
                let color = egui::ColorImage::from_rgb([w as usize, h as usize], img.as_raw());
                let texture = ctx.load_texture("add-portrait", color, egui::TextureOptions::LINEAR);
                self.crop = CropBox::suggest(w, h);
                self.name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.path_text = path.display().to_string();
                self.loaded = Some(Loaded {
                    path: path.to_path_buf(),
                    image: Arc::new(img),
                    texture,
                });
                self.error = None;
            }
            Err(e) => {
                self.loaded = None;
                self.error = Some(format!("{e}: pick a PNG, JPEG, WebP, BMP or TIFF image"));
            }
        }
    }

    /// Draws the dialog; returns the add action when the user confirms.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Action> {
        if !self.open {
            return None;
        }
        let mut open = true;
        let mut result = None;
        let mut go: Option<PathBuf> = None;
        egui::Window::new("Add a portrait")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut self.path_text)
                            .desired_width(480.0)
                            .hint_text("a folder or an image file"),
                    );
                    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if ui.button("Open").clicked() || enter {
                        go = Some(PathBuf::from(self.path_text.trim()));
                    }
                });
                if let Some(e) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(220.0);
                        ui.set_min_height(EDITOR);
                        egui::ScrollArea::vertical()
                            .max_height(EDITOR)
                            .id_salt("files")
                            .show(ui, |ui| {
                                if let Some(parent) = self.dir.parent()
                                    && ui.selectable_label(false, "../").clicked()
                                {
                                    go = Some(parent.to_path_buf());
                                }
                                for (name, path, _) in &self.entries {
                                    let current =
                                        self.loaded.as_ref().is_some_and(|l| &l.path == path);
                                    if ui.selectable_label(current, name.as_str()).clicked() {
                                        go = Some(path.clone());
                                    }
                                }
                            });
                    });
                    ui.vertical(|ui| {
                        if let Some(l) = &self.loaded {
                            crop_editor(ui, l, &mut self.crop);
                        } else {
                            let (rect, _) = ui.allocate_exact_size(
                                egui::vec2(EDITOR, EDITOR),
                                egui::Sense::hover(),
                            );
                            ui.painter()
                                .rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
                            ui.painter().text(
                                rect.center(),
                                egui::Align2::CENTER_CENTER,
                                "Pick an image on the left,\nor drop one on the window.",
                                egui::FontId::proportional(14.0),
                                ui.visuals().weak_text_color(),
                            );
                        }
                    });
                });
                ui.horizontal(|ui| {
                    ui.label("Name");
                    ui.add(egui::TextEdit::singleline(&mut self.name).desired_width(200.0));
                    let ready = self.loaded.is_some();
                    if ui.add_enabled(ready, egui::Button::new("Add")).clicked()
                        && let Some(l) = &self.loaded
                    {
                        result = Some(Action::AddPortrait {
                            path: l.path.clone(),
                            crop: self.crop,
                            name: if self.name.trim().is_empty() {
                                "portrait".into()
                            } else {
                                self.name.trim().to_string()
                            },
                        });
                    }
                    if ui.button("Cancel").clicked() {
                        self.open = false;
                    }
                });
            });
        if let Some(p) = go {
            if p.is_dir() {
                self.browse(p);
            } else {
                self.load(ctx, &p);
            }
        }
        if !open || result.is_some() {
            self.open = false;
            self.loaded = None;
        }
        result
    }
}

/// The image fitted into the editor with the square crop box over it: drag to move, scroll or
/// the slider to resize.
fn crop_editor(ui: &mut egui::Ui, l: &Loaded, crop: &mut CropBox) {
    let (w, h) = l.image.dimensions();
    let scale = EDITOR / w.max(h) as f32;
    let size = egui::vec2(w as f32 * scale, h as f32 * scale);
    let (rect, resp) = ui.allocate_exact_size(size, egui::Sense::drag());
    let painter = ui.painter_at(rect);
    painter.image(
        l.texture.id(),
        rect,
        egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
        egui::Color32::WHITE,
    );
    if resp.dragged() {
        let d = resp.drag_delta() / scale;
        crop.x += d.x;
        crop.y += d.y;
    }
    if resp.hovered() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0 {
            let c = (crop.x + crop.side / 2.0, crop.y + crop.side / 2.0);
            crop.side *= (1.0 + scroll / 1000.0).clamp(0.8, 1.25);
            crop.x = c.0 - crop.side / 2.0;
            crop.y = c.1 - crop.side / 2.0;
        }
    }
    *crop = crop.clamped(w, h);
    let boxr = egui::Rect::from_min_size(
        rect.min + egui::vec2(crop.x, crop.y) * scale,
        egui::vec2(crop.side, crop.side) * scale,
    );
    // Dim what is cut away.
    let dim = egui::Color32::from_black_alpha(140);
    for r in [
        egui::Rect::from_min_max(rect.min, egui::pos2(rect.max.x, boxr.min.y)),
        egui::Rect::from_min_max(egui::pos2(rect.min.x, boxr.max.y), rect.max),
        egui::Rect::from_min_max(
            egui::pos2(rect.min.x, boxr.min.y),
            egui::pos2(boxr.min.x, boxr.max.y),
        ),
        egui::Rect::from_min_max(
            egui::pos2(boxr.max.x, boxr.min.y),
            egui::pos2(rect.max.x, boxr.max.y),
        ),
    ] {
        painter.rect_filled(r, 0.0, dim);
    }
    painter.rect_stroke(
        boxr,
        0.0,
        egui::Stroke::new(2.0, egui::Color32::YELLOW),
        egui::StrokeKind::Inside,
    );
    let mut side = crop.side;
    let max = w.min(h) as f32;
    if ui
        .add(egui::Slider::new(&mut side, 16.0_f32.min(max)..=max).text("square size (px)"))
        .changed()
    {
        let c = (crop.x + crop.side / 2.0, crop.y + crop.side / 2.0);
        crop.side = side;
        crop.x = c.0 - side / 2.0;
        crop.y = c.1 - side / 2.0;
        *crop = crop.clamped(w, h);
    }
    ui.label("Drag the square onto the face; scroll up or down to grow or shrink it.");
}
