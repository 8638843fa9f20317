//! The WebSocket hub: a registry of live worker connections, one task per connection.
//!
//! The hub keeps, per worker: the open connection (if any), when its last frame arrived, its
//! latest heartbeat snapshot, and whether it counts as online. A worker silent for three
//! heartbeat intervals goes offline (status changed, its apps marked stopped, a
//! [`HubEvent::WorkerOffline`] for the alert manager), whether or not its socket is still
//! open; a short outage followed by a reconnect never does. Heartbeat times are persisted by a
//! flusher in one statement every few seconds, not one write per heartbeat.
//!
//! Control planes in pairs: each hub has a random id ([`Hub::holder`]) written on the worker's
//! row when it says hello (`workers.connected_to`). A hub marks offline only the silent workers
//! it holds; a worker whose control plane died (its heartbeat time no longer flushed) is marked
//! offline by whichever is alive once its last heartbeat is [`Hub::orphaned_after`] old.
//!
//! Admin queries ([`Hub::worker_query`]) go out as `admin_query` frames with a fresh query id;
//! a pending map of one-shot channels routes replies back, and stray replies are dropped.

mod conn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wisehosting_proto::AdminCommand;
use wisehosting_proto::messages::{
    AdminQuery, AdminQueryReply, AppStates, ContainerInfo, Heartbeat, JobAccepted, JobProgress, JobResult,
    Log, RunningJob,
};

pub use conn::{ConnectionParams, HELLO_TIMEOUT, serve_connection};
pub use wisehosting_proto::messages::Outgoing;

use crate::metrics::Metrics;
use crate::observe::stats::StatsBook;
use crate::store;

/// A heartbeat snapshot older than this is not live.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(45);
/// Missed heartbeat intervals before a worker is offline.
pub const OFFLINE_AFTER_INTERVALS: u32 = 3;
const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// What a worker reports about jobs and apps, in the order its connection received it. The
/// hub only hands these on; the job layer applies them (`jobs::events`), off the socket's read
/// loop. Each connection's channels carry boxes (reports here, frames to send in
/// [`ConnHandle`]): a channel allocates its first block of 32 slots at once, so a slot is a
/// pointer whatever the message; the large variants are boxed too, so that a report's own
/// allocation stays small (a test keeps it at 32 bytes).
#[derive(Debug)]
pub enum Report {
    /// The connection's first valid `hello`: the worker's inventory after a (re)connect.
    Hello(Box<HelloReport>),
    JobAccepted(JobAccepted),
    JobProgress(JobProgress),
    JobResult(Box<JobResult>),
    Log(Box<Log>),
    AppStates(AppStates),
}

/// A `hello`, as the job layer needs it.
#[derive(Debug)]
pub struct HelloReport {
    pub version: String,
    pub containers: Vec<ContainerInfo>,
    pub running_jobs: Vec<RunningJob>,
    /// When the connection opened: jobs leased before it and not running were lost.
    pub connected_at: chrono::DateTime<chrono::Utc>,
}

/// One connection's reports, in order; the channel closes when the connection ends.
#[derive(Debug)]
pub struct Reports {
    pub worker_id: i64,
    pub rx: mpsc::Receiver<Box<Report>>,
}

/// What the slot holds, taken out: the first caller gets it, later ones `None`.
fn take_once<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    match slot.lock() {
        Ok(mut g) => g.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

/// Reports one connection may have waiting before its read loop waits for them to be applied.
const REPORTS_QUEUED: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    WorkerOnline { worker_id: i64 },
    WorkerOffline { worker_id: i64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("unknown command; allowed: {}", AdminCommand::list())]
    UnknownCommand,
    #[error("the worker is not connected")]
    Offline,
    #[error("the worker did not answer before the deadline")]
    Timeout,
}

#[derive(Debug)]
struct ConnHandle {
    id: String,
    tx: mpsc::Sender<Box<Outgoing>>,
    close: CancellationToken,
}

