//! The gate every gRPC call passes, in this order: access (tokens and
//! roles), admission (the global concurrency limit, shedding at once),
//! the call itself (a panic in it becomes a [`status::fault`]), then the
//! one status remap ([`status::wire_response`]) and the call's metrics.
//!
//! A refused call never reaches a handler, so it changes nothing. Health is
//! open to probes and never shed: a saturated daemon still answers its load
//! balancer.

use super::metrics::Metrics;
use super::status;
use crate::access::{Need, Tokens};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Req = http::Request<tonic::body::Body>;
type Res = http::Response<tonic::body::Body>;

/// The rpcs banditd serves, for roles and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Choose,
    Reward,
    CreateCampaign,
    GetCampaign,
    ListCampaigns,
    DeleteCampaign,
    AddArms,
    RetireArm,
    GetStats,
    ExportDecisions,
    Health,
    Reflection,
    /// Any other path (answered `UNIMPLEMENTED` by the router).
    Other,
}

impl Rpc {
    pub fn from_path(path: &str) -> Rpc {
        match path {
            "/banditd.v1.Bandit/Choose" => Rpc::Choose,
            "/banditd.v1.Bandit/Reward" => Rpc::Reward,
            "/banditd.v1.Campaigns/CreateCampaign" => Rpc::CreateCampaign,
            "/banditd.v1.Campaigns/GetCampaign" => Rpc::GetCampaign,
            "/banditd.v1.Campaigns/ListCampaigns" => Rpc::ListCampaigns,
            "/banditd.v1.Campaigns/DeleteCampaign" => Rpc::DeleteCampaign,
            "/banditd.v1.Campaigns/AddArms" => Rpc::AddArms,
            "/banditd.v1.Campaigns/RetireArm" => Rpc::RetireArm,
            "/banditd.v1.Campaigns/GetStats" => Rpc::GetStats,
            "/banditd.v1.Campaigns/ExportDecisions" => Rpc::ExportDecisions,
            p if p.starts_with("/grpc.health.v1.Health/") => Rpc::Health,
            p if p.starts_with("/grpc.reflection.") => Rpc::Reflection,
            _ => Rpc::Other,
        }
    }

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Choose => "Choose",
            Rpc::Reward => "Reward",
            Rpc::CreateCampaign => "CreateCampaign",
            Rpc::GetCampaign => "GetCampaign",
            Rpc::ListCampaigns => "ListCampaigns",
            Rpc::DeleteCampaign => "DeleteCampaign",
            Rpc::AddArms => "AddArms",
            Rpc::RetireArm => "RetireArm",
            Rpc::GetStats => "GetStats",
            Rpc::ExportDecisions => "ExportDecisions",
            Rpc::Health => "Health",
            Rpc::Reflection => "Reflection",
            Rpc::Other => "other",
        }
    }

    /// What a caller needs to make this call.
    pub fn need(self) -> Need {
        match self {
            Rpc::Choose | Rpc::Reward => Need::Decide,
            Rpc::Health => Need::Nothing,
            Rpc::Reflection | Rpc::Other => Need::AnyToken,
            _ => Need::Admin,
        }
    }
}

/// What the gate enforces (shared by every connection).
#[derive(Debug)]
pub struct Rules {
    /// `None`: no tokens configured, every call is allowed.
    pub tokens: Option<Tokens>,
    /// Calls in flight at most (health not counted).
    pub max_in_flight: usize,
    pub metrics: Option<Arc<Metrics>>,
}

/// The tower layer that puts a [`Gate`] in front of the router.
#[derive(Debug, Clone)]
pub struct GateLayer {
    rules: Arc<Rules>,
    permits: Arc<Semaphore>,
}

impl GateLayer {
    pub fn new(rules: Rules) -> Self {
        let permits = Arc::new(Semaphore::new(rules.max_in_flight));
        GateLayer {
            rules: Arc::new(rules),
            permits,
        }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            rules: self.rules.clone(),
            permits: self.permits.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    rules: Arc<Rules>,
    permits: Arc<Semaphore>,
}

impl<S> tower::Service<Req> for Gate<S>
where
    S: tower::Service<Req, Response = Res> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Res;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Res, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let started = Instant::now();
        let rpc = Rpc::from_path(req.uri().path());
        let rules = self.rules.clone();
        let refused = |status: tonic::Status| -> Self::Future {
            let response = status::response(status);
            observe(&rules, rpc, &response, started);
            Box::pin(std::future::ready(Ok(response)))
        };
        if let Some(tokens) = &rules.tokens {
            let header = req.headers().get(http::header::AUTHORIZATION);
            if let Err(denied) = tokens.authorize(header.map(|h| h.as_bytes()), rpc.need()) {
                return refused(denied.into());
            }
        }
        let permit: Option<OwnedSemaphorePermit> = if rpc == Rpc::Health {
            None
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return refused(status::overloaded(rules.max_in_flight)),
            }
        };
        // Only with metrics on is there anything to count (and a header to read).
        let mut unanswered = Unanswered {
            metrics: rules.metrics.clone(),
            rpc,
            started,
            deadline: rules
                .metrics
                .as_ref()
                .and_then(|_| grpc_timeout(req.headers())),
        };
        // The clone that was made ready is the one called (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = CatchUnwind(Box::pin(inner.call(req)));
        Box::pin(async move {
            let result = call.await;
            drop(permit);
            // A method call, so that the block owns the whole guard (a
            // field assignment would capture the field alone).
            unanswered.answered();
            let response = match result {
                Ok(Ok(r)) => status::wire_response(r),
                Ok(Err(e)) => return Err(e),
                Err(()) => status::response(status::fault(&format!(
                    "the {} handler panicked",
                    rpc.name()
                ))),
            };
            observe(&rules, rpc, &response, started);
            Ok(response)
        })
    }
}

