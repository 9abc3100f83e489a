//! What the load examples (`grpc_bench`, `soak`) share: starting a real
//! daemon (optionally pinned to a core), a light HTTP/2 gRPC client (the
//! `h2` crate, pre-encoded protobuf bodies, several times lighter per call
//! than a tonic client, so the server sets the pace), and pinning.

#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

pub type Client = h2::client::SendRequest<Bytes>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A length-prefixed gRPC message.
pub fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u8(0);
    b.put_u32(body.len() as u32);
    b.extend_from_slice(&body);
    b.freeze()
}

pub async fn connect(addr: SocketAddr) -> Result<Client, BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(tcp)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `n` connections for `workers` callers (one per 25).
pub async fn clients(addr: SocketAddr, workers: usize) -> Result<Vec<Client>, BoxError> {
    let n = workers.div_ceil(25).max(1);
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(connect(addr).await?);
    }
    Ok(out)
}

/// How a call ended: the response message, or the gRPC status code the
/// server answered with (`None`: no status at all, such as a reset stream).
pub enum Answer {
    Ok(Bytes),
    Status(Option<u16>),
}

/// One unary gRPC call. `Err` only for a broken connection or protocol.
pub async fn call_answer(
    client: &Client,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
) -> Result<Answer, BoxError> {
    let mut opened = None;
    call_answer_opened(client, addr, path, body, &mut opened).await
}

/// [`call_answer`], noting in `opened` when the stream was opened: when
/// the server's stream limit let it in (until then the call waits in this
/// client).
pub async fn call_answer_opened(
    client: &Client,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    opened: &mut Option<Instant>,
) -> Result<Answer, BoxError> {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let mut client = client.clone().ready().await?;
    let (resp, mut send) = client.send_request(req, false)?;
    send.send_data(body, true)?;
    // Ready again once this stream is open (h2 holds it while the
    // connection is at the server's limit).
    let _ = client.ready().await?;
    *opened = Some(Instant::now());
    let resp = resp.await?;
    let status_in_headers = resp.headers().get("grpc-status").cloned();
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    let status = match status_in_headers {
        Some(s) => Some(s),
        None => body
            .trailers()
            .await?
            .and_then(|t| t.get("grpc-status").cloned()),
    };
    let code = status.and_then(|s| s.to_str().ok()?.parse::<u16>().ok());
    match code {
        Some(0) if buf.len() >= 5 => Ok(Answer::Ok(buf.split_off(5).freeze())),
        Some(0) => Err(format!("{path}: short response").into()),
        other => Ok(Answer::Status(other)),
    }
}

/// One unary gRPC call that must succeed; returns the response message.
pub async fn call(
    client: &Client,
    addr: SocketAddr,
    path: &str,
    body: Bytes,
) -> Result<Bytes, BoxError> {
    match call_answer(client, addr, path, body).await? {
        Answer::Ok(b) => Ok(b),
        Answer::Status(code) => Err(format!("{path}: grpc-status {code:?}").into()),
    }
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(bin: &Path, core: Option<usize>) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string()]).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// The bare tonic echo (`examples/echo.rs`).
pub fn spawn_echo(bin: &Path, core: Option<usize>) -> Result<Server, BoxError> {
    let mut child = pinned(bin, core)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or("echo did not start")?
        .parse()?;
    Ok(Server {
        child,
        addr,
        dir: None,
    })
}

/// `banditd serve` on a fresh data directory on a free loopback port, with
/// `extra` flags. With `echo_warnings`, its WARN and ERROR log lines are
/// copied to stderr.
pub fn spawn_banditd(
    bin: &Path,
    core: Option<usize>,
    extra: &[&str],
    echo_warnings: bool,
) -> Result<Server, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut child = pinned(bin, core)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(extra)
        .env("RUST_LOG", "warn,banditd=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let err = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(err).lines();
    let addr = loop {
        let line = lines.next().ok_or("banditd did not start")??;
        if line.contains("banditd started") {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            break v["fields"]["listen"]
                .as_str()
                .ok_or("no listen field")?
                .parse()?;
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if echo_warnings && (line.contains("\"ERROR\"") || line.contains("\"WARN\"")) {
                eprintln!("daemon: {line}");
            }
        }
    });
    Ok(Server {
        child,
        addr,
        dir: Some(dir),
    })
}

/// A sibling binary of this example (`target/release/NAME` for `..`,
/// `target/release/examples/NAME` otherwise), or a message saying how to
/// build it.
pub fn sibling(name: &str, in_examples: bool) -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let examples = exe.parent().ok_or("no parent")?;
    let path = if in_examples {
        examples.join(name)
    } else {
        examples.parent().ok_or("no parent")?.join(name)
    };
    if !path.is_file() {
        return Err(format!(
            "{} is missing: run `cargo build --release --bins --examples` first",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// Pins the calling thread (and the threads it starts later) to `core`.
pub fn pin_to_core(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; we set one bit and
    // pass its size, as sched_setaffinity(2) requires.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("warning: cannot pin the load generator to core {core}");
        }
    }
}
