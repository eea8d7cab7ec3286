//! Terminal questions for the interactive `--init`: a default in brackets, Enter keeps it.

use std::io::{self, BufRead, Write};

/// Asks `question`; an empty answer returns `default`.
pub fn ask(question: &str, default: &str) -> io::Result<String> {
    let mut out = io::stderr();
    if default.is_empty() {
        write!(out, "{question}: ")?;
    } else {
        write!(out, "{question} [{default}]: ")?;
    }
    out.flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input closed"));
    }
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_string()
    } else {
        answer.to_string()
    })
}

/// Asks until the answer is one of `choices`.
pub fn choose(question: &str, choices: &[&str], default: &str) -> io::Result<String> {
    loop {
        let answer = ask(&format!("{question} ({})", choices.join("/")), default)?;
        if choices.contains(&answer.as_str()) {
            return Ok(answer);
        }
        eprintln!("  please answer one of: {}", choices.join(", "));
    }
}

/// Asks for a secret without echoing it; an empty answer keeps `default` (not shown).
pub fn ask_secret(question: &str, default: &str) -> io::Result<String> {
    let hint = if default.is_empty() {
        ""
    } else {
        " [keep current]"
    };
    eprint!("{question}{hint}: ");
    io::stderr().flush()?;
    let echo = EchoOff::new();
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    drop(echo);
    eprintln!();
    if read? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input closed"));
    }
    let answer = line.trim_end_matches(['\r', '\n']);
    Ok(if answer.is_empty() {
        default.to_string()
    } else {
        answer.to_string()
    })
}

/// Turns terminal echo off on stdin until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut term) != 0 {
                return EchoOff(None);
            }
            let saved = term;
            term.c_lflag &= !libc::ECHO;
            term.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &term) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}
