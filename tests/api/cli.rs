//! The binary's other commands: `healthcheck` (for container health checks) and `openapi`.

use std::process::Command;

use crate::helpers::spawn_app;

fn ferry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

#[tokio::test]
async fn healthcheck_exits_zero_against_a_healthy_server() {
    let app = spawn_app().await;
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &addr])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn healthcheck_exits_non_zero_against_a_closed_port_or_an_unhealthy_server() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &closed])).await.unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.starts_with("ferry: unhealthy: nothing listens on 127.0.0.1:"), "{said}");

    let app = spawn_app().await;
    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &addr])).await.unwrap();
    assert!(!out.status.success(), "a server whose data dir cannot be written is not healthy");
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = ferry(&["openapi"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert!(printed == committed);
}
