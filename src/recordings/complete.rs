//! Is the PBX done writing a recording? MixMonitor and record_session close their file
//! shortly after hang-up; until then the file grows and, for WAV, its header still holds
//! placeholder sizes (Asterisk writes 0, libsndfile a length that covers only the header)
//! that are filled in when the file is closed.
//!
//! Pure: [`wav_header`] reads the first bytes, [`Settler`] is stepped with observations
//! and the current time, so tests drive it without waiting.

use std::time::{Duration, Instant, SystemTime};

/// How many leading bytes [`wav_header`] wants to see.
pub const HEADER_BYTES: usize = 4096;

/// What a file's first bytes say about whether it is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A WAV whose sizes match a finished file.
    Final,
    /// A WAV whose sizes are still the placeholders written when it was opened.
    Placeholder,
    /// Not a (classic RIFF) WAV: only the size and time tell.
    Other,
}

/// Reads the RIFF/WAVE header in `head` (the file's first bytes) of a file of `len` bytes.
pub fn wav_header(head: &[u8], len: u64) -> Header {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Header::Other;
    }
    let riff = u64::from(le32(&head[4..8]));
    if riff == 0 || riff == u64::from(u32::MAX) {
        return Header::Placeholder;
    }
    // Walk the chunks up to `data`.
    let mut at: usize = 12;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u64::from(le32(&head[at + 4..at + 8]));
        let body_start = at as u64 + 8;
        if id == b"data" {
            if riff + 8 < body_start {
                // The RIFF size does not even cover the header: a placeholder.
                return Header::Placeholder;
            }
            let written = len.saturating_sub(body_start);
            if (size == 0 || size == u64::from(u32::MAX)) && written > 0 {
                return Header::Placeholder;
            }
            return Header::Final;
        }
        let next = body_start + size + (size & 1);
        match usize::try_from(next) {
            Ok(next) if next > at => at = next,
            _ => break,
        }
    }
    // No `data` chunk within the first bytes: trust the sizes and times alone.
    Header::Final
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// One look at the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Which file (a different candidate may turn up later).
    pub path: std::path::PathBuf,
    pub len: u64,
    pub modified: SystemTime,
    pub header: Header,
}

/// Decides completeness from successive observations: complete once the file has not
/// changed (size and modification time) for `settle`, and its header is final.
#[derive(Debug)]
pub struct Settler {
    settle: Duration,
    last: Option<Observation>,
    unchanged_since: Option<Instant>,
}

impl Settler {
    pub fn new(settle: Duration) -> Settler {
        Settler {
            settle,
            last: None,
            unchanged_since: None,
        }
    }

    /// Feeds one observation taken at `now` (`wall` is the wall clock then, compared with
    /// the file's modification time). True when the file is complete.
    pub fn observe(&mut self, now: Instant, wall: SystemTime, seen: Observation) -> bool {
        let changed = self.last.as_ref() != Some(&seen);
        if changed {
            self.unchanged_since = Some(now);
        }
        let since = self.unchanged_since.unwrap_or(now);
        let watched = now.saturating_duration_since(since);
        // A file last written long before we first looked has been still all that time.
        let untouched = wall.duration_since(seen.modified).unwrap_or(Duration::ZERO);
        let header_final = seen.header != Header::Placeholder;
        self.last = Some(seen);
        header_final && watched.max(untouched) >= self.settle
    }

    /// The file vanished: start over when it is back.
    pub fn forget(&mut self) {
        self.last = None;
        self.unchanged_since = None;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A 16-bit mono 8 kHz WAV header with the given RIFF and data sizes.
    pub fn header(riff: u32, data: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&8000u32.to_le_bytes());
        h.extend_from_slice(&16000u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data.to_le_bytes());
        assert_eq!(h.len(), 44);
        h
    }

