//! Opening an AMI connection: TCP connect, the banner (checked by prefix only), and the
//! login: MD5 challenge (`Challenge` then `Login` with `Key`). When the manager refuses
//! the challenge the secret would have to travel in clear text (`Login` with `Secret`):
//! that is done only with `[pbx] allow_plain_login = true`; otherwise nothing more is
//! sent and the attempt is `ChallengeRefused`. A refused login is `AuthFailed`,
//! anything else `Down`. A banner of AMI 1.x (Asterisk 11 and older, whose `Dial`,
//! `Bridge` and `Masquerade` events without `Linkedid` the tracker cannot follow) is
//! `UnsupportedVersion`, before anything is sent. What happens once logged in is `client`'s business.

use bytes::BytesMut;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, Message};
use crate::pbx::{ConnectError, ConnectionSettings};

/// The event classes asked for at login; the filters then narrow them to
/// [`EVENTS`](super::events::EVENTS). `agent` carries the queue events.
const LOGIN_EVENTS: &str = "call,cdr,system,dialplan,agent";

/// A logged-in connection whose actor has not started yet.
pub(crate) struct Session {
    pub(super) stream: TcpStream,
    pub(super) buf: BytesMut,
    /// The AMI version from the banner (`11.0.0`).
    pub version: String,
    pub(super) addr: String,
}
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<(), ConnectError> {
    match stream.read_buf(buf).await {
        Ok(0) => Err(ConnectError::Down(format!(
            "{addr} closed the connection during login"
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(ConnectError::Down(format!("{addr}: {e}"))),
    }
}

async fn read_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
    action_id: &str,
) -> Result<Message, ConnectError> {
    loop {
        match codec::check(buf) {
            Ok(Some(n)) => {
                let msg = codec::parse(&buf.split_to(n));
                if msg.response().is_some() && msg.action_id() == Some(action_id) {
                    return Ok(msg);
                }
            }
            Ok(None) => read_more(stream, buf, addr).await?,
            Err(e) => return Err(ConnectError::Down(format!("{addr}: {e}"))),
        }
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8], addr: &str) -> Result<(), ConnectError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| ConnectError::Down(format!("{addr}: {e}")))
}

fn encode(name: &str, id: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, ConnectError> {
    codec::encode_action(name, id, headers).map_err(|e| ConnectError::Down(e.to_string()))
}

/// Why the manager announcing AMI `version` cannot be tracked, if it cannot: AMI 1.x is
/// Asterisk 11 and older (1.0 in Asterisk 1.4 up to 1.3 in Asterisk 11); Asterisk 12
/// brought AMI 2.0 with `DialBegin`/`DialEnd`, bridges and `Linkedid`. A version that
/// does not start with a number is let through (the events then tell).
fn unsupported(version: &str) -> Option<String> {
    let major: u32 = version.split('.').next()?.trim().parse().ok()?;
    (major < 2).then(|| {
        format!(
            "the PBX announces AMI {version}, which is Asterisk 11 or older; its events \
             (Dial, Bridge, Masquerade, no Linkedid) cannot be tracked, so the appliance \
             does not log in: upgrade the PBX to Asterisk 12 or newer"
        )
    })
}

/// Connects, checks the banner and logs in. `events`: whether this session wants events
/// (the supervisor does; a probe does not). `allow_plain`: `[pbx] allow_plain_login`.
pub(crate) async fn open(
    settings: &ConnectionSettings,
    events: bool,
    allow_plain: bool,
) -> Result<Session, ConnectError> {
    let addr = settings.addr();
    let mut stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| ConnectError::Down(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let version = loop {
        match codec::check_banner(&buf) {
            Ok(Some((n, version))) => {
                let _ = buf.split_to(n);
                break version;
            }
            Ok(None) => read_more(&mut stream, &mut buf, &addr).await?,
            Err(e) => {
                return Err(ConnectError::Down(format!(
                    "{addr} is not an Asterisk manager interface: {e}"
                )));
            }
        }
    };

    if let Some(why) = unsupported(&version) {
        return Err(ConnectError::UnsupportedVersion(format!("{addr}: {why}")));
    }

    write(
        &mut stream,
        &encode("Challenge", "challenge", &[("AuthType", "MD5")])?,
        &addr,
    )
    .await?;
    let challenge = read_response(&mut stream, &mut buf, &addr, "challenge").await?;
    let user = settings.user.as_str();
    let key;
    let mut headers = vec![("Username", user)];
    match challenge
        .get("Challenge")
        .filter(|_| challenge.is_success())
    {
        Some(nonce) => {
            let mut md5 = Md5::new();
            md5.update(nonce.as_bytes());
            md5.update(settings.secret.expose().as_bytes());
            key = hex::encode(md5.finalize());
            headers.extend([("AuthType", "MD5"), ("Key", key.as_str())]);
        }
        None if allow_plain => {
            log::info!(
                "AMI at {addr} refused the MD5 challenge ({}); logging in with the plain \
                 secret ([pbx] allow_plain_login = true)",
                challenge.message()
            );
            headers.push(("Secret", settings.secret.expose()));
        }
        None => {
            return Err(ConnectError::ChallengeRefused(format!(
                "{addr} refused the MD5 challenge ({}), and sending the secret in clear \
                 text is off: enable MD5 logins on the PBX, or set [pbx] allow_plain_login \
                 = true if the connection cannot be overheard",
                challenge.message()
            )));
        }
    }
    headers.push(("Events", if events { LOGIN_EVENTS } else { "off" }));
    write(&mut stream, &encode("Login", "login", &headers)?, &addr).await?;
    let login = read_response(&mut stream, &mut buf, &addr, "login").await?;
    if !login.is_success() {
        return Err(ConnectError::AuthFailed(format!(
            "{addr} refused the AMI login of user {user:?}: {}",
            login.message()
        )));
    }
    Ok(Session {
        stream,
        buf,
        version,
        addr,
    })
}

/// The settings page's "test connection": log in, log off.
pub(crate) async fn probe(
    settings: &ConnectionSettings,
    allow_plain: bool,
) -> Result<String, ConnectError> {
    let mut session = open(settings, false, allow_plain).await?;
    let logoff = encode("Logoff", "logoff", &[])?;
    let _ = session.stream.write_all(&logoff).await;
    Ok(format!(
        "logged in to Asterisk (AMI {}) at {} as {:?}",
        session.version, session.addr, settings.user
    ))
}

#[cfg(test)]
mod tests {
    use super::unsupported;

    #[test]
    fn ami_1_is_asterisk_11_or_older_and_refused() {
        for old in ["1.0", "1.1", "1.3", "1.3.1"] {
            let why = unsupported(old).unwrap();
            assert!(why.contains(&format!("AMI {old}")), "{why}");
            assert!(why.contains("Asterisk 12 or newer"), "{why}");
        }
        for new in [
            "2.0.0",
            "2.10.0",
            "5.0.1",
            "11.0.0",
            "99.1-custom",
            "custom",
        ] {
            assert_eq!(unsupported(new), None, "{new}");
        }
    }
}
