//! A real HTTP server on loopback that records requests and answers from a script, for
//! tests of webhook delivery.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{lock, wait_until, Signal};

/// Bodies larger than this are cut off; no test needs more.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request received by [`HttpSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Upper case, e.g. "POST".
    pub method: String,
    pub path: String,
    /// The raw query string without `?`; empty when there was none.
    pub query: String,
    /// In arrival order; names lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy); `body_bytes` has it exactly.
    pub body: String,
    pub body_bytes: Vec<u8>,
    /// "HTTP/1.1" or "HTTP/2.0".
    pub http_version: String,
}

impl ReceivedRequest {
    /// The first value of header `name`, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Scripted {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Default)]
struct SinkState {
    requests: Mutex<Vec<ReceivedRequest>>,
    responses: Mutex<VecDeque<Scripted>>,
    delay: Mutex<Duration>,
    signal: Signal,
}

/// An HTTP/1.1 and h2c (HTTP/2 with prior knowledge) receiver on 127.0.0.1 that answers
/// each request with the next scripted response, or 200 `{"ok":true}` when none is queued.
pub struct HttpSink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    task: JoinHandle<()>,
}

impl HttpSink {
    /// Binds an ephemeral port on 127.0.0.1 and starts serving.
    pub async fn start() -> io::Result<HttpSink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SinkState::default());
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            // Ends only when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpSink { addr, state, task })
    }

    /// `http://127.0.0.1:PORT{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `n` requests arrived or `timeout` passed, then returns all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        wait_until(&self.state.signal, timeout, || {
            lock(&self.state.requests).len() >= n
        })
        .await;
        self.requests()
    }

    /// Queues the answer for a future request; queued answers are used in order.
    pub fn push_response(&self, status: u16, headers: Vec<(String, String)>, body: String) {
        lock(&self.state.responses).push_back(Scripted {
            status,
            headers,
            body,
        });
    }

    /// Holds every answer back by `delay` (the request is recorded on arrival), to make a
    /// client time out.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<SinkState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let received = ReceivedRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        body_bytes: body.to_vec(),
        http_version: format!("{:?}", parts.version),
    };
    // The n-th request recorded gets the n-th scripted answer: with the two taken apart,
    // of two requests arriving together the second could take the first's answer.
    let scripted = {
        let mut requests = lock(&state.requests);
        requests.push(received);
        lock(&state.responses).pop_front()
    };
    state.signal.notify();
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match scripted {
        Some(s) => build_response(&s),
        None => build_response(&Scripted {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"ok":true}"#.into(),
        }),
    }
}

/// Builds the scripted response; unusable status codes or headers become a 500 or are
/// skipped rather than panicking inside the server.
fn build_response(scripted: &Scripted) -> Response {
    let mut response = Response::new(Body::from(scripted.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &scripted.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