    #[test]
    fn wav_headers_tell_placeholders_from_final_sizes() {
        // Asterisk while recording: zeros.
        assert_eq!(wav_header(&header(0, 0), 44 + 16000), Header::Placeholder);
        // libsndfile while recording: RIFF covers only itself, data 0.
        assert_eq!(wav_header(&header(8, 0), 44 + 16000), Header::Placeholder);
        assert_eq!(wav_header(&header(36, 0), 44 + 16000), Header::Placeholder);
        assert_eq!(
            wav_header(&header(u32::MAX, u32::MAX), 44 + 16000),
            Header::Placeholder
        );
        // Closed files.
        assert_eq!(
            wav_header(&header(36 + 16000, 16000), 44 + 16000),
            Header::Final
        );
        // A closed, empty recording (the fixtures' 44-byte files of busy calls).
        assert_eq!(wav_header(&header(36, 0), 44), Header::Final);
        // Not WAV, or too short to tell.
        assert_eq!(wav_header(b"ID3\x04\x00", 5000), Header::Other);
        assert_eq!(wav_header(b"RIFF", 4), Header::Other);
        assert_eq!(wav_header(b"", 0), Header::Other);
        // A `fact` chunk before `data` (WAV49/GSM from Asterisk) is walked over.
        let mut gsm = header(0, 0)[..36].to_vec();
        gsm[4..8].copy_from_slice(&(4 + 24 + 12 + 8 + 650u32).to_le_bytes());
        gsm.extend_from_slice(b"fact");
        gsm.extend_from_slice(&4u32.to_le_bytes());
        gsm.extend_from_slice(&320u32.to_le_bytes());
        gsm.extend_from_slice(b"data");
        gsm.extend_from_slice(&650u32.to_le_bytes());
        assert_eq!(wav_header(&gsm, gsm.len() as u64 + 650), Header::Final);
        let at = gsm.len() - 4;
        gsm[at..].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            wav_header(&gsm, gsm.len() as u64 + 650),
            Header::Placeholder
        );
        // A chunk size that runs past the buffer ends the walk without panicking.
        let mut odd = header(100, 0)[..20].to_vec();
        odd[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_header(&odd, 100), Header::Final);
    }

    fn seen(len: u64, modified: SystemTime, header: Header) -> Observation {
        Observation {
            path: PathBuf::from("/r/a.wav"),
            len,
            modified,
            header,
        }
    }

    #[test]
    fn a_growing_file_is_complete_only_after_it_stopped_for_the_settle_time() {
        let settle = Duration::from_secs(1);
        let mut s = Settler::new(settle);
        let t0 = Instant::now();
        let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| {
            (
                t0 + Duration::from_millis(ms),
                wall0 + Duration::from_millis(ms),
            )
        };
        // Growing every 250 ms: never complete.
        for step in 0..8u64 {
            let (now, wall) = at(step * 250);
            assert!(
                !s.observe(now, wall, seen(step * 4000, wall, Header::Other)),
                "step {step}"
            );
        }
        // Stops growing at 1750 ms: still not complete 999 ms later...
        let last_write = at(1750).1;
        let (now, wall) = at(2749);
        assert!(!s.observe(now, wall, seen(7 * 4000, last_write, Header::Other)));
        // ...complete once a full settle time has passed without change.
        let (now, wall) = at(2750);
        assert!(s.observe(now, wall, seen(7 * 4000, last_write, Header::Other)));
    }

    #[test]
    fn a_wav_with_placeholder_sizes_is_never_complete() {
        let mut s = Settler::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let old = SystemTime::UNIX_EPOCH;
        let wall = old + Duration::from_secs(3600);
        for step in 0..5u64 {
            let now = t0 + Duration::from_secs(step);
            assert!(!s.observe(now, wall, seen(44 + 16000, old, Header::Placeholder)));
        }
        // The header is rewritten on close: the size stays, the time changes.
        let closed = wall;
        assert!(!s.observe(
            t0 + Duration::from_secs(5),
            wall,
            seen(44 + 16000, closed, Header::Final)
        ));
        let later = wall + Duration::from_millis(100);
        assert!(s.observe(
            t0 + Duration::from_millis(5100),
            later,
            seen(44 + 16000, closed, Header::Final)
        ));
    }

    #[test]
    fn a_file_finished_long_ago_is_complete_at_the_first_look() {
        let mut s = Settler::new(Duration::from_secs(1));
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let written = wall - Duration::from_secs(30);
        assert!(s.observe(Instant::now(), wall, seen(9000, written, Header::Final)));
        // A modification time in the future (clock skew) proves nothing.
        let mut s = Settler::new(Duration::from_secs(1));
        let future = wall + Duration::from_secs(30);
        assert!(!s.observe(Instant::now(), wall, seen(9000, future, Header::Final)));
    }

    #[test]
    fn another_file_or_a_vanished_one_starts_over() {
        let settle = Duration::from_secs(1);
        let mut s = Settler::new(settle);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!s.observe(t0, wall, seen(10, wall, Header::Other)));
        s.forget();
        let mut other = seen(10, wall, Header::Other);
        other.path = PathBuf::from("/r/2026/03/01/a.wav");
        assert!(!s.observe(t0 + settle, wall, other.clone()));
        assert!(s.observe(t0 + settle * 2, wall, other));
    }
}
