//! The lane WebSocket once upgraded: a snapshot first, then every lane event; heartbeats, and
//! a terminal that stops answering them is let go; at shutdown the terminal is told, then closed.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::lane::LaneHandle;
use crate::lane::handle::TerminalSocket;
use crate::lane::view::{LaneEvent, LaneEventKind};
use crate::shutdown::{Phase, SHUTTING_DOWN};

/// Serves one terminal's WebSocket on `handle`'s lane until either side ends it.
pub(super) async fn serve(
    handle: LaneHandle,
    socket: TerminalSocket,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    heartbeat: Duration,
    mut phase: watch::Receiver<Phase>,
) {
    let (seq, snapshot, mut events) = handle.subscribe();
    let first = LaneEvent::new(seq, LaneEventKind::Snapshot, snapshot, None);
    let mut alive = send(&mut session, &first).await;
    let mut heartbeat = tokio::time::interval(heartbeat);
    let mut missed = 0u8;
    let mut going_away = false;
    while alive {
        tokio::select! {
            event = events.recv() => match event {
                // The lane's last event before lanehub stops: the terminal is told, then let go.
                Ok(e) if e.kind == LaneEventKind::Shutdown => {
                    let _ = send(&mut session, &e).await;
                    going_away = true;
                    alive = false;
                }
                Ok(e) => alive = send(&mut session, &e).await,
                Err(RecvError::Lagged(_)) => {
                    // The terminal fell behind: send a fresh snapshot; the seq gap tells it.
                    let (seq, snapshot, rx) = handle.subscribe();
                    events = rx;
                    let fresh = LaneEvent::new(seq, LaneEventKind::Snapshot, snapshot, None);
                    alive = send(&mut session, &fresh).await;
                }
                Err(RecvError::Closed) => alive = false,
            },
            msg = stream.recv() => match msg {
                Some(Ok(actix_ws::Message::Ping(bytes))) => alive = session.pong(&bytes).await.is_ok(),
                Some(Ok(actix_ws::Message::Pong(_))) => missed = 0,
                Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => alive = false,
                Some(Ok(_)) => {}
            },
            _ = heartbeat.tick() => {
                missed += 1;
                alive = missed <= 2 && session.ping(b"lanehub").await.is_ok();
            }
            // Stopping without the lane's last event (a terminal that lagged past it, or one
            // that connected after it): what was published goes out first.
            _ = phase.wait_for(|p| *p == Phase::Stopping) => {
                while let Ok(e) = events.try_recv() {
                    if !send(&mut session, &e).await {
                        break;
                    }
                }
                going_away = true;
                alive = false;
            }
        }
    }
    // The terminal counts as gone before the close handshake, which may never finish.
    drop(socket);
    let reason = going_away.then(|| actix_ws::CloseReason {
        code: actix_ws::CloseCode::Away,
        description: Some(SHUTTING_DOWN.to_owned()),
    });
    let _ = session.close(reason).await;
}

async fn send(session: &mut actix_ws::Session, event: &LaneEvent) -> bool {
    session.text(event.text()).await.is_ok()
}
