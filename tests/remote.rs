//! Rendering on another machine, over loopback: `remote::server` with the tiny FOMM fixture, and
//! clients speaking the protocol through the encrypted channel. A remote frame equals the local
//! one bit for bit (raw frames); clients share the server fairly; a full server refuses clearly
//! and a departed client frees its place; hostile peers (a wrong secret, garbage, a motion out
//! of order, a flood of silent connections) are refused while the others keep their frames.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use marionette::engine::Animator;
use marionette::engine::fomm::FommAnimator;
use marionette::engine::smoothing::Smoothing;
use marionette::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use marionette::motion::{FrameMotion, KeypointSet, ReferenceMotion};
use marionette::remote::channel::{Channel, ChannelError, Secret};
use marionette::remote::server::{EngineFactory, Server, ServerOptions};
use marionette::remote::wire::{Message, VERSIONS};

use crate::common::fixture;

fn model() -> Fomm {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).expect("config");
    let ckpt = Checkpoint::load(&fixture("tiny-zip.pth.tar")).expect("checkpoint");
    Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).expect("model")
}

fn factory(model: &Fomm) -> EngineFactory {
    let model = model.clone();
    Arc::new(move || {
        Ok(
            Box::new(FommAnimator::new(model.clone(), TransferOptions::default()))
                as Box<dyn Animator + Send>,
        )
    })
}

fn serve(model: &Fomm, max_clients: usize, secret: &Secret) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    Server::start(
        listener,
        ServerOptions {
            max_clients,
            secret: secret.clone(),
            engines: factory(model),
        },
    )
    .expect("the server starts")
}

/// A picture as the model's input tensor, at `side`.
fn picture(name: &str, side: u32) -> (Vec<u8>, Tensor) {
    let img = image::open(fixture(name)).expect("fixture").to_rgb8();
    let img = image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
    let t = rgb8_to_tensor(img.as_raw(), side as usize, side as usize).expect("tensor");
    (img.into_raw(), t)
}

fn keypoints(model: &Fomm, t: &Tensor) -> KeypointSet {
    KeypointSet::from_keypoints(&model.detect(t).expect("detect")).expect("keypoints")
}

/// Connects and says hello; the server's answer.
fn hello(addr: std::net::SocketAddr, secret: &Secret) -> (Channel<TcpStream>, Message) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut ch = Channel::connect(stream, secret).expect("handshake");
    ch.send(&Message::Hello { versions: VERSIONS }).unwrap();
    let answer = ch.recv().expect("an answer to hello");
    (ch, answer)
}

/// A client that has sent its portrait and reference.
fn ready_client(
    addr: std::net::SocketAddr,
    secret: &Secret,
    portrait: &[u8],
    reference: &KeypointSet,
) -> Channel<TcpStream> {
    let (mut ch, answer) = hello(addr, secret);
    let Message::Welcome { side, .. } = answer else {
        panic!("not welcomed: {answer:?}");
    };
    assert_eq!(side, 256);
    ch.send(&Message::Portrait {
        id: 1,
        side,
        rgb: portrait.to_vec(),
    })
    .unwrap();
    ch.send(&Message::Reference {
        keypoints: reference.clone(),
    })
    .unwrap();
    ch
}

#[test]
fn a_remote_frame_equals_the_local_one() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let (portrait, portrait_t) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let mut ch = ready_client(server.addr(), &secret, &portrait, &k0);
    ch.send(&Message::Motion {
        seq: 1,
        keypoints: k1.clone(),
    })
    .unwrap();
    let Message::Frame { seq, data, .. } = ch.recv().expect("a frame") else {
        panic!("not a frame");
    };
    assert_eq!(seq, 1);
    // The same motion rendered here.
    let mut local = FommAnimator::new(model.clone(), TransferOptions::default());
    local.set_smoothing(Smoothing::OFF);
    local.select_portrait(1, &portrait_t).unwrap();
    local
        .set_reference_motion(&ReferenceMotion::Fomm(k0))
        .unwrap();
    let want = tensor_to_rgb8(&local.animate_motion(&FrameMotion::Fomm(k1)).unwrap()).unwrap();
    assert_eq!(data.len(), want.as_raw().len());
    assert!(
        data == *want.as_raw(),
        "the remote frame differs from the local one"
    );
    drop(ch);
    server.stop();
}