/// A call dropped before it answered: the client's deadline passed (tonic
/// ends the call at its `grpc-timeout`), the client cancelled it, or the
/// shutdown timeout cancelled it. Counted on drop, so that the metrics
/// see every call the gate let in.
struct Unanswered {
    /// Taken once the call answered (then counted with its status).
    metrics: Option<Arc<Metrics>>,
    rpc: Rpc,
    started: Instant,
    deadline: Option<std::time::Duration>,
}

impl Unanswered {
    fn answered(&mut self) {
        self.metrics = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            let elapsed = self.started.elapsed();
            m.observe(self.rpc, dropped_code(elapsed, self.deadline), elapsed);
        }
    }
}

/// How close to its deadline a dropped call counts as having reached it.
/// tonic's deadline timer starts before the gate reads the clock, and a
/// client that enforces the same deadline on its side cancels a moment
/// before the daemon's timer fires; either way the call ended because its
/// deadline came, though the gate's own clock reads a little short of it.
const DEADLINE_SLACK: std::time::Duration = std::time::Duration::from_millis(25);

/// The status a call dropped unanswered after `elapsed` is counted with.
fn dropped_code(
    elapsed: std::time::Duration,
    deadline: Option<std::time::Duration>,
) -> tonic::Code {
    match deadline {
        Some(d) if elapsed + DEADLINE_SLACK >= d => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Cancelled,
    }
}

/// The `grpc-timeout` header (gRPC over HTTP/2: at most 8 digits and a
/// unit), `None` when absent or malformed (tonic then sets no deadline).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn observe(rules: &Rules, rpc: Rpc, response: &Res, started: Instant) {
    if let Some(m) = &rules.metrics {
        // A status in the headers is the call's (every error of a unary
        // call); otherwise the call started and its status is in the
        // trailers: OK for banditd's unary calls.
        let code = status::header_code(response.headers()).unwrap_or(tonic::Code::Ok);
        m.observe(rpc, code, started.elapsed());
    }
}

/// Polls a future, turning a panic into `Err(())` (the handler's task
/// would otherwise die with the connection's stream reset).
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_dropped_at_its_deadline_by_the_gates_clock_or_a_moment_before_is_past_it() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let d = Some(ms(300));
        assert_eq!(dropped_code(ms(301), d), tonic::Code::DeadlineExceeded);
        // tonic's timer started before the gate read the clock (CI saw this).
        assert_eq!(dropped_code(ms(299), d), tonic::Code::DeadlineExceeded);
        assert_eq!(dropped_code(ms(200), d), tonic::Code::Cancelled);
        assert_eq!(dropped_code(ms(301), None), tonic::Code::Cancelled);
    }

    #[test]
    fn grpc_timeout_is_read_as_the_spec_writes_it() {
        use std::time::Duration;
        let t = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(
                "grpc-timeout",
                http::HeaderValue::from_str(v).expect("ascii"),
            );
            grpc_timeout(&h)
        };
        assert_eq!(t("300m"), Some(Duration::from_millis(300)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn roles_follow_the_path() {
        assert_eq!(
            Rpc::from_path("/banditd.v1.Bandit/Choose").need(),
            Need::Decide
        );
        assert_eq!(
            Rpc::from_path("/banditd.v1.Bandit/Reward").need(),
            Need::Decide
        );
        assert_eq!(
            Rpc::from_path("/banditd.v1.Campaigns/GetStats").need(),
            Need::Admin
        );
        assert_eq!(
            Rpc::from_path("/banditd.v1.Bandit/Nope").need(),
            Need::AnyToken
        );
        assert_eq!(
            Rpc::from_path("/grpc.health.v1.Health/Check").need(),
            Need::Nothing
        );
        assert_eq!(
            Rpc::from_path("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").need(),
            Need::AnyToken
        );
    }
}