#[derive(Debug)]
struct Live {
    conn: Option<ConnHandle>,
    last_frame: Instant,
    snapshot: Option<(Heartbeat, Instant)>,
    online: bool,
    /// A heartbeat arrived since the last flush.
    beat_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Live {
    fn new() -> Self {
        Self { conn: None, last_frame: Instant::now(), snapshot: None, online: false, beat_at: None }
    }
}

/// What the internal API shows of a worker's link.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkStatus {
    pub worker_id: i64,
    pub connected: bool,
    pub online: bool,
    pub seconds_since_last_frame: u64,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    /// This process's id in `workers.connected_to`.
    holder: String,
    heartbeat: Duration,
    /// Boxed: the map keeps spare buckets (up to half of them), which then cost a pointer.
    workers: Mutex<HashMap<i64, Box<Live>>>,
    /// Admin queries awaiting their reply, by (worker, query id): a reply counts only from the
    /// worker the query went to.
    pending: Mutex<HashMap<(i64, String), oneshot::Sender<AdminQueryReply>>>,
    metrics: Arc<Metrics>,
    /// Live per-app figures by (reporting worker, app).
    stats: Arc<StatsBook>,
    events: broadcast::Sender<HubEvent>,
    /// Each registered connection's report channel, for the applier to take.
    reports: mpsc::UnboundedSender<Reports>,
    reports_rx: Mutex<Option<mpsc::UnboundedReceiver<Reports>>>,
    /// Workers whose routes may have changed, for the route pusher to take.
    route_changes: mpsc::UnboundedSender<RouteChange>,
    route_changes_rx: Mutex<Option<mpsc::UnboundedReceiver<RouteChange>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A worker whose routes or certificates may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    pub worker_id: i64,
    /// It has just connected: it holds nothing this control plane sent before.
    pub connected: bool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("connections", &self.connection_count()).finish()
    }
}

