//! Every log line the test binary's code writes while a capture is running, at every
//! level and from every crate (the in-process appliance logs through the `log` facade),
//! through the redaction the binary's logger applies to other crates' lines
//! (`appliance::http::RedactingLog`).
//! Concurrent tests' lines land in the same capture; tests look only for their own
//! (random) values in it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use appliance::http::RedactingLog;

struct Logger {
    active: AtomicUsize,
    lines: Mutex<Vec<String>>,
}

static LOGGER: RedactingLog<Logger> = RedactingLog(Logger {
    active: AtomicUsize::new(0),
    lines: Mutex::new(Vec::new()),
});

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {} {}", record.level(), record.target(), record.args());
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// A running capture; stops (and lets the buffer go once no capture runs) when dropped.
pub struct Capture {
    from: usize,
}

impl Capture {
    pub fn start() -> Capture {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| log::set_logger(&LOGGER).expect("no other logger in the tests"));
        let lines = LOGGER.0.lines.lock().unwrap();
        LOGGER.0.active.fetch_add(1, Ordering::SeqCst);
        log::set_max_level(log::LevelFilter::Trace);
        Capture { from: lines.len() }
    }

    /// The lines written since this capture started.
    pub fn lines(&self) -> Vec<String> {
        LOGGER.0.lines.lock().unwrap()[self.from..].to_vec()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let mut lines = LOGGER.0.lines.lock().unwrap();
        if LOGGER.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            log::set_max_level(log::LevelFilter::Off);
            lines.clear();
        }
    }
}
