//! memesd built from its flags and served in-process, on the test's own listeners, until the
//! test's own shutdown signal: [`super::build`] and [`super::serve`] without the binary,
//! its signals or systemd.

use super::config_file::load_from;
use super::{Built, Fronts, build, serve};
use crate::client::Client;
use crate::fronts::http::auth::Credentials;
use crate::fronts::http::{self, Http, HttpState};
use crate::fronts::unix::socket;
use crate::protocol::{Request, TopupRequest};
use crate::store::{FileStore, StoreConfig, TokenStore};
use std::io::{Read, Write};

#[test]
fn a_daemon_built_in_process_serves_its_own_listeners_until_its_own_signal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let socket_path = dir.path().join("memesd.sock");
    let settings = load_from([
        "memesd".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--store".as_ref(),
        "file".as_ref(),
        "--welcome-tokens".as_ref(),
        "10".as_ref(),
    ])
    .unwrap();
    let args = settings.args;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Built {
        service,
        store,
        access,
        ..
    } = build(&args, &runtime, None, &socket_path).unwrap();
    assert_eq!(store.kind(), "file");
    let bound = runtime
        .block_on(async { socket::bind(&socket_path, access) })
        .unwrap();
    let tcp = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = tcp.local_addr().unwrap();
    let routes = http::Routes::api(Http::new(HttpState {
        service: service.clone(),
        credentials: Credentials::new(),
        webhook: None,
        limits: args.http_limits(),
        metrics: None,
        console: false,
    }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn({
        let service = service.clone();
        let (limits, http_limits) = (args.limits(), args.http_limits());
        async move {
            let fronts = Fronts {
                unix: &bound.listener,
                unix_limits: limits,
                http: Some((tcp, routes)),
                metrics: None,
                http_limits,
            };
            serve(service, fronts, async {
                let _ = stopped.await;
            })
            .await;
            bound
        }
    });

    let mut client = Client::connect(&socket_path).unwrap();
    let topup = Request::Topup(TopupRequest {
        user: "u".into(),
        amount: 5,
        ..TopupRequest::default()
    });
    client.call(&topup).unwrap().expect("the topup is made");
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: memes\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    let bound = runtime.block_on(serving).unwrap();
    runtime.block_on(store.close()).unwrap();
    bound.remove();
    drop((client, service, store));
    drop(runtime);
    assert!(!socket_path.exists(), "the socket is removed");

    // Closed means flushed: the ledger reopens with the change.
    let reopened = FileStore::open(&data, StoreConfig::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (account, _) = runtime.block_on(reopened.account("u")).unwrap();
    assert_eq!(account.balance, 15);
}