impl Hub {
    pub fn new(db: PgPool, heartbeat: Duration, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        let (events, _) = broadcast::channel(256);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (route_changes, route_changes_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                db,
                holder: format!("cp-{}", hex::encode(wisehosting_crypto::random_bytes::<8>())),
                heartbeat,
                workers: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                metrics,
                stats: Arc::new(StatsBook::default()),
                events,
                reports,
                reports_rx: Mutex::new(Some(reports_rx)),
                route_changes,
                route_changes_rx: Mutex::new(Some(route_changes_rx)),
                shutdown,
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.inner.heartbeat
    }

    /// This control plane's id, written as `workers.connected_to` of the workers it holds.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// How old a worker's persisted heartbeat is when no control plane holds it any more:
    /// three intervals of silence, plus one flush period and one interval of slack.
    pub fn orphaned_after(&self) -> Duration {
        self.inner.heartbeat * (OFFLINE_AFTER_INTERVALS + 1) + FLUSH_EVERY
    }

    /// Ids of the workers connected to this control plane.
    pub fn connected_ids(&self) -> Vec<i64> {
        self.with_workers(|w| w.iter().filter(|(_, l)| l.conn.is_some()).map(|(id, _)| *id).collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// The stream of connections' report channels, once: whoever applies reports takes it.
    pub fn take_reports(&self) -> Option<mpsc::UnboundedReceiver<Reports>> {
        take_once(&self.inner.reports_rx)
    }

    /// The stream of workers whose routes may have changed, once: the route pusher takes it.
    pub fn take_route_changes(&self) -> Option<mpsc::UnboundedReceiver<RouteChange>> {
        take_once(&self.inner.route_changes_rx)
    }

    /// A report channel for a connection that just proved itself.
    fn open_reports(&self, worker_id: i64) -> mpsc::Sender<Box<Report>> {
        let (tx, rx) = mpsc::channel(REPORTS_QUEUED);
        let _ = self.inner.reports.send(Reports { worker_id, rx });
        tx
    }

    fn with_workers<R>(&self, f: impl FnOnce(&mut HashMap<i64, Box<Live>>) -> R) -> R {
        let mut guard = match self.inner.workers.lock() {
            Ok(g) => g,
            // A panic while holding the lock cannot leave the map half-updated in a way that
            // matters more than losing the hub; keep serving.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn is_connected(&self, worker_id: i64) -> bool {
        self.with_workers(|w| w.get(&worker_id).is_some_and(|l| l.conn.is_some()))
    }

    pub fn is_online(&self, worker_id: i64) -> bool {
        self.with_workers(|w| w.get(&worker_id).is_some_and(|l| l.online))
    }

    pub fn connection_count(&self) -> usize {
        self.with_workers(|w| w.values().filter(|l| l.conn.is_some()).count())
    }

    pub fn connection_id(&self, worker_id: i64) -> Option<String> {
        self.with_workers(|w| w.get(&worker_id).and_then(|l| l.conn.as_ref().map(|c| c.id.clone())))
    }

    /// The latest heartbeat if it is fresher than [`SNAPSHOT_TTL`].
    pub fn snapshot(&self, worker_id: i64) -> Option<Heartbeat> {
        self.with_workers(|w| {
            w.get(&worker_id)
                .and_then(|l| l.snapshot.as_ref())
                .filter(|(_, at)| at.elapsed() <= SNAPSHOT_TTL)
                .map(|(hb, _)| hb.clone())
        })
    }

    pub fn link_statuses(&self) -> Vec<LinkStatus> {
        self.with_workers(|w| {
            let mut out: Vec<LinkStatus> = w
                .iter()
                .map(|(id, l)| LinkStatus {
                    worker_id: *id,
                    connected: l.conn.is_some(),
                    online: l.online,
                    seconds_since_last_frame: l.last_frame.elapsed().as_secs(),
                })
                .collect();
            out.sort_by_key(|s| s.worker_id);
            out
        })
    }

    /// Queues a frame for a connected worker.
    pub fn send(&self, worker_id: i64, out: Outgoing) -> Result<(), HubError> {
        let tx = self.with_workers(|w| w.get(&worker_id).and_then(|l| l.conn.as_ref().map(|c| c.tx.clone())));
        let tx = tx.ok_or(HubError::Offline)?;
        tx.try_send(Box::new(out)).map_err(|_| HubError::Offline)
    }

    /// Something that may move a route of `worker_id`'s apps happened: its table is pushed
    /// again (changes close together are coalesced). A worker that is not connected gets its
    /// table when it comes back.
    pub fn routes_changed(&self, worker_id: i64) {
        let _ = self.inner.route_changes.send(RouteChange { worker_id, connected: false });
    }

    /// The worker has just said hello: its table and its certificates are pushed whole.
    pub fn worker_ready(&self, worker_id: i64) {
        let _ = self.inner.route_changes.send(RouteChange { worker_id, connected: true });
    }

    /// Runs one of the read-only podman commands ([`AdminCommand`]) on a worker and waits for
    /// its reply.
    pub async fn worker_query(
        &self,
        worker_id: i64,
        command: &str,
        deadline: Duration,
    ) -> Result<AdminQueryReply, HubError> {
        let command = AdminCommand::parse(command).ok_or(HubError::UnknownCommand)?;
        if !self.is_connected(worker_id) {
            return Err(HubError::Offline);
        }
        // Unguessable: a worker cannot answer a query it was not sent.
        let query_id = format!("q-{}", hex::encode(wisehosting_crypto::random_bytes::<16>()));
        let key = (worker_id, query_id.clone());
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(key.clone(), tx);
        let sent = self.send(
            worker_id,
            Outgoing::of(&AdminQuery { query_id: query_id.clone(), command: command.as_str().into() }),
        );
        let result = match sent {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(HubError::Offline),
                Err(_) => Err(HubError::Timeout),
            },
        };
        self.lock_pending().remove(&key);
        result
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(i64, String), oneshot::Sender<AdminQueryReply>>> {
        match self.inner.pending.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Routes a reply from `worker_id` to its waiter; a stray or late reply, or one from
    /// another worker than the query went to, is dropped.
    fn complete_query(&self, worker_id: i64, reply: AdminQueryReply) {
        let waiter = self.lock_pending().remove(&(worker_id, reply.query_id.clone()));
        match waiter {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => {
                tracing::debug!(query_id = %reply.query_id.chars().take(40).collect::<String>(), "dropped a stray admin query reply")
            }
        }
    }

    /// Registers a new connection, closing any older one of the same worker.
    fn attach(&self, worker_id: i64, id: String, tx: mpsc::Sender<Box<Outgoing>>, close: CancellationToken) {
        let old = self.with_workers(|w| {
            let live = w.entry(worker_id).or_insert_with(|| Box::new(Live::new()));
            live.last_frame = Instant::now();
            live.conn.replace(ConnHandle { id, tx, close })
        });
        if let Some(old) = old {
            old.close.cancel();
        }
    }

    fn detach(&self, worker_id: i64, id: &str) {
        self.with_workers(|w| {
            if let Some(live) = w.get_mut(&worker_id)
                && live.conn.as_ref().is_some_and(|c| c.id == id)
            {
                live.conn = None;
            }
        });
    }

    fn touch(&self, worker_id: i64) {
        self.with_workers(|w| {
            if let Some(live) = w.get_mut(&worker_id) {
                live.last_frame = Instant::now();
            }
        });
    }

    fn record_heartbeat(&self, worker_id: i64, heartbeat: Heartbeat) {
        self.with_workers(|w| {
            if let Some(live) = w.get_mut(&worker_id) {
                live.snapshot = Some((heartbeat, Instant::now()));
                live.beat_at = Some(chrono::Utc::now());
            }
        });
    }

    /// Per-app figures, under the worker that reported them ([`StatsBook`]).
    pub fn stats(&self) -> &Arc<StatsBook> {
        &self.inner.stats
    }

    /// Marks a worker online after its `hello`; persists only a change of state.
    pub async fn came_online(&self, worker_id: i64, version: &str) {
        let was_online = self.with_workers(|w| {
            let live = w.entry(worker_id).or_insert_with(|| Box::new(Live::new()));
            std::mem::replace(&mut live.online, true)
        });
        if let Err(e) =
            store::workers::mark_online(&self.inner.db, worker_id, version, &self.inner.holder).await
        {
            tracing::warn!(worker_id, error = %e, "cannot record that a worker is online");
        }
        if !was_online {
            tracing::info!(worker_id, "worker online");
            let _ = self.inner.events.send(HubEvent::WorkerOnline { worker_id });
        }
    }

    /// Starts the sweeper (offline detection) and the heartbeat flusher. Workers the database
    /// thinks online, held by an earlier run or by another control plane, are left to
    /// reconnect: the sweep of orphans marks them offline if they do not, anywhere.
    pub async fn start(&self) -> Result<(), sqlx::Error> {
        let hub = self.clone();
        self.inner.tasks.spawn(async move { hub.sweep_forever().await });
        let hub = self.clone();
        self.inner.tasks.spawn(async move { hub.flush_forever().await });
        Ok(())
    }

    async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(
            self.inner.heartbeat.min(Duration::from_secs(1)).max(Duration::from_millis(100)),
        );
        let mut orphans = tokio::time::interval(FLUSH_EVERY / 2);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => self.sweep().await,
                _ = orphans.tick() => self.sweep_orphans().await,
            }
        }
    }

    /// Marks offline the workers no control plane has heard of for [`Hub::orphaned_after`].
    async fn sweep_orphans(&self) {
        let silent = i64::try_from(self.orphaned_after().as_secs()).unwrap_or(i64::MAX);
        match store::workers::mark_orphans_offline(&self.inner.db, silent).await {
            Ok(gone) => {
                for worker_id in gone {
                    tracing::warn!(worker_id, "worker offline: no control plane has heard from it");
                    let _ = self.inner.events.send(HubEvent::WorkerOffline { worker_id });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot sweep workers no control plane holds"),
        }
    }

    /// Marks offline every worker silent for three heartbeat intervals.
    async fn sweep(&self) {
        let limit = self.inner.heartbeat * OFFLINE_AFTER_INTERVALS;
        let silent: Vec<(i64, Option<CancellationToken>, Duration)> = self.with_workers(|w| {
            w.iter_mut()
                .filter(|(_, l)| l.online && l.last_frame.elapsed() > limit)
                .map(|(id, l)| {
                    l.online = false;
                    l.snapshot = None;
                    (*id, l.conn.take().map(|c| c.close), l.last_frame.elapsed())
                })
                .collect()
        });
        for (worker_id, close, silent_for) in silent {
            if let Some(close) = close {
                close.cancel();
            }
            let since = chrono::Utc::now() - chrono::Duration::from_std(silent_for).unwrap_or_default();
            // A worker that said hello to another control plane since is not this one's to mark.
            match store::workers::mark_offline(&self.inner.db, worker_id, &self.inner.holder, since).await {
                Ok(true) => {
                    tracing::warn!(
                        worker_id,
                        "worker offline: no frame for {} heartbeat intervals",
                        OFFLINE_AFTER_INTERVALS
                    );
                    let _ = self.inner.events.send(HubEvent::WorkerOffline { worker_id });
                }
                Ok(false) => {
                    tracing::info!(worker_id, "a worker this control plane held is held by another now")
                }
                Err(e) => tracing::warn!(worker_id, error = %e, "cannot record that a worker is offline"),
            }
        }
    }

    async fn flush_forever(&self) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
                _ = tick.tick() => self.flush().await,
            }
        }
    }

    async fn flush(&self) {
        const MB: u64 = 1024 * 1024;
        let beats: Vec<_> = self.with_workers(|w| {
            w.iter_mut()
                .filter_map(|(id, l)| {
                    let at = l.beat_at.take()?;
                    let load = l.snapshot.as_ref().map(|(hb, _)| hb.clone()).unwrap_or_default();
                    Some(store::workers::Beat {
                        worker_id: *id,
                        at,
                        cpu_pct: load.cpu_pct,
                        mem_used_mb: i64::try_from(load.mem_used_bytes / MB).unwrap_or(i64::MAX),
                        mem_total_mb: i64::try_from(load.mem_total_bytes / MB).unwrap_or(i64::MAX),
                    })
                })
                .collect()
        });
        if let Err(e) = store::workers::flush_heartbeats(&self.inner.db, &beats).await {
            tracing::warn!(error = %e, "cannot persist heartbeat times");
        }
    }

    /// Wraps a connection's future so shutdown can wait for it.
    pub fn track<F: std::future::Future>(&self, task: F) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.inner.tasks.track_future(task)
    }

