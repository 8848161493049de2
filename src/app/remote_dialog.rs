//! The "Render on another machine" dialog: the address of a machine running `marionette serve`
//! and the pairing secret it printed. Connect switches the engine to one that renders there
//! (and here whenever the server is out of reach); "Render here" switches back. The same choice
//! as `run --remote`, in the window.

use super::ui::Action;
use super::weights_dialog::Outcome;

/// The dialog's state.
#[derive(Default)]
pub struct RemoteDialog {
    /// Whether the dialog is shown.
    pub open: bool,
    /// `HOST` or `HOST:PORT`, as `serve` printed it.
    pub server: String,
    secret: String,
    /// The last switch's outcome.
    pub outcome: Option<Outcome>,
    /// The server the engine renders on now, if any.
    pub rendering_on: Option<String>,
    /// The server field takes the keyboard at the next draw.
    focus: bool,
}

impl RemoteDialog {
    /// Opens the dialog.
    pub fn open(&mut self) {
        self.open = true;
        self.focus = true;
        if !matches!(self.outcome, Some(Outcome::Working(_))) {
            self.outcome = None;
        }
    }

    /// Draws the dialog; returns the connect or render-here action when the user asks for one.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Action> {
        if !self.open {
            return None;
        }
        let mut open = true;
        let mut action = None;
        let working = matches!(self.outcome, Some(Outcome::Working(_)));
        egui::Window::new("Render on another machine")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.label(
                    "On the faster machine run `marionette serve`: it prints its port and a \
                     pairing secret. The camera, the framing and the keypoints stay here; the \
                     portrait is rendered there and comes back compressed. While the server \
                     is out of reach, this machine renders.",
                );
                ui.separator();
                egui::Grid::new("remote-fields")
                    .num_columns(2)
                    .show(ui, |ui| {
                        ui.label("Server");
                        let edit = ui.add(
                            egui::TextEdit::singleline(&mut self.server)
                                .desired_width(320.0)
                                .hint_text("HOST or HOST:PORT"),
                        );
                        if std::mem::take(&mut self.focus) {
                            edit.request_focus();
                        }
                        ui.end_row();
                        ui.label("Pairing secret");
                        ui.add(
                            egui::TextEdit::singleline(&mut self.secret)
                                .desired_width(320.0)
                                .password(true)
                                .hint_text("the 32 hex digits serve printed"),
                        );
                        ui.end_row();
                    });
                ui.horizontal(|ui| {
                    let ready = !working
                        && !self.server.trim().is_empty()
                        && !self.secret.trim().is_empty();
                    if ui
                        .add_enabled(ready, egui::Button::new("Connect"))
                        .clicked()
                    {
                        action = Some(Action::ConnectRemote {
                            server: self.server.trim().to_string(),
                            secret: self.secret.trim().to_string(),
                        });
                    }
                    if self.rendering_on.is_some()
                        && ui
                            .add_enabled(!working, egui::Button::new("Render here"))
                            .clicked()
                    {
                        action = Some(Action::RenderHere);
                    }
                    if working {
                        ui.spinner();
                    }
                });
                if let Some(s) = &self.rendering_on {
                    ui.label(format!("rendering on {s} while it answers"));
                }
                match &self.outcome {
                    Some(Outcome::Working(m)) | Some(Outcome::Done(m)) => {
                        ui.label(m);
                    }
                    Some(Outcome::Refused(m)) => {
                        ui.colored_label(ui.visuals().error_fg_color, m);
                    }
                    None => {}
                }
            });
        if !open {
            self.open = false;
        }
        action
    }
}