/// Streams motions as fast as the server takes them and counts the frames that come back, until
/// `stop`.
fn streaming_client(
    addr: std::net::SocketAddr,
    secret: Secret,
    portrait: Vec<u8>,
    reference: KeypointSet,
    motion: KeypointSet,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let ch = ready_client(addr, &secret, &portrait, &reference);
        let (mut rx, mut tx) = ch.split().unwrap();
        let sender = thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let m = Message::Motion {
                    seq,
                    keypoints: motion.clone(),
                };
                if tx.send(&m).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        while let Ok(Message::Frame { .. }) = rx.recv() {
            frames.fetch_add(1, Ordering::SeqCst);
        }
        let _ = sender.join();
    })
}

#[test]
fn four_clients_share_the_server_fairly() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let clients: Vec<_> = counts
        .iter()
        .map(|c| {
            streaming_client(
                server.addr(),
                secret.clone(),
                portrait.clone(),
                k0.clone(),
                k1.clone(),
                c.clone(),
                stop.clone(),
            )
        })
        .collect();
    // Until every client has frames, then a measured stretch.
    let t = Instant::now();
    while counts.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "a client got no frame"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // From here until the client with the fewest has 10 more: the counts are taken at once.
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let since = || -> Vec<u64> {
        counts
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Ordering::SeqCst) - b)
            .collect()
    };
    let t = Instant::now();
    let got = loop {
        let got = since();
        if got.iter().all(|&n| n >= 10) {
            break got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "not every client got 10 frames in 2 minutes: {got:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::SeqCst);
    server.stop();
    for c in clients {
        c.join().unwrap();
    }
    let (min, max) = (
        *got.iter().min().unwrap() as f64,
        *got.iter().max().unwrap() as f64,
    );
    eprintln!(
        "frames per client while the fewest got 10 ({:.1} s): {got:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        max <= min * 1.2,
        "the shares differ by more than 20 %: {got:?}"
    );
}

#[test]
fn a_full_server_says_so_and_a_departed_client_frees_its_place() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 2, &secret);
    let (a, answer) = hello(server.addr(), &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    let (_b, answer) = hello(server.addr(), &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    let (_, answer) = hello(server.addr(), &secret);
    match answer {
        Message::Refused { reason } => assert!(reason.contains("2 clients"), "{reason}"),
        other => panic!("a third client was not refused: {other:?}"),
    }
    // The first goes: a new client gets its place (once the server has seen it go).
    drop(a);
    let t = Instant::now();
    loop {
        let (_c, answer) = hello(server.addr(), &secret);
        if matches!(answer, Message::Welcome { .. }) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the departed client's place was not freed: {answer:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn hostile_peers_are_refused_and_the_others_keep_their_frames() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let addr = server.addr();
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let good = streaming_client(
        addr,
        secret.clone(),
        portrait.clone(),
        k0.clone(),
        k1.clone(),
        frames.clone(),
        stop.clone(),
    );
    let t = Instant::now();
    while frames.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no frame before the attack"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let before = frames.load(Ordering::SeqCst);

    // A wrong secret: the handshake fails on both sides.
    let stream = TcpStream::connect(addr).unwrap();
    let wrong = Channel::connect(stream, &Secret::generate().unwrap());
    assert!(matches!(wrong, Err(ChannelError::WrongSecret)), "{wrong:?}");
    // Garbage: closed without an answer.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    let _ = junk.write_all(b"\x00\x20GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(matches!(junk.read(&mut buf), Ok(0) | Err(_)));
    // A client with the secret whose motions go backwards: disconnected.
    let mut backwards = ready_client(addr, &secret, &portrait, &k0);
    for seq in [5, 4] {
        let _ = backwards.send(&Message::Motion {
            seq,
            keypoints: k1.clone(),
        });
    }
    let t = Instant::now();
    loop {
        match backwards.recv() {
            Ok(Message::Frame { .. }) => {}
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not disconnected");
    }
    // A flood of connections that never say anything.
    let flood: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    thread::sleep(Duration::from_secs(1));
    let during = frames.load(Ordering::SeqCst) - before;
    drop(flood);
    // Once the flood's handshakes have timed out, a new client is served.
    thread::sleep(Duration::from_secs(6));
    let (_late, answer) = hello(addr, &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    stop.store(true, Ordering::SeqCst);
    server.stop();
    good.join().unwrap();
    eprintln!("the good client's frames while attacked: {during}");
    assert!(
        during >= 5,
        "the good client got {during} frames during the attack"
    );
}

#[test]
fn serve_prints_how_to_connect_serves_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--secret-file")
        .arg(&secret_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("marionette serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut secret) = (None, None);
    let mut line = String::new();
    while addr.is_none() || secret.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve ended early");
        if let Some(rest) = line.strip_prefix("listening on ") {
            addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if line.starts_with("pairing secret") {
            let text = line.rsplit(": ").next().unwrap();
            secret = Some(Secret::parse(text).expect("the printed secret parses"));
        }
    }
    let (addr, secret): (std::net::SocketAddr, Secret) = (addr.unwrap(), secret.unwrap());
    // The file holds the same secret, readable by its owner only.
    let kept = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(Secret::parse(&kept).unwrap(), secret);
    let model = model();
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let k0 = keypoints(&model, &d0);
    let mut ch = ready_client(addr, &secret, &portrait, &k0);
    ch.send(&Message::Motion {
        seq: 1,
        keypoints: k0,
    })
    .unwrap();
    assert!(matches!(
        ch.recv().expect("a frame"),
        Message::Frame { seq: 1, .. }
    ));
    drop(ch);
    // Ctrl-C: a clean stop that says what it served.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not stop on Ctrl-C"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    use std::io::Read;
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "exit {status}: {rest}");
    assert!(
        rest.contains("stopped: 1 clients served, 1 frames rendered"),
        "{rest}"
    );
}

#[test]
fn the_client_says_what_went_wrong_and_sees_its_server_go() {
    use marionette::remote::client::{RemoteClient, RemoteError};
    let model = model();
    let secret = Secret::generate().unwrap();
    // Nothing listening.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = RemoteClient::connect(&free.to_string(), &secret).err();
    assert!(
        matches!(err, Some(RemoteError::Unreachable { .. })),
        "{err:?}"
    );
    let err = RemoteClient::connect("no-such-host.invalid:1", &secret).err();
    assert!(
        matches!(err, Some(RemoteError::Unreachable { .. })),
        "{err:?}"
    );
    let server = serve(&model, 1, &secret);
    let addr = server.addr().to_string();
    // The wrong secret.
    let err = RemoteClient::connect(&addr, &Secret::generate().unwrap()).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("pairing secret")),
        "{err:?}"
    );
    // Served, with bytes counted: a FOMM motion is 242 bytes and its message 247.
    let mut client = RemoteClient::connect(&addr, &secret).expect("connects");
    assert_eq!(client.model().side, 256);
    let err = RemoteClient::connect(&addr, &secret).err();
    assert!(
        matches!(&err, Some(RemoteError::Refused(r)) if r.contains("1 clients")),
        "{err:?}"
    );
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    client.send_portrait(1, portrait).unwrap();
    client.send_reference(k0).unwrap();
    let up_before = client.traffic().up.load(Ordering::SeqCst);
    client.send_motion(1, k1).unwrap();
    assert_eq!(client.traffic().up.load(Ordering::SeqCst) - up_before, 247);
    let frame = client
        .next_frame(Duration::from_secs(30))
        .unwrap()
        .expect("a frame in 30 s");
    assert_eq!((frame.seq, frame.rgb.len()), (1, 256 * 256 * 3));
    // The server stops: the client hears of it.
    server.stop();
    let t = Instant::now();
    let why = loop {
        match client.next_frame(Duration::from_millis(100)) {
            Ok(_) => assert!(t.elapsed() < Duration::from_secs(10), "never lost"),
            Err(e) => break e,
        }
    };
    assert!(matches!(why, RemoteError::Lost(_)), "{why:?}");
}

/// `marionette serve` on `listen` with the tiny fixture and the secret kept in `secret_file`;
/// the address it listens on and the secret it printed.
fn start_serve(
    listen: &str,
    secret_file: &std::path::Path,
) -> (std::process::Child, std::net::SocketAddr, Secret) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args(["serve", "--listen", listen, "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--secret-file")
        .arg(secret_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("marionette serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut secret) = (None, None);
    let mut line = String::new();
    while addr.is_none() || secret.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve ended early");
        if let Some(rest) = line.strip_prefix("listening on ") {
            addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if line.starts_with("pairing secret") {
            secret = Some(Secret::parse(line.rsplit(": ").next().unwrap()).unwrap());
        }
    }
    // Keep reading, so that its prints never block it.
    thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (child, addr.unwrap(), secret.unwrap())
}

#[test]
fn run_remote_renders_there_and_here_while_the_server_is_gone() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let (mut server, addr, secret) = start_serve("127.0.0.1:0", &secret_file);
    let mut run = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args([
            "run",
            "--test-pattern",
            "--vcam",
            "none",
            "--stats",
            "--cpu",
            "--remote",
        ])
        .arg(addr.to_string())
        .arg("--secret")
        .arg(secret.to_string())
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--record")
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("marionette run");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        let err = BufReader::new(run.stderr.take().unwrap());
        thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let text = || lines.lock().unwrap().join("\n");
    let last_stats = || -> serde_json::Value {
        let l = lines.lock().unwrap();
        l.iter()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let wait_for = |what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let t = Instant::now();
        loop {
            let s = last_stats();
            if ok(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what} within a minute:\n{}",
                text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    };
    // Rendered there: keyframes come from the server, a few hundred bytes up each.
    let there = wait_for("keyframes from the server", &|s| {
        s["remote_connected"] == true && s["remote_keyframes"].as_u64().unwrap_or(0) >= 5
    });
    let up = there["remote_bytes_up_per_frame"].as_f64().unwrap();
    assert!(up < 1000.0, "{up} bytes up a frame");
    // The server dies: the run goes on, here, and says so.
    server.kill().unwrap();
    server.wait().unwrap();
    let frames_then = last_stats()["frames_out"].as_u64().unwrap_or(0);
    let lost = wait_for("rendering here once the server is gone", &|s| {
        s["remote_connected"] == false && s["frames_out"].as_u64().unwrap_or(0) > frames_then + 10
    });
    assert!(
        text().contains("rendering on this machine until it is back"),
        "{}",
        text()
    );
    // It comes back on the same port with the same secret: the run reconnects.
    let (mut server, _, again) = start_serve(&addr.to_string(), &secret_file);
    assert_eq!(again, secret);
    let keyframes_then = lost["remote_keyframes"].as_u64().unwrap_or(0);
    wait_for("keyframes from the server again", &|s| {
        s["remote_connected"] == true
            && s["remote_keyframes"].as_u64().unwrap_or(0) >= keyframes_then + 5
    });
    // The output never stopped: the recording has a frame for every output.
    assert!(
        Command::new("kill")
            .args(["-INT", &run.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = run.wait().unwrap();
    assert!(status.success(), "run: {status}\n{}", text());
    let log = text();
    assert_eq!(
        log.matches("renders from now on").count(),
        2,
        "connected, then connected again:\n{log}"
    );
    assert_eq!(
        log.matches("rendering on this machine until").count(),
        1,
        "{log}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
