//! Running banditd in production, against the real binary: access tokens
//! with roles, TLS and mutual TLS, the Prometheus endpoint, and the
//! shutdown drain with its timeout.

mod daemon;
#[path = "common/scrape.rs"]
mod scrape;

use banditd::api::pb::{self, bandit_client::BanditClient, campaigns_client::CampaignsClient};
use banditd::client::{Conn, Connect};
use daemon::{Daemon, BIN};
use scrape::{http_get, metric, parse_metrics};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

fn campaign(id: &str) -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        campaign: Some(pb::Campaign {
            id: id.into(),
            arms: ["a", "b"]
                .iter()
                .map(|a| pb::Arm {
                    id: (*a).into(),
                    retired: false,
                    ..Default::default()
                })
                .collect(),
            policy: None,
            reward_timeout_seconds: 3600,
            default_reward: 0.0,
            decay_half_life_seconds: None,
            holdout_fraction: 0.0,
        }),
    }
}

fn choose(id: &str) -> pb::ChooseRequest {
    pb::ChooseRequest {
        campaign_id: id.into(),
        ..Default::default()
    }
}

async fn conn(target: &str, token: Option<&str>, ca: Option<&Path>) -> Conn {
    Connect {
        target: target.into(),
        tls_ca: ca.map(Path::to_path_buf),
        token: token.map(str::to_string),
        ..Connect::default()
    }
    .connect()
    .await
    .expect("connect")
}

/// `banditd token new NAME ROLE`: (token, tokens-file line).
fn new_token(name: &str, role: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["token", "new", name, role])
        .output()
        .expect("run token new");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let token = lines.next().expect("token line").to_string();
    let line = lines.next().expect("file line").to_string();
    assert!(
        !line.contains(&token),
        "the file line must not hold the token"
    );
    (token, line)
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

// Without a valid token every call but health is UNAUTHENTICATED; a decide
// token may Choose and Reward and nothing else (PERMISSION_DENIED); admin
// may do everything; a refused call changes nothing; the CLI reads
// BANDITD_TOKEN.
#[tokio::test]
async fn tokens_allow_each_role_its_calls_and_refuse_the_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let (decide, decide_line) = new_token("ad-server", "decide");
    let (admin, admin_line) = new_token("ops", "admin");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# banditd tokens\n{decide_line}\n{admin_line}\n"),
    )
    .expect("write tokens");
    let d = Daemon::spawn(
        &dir.path().join("data"),
        &["--tokens-file", tokens.to_str().expect("path")],
    );
    let url = d.url();

    let mut anon_admin = CampaignsClient::new(conn(&url, None, None).await);
    let mut anon_bandit = BanditClient::new(conn(&url, None, None).await);
    let mut wrong = CampaignsClient::new(conn(&url, Some("bdt_not-a-token"), None).await);
    let mut dec_admin = CampaignsClient::new(conn(&url, Some(&decide), None).await);
    let mut dec_bandit = BanditClient::new(conn(&url, Some(&decide), None).await);
    let mut adm_admin = CampaignsClient::new(conn(&url, Some(&admin), None).await);
    let mut adm_bandit = BanditClient::new(conn(&url, Some(&admin), None).await);

    assert_eq!(
        code(anon_admin.create_campaign(campaign("c")).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(wrong.create_campaign(campaign("c")).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(dec_admin.create_campaign(campaign("c")).await),
        Code::PermissionDenied
    );
    let listed = adm_admin
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("admin lists");
    assert!(
        listed.into_inner().campaigns.is_empty(),
        "refused creates changed nothing"
    );

    adm_admin
        .create_campaign(campaign("c"))
        .await
        .expect("admin creates");
    assert_eq!(
        code(anon_bandit.choose(choose("c")).await),
        Code::Unauthenticated
    );
    let chosen = dec_bandit
        .choose(choose("c"))
        .await
        .expect("decide chooses")
        .into_inner();
    dec_bandit
        .reward(pb::RewardRequest {
            decision_id: chosen.decision_id.clone(),
            value: 1.0,
            slot: 0,
        })
        .await
        .expect("decide rewards");
    adm_bandit
        .choose(choose("c"))
        .await
        .expect("admin chooses too");
    for r in [
        code(
            dec_admin
                .get_stats(pb::GetStatsRequest {
                    campaign_id: "c".into(),
                    segment: String::new(),
                })
                .await,
        ),
        code(
            dec_admin
                .delete_campaign(pb::DeleteCampaignRequest {
                    campaign_id: "c".into(),
                })
                .await,
        ),
    ] {
        assert_eq!(r, Code::PermissionDenied);
    }
    let stats = adm_admin
        .get_stats(pb::GetStatsRequest {
            campaign_id: "c".into(),
            segment: String::new(),
        })
        .await
        .expect("admin reads stats")
        .into_inner();
    let pulls: u64 = stats.segments[0].arms.iter().map(|a| a.pulls).sum();
    assert_eq!(pulls, 2, "the decide token's delete changed nothing");

    // Health stays open for probes.
    let mut health = HealthClient::new(conn(&url, None, None).await);
    let h = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without a token");
    assert_eq!(h.into_inner().status, ServingStatus::Serving as i32);

    // The CLI sends BANDITD_TOKEN.
    let cli = |token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["campaign", "list", "--target", &url]);
        c.env_remove("BANDITD_TOKEN");
        if let Some(t) = token {
            c.env("BANDITD_TOKEN", t);
        }
        c.output().expect("run cli")
    };
    let ok = cli(Some(&admin));
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains('c'));
    let refused = cli(None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"),
        "{refused:?}"
    );
    d.terminate();
}

