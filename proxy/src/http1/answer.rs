//! What the HTTP/1.1 front writes back: the worker's answer (its head with the hop-by-hop
//! headers, those its `Connection` names too, replaced by the proxy's own, its body as it came — in one write when it came in
//! one read — a chunked one decoded for an HTTP/1.0 client), the proxy's own pages, the HTTPS
//! redirect, and the refusal of a request that could not be read.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Client, Req};
use crate::accesslog::Entry;
use crate::forward::{Admitted, Answered};
use crate::pages::Page;
use crate::wire::{Chunked, Framing, RequestHead};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Client<'_, S> {
    /// Sends the worker's answer on; whether the connection may go on.
    pub(super) async fn respond(
        &mut self,
        mut answered: Answered,
        admitted: Admitted,
        r: &mut Req,
    ) -> bool {
        let s = &self.edge.settings;
        let read_timeout = Duration::from_secs(s.upstream_read_timeout_secs);
        let framing = answered.head.body;
        let dechunk = framing == Framing::Chunked && r.http10;
        let close = !r.keep_alive || framing == Framing::UntilClose || dechunk;
        r.status = answered.head.status;
        self.write_response_head(&answered, &r.request_id, close, dechunk, r.http10);

        // The body: what came with the head, then the rest as it arrives.
        let mut chunked = Chunked::default();
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut first = true;
        let mut clean = true;
        let (done, worker_failed) = loop {
            let piece: &[u8] = if first {
                &answered.conn.buf[answered.head.len..]
            } else {
                match answered.conn.read_piece(read_timeout).await {
                    Ok(p) => p,
                    Err(e) => {
                        r.error = Some(format!("reading the answer: {e}"));
                        break (false, true);
                    }
                }
            };
            if !first && piece.is_empty() && framing != Framing::UntilClose {
                r.error =
                    Some("the worker closed the connection in the middle of its answer".into());
                break (false, true);
            }
            if !first {
                self.out.clear();
            }
            let before = self.out.len();
            let done = match framing {
                Framing::None => {
                    clean &= piece.is_empty();
                    true
                }
                Framing::Length(_) => {
                    let take = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&piece[..take]);
                    left -= take as u64;
                    clean &= take == piece.len();
                    left == 0
                }
                Framing::Chunked => {
                    let out = &mut self.out;
                    let used = match chunked.feed(piece, |data| {
                        if dechunk {
                            out.extend_from_slice(data)
                        }
                    }) {
                        Ok(used) => used,
                        Err(e) => {
                            r.error = Some(format!("the worker's answer: {e}"));
                            break (false, true);
                        }
                    };
                    if !dechunk {
                        out.extend_from_slice(&piece[..used]);
                    }
                    clean &= used == piece.len();
                    chunked.done()
                }
                Framing::UntilClose => {
                    self.out.extend_from_slice(piece);
                    !first && piece.is_empty()
                }
            };
            r.bytes += self.out.len() - before;
            first = false;
            if done {
                break (true, false);
            }
            if let Err(e) = self.send_out().await {
                r.error = Some(format!("writing to the client: {e}"));
                return false;
            }
        };
        // The worker's part is over: its connection and the tenant's slot are free before
        // the last write to the client, however slow that client is.
        if done {
            answered.release(clean);
        } else {
            drop(answered);
        }
        drop(admitted);
        if worker_failed {
            // Part of an answer was sent (at least its head): the client must see it broken.
            return false;
        }
        if let Err(e) = self.send_out().await {
            r.error = Some(format!("writing to the client: {e}"));
            return false;
        }
        !close
    }

    /// The worker's status line and headers, but the hop-by-hop ones, with the proxy's own.
    fn write_response_head(
        &mut self,
        answered: &Answered,
        request_id: &str,
        close: bool,
        dechunk: bool,
        http10: bool,
    ) {
        let s = &self.edge.settings;
        let hsts = self.https && s.hsts_max_age_secs > 0;
        let head = &answered.head;
        let buf = &answered.conn.buf;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, head.status);
        out.push(b' ');
        out.extend_from_slice(&buf[head.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        for h in &answered.conn.headers {
            let name = h.name(buf);
            let pass = if name.eq_ignore_ascii_case("content-length") {
                matches!(head.body, Framing::None | Framing::Length(_))
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.body == Framing::Chunked && !dechunk
            } else {
                answered.passes(name, hsts)
            };
            if pass {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value(buf));
                out.extend_from_slice(b"\r\n");
            }
        }
        self.push_own_headers(request_id, close, http10);
    }

    /// `X-Request-Id`, HSTS on HTTPS, `Connection: close` when closing (an HTTP/1.0 client
    /// that stays is told `keep-alive`), and the blank line.
    fn push_own_headers(&mut self, request_id: &str, close: bool, http10: bool) {
        let s = &self.edge.settings;
        let out = &mut self.out;
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        if self.https && s.hsts_max_age_secs > 0 {
            out.extend_from_slice(b"strict-transport-security: max-age=");
            push_number(out, s.hsts_max_age_secs);
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Answers with a page of the proxy's own; `Some(bytes the request took)` when the
    /// connection may go on (a body not yet read closes it).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn own(
        &mut self,
        page: Page,
        r: &mut Req,
        head: &RequestHead,
    ) -> Option<usize> {
        let consumed = self.consumed_without_reading(head);
        let close = !r.keep_alive || consumed.is_none();
        let page = page.render(r.json);
        r.status = page.status;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_status(out, page.status);
        out.push(b' ');
        out.extend_from_slice(reason(page.status).as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(page.content_type.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        push_number(out, page.body.len() as u64);
        out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
        if let Some(secs) = page.retry_after {
            out.extend_from_slice(b"retry-after: ");
            push_number(out, u64::from(secs));
            out.extend_from_slice(b"\r\n");
        }
        self.push_own_headers(&r.request_id, close, head.http10);
        if !r.is_head {
            self.out.extend_from_slice(&page.body);
            r.bytes = page.body.len();
        }
        if let Err(e) = self.send_out().await {
            r.error = Some(format!("writing to the client: {e}"));
            return None;
        }
        if close {
            None
        } else {
            consumed
        }
    }

    /// The HTTPS redirect (308, method and body kept by the client).
    pub(super) async fn redirect(
        &mut self,
        location: &str,
        r: &mut Req,
        head: &RequestHead,
    ) -> Option<usize> {
        let consumed = self.consumed_without_reading(head);
        let close = !r.keep_alive || consumed.is_none();
        r.status = 308;
        self.out.clear();
        self.out
            .extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\nlocation: ");
        self.out.extend_from_slice(location.as_bytes());
        self.out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
        self.push_own_headers(&r.request_id, close, head.http10);
        self.send_out().await.ok()?;
        if close {
            None
        } else {
            consumed
        }
    }

    /// How many bytes a request took when its body (if any) is already all in `buf`.
    fn consumed_without_reading(&self, head: &RequestHead) -> Option<usize> {
        match head.body {
            Framing::None | Framing::UntilClose => Some(head.len),
            Framing::Length(n) => usize::try_from(n)
                .ok()
                .map(|n| head.len + n)
                .filter(|end| *end <= self.buf.len()),
            Framing::Chunked => None,
        }
    }

    /// A request that could not be read (malformed, too large, too slow): answered, then the
    /// connection closes.
    pub(super) async fn refuse(&mut self, page: Page, error: Option<String>) {
        let started = Instant::now();
        let _counted = self.edge.in_flight.enter();
        let request_id = self.edge.request_id(None);
        let rendered = page.render(false);
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        push_status(&mut self.out, rendered.status);
        self.out.push(b' ');
        self.out
            .extend_from_slice(reason(rendered.status).as_bytes());
        self.out
            .extend_from_slice(b"\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: ");
        push_number(&mut self.out, rendered.body.len() as u64);
        self.out
            .extend_from_slice(b"\r\ncache-control: no-store\r\n");
        self.push_own_headers(&request_id, true, false);
        self.out.extend_from_slice(&rendered.body);
        let _ = self.send_out().await;
        self.edge.finish(
            &Entry {
                tenant: "-",
                host: "-",
                method: "-",
                path: "-",
                status: rendered.status,
                bytes: rendered.body.len(),
                latency: started.elapsed(),
                worker: "-",
                request_id: &request_id,
                client: self.ip,
                error,
            },
            false,
        );
    }
}

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

fn push_number(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "{n}");
}
