//! Running the compiled binary on a pseudo-terminal, expect-style: wait (with a
//! deadline) for a prompt, type an answer.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<String>>,
    /// Everything before this byte offset has been matched already.
    seen: usize,
}

impl Pty {
    /// Starts `cmd` with stdin, stdout and stderr on a new pseudo-terminal.
    pub fn spawn(mut cmd: Command) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two fds; no name buffer, default termios and size.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed");
        // SAFETY: both fds were just returned by openpty and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        // `cmd` still holds the slave copies: drop it so EOF arrives when the child exits.
        drop(cmd);
        let master = std::fs::File::from(master);
        let output = Arc::new(Mutex::new(String::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has exited and closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty {
            child,
            master,
            output,
            seen: 0,
        }
    }

    /// Waits up to 20 s for `text` to appear after what was matched before.
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let out = self.output.lock().unwrap();
                if let Some(at) = out[self.seen..].find(text) {
                    self.seen += at + text.len();
                    return;
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "timed out waiting for {text:?}; the terminal shows:\n{}",
                    &self.output.lock().unwrap()[self.seen..]
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types `line` and Enter.
    pub fn send_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }

    /// Waits (bounded) for the exit code and returns it with the whole transcript.
    pub fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the program did not exit:\n{}", self.output.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Let the reader drain what the child wrote last.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.output) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = self.output.lock().unwrap().clone();
        (status.code().unwrap_or(-1), text)
    }
}