// A tokens file that cannot be used stops the daemon at start (exit 64),
// naming the line.
#[test]
fn a_bad_tokens_file_fails_at_start_naming_the_line() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, line) = new_token("ops", "admin");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\nads root 00ff\n")).expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tokens-file")
        .arg(&tokens)
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("role"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");

    let bad_role = Command::new(BIN)
        .args(["token", "new", "x", "root"])
        .output()
        .expect("run token new");
    assert_eq!(bad_role.status.code(), Some(64));
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, all signed by the CA, written as PEM files into `dir`.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "banditd test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["ad-server".into()]);
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ] {
        std::fs::write(dir.join(name), pem).expect("write pem");
    }
}

// TLS: the CLI reaches an https:// daemon trusting --tls-ca; a plaintext
// client does not get an answer. Mutual TLS: a client without a
// certificate signed by --tls-client-ca is refused, one with it is served.
#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().expect("dir");
    pki(dir.path());
    let p = |n: &str| dir.path().join(n).to_str().expect("path").to_string();
    let d = Daemon::spawn(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
        ],
    );
    let https = format!("https://localhost:{}", d.addr.port());
    let out = Command::new(BIN)
        .args(["campaign", "create"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/campaigns/spring-sale.toml"
        ))
        .args(["--target", &https, "--tls-ca", &p("ca.pem")])
        .output()
        .expect("cli");
    assert!(out.status.success(), "{out:?}");
    let mut plain = CampaignsClient::new(conn(&d.url(), None, None).await);
    assert!(plain
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .is_err());
    // Without the CA the system roots do not trust the test certificate.
    let untrusted = Connect {
        target: https.clone(),
        ..Connect::default()
    }
    .connect()
    .await;
    if let Ok(c) = untrusted {
        let mut c = CampaignsClient::new(c);
        assert!(c.list_campaigns(pb::ListCampaignsRequest {}).await.is_err());
    }
    // --tls-ca with an http:// target is a usage error (exit 64).
    let out = Command::new(BIN)
        .args([
            "campaign",
            "list",
            "--target",
            &d.url(),
            "--tls-ca",
            &p("ca.pem"),
        ])
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    d.terminate();

    let d = Daemon::spawn(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--tls-client-ca",
            &p("ca.pem"),
        ],
    );
    let https = format!("https://localhost:{}", d.addr.port());
    let mut no_cert =
        CampaignsClient::new(conn(&https, None, Some(&dir.path().join("ca.pem"))).await);
    assert!(no_cert
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .is_err());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(dir.path().join("ca.pem")).expect("ca"),
        ))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(dir.path().join("client.pem")).expect("cert"),
            std::fs::read(dir.path().join("client.key")).expect("key"),
        ));
    let channel = tonic::transport::Endpoint::from_shared(https.clone())
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("mutual TLS connects");
    let listed = CampaignsClient::new(channel)
        .list_campaigns(pb::ListCampaignsRequest {})
        .await
        .expect("a client with a certificate is served")
        .into_inner();
    assert_eq!(
        listed.campaigns.len(),
        1,
        "the campaign created over TLS persisted"
    );
    // The CLI presents a client certificate with --tls-client-cert/-key.
    let cli = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "campaign",
                "list",
                "--target",
                &https,
                "--tls-ca",
                &p("ca.pem"),
            ])
            .args(extra)
            .output()
            .expect("cli")
    };
    let out = cli(&[
        "--tls-client-cert",
        &p("client.pem"),
        "--tls-client-key",
        &p("client.key"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("spring-sale"),
        "{out:?}"
    );
    let out = cli(&[]);
    assert!(
        !out.status.success(),
        "served without a certificate: {out:?}"
    );
    // A certificate without its key, or a key file that is not one: exit
    // 64 naming the setting, before connecting.
    for (extra, setting) in [
        (
            vec!["--tls-client-cert", &p("client.pem")],
            "--tls-client-key",
        ),
        (
            vec![
                "--tls-client-cert",
                &p("client.pem"),
                "--tls-client-key",
                &p("client.pem"),
            ],
            "--tls-client-key",
        ),
    ] {
        let out = cli(&extra);
        assert_eq!(out.status.code(), Some(64), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(setting),
            "{out:?}"
        );
    }
    d.terminate();

    // A key that is not the certificate's fails at start (exit 64).
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data2"))
        .args(["--tls-cert", &p("server.pem"), "--tls-key", &p("ca.pem")])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{out:?}"
    );
}

