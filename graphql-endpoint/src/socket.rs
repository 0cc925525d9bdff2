//! Operations over a websocket. The session named in `connection_init` is read again from the store at the
//! start of every operation (so a logout on any instance refuses the next one), and a running operation ends
//! when its session does: at its expiry, or when any instance announces that the user's sessions changed
//! (`pg_notify`, see [`crate::live`]), or at the latest at the next periodic re-check. Operations are capped per
//! socket and per instance.

use crate::gateway::{Gateway, Viewer};
use crate::limits::Slot;
use crate::schema::{BankSchema, coded, internal};
use async_graphql::{Data, Executor, Request, Response};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast::error::RecvError;

/// The session a socket was opened with, fixed by `connection_init`.
#[derive(Debug, Clone)]
pub struct SocketSession {
    pub user: i64,
    pub token: String,
}

/// Executes the operations of one websocket.
#[derive(Clone)]
pub struct SocketExecutor {
    pub schema: BankSchema,
    pub gateway: Arc<Gateway>,
    /// Set once by `connection_init` when a token was given
    pub session: Arc<OnceLock<SocketSession>>,
    /// Operations running on this socket
    pub operations: Arc<crate::limits::Slots>,
}

fn refused(e: async_graphql::Error) -> BoxStream<'static, Response> {
    futures::stream::once(async move { Response::from_errors(vec![e.into_server_error(Default::default())]) }).boxed()
}

impl SocketExecutor {
    async fn open(self, mut request: Request, data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let data = data.unwrap_or_default();
        let Some(socket_slot) = self.operations.take() else {
            return refused(coded(
                "TOO_MANY_SUBSCRIPTIONS",
                format!("at most {} operations at once on one connection", self.gateway.settings.socket_operations),
            ));
        };
        let Some(instance_slot) = self.gateway.subscriptions.take() else {
            return refused(coded("TOO_MANY_SUBSCRIPTIONS", "this server is at its subscription limit; try later"));
        };
        let slots = (socket_slot, instance_slot);
        let Some(session) = self.session.get().cloned() else {
            // Anonymous: only what anyone may read; the viewer stays `Anonymous`.
            return with_slots(self.schema.execute_stream_with_session_data(request, data), slots);
        };
        let expires_at = match self.gateway.viewer(Some(&session.token)).await {
            Ok(Viewer::Signed { user, token, expires_at }) => {
                request = request.data(Viewer::Signed { user, token, expires_at });
                expires_at
            }
            Ok(_) => return refused(session_ended()),
            Err(e) => return refused(internal(e)),
        };
        let stream = self.schema.execute_stream_with_session_data(request, data);
        let ended = Box::pin(session_end(self.gateway.clone(), session, expires_at));
        with_slots(until_session_ends(stream, ended), slots)
    }
}

fn session_ended() -> async_graphql::Error {
    coded("UNAUTHENTICATED", "the session has ended (logout or expiry); log in again and reconnect")
}

/// Keeps the slots taken while the stream lives.
fn with_slots(stream: BoxStream<'static, Response>, slots: (Slot, Slot)) -> BoxStream<'static, Response> {
    stream
        .map(move |r| {
            let _held = &slots;
            r
        })
        .boxed()
}

/// The operation's responses until the session ends; then one UNAUTHENTICATED error and the end.
fn until_session_ends(
    stream: BoxStream<'static, Response>,
    ended: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> BoxStream<'static, Response> {
    futures::stream::unfold(Some((stream, ended)), |state| async move {
        let (mut stream, mut ended) = state?;
        tokio::select! {
            item = stream.next() => item.map(|r| (r, Some((stream, ended)))),
            () = &mut ended => {
                metrics::counter!("gateway_socket_sessions_ended_total").increment(1);
                Some((Response::from_errors(vec![session_ended().into_server_error(Default::default())]), None))
            }
        }
    })
    .boxed()
}

/// Resolves when the session is no longer valid: at its expiry, after a notice that the user's sessions
/// changed, or at a periodic re-check.
async fn session_end(gateway: Arc<Gateway>, session: SocketSession, expires_at: chrono::DateTime<chrono::Utc>) {
    let recheck = gateway.settings.session_recheck;
    let mut notices = Some(gateway.results.sessions.subscribe());
    loop {
        let to_expiry = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
        let notice = async {
            match notices.as_mut() {
                Some(n) => n.recv().await,
                None => std::future::pending().await,
            }
        };
        let woke = tokio::select! {
            () = tokio::time::sleep(to_expiry) => return,
            () = tokio::time::sleep(recheck) => None,
            n = notice => Some(n),
        };
        match woke {
            Some(Ok(user)) if user != session.user => continue,
            // Without notices only the periodic re-check remains.
            Some(Err(RecvError::Closed)) => notices = None,
            _ => {}
        }
        match gateway.viewer(Some(&session.token)).await {
            Ok(Viewer::Signed { .. }) => {}
            Ok(_) => return,
            // The store is unreachable: keep the operation; the next check decides.
            Err(e) => tracing::warn!(error = %e, "cannot re-check a websocket session"),
        }
    }
}

impl Executor for SocketExecutor {
    async fn execute(&self, request: Request) -> Response {
        // Not used by the websocket protocols (they stream every operation); kept for completeness.
        self.schema.execute(request).await
    }

    fn execute_stream(&self, request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        futures::stream::once(self.clone().open(request, session_data)).flatten().boxed()
    }
}
