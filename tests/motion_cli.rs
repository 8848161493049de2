//! Motion files and provenance through the real binary: `capture-motion`, `animate --motion`
//! (the same frames as `animate --driving`), a damaged motion file, the other engine refused, and
//! what every written video and PNG says about itself (ffprobe, a PNG reader), with and without
//! the badge.

use crate::common;
use marionette::watermark::MarkEngine;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixture;

fn marionette() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marionette"))
}

fn tiny_args(cmd: &mut Command) -> &mut Command {
    cmd.args(["--engine", "fomm", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny.safetensors"))
        .arg("--cpu")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run marionette");
    assert!(
        out.status.success(),
        "marionette failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run marionette");
    assert!(!out.status.success(), "marionette should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn driving(dir: &Path) -> PathBuf {
    let d = dir.join("driving");
    std::fs::create_dir_all(&d).unwrap();
    for n in 0..3 {
        std::fs::copy(
            fixture(&format!("tiny-input-driving{n}.png")),
            d.join(format!("f{n}.png")),
        )
        .unwrap();
    }
    d
}

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

/// A PNG's pixels and its text chunks (tEXt, zTXt, iTXt), read with the png crate.
fn read_png(path: &Path) -> (Vec<u8>, Vec<(String, String)>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    reader.finish().unwrap();
    let i = reader.info();
    let mut text: Vec<(String, String)> = i
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    for c in &i.utf8_text {
        text.push((c.keyword.clone(), c.get_text().unwrap()));
    }
    (buf, text)
}

fn assert_says_animated(text: &[(String, String)], engine: &str) {
    let get = |k: &str| {
        text.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} chunk in {text:?}"))
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(get("Software"), format!("marionette {version}"));
    let comment = get("Comment");
    assert!(
        comment.contains("Synthetic animation of a portrait")
            && comment.contains(&format!("marionette {version}"))
            && comment.contains(&format!("engine: {engine}")),
        "{comment}"
    );
    assert!(get("XML:com.adobe.xmp").contains("digitalsourcetype/"));
}

fn ffprobe_comment(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format_tags=comment",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn capture_then_animate_from_the_motion_file() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = driving(tmp.path());
    let motion = tmp.path().join("motion.jsonl");
    let out = run(tiny_args(
        marionette()
            .args(["capture-motion", "--driving"])
            .arg(&driving)
            .arg("--output")
            .arg(&motion),
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote the motion of 3 frames"));
    let first_line = std::fs::read_to_string(&motion).unwrap();
    let first_line = first_line.lines().next().unwrap();
    assert!(
        first_line.contains("\"format\":\"marionette-motion\""),
        "{first_line}"
    );
    assert!(first_line.contains("\"version\":1"), "{first_line}");

    // Another portrait, from the video and from the motion file: the same PNGs, which say what
    // they are.
    let portrait = fixture("tiny2-input-source.png");
    let (from_video, from_motion) = (tmp.path().join("video"), tmp.path().join("motion"));
    run(tiny_args(
        marionette()
            .args(["animate", "--source"])
            .arg(&portrait)
            .arg("--driving")
            .arg(&driving)
            .arg("--output")
            .arg(&from_video),
    ));
    // --engine auto takes the file's engine; the checkpoint is still needed.
    run(marionette()
        .args(["animate", "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny.safetensors"))
        .arg("--source")
        .arg(&portrait)
        .arg("--motion")
        .arg(&motion)
        .arg("--output")
        .arg(&from_motion));
    let (a, b) = (pngs(&from_video), pngs(&from_motion));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    for (a, b) in a.iter().zip(&b) {
        let ((pa, ta), (pb, tb)) = (read_png(a), read_png(b));
        assert!(pa == pb, "{} and {} differ", a.display(), b.display());
        assert_says_animated(&ta, "fomm");
        assert_says_animated(&tb, "fomm");
    }

    // Videos: MP4 and MKV carry the comment.
    for ext in ["mp4", "mkv"] {
        let video = tmp.path().join(format!("out.{ext}"));
        run(tiny_args(
            marionette()
                .args(["animate", "--source"])
                .arg(&portrait)
                .arg("--motion")
                .arg(&motion)
                .arg("--output")
                .arg(&video),
        ));
        let comment = ffprobe_comment(&video);
        assert!(
            comment.contains("Synthetic animation of a portrait")
                && comment.contains(&format!("marionette {}", env!("CARGO_PKG_VERSION")))
                && comment.contains("engine: fomm"),
            "{ext}: {comment:?}"
        );
    }

    // The badge changes the bottom-right corner only.
    let badged = tmp.path().join("badged");
    run(tiny_args(
        marionette()
            .args(["animate", "--badge", "--source"])
            .arg(&portrait)
            .arg("--motion")
            .arg(&motion)
            .arg("--output")
            .arg(&badged),
    ));
    let (plain, _) = read_png(&pngs(&from_motion)[1]);
    let (with, _) = read_png(&pngs(&badged)[1]);
    let side = 256;
    let changed: Vec<(usize, usize)> = (0..side * side)
        .filter(|&i| plain[i * 3..i * 3 + 3] != with[i * 3..i * 3 + 3])
        .map(|i| (i % side, i / side))
        .collect();
    assert!(changed.len() > 100, "{} pixels changed", changed.len());
    assert!(
        changed
            .iter()
            .all(|&(x, y)| x >= side * 2 / 3 && y >= side * 7 / 8)
    );

    refusals_name_what_is_wrong(tmp.path(), &portrait, &motion);
}

/// A motion file given to the wrong engine, with smoothing, hand-edited or cut short: refused,
/// with a message that says why (and where in the file).
fn refusals_name_what_is_wrong(tmp: &Path, portrait: &Path, motion: &Path) {
    // The other engine is refused, clearly.
    let err = fails(
        marionette()
            .args(["animate", "--engine", "classic", "--source"])
            .arg(portrait)
            .arg("--motion")
            .arg(motion)
            .arg("--output")
            .arg(tmp.join("classic")),
    );
    assert!(err.contains("captured with the fomm engine"), "{err}");

    // A motion file is replayed as recorded (before smoothing): smoothing it is refused, not
    // silently skipped.
    let err = fails(tiny_args(
        marionette()
            .args(["animate", "--smoothing", "on", "--source"])
            .arg(portrait)
            .arg("--motion")
            .arg(motion)
            .arg("--output")
            .arg(tmp.join("smoothed")),
    ));
    assert!(err.contains("--smoothing"), "{err}");

    // A hand-edited file: the error names the file and the line.
    let text = std::fs::read_to_string(motion).unwrap();
    let damaged = tmp.join("damaged.jsonl");
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 3 {
                l.replacen("\"keypoints\":[[", "\"keypoints\":[[1,2,", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&damaged, edited.join("\n")).unwrap();
    let err = fails(tiny_args(
        marionette()
            .args(["animate", "--source"])
            .arg(portrait)
            .arg("--motion")
            .arg(&damaged)
            .arg("--output")
            .arg(tmp.join("damaged-out")),
    ));
    assert!(err.contains("damaged.jsonl line 4"), "{err}");
    // Truncated in the middle of a line.
    std::fs::write(&damaged, &text[..text.len() - 40]).unwrap();
    let err = fails(tiny_args(
        marionette()
            .args(["animate", "--source"])
            .arg(portrait)
            .arg("--motion")
            .arg(&damaged)
            .arg("--output")
            .arg(tmp.join("truncated-out")),
    ));
    assert!(err.contains("line 5") && err.contains("cut short"), "{err}");
}

#[test]
fn animate_from_video_writes_provenance_too() {
    let tmp = tempfile::tempdir().unwrap();
    let driving = driving(tmp.path());
    let video = tmp.path().join("classic.mp4");
    run(marionette()
        .args(["animate", "--engine", "classic", "--source"])
        .arg(fixture("tiny-input-source.png"))
        .arg("--driving")
        .arg(&driving)
        .arg("--output")
        .arg(&video));
    let comment = ffprobe_comment(&video);
    assert!(comment.contains("engine: classic"), "{comment:?}");
}

#[test]
fn a_live_run_records_motion_and_says_it_is_animated() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let motion = tmp.path().join("live.jsonl");
    let live = |extra: &[&str], record: &Path| {
        run(marionette()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MARIONETTE_MODEL_DIR", models.path())
            .args(["run", "--test-pattern", "--vcam", "none", "--frames", "30"])
            .args(extra)
            .arg("--record")
            .arg(record))
    };
    let out = live(
        &["--badge", "--record-motion", motion.to_str().unwrap()],
        &rec,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recording the motion to"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every PNG says it is animated and carries the badge (white letters in the corner).
    let files = pngs(&rec);
    assert!(files.len() >= 10, "{} frames recorded", files.len());
    for f in [&files[0], files.last().unwrap()] {
        let (pixels, text) = read_png(f);
        assert_says_animated(&text, "classic");
        // White letters in the corner; none elsewhere once the invisible mark (which can push
        // a near-white pixel of the portrait to white) is taken off again.
        let side = (pixels.len() / 3).isqrt();
        let in_corner = |i: usize| i % side >= side * 2 / 3 && i / side >= side * 7 / 8;
        let white = |p: &[u8], i: usize| p[i * 3..i * 3 + 3] == [255, 255, 255];
        let corner = (0..side * side)
            .filter(|&i| in_corner(i) && white(&pixels, i))
            .count();
        let unmarked = common::without_mark(&pixels, side as u32, side as u32, MarkEngine::Classic);
        let elsewhere = (0..side * side)
            .filter(|&i| !in_corner(i) && white(&unmarked, i))
            .count();
        assert!(
            corner > 20 && elsewhere == 0,
            "{}: no badge ({corner} white pixels in the corner, {elsewhere} elsewhere)",
            f.display()
        );
    }
    // The motion file reads back, and animates another portrait.
    let text = std::fs::read_to_string(&motion).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("\"engine\":\"classic\"") && lines[0].contains("\"fps\":null"));
    assert!(lines[1].contains("\"type\":\"reference\""), "{}", lines[1]);
    assert!(lines.len() >= 6, "{} lines", lines.len());
    let replay = tmp.path().join("replay");
    run(marionette()
        .args(["animate", "--source"])
        .arg(fixture("tiny-input-source.png"))
        .arg("--motion")
        .arg(&motion)
        .arg("--output")
        .arg(&replay));
    assert!(pngs(&replay).len() >= 5);

    // A video recording carries the comment.
    let video = tmp.path().join("live.mp4");
    live(&[], &video);
    let comment = ffprobe_comment(&video);
    assert!(comment.contains("engine: classic"), "{comment:?}");
}
