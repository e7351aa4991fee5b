//! The lane WebSocket once upgraded: a snapshot first, then every lane event; the terminal's
//! commands, each answered with what HTTP would answer; heartbeats, and a terminal that stops
//! answering them is let go; at shutdown the terminal is told, then closed.
//!
//! A command is a JSON text message `{"id", "command", "body"?, "lane"?}`, answered by
//! `{"kind": "answer", "id", "status", "body"}`: the lane snapshot, or the problem HTTP would
//! give. Answers go out in the order the commands came, each after the events its command
//! caused. docs/terminal-api.md describes the protocol.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::ResponseError;
use actix_ws::{AggregatedMessage, ProtocolError};
use bytestring::ByteString;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use super::api::TerminalCommand;
use super::extract::{MAX_BODY_BYTES, from_value, parse_object};
use super::problem::ApiError;
use crate::lane::LaneHandle;
use crate::lane::handle::TerminalSocket;
use crate::lane::view::{LaneEvent, LaneEventKind, LaneSnapshot};
use crate::shutdown::{Phase, SHUTTING_DOWN};

/// The largest message a terminal may send: as large as an HTTP body, and the same for a
/// message sent in fragments. A larger one is answered with an error, the socket stays open.
pub const MAX_MESSAGE_BYTES: usize = MAX_BODY_BYTES;
/// Commands of one WebSocket waiting for their answer at once. With this many out, lanehub
/// reads nothing more from the socket until one is answered: a terminal that sends faster
/// than its lane answers is slowed down, not queued for without bound.
pub const MAX_COMMANDS_IN_FLIGHT: usize = 8;

/// Serves one terminal's WebSocket on `handle`'s lane until either side ends it.
pub(super) async fn serve(
    handle: LaneHandle,
    socket: TerminalSocket,
    mut session: actix_ws::Session,
    stream: actix_ws::MessageStream,
    heartbeat: Duration,
    mut phase: watch::Receiver<Phase>,
) {
    let mut stream = stream
        .max_frame_size(MAX_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE_BYTES);
    let mut answers = FuturesOrdered::new();
    let (first, mut events) = subscribe(&handle);
    let mut socket_is = open_if(send(&mut session, &first).await);
    let mut heartbeat = tokio::time::interval(heartbeat);
    let mut missed = 0u8;
    while socket_is == Socket::Open {
        tokio::select! {
            biased;
            event = events.recv() => {
                socket_is = relay(&mut session, &handle, &mut events, event).await;
            }
            Some(reply) = answers.next(), if !answers.is_empty() => {
                // The lane publishes what a command caused before it answers; events this poll
                // passed by before they were published go out first.
                loop {
                    let event = match events.try_recv() {
                        Ok(e) => Ok(e),
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    };
                    socket_is = relay(&mut session, &handle, &mut events, event).await;
                    if socket_is != Socket::Open {
                        break;
                    }
                }
                if socket_is == Socket::Open {
                    socket_is = open_if(session.text(reply).await.is_ok());
                }
            }
            msg = stream.recv(), if answers.len() < MAX_COMMANDS_IN_FLIGHT => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    answers.push_back(answer(handle.clone(), Ok(text)));
                }
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    let refused = ApiError::InvalidBody {
                        field: None,
                        detail: "binary messages are not taken: send a command as JSON text".into(),
                    };
                    answers.push_back(answer(handle.clone(), Err(refused)));
                }
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    socket_is = open_if(session.pong(&bytes).await.is_ok());
                }
                Some(Ok(AggregatedMessage::Pong(_))) => missed = 0,
                Some(Err(e)) if too_large(&e) => {
                    let refused = ApiError::InvalidBody {
                        field: None,
                        detail: format!("the message is larger than {MAX_MESSAGE_BYTES} bytes"),
                    };
                    answers.push_back(answer(handle.clone(), Err(refused)));
                }
                Some(Ok(AggregatedMessage::Close(_))) | None | Some(Err(_)) => {
                    socket_is = Socket::Closed;
                }
            },
            _ = heartbeat.tick() => {
                missed += 1;
                socket_is = open_if(missed <= 2 && session.ping(b"lanehub").await.is_ok());
            }
            // Stopping without the lane's last event (a terminal that lagged past it, or one
            // that connected after it): what was published goes out first.
            _ = phase.wait_for(|p| *p == Phase::Stopping) => {
                while let Ok(e) = events.try_recv() {
                    if !send(&mut session, &e).await {
                        break;
                    }
                }
                socket_is = Socket::GoingAway;
            }
        }
    }
    // The terminal counts as gone before the close handshake, which may never finish.
    drop(socket);
    let reason = (socket_is == Socket::GoingAway).then(|| actix_ws::CloseReason {
        code: actix_ws::CloseCode::Away,
        description: Some(SHUTTING_DOWN.to_owned()),
    });
    let _ = session.close(reason).await;
}

/// Whether the socket is still served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Open,
    Closed,
    /// lanehub stops: the socket is closed saying so.
    GoingAway,
}

fn open_if(ok: bool) -> Socket {
    if ok { Socket::Open } else { Socket::Closed }
}

