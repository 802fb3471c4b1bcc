//! The demo's acceptor when the process is out of file descriptors: it must back off,
//! not spin, and serve the waiting connection once descriptors are free again. A file
//! of its own: it lowers the process's open-files limit, which would disturb other
//! tests running beside it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use engine::{Engine, EngineConfig};
use tools::demo::{Backend, DemoConfig, DemoServer, InProcessBackend};

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn accept_errors_do_not_spin() {
    let engine = Engine::start(EngineConfig {
        shards: Some(1),
        pin: false,
        ..EngineConfig::default()
    })
    .unwrap();
    let backend: Arc<dyn Backend> = Arc::new(InProcessBackend::new(engine.clone()));
    let server = DemoServer::start(
        backend,
        DemoConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            ..DemoConfig::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    // Warm up: the server has done one full request.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /rooms HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(s);

    // Lower the limit a little above what is open, fill every free slot but one, and
    // connect with that one: the connection waits in the backlog and every accept
    // fails with EMFILE.
    let stdin = std::io::stdin();
    let mut fill: Vec<OwnedFd> = Vec::new();
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    let old = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim;
        // SAFETY: dup of a valid descriptor; a new one is ours to close.
        let probe = libc::dup(stdin.as_raw_fd());
        assert!(probe >= 0);
        libc::close(probe);
        lim.rlim_cur = (probe as libc::rlim_t) + 64;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    };
    loop {
        // SAFETY: dup of a valid descriptor; a new one is ours (wrapped to be closed).
        let fd = unsafe { libc::dup(stdin.as_raw_fd()) };
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EMFILE)
            );
            break;
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        fill.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    fill.pop();
    let mut waiting = TcpStream::connect(addr).expect("connect with the last free slot");
    std::thread::sleep(Duration::from_millis(200));

    let cpu0 = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time() - cpu0;

    // Free the descriptors: the waiting connection is served.
    drop(fill);
    // SAFETY: restoring the limit read above.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0);
    }
    assert!(
        cpu < Duration::from_millis(100),
        "{cpu:?} of CPU in 1 s while accept fails with EMFILE"
    );
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    waiting
        .write_all(format!("GET /rooms HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match waiting.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    server.shutdown();
    engine.shutdown();
}
