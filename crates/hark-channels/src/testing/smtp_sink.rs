//! A real SMTP server on loopback that keeps what it receives, for tests that need to see
//! an email arrive over the wire. Plain text only (use `tls = "none"`).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{lock, wait_until, Signal};

/// One message accepted by [`SmtpSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEmail {
    /// The envelope sender (MAIL FROM).
    pub from: String,
    /// The envelope recipients (RCPT TO).
    pub to: Vec<String>,
    /// The message as sent after DATA: headers and body, CRLF line ends, dots unstuffed.
    pub data: String,
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<ReceivedEmail>>,
    auths: Mutex<Vec<(String, String)>>,
    data_reply: Mutex<Option<(u16, String)>>,
    signal: Signal,
}

/// A minimal ESMTP server on 127.0.0.1. Accepts any sender, recipient and credentials.
pub struct SmtpSink {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start() -> io::Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    // A client hanging up mid-session is not the sink's concern.
                    let _ = serve(stream, &state).await;
                });
            }
        });
        Ok(SmtpSink { port, state, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Messages accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        lock(&self.state.messages).clone()
    }

    /// (username, password) pairs clients authenticated with, in order.
    pub fn auths(&self) -> Vec<(String, String)> {
        lock(&self.state.auths).clone()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed, then returns all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedEmail> {
        wait_until(&self.state.signal, timeout, || {
            lock(&self.state.messages).len() >= n
        })
        .await;
        self.messages()
    }

    /// Makes the end of DATA answer with this code and text instead of 250 (e.g. 451 to
    /// simulate a transient failure, 550 a permanent one); `None` restores acceptance.
    /// Rejected messages are not kept.
    pub fn set_reply_to_data(&self, reply: Option<(u16, String)>) {
        *lock(&self.state.data_reply) = reply;
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

async fn serve(stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    reply(&mut write, "220 hark-sink ESMTP ready").await?;
    let mut tx = Transaction::default();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, rest) = match line.split_once(' ') {
            Some((verb, rest)) => (verb.to_ascii_uppercase(), rest.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                tx = Transaction::default();
                reply(
                    &mut write,
                    "250-hark-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 OK",
                )
                .await?;
            }
            "HELO" => {
                tx = Transaction::default();
                reply(&mut write, "250 hark-sink").await?;
            }
            "MAIL" => {
                tx = Transaction {
                    from: Some(path_argument(rest)),
                    to: Vec::new(),
                };
                reply(&mut write, "250 2.1.0 OK").await?;
            }
            "RCPT" if tx.from.is_none() => reply(&mut write, "503 5.5.1 MAIL first").await?,
            "RCPT" => {
                tx.to.push(path_argument(rest));
                reply(&mut write, "250 2.1.5 OK").await?;
            }
            "DATA" if tx.to.is_empty() => reply(&mut write, "503 5.5.1 RCPT first").await?,
            "DATA" => {
                reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await?;
                let Some(data) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let finished = std::mem::take(&mut tx);
                let rejection = lock(&state.data_reply).clone();
                match rejection {
                    Some((code, text)) => reply(&mut write, &format!("{code} {text}")).await?,
                    None => {
                        lock(&state.messages).push(ReceivedEmail {
                            from: finished.from.unwrap_or_default(),
                            to: finished.to,
                            data,
                        });
                        state.signal.notify();
                        reply(&mut write, "250 2.0.0 OK queued").await?;
                    }
                }
            }
            "AUTH" => {
                let Some(credentials) = authenticate(rest, &mut reader, &mut write).await? else {
                    reply(&mut write, "504 5.5.4 Unrecognized authentication type").await?;
                    continue;
                };
                lock(&state.auths).push(credentials);
                reply(&mut write, "235 2.7.0 Authentication successful").await?;
            }
            "RSET" => {
                tx = Transaction::default();
                reply(&mut write, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut write, "250 2.0.0 OK").await?,
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            "STARTTLS" => reply(&mut write, "454 4.7.0 TLS not available").await?,
            _ => reply(&mut write, "502 5.5.2 Command not recognized").await?,
        }
    }
}

/// Runs AUTH PLAIN or AUTH LOGIN (with or without an initial response) and returns the
/// credentials, or `None` for another mechanism.
async fn authenticate(
    args: &str,
    reader: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
) -> io::Result<Option<(String, String)>> {
    let mut parts = args.split_whitespace();
    let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    match mechanism.as_str() {
        "PLAIN" => {
            let blob = match initial {
                Some(blob) => blob,
                None => {
                    reply(write, "334 ").await?;
                    read_line(reader).await?.unwrap_or_default()
                }
            };
            // authzid NUL authcid NUL passwd
            let decoded = decode(&blob);
            let mut fields = decoded.split('\0').skip(1);
            let user = fields.next().unwrap_or_default().to_string();
            let pass = fields.next().unwrap_or_default().to_string();
            Ok(Some((user, pass)))
        }
        "LOGIN" => {
            let user = match initial {
                Some(blob) => decode(&blob),
                None => {
                    reply(write, "334 VXNlcm5hbWU6").await?;
                    decode(&read_line(reader).await?.unwrap_or_default())
                }
            };
            reply(write, "334 UGFzc3dvcmQ6").await?;
            let pass = decode(&read_line(reader).await?.unwrap_or_default());
            Ok(Some((user, pass)))
        }
        _ => Ok(None),
    }
}

fn decode(blob: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The address in `FROM:<a@b> SIZE=1` or `TO: <a@b>`, without the angle brackets.
fn path_argument(rest: &str) -> String {
    let after_colon = rest.split_once(':').map_or(rest, |(_, r)| r).trim();
    match (after_colon.find('<'), after_colon.find('>')) {
        (Some(open), Some(close)) if open < close => after_colon[open + 1..close].to_string(),
        _ => after_colon
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// One command line without its line end; `None` at end of stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if reader.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// The DATA section up to the lone dot, dot-unstuffed, CRLF line ends.
async fn read_data(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        quick_ack(reader.get_ref().as_ref());
        let Some(line) = read_line(reader).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        data.push_str(line);
        data.push_str("\r\n");
    }
}

/// lettre writes the message and the closing dot as two writes, so with Nagle on its side
/// the dot waits for our ACK of the body, which Linux delays by ~40 ms. ACKing at once
/// keeps the sink from adding that to every email (it would dominate a benchmark).
/// Quick-ACK mode is not sticky, hence once per read.
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    // Best effort: without it the sink is only slower.
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}

async fn reply(write: &mut OwnedWriteHalf, text: &str) -> io::Result<()> {
    // One write per reply: split writes plus Nagle and delayed ACKs cost ~40 ms each.
    let mut line = String::with_capacity(text.len() + 2);
    line.push_str(text);
    line.push_str("\r\n");
    write.write_all(line.as_bytes()).await?;
    write.flush().await
}
