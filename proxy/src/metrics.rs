//! The proxy's figures, per tenant — requests by status class, latency histogram, requests in
//! flight, wakes and wake latency — rendered as Prometheus text on the admin listener
//! (`GET /metrics`, followed by control's own: each tenant's workers and their memory, with
//! `apotheca_control_up` saying whether control answered; `GET /health` answers 200 while
//! the process serves). The admin listener
//! is a Pingora service like the others, so an upgrade (SIGQUIT) hands it over too.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hyper::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::control::Control;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Default)]
struct TenantFigures {
    /// By status class: 1xx..5xx, and 0 for requests that got no answer.
    by_class: [AtomicU64; 6],
    latency: Histogram,
    in_flight: AtomicI64,
    woken: AtomicU64,
    failed_wakes: AtomicU64,
    wake_latency: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    tenants: RwLock<BTreeMap<String, Arc<TenantFigures>>>,
}

impl Metrics {
    fn tenant(&self, name: &str) -> Arc<TenantFigures> {
        if let Some(t) = self.tenants.read().ok().and_then(|m| m.get(name).cloned()) {
            return t;
        }
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// A request was admitted and is now in flight.
    pub fn enter(&self, tenant: &str) {
        self.tenant(tenant)
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended (`admitted`: it had been counted by [`Self::enter`]).
    pub fn request(&self, tenant: &str, status: u16, latency: Duration, admitted: bool) {
        let t = self.tenant(tenant);
        let class = usize::from(status / 100).min(5);
        t.by_class[class].fetch_add(1, Ordering::Relaxed);
        t.latency.observe(latency);
        if admitted {
            t.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn wake(&self, tenant: &str, latency: Duration, ok: bool) {
        let t = self.tenant(tenant);
        if ok {
            t.woken.fetch_add(1, Ordering::Relaxed);
        } else {
            t.failed_wakes.fetch_add(1, Ordering::Relaxed);
        }
        t.wake_latency.observe(latency);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let tenants = self.tenants.read().map(|m| m.clone()).unwrap_or_default();
        out.push_str("# TYPE apotheca_proxy_requests_total counter\n");
        for (name, t) in &tenants {
            for (class, n) in t.by_class.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let class = if class == 0 {
                        "none".to_owned()
                    } else {
                        format!("{class}xx")
                    };
                    let _ = writeln!(
                        out,
                        "apotheca_proxy_requests_total{{tenant=\"{name}\",class=\"{class}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# TYPE apotheca_proxy_in_flight gauge\n");
        for (name, t) in &tenants {
            let _ = writeln!(
                out,
                "apotheca_proxy_in_flight{{tenant=\"{name}\"}} {}",
                t.in_flight.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE apotheca_proxy_request_seconds histogram\n");
        for (name, t) in &tenants {
            t.latency.render(
                &mut out,
                "apotheca_proxy_request_seconds",
                &format!("tenant=\"{name}\""),
            );
        }
        out.push_str("# TYPE apotheca_proxy_wakes_total counter\n");
        for (name, t) in &tenants {
            let _ = writeln!(
                out,
                "apotheca_proxy_wakes_total{{tenant=\"{name}\",result=\"ok\"}} {}",
                t.woken.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "apotheca_proxy_wakes_total{{tenant=\"{name}\",result=\"failed\"}} {}",
                t.failed_wakes.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE apotheca_proxy_wake_seconds histogram\n");
        for (name, t) in &tenants {
            if t.wake_latency.count.load(Ordering::Relaxed) > 0 {
                t.wake_latency.render(
                    &mut out,
                    "apotheca_proxy_wake_seconds",
                    &format!("tenant=\"{name}\""),
                );
            }
        }
        out
    }
}

/// The admin listener's answers; `/metrics` adds control's figures (each tenant's workers and
/// their memory) to the proxy's own; `/health` says the proxy runs, `/ready` that its control
/// serves too.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub control: Arc<Control>,
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = match session.req_header().uri.path() {
            "/metrics" => {
                let mut body = self.metrics.render();
                match self.control.metrics(Duration::from_secs(2)).await {
                    Ok(control) => {
                        body.push_str("# TYPE apotheca_control_up gauge\napotheca_control_up 1\n");
                        body.push_str(&control);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics: control's figures left out");
                        body.push_str("# TYPE apotheca_control_up gauge\napotheca_control_up 0\n");
                    }
                }
                (StatusCode::OK, body)
            }
            "/health" => (StatusCode::OK, "ok\n".to_owned()),
            // What a balancer checks: this host can serve only while its control does (it
            // wakes the workers, and they end soon after it does; it stops serving when it
            // starts to drain).
            "/ready" => match self.control.ready(Duration::from_secs(1)).await {
                Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("control is not serving: {e}\n"),
                ),
            },
            _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; version=0.0.4")
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::default();
        m.enter("acme");
        m.request("acme", 200, Duration::from_millis(3), true);
        m.request("acme", 503, Duration::from_millis(1), false);
        m.wake("beta", Duration::from_millis(40), true);
        let text = m.render();
        assert!(text.contains("apotheca_proxy_requests_total{tenant=\"acme\",class=\"2xx\"} 1"));
        assert!(text.contains("apotheca_proxy_requests_total{tenant=\"acme\",class=\"5xx\"} 1"));
        assert!(text.contains("apotheca_proxy_in_flight{tenant=\"acme\"} 0"));
        assert!(
            text.contains("apotheca_proxy_request_seconds_bucket{tenant=\"acme\",le=\"0.005\"} 2")
        );
        assert!(text.contains("apotheca_proxy_wakes_total{tenant=\"beta\",result=\"ok\"} 1"));
    }
}
