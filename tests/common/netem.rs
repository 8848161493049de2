//! A network with delay and loss for the remote tests, made by the test itself: the kernel here
//! has no `netem` queueing discipline, so two network namespaces are joined by a relay that
//! holds each IP packet for half the round trip and drops a given share of them.
//!
//! Each namespace has a TUN device (a point-to-point link, 10.78.0.1 for the client and
//! 10.78.0.2 for the server); the relay reads every packet one side sends and writes it to the
//! other. TUN rather than a veth pair because a TUN device has no segmentation offload unless
//! asked for it, so the kernel hands the relay real MTU-sized packets (a veth pair passes
//! 64 kB segments along, and dropping one of those is not what losing a packet is).
//! Needs root (namespaces, `/dev/net/tun`) and `ip` from iproute2 (to make the namespaces and
//! address the links; programs join a namespace with `setns`, as `ip netns exec` does).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The client's and the server's addresses on the link.
pub const CLIENT_IP: &str = "10.78.0.1";
/// The server's address.
pub const SERVER_IP: &str = "10.78.0.2";

/// The two namespaces and the relay between them; dropping it removes them.
pub struct Netem {
    names: [String; 2],
    stop: Arc<AtomicBool>,
    relays: Vec<thread::JoinHandle<()>>,
    /// Packets relayed and dropped, both ways.
    pub relayed: Arc<AtomicU64>,
    /// Packets dropped on purpose.
    pub dropped: Arc<AtomicU64>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    run_ip(Command::new("ip"), args)
}

/// Runs `ip` (`cmd`, maybe set to run in a namespace) with `args`; why it failed, if it did.
fn run_ip(mut cmd: Command, args: &[&str]) -> Result<(), String> {
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A TUN device named `name` made in the network namespace `ns` (the calling thread goes there
/// and back).
fn tun_in(ns: &str, name: &str) -> Result<OwnedFd, String> {
    let home = File::open("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    let there = File::open(format!("/var/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
    // SAFETY: setns with an open namespace file; only this thread moves.
    if unsafe { libc::setns(there.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    let made = (|| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun: {e}"))?;
        // struct ifreq: the name, then the flags (IFF_TUN, no packet information header).
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as u16;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        // TUNSETIFF = _IOW('T', 202, int)
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: an ifreq-sized buffer for the ioctl that reads and writes one.
        if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) } != 0 {
            return Err(format!("TUNSETIFF: {}", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from(f))
    })();
    // SAFETY: back to the namespace this thread came from.
    unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) };
    made
}

impl Netem {
    /// Two namespaces whose packets take `rtt` to go and come back, each way losing `loss`
    /// (0 to 1) of them, at random with a fixed seed.
    pub fn start(rtt: Duration, loss: f64) -> Result<Self, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let names = [
            format!("mrn-c{}-{n}", std::process::id()),
            format!("mrn-s{}-{n}", std::process::id()),
        ];
        for ns in &names {
            ip(&["netns", "add", ns])?;
        }
        let mut me = Self {
            names: names.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            relays: Vec::new(),
            relayed: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        // Made on a thread of its own: it visits the namespaces.
        let fds = {
            let names = names.clone();
            thread::spawn(move || -> Result<[OwnedFd; 2], String> {
                Ok([tun_in(&names[0], "mrn0")?, tun_in(&names[1], "mrn0")?])
            })
            .join()
            .map_err(|_| "the TUN thread panicked".to_string())??
        };
        for (server, (me_ip, peer)) in [
            (false, (CLIENT_IP, SERVER_IP)),
            (true, (SERVER_IP, CLIENT_IP)),
        ] {
            // `ip` run inside the namespace, not `ip -n`, which remounts / (refused in a chroot).
            for args in [
                &["link", "set", "lo", "up"][..],
                &["addr", "add", me_ip, "peer", peer, "dev", "mrn0"],
                &["link", "set", "mrn0", "up"],
            ] {
                run_ip(me.command(server, "ip"), args)
                    .map_err(|e| format!("{e} (in {})", names[usize::from(server)]))?;
            }
        }
        let [c, s] = fds;
        let (c, s) = (Arc::new(c), Arc::new(s));
        for (seed, (from, to)) in [(1u64, (c.clone(), s.clone())), (2, (s, c))] {
            let (stop, relayed, dropped) =
                (me.stop.clone(), me.relayed.clone(), me.dropped.clone());
            me.relays.push(thread::spawn(move || {
                relay(&from, &to, rtt / 2, loss, seed, &stop, &relayed, &dropped)
            }));
        }
        Ok(me)
    }

    /// `program` to run in the client's (`server` false) or the server's namespace.
    pub fn command(&self, server: bool, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let ns = &self.names[usize::from(server)];
        let there = File::open(format!("/var/run/netns/{ns}")).expect("the namespace's file");
        let mut c = Command::new(program);
        // SAFETY: setns is async-signal-safe; the child joins the namespace before it runs.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(there.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        c
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.relays.drain(..) {
            let _ = t.join();
        }
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Packets from `from` to `to`, each held `delay` and dropped with probability `loss`, until
/// `stop`. A reader takes them off the device as they come; a writer sends each when due.
#[allow(clippy::too_many_arguments)]
fn relay(
    from: &OwnedFd,
    to: &OwnedFd,
    delay: Duration,
    loss: f64,
    seed: u64,
    stop: &AtomicBool,
    relayed: &AtomicU64,
    dropped: &AtomicU64,
) {
    let (tx, rx) = crossbeam_channel::bounded::<(Instant, Vec<u8>)>(8192);
    thread::scope(|scope| {
        scope.spawn(|| {
            while let Ok((due, p)) = rx.recv() {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                // SAFETY: writing a whole packet from a live buffer to a TUN descriptor.
                unsafe { libc::write(to.as_raw_fd(), p.as_ptr().cast(), p.len()) };
            }
        });
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) {
            let mut pfd = libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd; a read into a buffer of its length.
            let n = unsafe {
                if libc::poll(&mut pfd, 1, 100) <= 0 {
                    continue;
                }
                libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
            };
            if n <= 0 {
                continue;
            }
            // xorshift64: the same losses every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if (state >> 11) as f64 / (1u64 << 53) as f64 <= loss {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            relayed.fetch_add(1, Ordering::Relaxed);
            let _ = tx.try_send((Instant::now() + delay, buf[..n as usize].to_vec()));
        }
        drop(tx);
    });
}

/// Whether this machine can make the namespaces (root and a TUN device).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun".into());
    }
    ip(&["-V"])
}
