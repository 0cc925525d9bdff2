//! Operations over a websocket. The session named in `connection_init` is read again from the store at the
//! start of every operation (so a logout on any instance refuses the next one), and a running operation ends
//! when its session does: at its expiry, or when any instance announces that the user's sessions changed
//! (`pg_notify`, see [`crate::live`]), or at the latest at the next periodic re-check. Operations are capped per
//! socket, per signed-in user, per client address of anonymous sockets, and per instance, where anonymous sockets
//! may hold half the slots at most: however many anonymous sockets there are, signed-in users keep the other
//! half. A query or mutation over a socket takes a permit of the instance's in-flight limit and has the request
//! timeout, like one over HTTP.

use crate::gateway::{ClientAddr, Gateway, Viewer};
use crate::limits::{KeyedSlot, Slot};
use crate::schema::{BankSchema, coded, internal};
use async_graphql::parser::types::OperationType;
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
    /// The client's address
    pub addr: Option<ClientAddr>,
    /// The instance's in-flight limit, shared with HTTP
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Longest run of a query or mutation
    pub request_timeout: std::time::Duration,
}

/// What an operation holds while it runs.
#[allow(dead_code)]
enum Held {
    Anonymous(Slot, Slot, Slot, Option<KeyedSlot<std::net::IpAddr>>),
    Signed(Slot, Slot, KeyedSlot<i64>),
}

/// Whether `request` runs a subscription: the operation it names, or its only one. A document that does not
/// parse is not one (the schema refuses it at once).
fn is_subscription(request: &Request) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else { return false };
    doc.operations.iter().any(|(name, op)| {
        op.node.ty == OperationType::Subscription
            && request.operation_name.as_deref().is_none_or(|wanted| name.is_some_and(|n| n.as_str() == wanted))
    })
}

fn too_many(message: impl Into<String>) -> BoxStream<'static, Response> {
    refused(coded("TOO_MANY_SUBSCRIPTIONS", message))
}

fn refused(e: async_graphql::Error) -> BoxStream<'static, Response> {
    futures::stream::once(async move { Response::from_errors(vec![e.into_server_error(Default::default())]) }).boxed()
}

impl SocketExecutor {
    async fn open(self, mut request: Request, data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let data = data.unwrap_or_default();
        let Some(socket_slot) = self.operations.take() else {
            let most = self.gateway.settings.socket_operations;
            return too_many(format!("at most {most} operations at once on one connection"));
        };
        let Some(instance_slot) = self.gateway.subscriptions.take() else {
            return too_many("this server is at its subscription limit; try later");
        };
        // A query or mutation is bounded like one over HTTP: an in-flight permit and the request timeout.
        let bounded = if is_subscription(&request) {
            None
        } else {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics::counter!("gateway_requests_shed_total").increment(1);
                    return refused(coded(
                        "OVERLOADED",
                        "the gateway is at its limit of requests in progress; retry shortly",
                    ));
                }
            }
        };
        let Some(session) = self.session.get().cloned() else {
            // Anonymous: only what anyone may read; the viewer stays `Anonymous`. Half the instance's slots at
            // most, and a share per client address.
            let Some(anonymous) = self.gateway.anonymous_subscriptions.take() else {
                return too_many("this server is at its limit of anonymous subscriptions; sign in or try later");
            };
            let by_address = match self.addr {
                Some(a) => match self.gateway.anonymous_by_address.take(&a.0) {
                    Some(slot) => Some(slot),
                    None => return too_many("this address has its share of anonymous subscriptions running"),
                },
                None => None,
            };
            let held = Held::Anonymous(socket_slot, instance_slot, anonymous, by_address);
            let stream = self.schema.execute_stream_with_session_data(request, data);
            return holding(bounded_stream(stream, bounded, self.request_timeout), held);
        };
        let Some(by_user) = self.gateway.operations_by_user.take(&session.user) else {
            return too_many("you have your share of operations running over all your connections");
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
        let stream = bounded_stream(until_session_ends(stream, ended), bounded, self.request_timeout);
        holding(stream, Held::Signed(socket_slot, instance_slot, by_user))
    }
}

/// A query's or mutation's stream (`permit` given) ends with a REQUEST_TIMEOUT error when it runs too long.
fn bounded_stream(
    stream: BoxStream<'static, Response>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    timeout: std::time::Duration,
) -> BoxStream<'static, Response> {
    let Some(permit) = permit else { return stream };
    let deadline = tokio::time::Instant::now() + timeout;
    futures::stream::unfold(Some((stream, permit)), move |state| async move {
        let (mut stream, permit) = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(r)) => Some((r, Some((stream, permit)))),
            Ok(None) => None,
            Err(_) => {
                let e = coded("REQUEST_TIMEOUT", "the operation ran longer than the request timeout");
                Some((Response::from_errors(vec![e.into_server_error(Default::default())]), None))
            }
        }
    })
    .boxed()
}

fn session_ended() -> async_graphql::Error {
    coded("UNAUTHENTICATED", "the session has ended (logout or expiry); log in again and reconnect")
}

/// Keeps the slots taken while the stream lives.
fn holding(stream: BoxStream<'static, Response>, held: Held) -> BoxStream<'static, Response> {
    stream
        .map(move |r| {
            let _held = &held;
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