    /// Waits for every connection and background task after the shutdown token fired.
    pub async fn drained(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap_or_else(|e| unreachable!("a static URL parses: {e}"));
        Hub::new(pool, Duration::from_secs(5), Arc::new(Metrics::default()), CancellationToken::new())
    }

    #[test]
    fn a_report_stays_small_so_each_connections_channel_does() {
        assert!(std::mem::size_of::<Report>() <= 32, "{} bytes", std::mem::size_of::<Report>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_is_live_for_45_seconds_and_then_not() {
        let hub = hub();
        let (tx, _rx) = mpsc::channel(1);
        hub.attach(7, "c1".into(), tx, CancellationToken::new());
        hub.record_heartbeat(7, Heartbeat { cpu_pct: 3.0, ..Heartbeat::default() });
        tokio::time::advance(Duration::from_secs(44)).await;
        assert_eq!(hub.snapshot(7).map(|h| h.cpu_pct), Some(3.0));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(hub.snapshot(7), None, "stale snapshots are not live");
    }

    #[tokio::test]
    async fn a_newer_connection_replaces_and_closes_the_older_one() {
        let hub = hub();
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let first = CancellationToken::new();
        hub.attach(7, "c1".into(), tx1, first.clone());
        hub.attach(7, "c2".into(), tx2, CancellationToken::new());
        assert!(first.is_cancelled());
        assert_eq!(hub.connection_id(7).as_deref(), Some("c2"));
        // The old connection's detach must not remove the new one.
        hub.detach(7, "c1");
        assert!(hub.is_connected(7));
        hub.detach(7, "c2");
        assert!(!hub.is_connected(7));
    }

    #[tokio::test]
    async fn a_stray_reply_is_dropped_without_blocking() {
        let hub = hub();
        hub.complete_query(7, AdminQueryReply { query_id: "q-1-1".into(), ..AdminQueryReply::default() });
        assert!(hub.lock_pending().is_empty());
    }

    #[tokio::test]
    async fn a_query_is_answered_only_by_the_worker_it_went_to_and_its_id_is_unguessable() {
        let hub = hub();
        let (tx, mut rx) = mpsc::channel(4);
        hub.attach(7, "c7".into(), tx, CancellationToken::new());
        let asking = hub.clone();
        let query = tokio::spawn(async move { asking.worker_query(7, "ps", Duration::from_secs(5)).await });
        let sent = rx.recv().await.expect("the query is sent");
        let sent: AdminQuery = serde_json::from_str(&sent.payload).expect("admin query");
        let random = sent.query_id.strip_prefix("q-").expect("prefix");
        assert!(random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()), "{}", sent.query_id);
        // Worker 8 replays the id: dropped; the query still waits for worker 7.
        let forged = AdminQueryReply {
            query_id: sent.query_id.clone(),
            output: "forged".into(),
            ..AdminQueryReply::default()
        };
        hub.complete_query(8, forged);
        let real = AdminQueryReply {
            query_id: sent.query_id.clone(),
            output: "real".into(),
            ..AdminQueryReply::default()
        };
        hub.complete_query(7, real);
        let reply = query.await.expect("join").expect("answered");
        assert_eq!(reply.output, "real");
        assert!(hub.lock_pending().is_empty());
    }
}
