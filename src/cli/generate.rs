//! `marionette generate man|completions DIR` (hidden): the man pages and shell completions, made
//! from the command line's own definitions, for packaging (packaging/build-deb.sh).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

/// What `generate` writes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Generated {
    /// marionette.1 and one page per command (marionette-run.1, ...).
    Man,
    /// bash (marionette.bash), zsh (_marionette) and fish (marionette.fish).
    Completions,
}

/// `marionette generate`'s arguments.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// What to write.
    pub what: Generated,
    /// The folder to write into (created if missing).
    pub dir: PathBuf,
}

/// Runs `generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    match args.what {
        Generated::Man => man_pages(dir)
            .with_context(|| format!("writing the man pages into {}", dir.display()))?,
        Generated::Completions => {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut Cli::command(), "marionette", dir)
                    .with_context(|| {
                        format!("writing the {shell} completions into {}", dir.display())
                    })?;
            }
        }
    }
    Ok(())
}

/// marionette.1 (with EXAMPLES, FILES and ENVIRONMENT) and one page per visible command.
fn man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::Man::new(sub.clone()).generate_to(dir)?;
    }
    let man = clap_mangen::Man::new(root);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    for (title, entries) in [
        ("EXAMPLES", EXAMPLES),
        ("FILES", FILES),
        ("ENVIRONMENT", ENVIRONMENT),
    ] {
        page.extend_from_slice(format!(".SH {title}\n").as_bytes());
        for (term, text) in entries {
            page.extend_from_slice(
                format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)).as_bytes(),
            );
        }
    }
    page.extend_from_slice(
        b".SH SEE ALSO\n\\fBmarionette\\-models\\fR(1), \\fBmarionette\\-run\\fR(1), \\fBmarionette\\-window\\fR(1), \\fBmarionette\\-animate\\fR(1)\n",
    );
    man.render_version_section(&mut page)?;
    std::fs::write(dir.join(man.get_filename()), page)
}

/// Text as roff takes it: backslashes and minus signs escaped, no line starting with a dot.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The EXAMPLES section of marionette(1).
const EXAMPLES: &[(&str, &str)] = &[
    (
        "marionette",
        "Opens the window: pick a portrait, look at the camera, and you appear animated in the preview and in the virtual camera (webcam if there is one, else the portrait moves by itself).",
    ),
    (
        "sudo marionette-setup-virtual-camera",
        "Once: the virtual camera (v4l2loopback as /dev/video10, \"marionette\") that Zoom, Teams, Meet and browsers list.",
    ),
    (
        "marionette models add ~/Downloads/vox-adv-cpk.pth.tar",
        "Checks a published FOMM checkpoint and copies it where every run finds it: the portrait then moves its mouth and eyes too (see marionette-models(1) for where to get it).",
    ),
    (
        "marionette run --camera 0 --vcam /dev/video10 --stats",
        "The live loop without a window, from a given webcam to the virtual camera, printing statistics.",
    ),
    (
        "marionette animate --source portrait.jpg --driving video.mp4 --output result.mp4",
        "Animates a portrait offline with a driving video.",
    ),
    (
        "marionette capture-motion --driving performer.mp4 --output motion.jsonl",
        "Records the motion of a performance, to animate any portrait later with animate --motion.",
    ),
];

/// The FILES section of marionette(1).
const FILES: &[(&str, &str)] = &[
    (
        "~/.config/marionette/settings.toml",
        "The window's settings ($XDG_CONFIG_HOME/marionette); a damaged file is kept aside as settings.toml.broken.",
    ),
    (
        "~/.local/share/marionette/avatars/",
        "Your portraits, added in the window ($XDG_DATA_HOME/marionette).",
    ),
    (
        "~/.local/share/marionette/models/",
        "Your FOMM checkpoints (marionette models add); a checkpoint's config may sit beside it as NAME.yaml.",
    ),
    (
        "/usr/share/marionette/",
        "The bundled portraits, the published model configs and the installation's models folder.",
    ),
    (
        "/etc/modprobe.d/marionette-v4l2loopback.conf",
        "The virtual camera's module options, written by marionette-setup-virtual-camera (with /etc/modules-load.d/marionette-v4l2loopback.conf).",
    ),
];

/// The ENVIRONMENT section of marionette(1).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "MARIONETTE_MODEL_DIR",
        "The only folder searched for FOMM checkpoints.",
    ),
    (
        "MARIONETTE_CPU",
        "Caps the processor instructions the model uses: native (default), avx512-bf16, avx512, avx2 or baseline.",
    ),
    (
        "MARIONETTE_AUTO_PRECISION",
        "f32 or bf16: what --precision auto takes where bf16 runs natively, instead of measuring.",
    ),
    (
        "RUST_LOG",
        "Log filter, as --log (e.g. info, marionette=debug).",
    ),
    (
        "XDG_CONFIG_HOME, XDG_DATA_HOME",
        "Where settings, portraits and models are kept (default ~/.config and ~/.local/share).",
    ),
    (
        "WGPU_BACKEND",
        "vulkan or gl: forces the window's graphics backend.",
    ),
];
