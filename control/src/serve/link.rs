//! Control's end of one worker's channel: a task that turns the worker's lines into
//! supervisor messages and writes control's messages ("drain") to the worker. The task ends
//! when the worker closes the channel or the supervisor drops the [`Link`].

use apotheca_protocol::channel::{ControlMessage, WorkerMessage};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::supervisor::Msg;
use super::worker::WorkerId;

/// What a worker's channel said.
#[derive(Debug)]
pub enum LinkEvent {
    Message(WorkerMessage),
    /// The worker closed its end (it is stopping), or sent something unreadable.
    Closed(Option<String>),
}

/// The supervisor's handle on a worker's channel; dropping it closes the channel.
pub struct Link {
    to_worker: mpsc::UnboundedSender<ControlMessage>,
}

impl Link {
    pub fn start(id: WorkerId, stream: UnixStream, events: mpsc::Sender<Msg>) -> Self {
        let (to_worker, mut outbox) = mpsc::unbounded_channel::<ControlMessage>();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let closed = loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => match WorkerMessage::parse(&line) {
                            Ok(message) => {
                                let event = LinkEvent::Message(message);
                                if events.send(Msg::Worker { id, event }).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => break Some(e.to_string()),
                        },
                        Ok(None) => break None,
                        Err(e) => break Some(e.to_string()),
                    },
                    out = outbox.recv() => match out {
                        // A failed write shows up as EOF on the read side.
                        Some(message) => {
                            let _ = write.write_all(format!("{message}\n").as_bytes()).await;
                        }
                        None => return,
                    },
                }
            };
            let _ = events
                .send(Msg::Worker {
                    id,
                    event: LinkEvent::Closed(closed),
                })
                .await;
        });
        Self { to_worker }
    }

    pub fn send(&self, message: ControlMessage) {
        let _ = self.to_worker.send(message);
    }
}