/// Sends the terminal what the lane published.
async fn relay(
    session: &mut actix_ws::Session,
    handle: &LaneHandle,
    events: &mut broadcast::Receiver<Arc<LaneEvent>>,
    event: Result<Arc<LaneEvent>, RecvError>,
) -> Socket {
    match event {
        // The lane's last event before lanehub stops: the terminal is told, then let go.
        Ok(e) if e.kind == LaneEventKind::Shutdown => {
            let _ = send(session, &e).await;
            Socket::GoingAway
        }
        Ok(e) => open_if(send(session, &e).await),
        Err(RecvError::Lagged(_)) => {
            // The terminal fell behind: send a fresh snapshot; the seq gap tells it.
            let (fresh, rx) = subscribe(handle);
            *events = rx;
            open_if(send(session, &fresh).await)
        }
        Err(RecvError::Closed) => Socket::Closed,
    }
}

/// The lane's events from now on, and the snapshot event a terminal starts from.
fn subscribe(handle: &LaneHandle) -> (LaneEvent, broadcast::Receiver<Arc<LaneEvent>>) {
    let (seq, snapshot, events) = handle.subscribe();
    let snapshot = LaneEvent::new(seq, LaneEventKind::Snapshot, snapshot, None);
    (snapshot, events)
}

async fn send(session: &mut actix_ws::Session, event: &LaneEvent) -> bool {
    session.text(event.text()).await.is_ok()
}

/// Whether the stream refused a message for its size. It then skips that message and reads on,
/// so the terminal is answered and keeps its socket.
fn too_large(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::Overflow => true,
        // What actix-ws says of a message sent in fragments past `max_continuation_size`.
        ProtocolError::Io(e) => {
            e.kind() == io::ErrorKind::Other && e.to_string().contains("continuation size")
        }
        _ => false,
    }
}

/// A command as a terminal sends it on the lane WebSocket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// The terminal's name for the command, echoed in its answer.
    id: String,
    command: CommandName,
    /// The HTTP command's body, for `scan` and `pay`.
    #[serde(default)]
    body: Option<serde_json::Value>,
    /// The socket's lane, if the terminal wants that checked.
    #[serde(default)]
    lane: Option<String>,
}

/// The commands a terminal may send, named as the lane names them.
#[derive(Debug, Clone, Copy, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
enum CommandName {
    Scan,
    Pay,
    Enroll,
    Cancel,
    Reset,
}

/// What the terminal is told of one of its messages.
#[derive(Serialize)]
struct Answer<'a, B> {
    /// Always `answer`: lane events have the event's kind here.
    kind: &'static str,
    /// The command's `id`; null when the message had none that could be read.
    id: Option<&'a str>,
    /// The HTTP status the command would have been answered with.
    status: u16,
    /// The lane snapshot on success, else the problem.
    body: B,
}

/// Carries out one message from the terminal (or says why it cannot be a command) and answers
/// it as JSON text.
async fn answer(handle: LaneHandle, message: Result<ByteString, ApiError>) -> ByteString {
    let (id, outcome) = match message {
        Ok(text) => {
            let (id, command) = read(&text, &handle);
            let outcome = match command {
                Ok(command) => command.run(&handle).await,
                Err(e) => Err(e),
            };
            (id, outcome)
        }
        Err(e) => (None, Err(e)),
    };
    let id = id.as_deref();
    let text = match outcome {
        Ok(lane) => answer_text::<LaneSnapshot>(id, 200, lane),
        Err(e) => answer_text(id, e.status_code().as_u16(), e.problem()),
    };
    ByteString::from(text)
}

fn answer_text<B: Serialize>(id: Option<&str>, status: u16, body: B) -> String {
    let answer = Answer {
        kind: "answer",
        id,
        status,
        body,
    };
    // A snapshot or a problem: strings, numbers and lists, nothing that can fail to serialise.
    serde_json::to_string(&answer).expect("an answer serialises")
}

/// The command a text message asks for on `handle`'s lane, and its `id` (also when the rest of
/// the message is wrong, so the terminal learns which command failed).
fn read(text: &str, handle: &LaneHandle) -> (Option<String>, Result<TerminalCommand, ApiError>) {
    let request: Request = match parse_object(text.as_bytes(), "a message") {
        Ok(request) => request,
        Err(e) => return (id_of(text), Err(e)),
    };
    let lane = handle.id();
    let command = match request.lane {
        Some(named) if named != lane.as_str() => Err(ApiError::OtherSocketLane(lane.to_string())),
        _ => command(request.command, request.body),
    };
    (Some(request.id), command)
}

/// The `id` of a message that is not a well-formed command, if it has a readable one.
fn id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(text).ok().map(|i| i.id)
}

fn command(
    name: CommandName,
    body: Option<serde_json::Value>,
) -> Result<TerminalCommand, ApiError> {
    let label: &'static str = name.into();
    match (name, body) {
        (CommandName::Scan, body) => body_of(label, body).map(TerminalCommand::Scan),
        (CommandName::Pay, body) => body_of(label, body).map(TerminalCommand::Pay),
        (_, Some(_)) => Err(ApiError::invalid(
            "body",
            format!("`{label}` takes no body"),
        )),
        (CommandName::Enroll, None) => Ok(TerminalCommand::Enroll),
        (CommandName::Cancel, None) => Ok(TerminalCommand::Cancel),
        (CommandName::Reset, None) => Ok(TerminalCommand::Reset),
    }
}

/// The body of a command that needs one, read as its HTTP body is: errors name the field by
/// its path inside `body` (`amount.value`), as HTTP names it.
fn body_of<T: DeserializeOwned>(
    label: &str,
    body: Option<serde_json::Value>,
) -> Result<T, ApiError> {
    match body {
        Some(body @ serde_json::Value::Object(_)) => from_value(body),
        Some(_) => Err(ApiError::invalid("body", "the body must be a JSON object")),
        None => Err(ApiError::invalid("body", format!("`{label}` needs a body"))),
    }
}