// The metrics endpoint of a running daemon: calls by rpc and code,
// latency histograms, decisions by campaign, the write path, the store,
// RSS — in the Prometheus text format.
#[tokio::test]
async fn metrics_are_scraped_in_the_prometheus_text_format() {
    let dir = tempfile::tempdir().expect("dir");
    let d = Daemon::spawn(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics_addr = d.started["metrics_listen"]
        .as_str()
        .expect("metrics address logged")
        .to_string();
    let url = d.url();
    let mut admin = CampaignsClient::new(conn(&url, None, None).await);
    let mut bandit = BanditClient::new(conn(&url, None, None).await);
    admin
        .create_campaign(campaign("shop"))
        .await
        .expect("create");
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut r = choose("shop");
        r.segment = if i % 2 == 0 { "young" } else { "old" }.into();
        ids.push(
            bandit
                .choose(r)
                .await
                .expect("choose")
                .into_inner()
                .decision_id,
        );
    }
    for id in &ids[..2] {
        bandit
            .reward(pb::RewardRequest {
                decision_id: id.clone(),
                value: 1.0,
                slot: 0,
            })
            .await
            .expect("reward");
    }
    assert_eq!(code(bandit.choose(choose("nope")).await), Code::NotFound);

    let (status, body) = http_get(&metrics_addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let m = parse_metrics(&body);
    assert_eq!(
        metric(&m, r#"banditd_grpc_requests_total{rpc="Choose",code="OK"}"#),
        5.0
    );
    assert_eq!(
        metric(
            &m,
            r#"banditd_grpc_requests_total{rpc="Choose",code="NOT_FOUND"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&m, r#"banditd_grpc_requests_total{rpc="Reward",code="OK"}"#),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"banditd_grpc_request_duration_seconds_count{rpc="Choose"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &m,
            r#"banditd_grpc_request_duration_seconds_bucket{rpc="Choose",le="+Inf"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(&m, r#"banditd_decisions_pending{campaign="shop"}"#),
        3.0
    );
    assert_eq!(
        metric(&m, r#"banditd_decisions_rewarded_total{campaign="shop"}"#),
        2.0
    );
    assert_eq!(
        metric(&m, r#"banditd_decisions_expired_total{campaign="shop"}"#),
        0.0
    );
    assert_eq!(metric(&m, r#"banditd_segments{campaign="shop"}"#), 2.0);
    assert_eq!(metric(&m, "banditd_campaigns"), 1.0);
    assert!(metric(&m, "banditd_write_queue_depth") >= 0.0);
    assert!(metric(&m, "banditd_durable_lag_changes") >= 0.0);
    assert!(metric(&m, "banditd_store_disk_bytes") > 0.0);
    assert!(metric(&m, "banditd_process_resident_memory_bytes") > 1e6);
    assert_eq!(metric(&m, "banditd_store_failed"), 0.0);

    let (status, _) = http_get(&metrics_addr, "/other");
    assert!(status.contains("404"), "{status}");
    d.terminate();
}

/// Opens a Choose whose request body never completes (a call in flight
/// until the server gives up on it); returns what keeps it open.
async fn stalled_call(addr: std::net::SocketAddr) -> impl Drop {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2");
    let conn_task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/banditd.v1.Bandit/Choose"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    // A frame header promising 100 bytes, and 3 of them.
    body.send_data(
        bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]),
        false,
    )
    .expect("data");
    /// The connection task, and the stream's two halves (kept open).
    #[allow(dead_code)]
    struct Held(
        tokio::task::JoinHandle<()>,
        h2::SendStream<bytes::Bytes>,
        h2::client::ResponseFuture,
    );
    impl Drop for Held {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    Held(conn_task, body, response)
}

// SIGTERM: health turns NOT_SERVING at the start of the drain (seen on a
// watch opened before), a call that never finishes is cancelled at
// --shutdown-timeout, and the store is flushed anyway: the process exits
// 0 and `banditd check` finds the data clean.
#[tokio::test]
async fn the_drain_turns_health_not_serving_and_ends_at_its_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let d = Daemon::spawn(dir.path(), &["--shutdown-timeout", "1s"]);
    let mut admin = CampaignsClient::new(conn(&d.url(), None, None).await);
    admin.create_campaign(campaign("c")).await.expect("create");
    let mut bandit = BanditClient::new(conn(&d.url(), None, None).await);
    bandit.choose(choose("c")).await.expect("choose");

    let mut health = HealthClient::new(conn(&d.url(), None, None).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("status").expect("one");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let held = stalled_call(d.addr).await;

    let started = Instant::now();
    let pid = d.child.id();
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("health changes at the start of the drain");
    if let Ok(Some(s)) = next {
        assert_eq!(s.status, ServingStatus::NotServing as i32);
    }
    let code = tokio::task::spawn_blocking(move || d.terminate())
        .await
        .expect("wait");
    let took = started.elapsed();
    drop(held);
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the call in flight: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "the drain outlived its timeout: {took:?}"
    );
    let check = Command::new(BIN)
        .args(["check", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("check");
    assert!(check.status.success(), "{check:?}");
}
