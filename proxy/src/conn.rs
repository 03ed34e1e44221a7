//! One connection to a worker: its Unix-socket stream and read buffer, the request written to
//! it, the response head read back (bounded in time and size, informational answers skipped),
//! the body read on in pieces, and whether it may go back to its endpoint's pool of idle
//! keep-alive connections ([`crate::upstreams::Endpoint`]) afterwards.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::wire::{self, HeadError, HeaderAt, ResponseHead};

/// A worker's response head may not be larger than this.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read this much at a time.
const READ_SIZE: usize = 16 * 1024;
/// A pooled connection unused for longer is closed rather than reused.
pub const MAX_IDLE: Duration = Duration::from_secs(50);

/// Why no response head came back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The worker closed the connection before answering anything.
    #[error("the worker closed the connection without answering")]
    Closed,
    #[error("the worker did not answer within the read timeout")]
    Timeout,
    #[error("reading from the worker: {0}")]
    Io(#[from] io::Error),
    #[error("the worker's answer is not valid HTTP/1.1: {0}")]
    Bad(#[from] HeadError),
}

pub struct WorkerConn {
    stream: UnixStream,
    /// The response head, then whatever body bytes arrived with it (or the last piece read).
    pub buf: Vec<u8>,
    /// The head's headers, as positions in `buf`.
    pub headers: Vec<HeaderAt>,
    idle_since: Instant,
    /// It came from the pool (it served an earlier request).
    pub reused: bool,
}

impl WorkerConn {
    pub async fn connect(path: &Path, timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(READ_SIZE),
            headers: Vec::with_capacity(16),
            idle_since: Instant::now(),
            reused: false,
        })
    }

    /// Whether it was idle too long to be trusted again.
    pub fn expired(&self) -> bool {
        self.idle_since.elapsed() > MAX_IDLE
    }

    /// Whether the worker has closed it (or sent something unasked) while it was idle. One
    /// non-blocking read; used before a request that must not be sent twice.
    pub fn closed_while_idle(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads until a final response head is complete; `buf` then starts with it.
    pub async fn read_head(
        &mut self,
        timeout: Duration,
        head_request: bool,
    ) -> Result<ResponseHead, ReadError> {
        self.buf.clear();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = wire::parse_response(
                    &self.buf,
                    MAX_RESPONSE_HEAD,
                    head_request,
                    &mut self.headers,
                )? {
                    if (100..200).contains(&head.status) {
                        // 100 Continue and the like: the final answer follows.
                        if head.status == 101 {
                            return Err(ReadError::Bad(HeadError::Malformed(
                                "a protocol switch nobody asked for",
                            )));
                        }
                        self.buf.drain(..head.len);
                        continue;
                    }
                    return Ok(head);
                }
            }
            let had = self.buf.len();
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Err(e)) if had == 0 && is_reset(&e) => return Err(ReadError::Closed),
                Ok(Err(e)) => return Err(ReadError::Io(e)),
                Ok(Ok(0)) if had == 0 => return Err(ReadError::Closed),
                Ok(Ok(0)) => {
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the worker closed the connection in the middle of its answer",
                    )))
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads the next piece of the body into `buf` (replacing what was there); an empty
    /// piece means the worker closed the connection.
    pub async fn read_piece(&mut self, timeout: Duration) -> io::Result<&[u8]> {
        self.buf.clear();
        match tokio::time::timeout(timeout, self.read_more()).await {
            Ok(Ok(_)) => Ok(&self.buf),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the worker stopped sending its answer",
            )),
        }
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Ready for the pool: marks when it became idle.
    pub fn idle(mut self) -> Self {
        self.buf.clear();
        self.idle_since = Instant::now();
        self.reused = true;
        self
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
