//! The worker's sale queue: every sale the counter posts waits here, and up to
//! `[worker] sale_writers` writers post what is waiting as one batch each
//! ([`apotheca_pharmacy::sale::post_batch`]): one transaction, one commit, one change announcement
//! for the batch. An idle counter's sale is posted at once (a batch of one); a busy one's
//! sales share the statements and the disk flush instead of queueing for them one by one.
//!
//! A transaction the database ended for another's sake (a deadlock, a serialization failure:
//! nothing of it was kept) is run again, up to [`BUSY_RETRIES`] times, before anyone is
//! answered: on Citus a tenant moved to another node ends a sale or two that way at the switch.
//! A batch whose transaction fails otherwise before its commit is posted again one sale at a
//! time, so one sale's failure never becomes another's (unless the database itself is unavailable:
//! then every sale of the batch gets that answer at once). A failure at the commit itself is answered as
//! it is: whether those sales were kept is then unknown, and retrying could sell twice.

use std::sync::{Arc, Mutex, Weak};

use deadpool_postgres::Object;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::changes;
use crate::state::{AppState, Inner};
use apotheca_pharmacy::sale::{self, Failed, Frame, Pending, Posted, Writes};
use apotheca_pharmacy::{Error, Result};

/// The most sales in one batch.
const MAX_BATCH: usize = 64;
/// How many times a transaction ended for another's sake is run again (after 20, 40, 80 ms).
const BUSY_RETRIES: u32 = 3;

struct Job {
    sale: Pending,
    reply: oneshot::Sender<Result<Posted>>,
}

