//! The "Render on another machine" dialog: the address of a machine running `marionette serve`
//! and the pairing secret it printed. Connect switches the engine to one that renders there
//! (and here whenever the server is out of reach); "Render here" switches back. The same choice
//! as `run --remote`, in the window.

use super::ui::{Action, Hidden};
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
    /// Whether that server answers now (`None`: not known yet).
    pub connected: Option<bool>,
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
        let mut entered = false;
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
                        let secret = ui.add(
                            egui::TextEdit::singleline(&mut self.secret)
                                .desired_width(320.0)
                                .password(true)
                                .hint_text("the 32 hex digits serve printed"),
                        );
                        // Enter in the secret field connects, as the button does.
                        entered =
                            secret.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                        ui.end_row();
                    });
                ui.horizontal(|ui| {
                    let ready = !working
                        && !self.server.trim().is_empty()
                        && !self.secret.trim().is_empty();
                    let button = ui.add_enabled(ready, egui::Button::new("Connect"));
                    if button.clicked() || (ready && entered) {
                        action = Some(Action::ConnectRemote {
                            server: self.server.trim().to_string(),
                            secret: Hidden(self.secret.trim().to_string()),
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
                match (&self.rendering_on, self.connected) {
                    (Some(s), Some(true)) => {
                        ui.label(format!("{s} renders the portrait"));
                    }
                    (Some(s), Some(false)) => {
                        ui.colored_label(
                            ui.visuals().warn_fg_color,
                            format!("{s} does not answer: this machine renders meanwhile"),
                        );
                    }
                    (Some(s), None) => {
                        ui.label(format!("rendering on {s} while it answers"));
                    }
                    (None, _) => {}
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