pub struct SaleQueue {
    jobs: mpsc::UnboundedSender<Job>,
    /// Taken by the dispatcher, which starts with the first sale.
    waiting: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl Default for SaleQueue {
    fn default() -> Self {
        let (jobs, waiting) = mpsc::unbounded_channel();
        Self {
            jobs,
            waiting: Mutex::new(Some(waiting)),
        }
    }
}

/// Posts `sale` with whatever else is waiting, and answers for it alone.
pub async fn post(state: &AppState, sale: Pending) -> Result<Posted> {
    let queue = &state.sale_queue;
    let first = queue.waiting.lock().map(|mut w| w.take()).unwrap_or(None);
    if let Some(waiting) = first {
        let writers = state
            .settings
            .sale_writers
            .clamp(1, state.settings.pool_size.max(1));
        tokio::spawn(dispatch(state.downgrade(), waiting, writers));
    }
    let (reply, answer) = oneshot::channel();
    queue
        .jobs
        .send(Job { sale, reply })
        .map_err(|_| Error::Unavailable("the worker is shutting down".into()))?;
    answer
        .await
        .map_err(|_| Error::Unavailable("the worker is shutting down".into()))?
}

/// Hands what is waiting to a writer whenever one is free.
async fn dispatch(state: Weak<Inner>, mut waiting: mpsc::UnboundedReceiver<Job>, writers: usize) {
    let free = Arc::new(Semaphore::new(writers));
    loop {
        let Ok(writer) = free.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let Some(state) = AppState::upgrade(&state) else {
            return;
        };
        tokio::spawn(async move {
            write(&state, jobs).await;
            drop(writer);
        });
    }
}

async fn write(state: &AppState, jobs: Vec<Job>) {
    let (sales, replies): (Vec<Pending>, Vec<_>) =
        jobs.into_iter().map(|j| (j.sale, j.reply)).unzip();
    match attempt(state, &sales).await {
        Outcome::Posted(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        // One of the sales may be the cause: post each alone, so it fails alone. A database
        // that is unavailable (503: no connection, busy, timed out) is no sale's fault; the
        // whole batch gets that answer at once rather than one slow retry after another.
        Outcome::RolledBack(e) if sales.len() > 1 && !matches!(e, Error::Unavailable(_)) => {
            tracing::warn!(error = %e, sales = sales.len(), "a batch of sales failed; posting them one by one");
            for (sale, reply) in sales.iter().zip(replies) {
                let answer = alone(state, sale).await;
                let _ = reply.send(answer);
            }
        }
        Outcome::RolledBack(e) => {
            for (sale, reply) in sales.iter().zip(replies) {
                let answer = after_rollback(state, sale, e.clone()).await;
                let _ = reply.send(answer);
            }
        }
        Outcome::CommitFailed(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Posts one sale in a transaction of its own.
async fn alone(state: &AppState, sale: &Pending) -> Result<Posted> {
    match attempt(state, std::slice::from_ref(sale)).await {
        Outcome::Posted(mut answers) => answers.pop().unwrap_or_else(|| Err(Error::internal())),
        Outcome::RolledBack(e) => after_rollback(state, sale, e).await,
        Outcome::CommitFailed(e) => Err(e),
    }
}

enum Outcome {
    /// Committed; each sale's answer, in order.
    Posted(Vec<Result<Posted>>),
    /// The transaction failed before its commit: nothing was kept.
    RolledBack(Error),
    /// The commit failed: whether the sales were kept is unknown.
    CommitFailed(Error),
}

/// [`attempt_once`], again after a pause while the database ended it for another's sake.
async fn attempt(state: &AppState, sales: &[Pending]) -> Outcome {
    let mut retries = 0;
    loop {
        match attempt_once(state, sales).await {
            Outcome::RolledBack(e) if e.is_busy() && retries < BUSY_RETRIES => {
                retries += 1;
                tracing::info!(
                    retries,
                    sales = sales.len(),
                    "a sale transaction was ended for another's sake; running it again"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10 << retries)).await;
            }
            outcome => return outcome,
        }
    }
}

/// One transaction for `sales`, on a connection of its own: two round trips (the BEGIN with
/// the reads, the write with the COMMIT).
async fn attempt_once(state: &AppState, sales: &[Pending]) -> Outcome {
    let db = match state.db().await {
        Ok(db) => db,
        Err(e) => return Outcome::RolledBack(e),
    };
    // Until the transaction is known to be over, the connection must not go back to the
    // pool as it is (the pool does not check): if this future is dropped or panics meanwhile,
    // the connection is closed instead.
    let guard = Discard(Some(db));
    let db = guard.0.as_ref().expect("held");
    let writes = if state.settings.citus {
        Writes::PerTable
    } else {
        Writes::Together
    };
    let (outcome, ended) = match sale::post_batch(db, sales, Frame::Own, writes).await {
        Ok(answers) => (Outcome::Posted(answers), true),
        // A failed read leaves the transaction open and aborted; a failed write's COMMIT
        // already ended it (then this ROLLBACK only draws a warning).
        Err(Failed::Before(e)) => (
            Outcome::RolledBack(e),
            db.batch_execute("ROLLBACK").await.is_ok(),
        ),
        // A COMMIT that failed ended the transaction too (or the connection is gone, which the
        // pool sees).
        Err(Failed::Commit(e)) => (Outcome::CommitFailed(e), true),
    };
    // Over: the connection goes back before the announcement (without a change marker,
    // announcing takes one). Not known to be over: the guard closes it.
    if ended {
        guard.release();
    } else {
        drop(guard);
    }
    if let Outcome::Posted(answers) = &outcome {
        if answers.iter().any(|a| matches!(a, Ok(Posted::New(_)))) {
            changes::data_changed(state).await;
        }
    }
    outcome
}

/// A pooled connection that is closed, not given back, when dropped while still held.
struct Discard(Option<Object>);

impl Discard {
    /// Gives the connection back to the pool.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            drop(Object::take(db));
        }
    }
}

/// The answer for a sale whose transaction was rolled back with `e`: when another transaction
/// committed the same key at the same moment, that sale's invoice; otherwise the error.
async fn after_rollback(state: &AppState, sale: &Pending, e: Error) -> Result<Posted> {
    if !sale::is_duplicate_key(&e) {
        return Err(e);
    }
    earlier(state, sale, e).await
}

/// A sale whose key another transaction committed at the same moment: that sale's invoice.
async fn earlier(state: &AppState, sale: &Pending, race: Error) -> Result<Posted> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let key = sale.key().unwrap_or_default();
    match sale::find_by_key(&tx, key, sale.fingerprint()).await? {
        Some(id) => Ok(Posted::Earlier(id)),
        None => Err(race),
    }
}
